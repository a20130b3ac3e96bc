// Unit tests for oci/layout_writer: blobs, tags, and tree layers read back by GNU tar and by
// our own merge.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "fs/tree.h"
#include "oci/image.h"
#include "oci/layout_writer.h"
#include "oci/merge.h"
#include "support/errors.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

std::shared_ptr<fs::Inode> file_inode(fs::SpillFile& spill,
                                      std::string_view content, std::uint32_t mode,
                                      std::int64_t mtime) {
    auto inode = std::make_shared<fs::Inode>();
    inode->type = fs::FileType::regular;
    inode->mode = mode;
    inode->mtime = mtime;
    inode->data = fs::DataRef{fs::DataRef::Kind::spill, {}, spill.append(content), content.size()};
    return inode;
}

} // namespace

TEST_CASE("layout writer: a tree layer with hard links, symlinks, xattrs and devices round-trips") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    fs::Tree tree;
    tree.root().children["etc"] = fs::make_directory(0755, 1700000000);
    auto& etc = *tree.root().children["etc"];
    etc.children["motd"] = file_inode(spill, "hello\n", 0644, 1800000000);
    etc.children["motd-link"] = etc.children["motd"]; // hard link
    auto ping = file_inode(spill, std::string(300000, 'p'), 04755, 1600000000);
    ping->xattrs["security.capability"] = std::string("\x01\x00\x00\x02", 4);
    etc.children["ping"] = ping;
    auto link = std::make_shared<fs::Inode>();
    link->type = fs::FileType::symlink;
    link->mode = 0777;
    link->symlink_target = "motd";
    etc.children["issue"] = link;
    auto null = std::make_shared<fs::Inode>();
    null->type = fs::FileType::char_device;
    null->mode = 0666;
    null->rdev = {1, 3};
    tree.root().children["null"] = null;
    spill.flush();

    oci::LayoutWriter layout(dir.path() / "layout");
    const oci::LayerBlob blob =
        oci::write_tree_layer(tree, spill, layout, {.clamp_mtime = 1700000000});
    const stdfs::path blob_file = layout.blob_path(blob.descriptor.digest);
    CHECK(blob.descriptor.media_type == "application/vnd.oci.image.layer.v1.tar+gzip");
    CHECK(blob.descriptor.digest == "sha256:" + util::sha256_file_hex(blob_file));
    CHECK(blob.descriptor.size == stdfs::file_size(blob_file));
    CHECK(blob.diff_id == oci::uncompressed_digest(blob_file));

    // GNU tar reads it: names sorted, hard link, clamped mtimes, numeric owners, the device.
    const util::ProcessResult listing = util::run_process(
        {"tar", "--numeric-owner", "--full-time", "-tvzf", blob_file.string()});
    REQUIRE(listing.exit_code == 0);
    CHECK(listing.standard_output ==
          "drwxr-xr-x 0/0               0 2023-11-14 22:13:20 etc/\n"
          "lrwxrwxrwx 0/0               0 1970-01-01 00:00:00 etc/issue -> motd\n"
          "-rw-r--r-- 0/0               6 2023-11-14 22:13:20 etc/motd\n"
          "hrw-r--r-- 0/0               0 2023-11-14 22:13:20 etc/motd-link link to etc/motd\n"
          "-rwsr-xr-x 0/0          300000 2020-09-13 12:26:40 etc/ping\n"
          "crw-rw-rw- 0/0             1,3 1970-01-01 00:00:00 null\n");

    // Same bytes again: reproducible.
    oci::LayoutWriter again(dir.path() / "again");
    CHECK(oci::write_tree_layer(tree, spill, again, {.clamp_mtime = 1700000000}).descriptor.digest ==
          blob.descriptor.digest);

    // Our merge reads it back with the xattr and the hard link intact.
    oci::Layer layer;
    layer.path = blob_file;
    layer.media_type = blob.descriptor.media_type;
    layer.digest = blob.descriptor.digest;
    layer.size = blob.descriptor.size;
    fs::Tree back;
    fs::SpillFile back_spill(dir.path());
    oci::apply_layer(layer, "test", back, back_spill);
    CHECK(back.lookup("/etc/motd") == back.lookup("/etc/motd-link"));
    CHECK(back.lookup("/etc/ping")->xattrs.at("security.capability") ==
          std::string("\x01\x00\x00\x02", 4));
    CHECK(back.lookup("/etc/ping")->mode == 04755);
    CHECK(fs::read_data(*back.lookup("/etc/motd"), back_spill) == "hello\n");
}

TEST_CASE("layout writer: tags replace their entry, other tags stay, blobs are shared") {
    util::TempDir dir;
    {
        oci::LayoutWriter layout(dir.path());
        const oci::BlobDescriptor one = layout.add_blob_bytes("{\"a\":1}", "application/json");
        layout.tag(one, "v1");
        layout.tag(one, "latest");
        layout.commit();
    }
    oci::LayoutWriter layout(dir.path());
    const oci::BlobDescriptor two = layout.add_blob_bytes("{\"a\":2}", "application/json");
    layout.tag(two, "v1");
    layout.commit();
    const auto index = nlohmann::json::parse(util::read_file(dir.path() / "index.json"));
    REQUIRE(index["manifests"].size() == 2);
    CHECK(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "latest");
    CHECK(index["manifests"][1]["digest"] == two.digest);
    CHECK(util::read_file(dir.path() / "oci-layout") == "{\"imageLayoutVersion\":\"1.0.0\"}");

    const stdfs::path source = dir.path() / "source.bin";
    util::write_file_atomically(source, "layer bytes");
    const oci::BlobDescriptor linked = layout.add_blob_file(source, "application/octet-stream");
    CHECK(linked.digest == "sha256:" + util::sha256_hex("layer bytes"));
    CHECK(util::read_file(layout.blob_path(linked.digest)) == "layer bytes");
}

TEST_CASE("layout writer: a directory with other files is refused") {
    util::TempDir dir;
    util::write_file_atomically(dir.path() / "notes.txt", "mine");
    CHECK(testing::error_of([&] { oci::LayoutWriter layout(dir.path()); }, ExitCode::bad_input) ==
          "cannot write an OCI image layout into " + dir.path().string() +
              ": the directory has other files (no oci-layout file); choose an empty or new "
              "directory");
    CHECK_FALSE(stdfs::exists(dir.path() / "oci-layout"));
}
