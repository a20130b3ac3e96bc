// Unit tests for oci/merge: OCI whiteout rules, attributes, safety checks, corrupt layers, host
// directories, and the real fixture base image when it has been built.
#include <doctest/doctest.h>

#include "support/data.h"
#include "support/errors.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/error.h"
#include "fs/tree.h"
#include "image_builder.h"
#include "oci/blob_cache.h"
#include "oci/image.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"

using namespace edgeforge;
using namespace test_images;
namespace stdfs = std::filesystem;

namespace {

// A tree, its spill file and a place for layer files.
struct Workspace {
    util::TempDir dir;
    fs::SpillFile spill{dir.path()};
    fs::Tree tree;
    int layer_count = 0;

    oci::Layer layer(const std::string& bytes, TarCompression compression = TarCompression::none) {
        const auto path = dir.path() / ("layer" + std::to_string(layer_count++));
        write_bytes(path, bytes);
        oci::Layer layer;
        layer.path = path;
        layer.media_type = media_type_for(compression);
        layer.digest = digest_of(bytes);
        layer.size = bytes.size();
        return layer;
    }

    oci::Layer layer(const TarBuilder& builder, TarCompression compression = TarCompression::none) {
        return layer(builder.build(compression), compression);
    }

    oci::MergeResult merge(std::vector<oci::Layer> layers, const oci::MergeOptions& options = {}) {
        oci::Image image;
        image.name = "oci:test";
        image.layers = std::move(layers);
        return oci::merge_layers(image, tree, spill, options);
    }

    bool has(const std::string& path) const { return tree.lookup(path) != nullptr; }

    std::string content_after_merge(const oci::Layer& layer, const std::string& path) {
        merge({layer});
        return content(path);
    }

    std::string content(const std::string& path) const {
        const auto inode = tree.lookup(path);
        REQUIRE_MESSAGE(inode, path);
        REQUIRE_MESSAGE(inode->is_regular(), path);
        return fs::read_data(*inode, spill);
    }

    std::vector<std::string> paths() const {
        std::vector<std::string> all;
        tree.walk([&](const fs::WalkEntry& entry) { all.emplace_back(entry.path); });
        return all;
    }
};

using edgeforge::testing::error_of;

std::string escape_message(const oci::Layer& layer, const std::string& entry) {
    return "image oci:test: layer " + layer.digest + " entry '" + entry +
           "' escapes the image root; the image is malformed or malicious";
}

} // namespace

TEST_CASE("whiteouts delete a lower file and a lower directory subtree") {
    Workspace ws;
    const auto lower = ws.layer(TarBuilder()
                                    .dir("etc")
                                    .file("etc/keep", "kept")
                                    .file("etc/gone", "deleted")
                                    .dir("etc/dir")
                                    .dir("etc/dir/sub")
                                    .file("etc/dir/sub/file", "deep")
                                    .file("etc/dir/file", "x"));
    const auto upper = ws.layer(TarBuilder()
                                    .dir("etc")
                                    .file("etc/.wh.gone", "")
                                    .file("etc/.wh.dir", "")
                                    .file("etc/.wh.never-existed", "")
                                    .file("etc/same-layer", "stays")
                                    .file("etc/.wh.same-layer", ""));
    const auto result = ws.merge({lower, upper});
    CHECK(ws.paths() == std::vector<std::string>{"/", "/etc", "/etc/keep", "/etc/same-layer"});
    CHECK(ws.content("etc/keep") == "kept");
    CHECK(ws.content("etc/same-layer") == "stays");
    CHECK(result.total.whiteouts == 2);
    CHECK(result.layers.at(1).stats.whiteouts == 2);
}

TEST_CASE("an opaque marker after its siblings hides only the lower-layer children") {
    Workspace ws;
    const auto lower = ws.layer(TarBuilder()
                                    .dir("d")
                                    .file("d/old1", "1")
                                    .file("d/old2", "2")
                                    .dir("d/sub")
                                    .file("d/sub/lower", "lower")
                                    .dir("e")
                                    .file("e/old", "old")
                                    .file("other", "untouched"));
    const auto upper = ws.layer(TarBuilder()
                                    .dir("d")
                                    .file("d/new", "new")
                                    .dir("d/sub")
                                    .file("d/sub/upper", "upper")
                                    .file("d/.wh..wh..opq", "")
                                    .file("e/.wh..wh..opq", "")
                                    .file("e/new", "after the marker"));
    const auto result = ws.merge({lower, upper});
    CHECK(ws.paths() == std::vector<std::string>{"/", "/d", "/d/new", "/d/sub", "/d/sub/upper",
                                                 "/e", "/e/new", "/other"});
    CHECK(ws.content("d/sub/upper") == "upper");
    CHECK(ws.content("e/new") == "after the marker");
    CHECK(result.total.opaque_directories == 2);
}

TEST_CASE("a hard link keeps the data when a later layer whites out its target") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder()
                           .dir("bin")
                           .file("bin/tool", "tool data", 0755)
                           .hardlink("bin/alias", "bin/tool"))});
    CHECK(ws.tree.lookup("bin/alias") == ws.tree.lookup("bin/tool"));
    CHECK(ws.tree.link_counts().at(ws.tree.lookup("bin/tool").get()) == 2);

    const auto result = ws.merge({ws.layer(TarBuilder().file("bin/.wh.tool", ""))});
    CHECK_FALSE(ws.has("bin/tool"));
    CHECK(ws.content("bin/alias") == "tool data");
    CHECK(ws.tree.lookup("bin/alias")->mode == 0755);
    CHECK(ws.tree.link_counts().at(ws.tree.lookup("bin/alias").get()) == 1);
    CHECK(result.total.whiteouts == 1);
}

TEST_CASE("replacing a hard-linked file leaves the other name with the old content") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder().file("a", "old").hardlink("b", "a")),
              ws.layer(TarBuilder().file("a", "new"))});
    CHECK(ws.content("a") == "new");
    CHECK(ws.content("b") == "old");
}

TEST_CASE("hard links to files that are not in the image are errors") {
    Workspace ws;
    const auto missing = ws.layer(TarBuilder().hardlink("a", "nothere"));
    CHECK(error_of([&] { ws.merge({missing}); }, ExitCode::bad_input) ==
          "image oci:test: layer " + missing.digest +
              " entry 'a' is a hard link to 'nothere', which does not exist in the image; the "
              "image is malformed");

    Workspace ws2;
    const auto lower = ws2.layer(TarBuilder().file("x", "data"));
    const auto upper = ws2.layer(TarBuilder().file(".wh.x", "").hardlink("y", "x"));
    CHECK(error_of(
              [&] {
                  ws2.merge({lower, upper});
              },
              ExitCode::bad_input) ==
          "image oci:test: layer " + upper.digest +
              " entry 'y' is a hard link to 'x', which does not exist in the image; the image is "
              "malformed");

    Workspace ws3;
    const auto to_dir = ws3.layer(TarBuilder().dir("d").hardlink("l", "d"));
    CHECK(error_of([&] { ws3.merge({to_dir}); }, ExitCode::bad_input) ==
          "image oci:test: layer " + to_dir.digest +
              " entry 'l' is a hard link to the directory 'd'; the image is malformed");
}

TEST_CASE("a directory over a directory keeps the lower children and takes the new metadata") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder()
                           .add({.path = "opt", .type = AE_IFDIR, .mode = 0755, .mtime = 1})
                           .file("opt/lower", "l")),
              ws.layer(TarBuilder()
                           .add({.path = "opt/",
                                 .type = AE_IFDIR,
                                 .mode = 0700,
                                 .uid = 5,
                                 .gid = 6,
                                 .mtime = 2})
                           .file("opt/upper", "u"))});
    const auto opt = ws.tree.lookup("opt");
    CHECK(opt->mode == 0700);
    CHECK(opt->uid == 5);
    CHECK(opt->gid == 6);
    CHECK(opt->mtime == 2);
    CHECK(ws.content("opt/lower") == "l");
    CHECK(ws.content("opt/upper") == "u");
}

TEST_CASE("a file replaces a directory subtree and a directory replaces a file") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder().dir("x").dir("x/y").file("x/y/z", "z").file("f", "file")),
              ws.layer(TarBuilder().file("x", "now a file").dir("f").file("f/inner", "in"))});
    CHECK(ws.paths() == std::vector<std::string>{"/", "/f", "/f/inner", "/x"});
    CHECK(ws.content("x") == "now a file");
    CHECK(ws.tree.lookup("f")->is_directory());
}

TEST_CASE("symlinks, devices, fifos, special modes, owners, times and xattrs are preserved") {
    Workspace ws;
    const std::string capability("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00", 12);
    ws.merge({ws.layer(
        TarBuilder()
            .dir("bin")
            .symlink("bin/sh", "busybox")
            .symlink("etc-link", "/etc/os-release")
            .add({.path = "dev/null",
                  .type = AE_IFCHR,
                  .mode = 0666,
                  .rdev_major = 1,
                  .rdev_minor = 3})
            .add({.path = "dev/sda",
                  .type = AE_IFBLK,
                  .mode = 0660,
                  .gid = 6,
                  .rdev_major = 8,
                  .rdev_minor = 0})
            .add({.path = "run/initctl", .type = AE_IFIFO, .mode = 0600})
            .file("usr/bin/su", "su", 04755)
            .file("usr/bin/wall", "wall", 02755)
            .dir("tmp", 01777)
            .add({.path = "usr/bin/ping",
                  .content = "ping",
                  .mode = 0755,
                  .xattrs = {{"security.capability", capability}, {"user.note", "hello"}}})
            .add({.path = "home/user/file",
                  .content = "mine",
                  .mode = 0640,
                  .uid = 1000,
                  .gid = 1001,
                  .mtime = 1234567890}))});
    const auto sh = ws.tree.lookup("bin/sh");
    CHECK(sh->is_symlink());
    CHECK(sh->symlink_target == "busybox");
    CHECK(ws.tree.lookup("etc-link")->symlink_target == "/etc/os-release");
    const auto null = ws.tree.lookup("dev/null");
    CHECK(null->type == fs::FileType::char_device);
    CHECK(null->rdev == fs::DeviceNumber{1, 3});
    CHECK(null->mode == 0666);
    const auto sda = ws.tree.lookup("dev/sda");
    CHECK(sda->type == fs::FileType::block_device);
    CHECK(sda->rdev == fs::DeviceNumber{8, 0});
    CHECK(sda->gid == 6);
    CHECK(ws.tree.lookup("run/initctl")->type == fs::FileType::fifo);
    CHECK(ws.tree.lookup("run/initctl")->mode == 0600);
    CHECK(ws.tree.lookup("usr/bin/su")->mode == 04755);
    CHECK(ws.tree.lookup("usr/bin/wall")->mode == 02755);
    CHECK(ws.tree.lookup("tmp")->mode == 01777);
    const auto ping = ws.tree.lookup("usr/bin/ping");
    CHECK(ping->xattrs == std::map<std::string, std::string>{{"security.capability", capability},
                                                             {"user.note", "hello"}});
    const auto file = ws.tree.lookup("home/user/file");
    CHECK(file->uid == 1000);
    CHECK(file->gid == 1001);
    CHECK(file->mtime == 1234567890);
    CHECK(file->mode == 0640);
    CHECK(ws.content("home/user/file") == "mine");
}

TEST_CASE("parents missing from a layer are created as root-owned 0755 directories") {
    Workspace ws;
    ws.merge({ws.layer(
        TarBuilder().add({.path = "./a/b/c", .content = "c", .uid = 7}).file("/abs", "x"))});
    CHECK(ws.paths() == std::vector<std::string>{"/", "/a", "/a/b", "/a/b/c", "/abs"});
    for (const auto* path : {"a", "a/b"}) {
        const auto inode = ws.tree.lookup(path);
        CHECK(inode->is_directory());
        CHECK(inode->mode == 0755);
        CHECK(inode->uid == 0);
        CHECK(inode->gid == 0);
    }
    CHECK(ws.tree.lookup("a/b/c")->uid == 7);
}

TEST_CASE("the root entry of a layer sets the root directory's metadata") {
    Workspace ws;
    ws.merge(
        {ws.layer(TarBuilder().add({.path = "./", .type = AE_IFDIR, .mode = 0700, .mtime = 9}))});
    CHECK(ws.tree.root().mode == 0700);
    CHECK(ws.tree.root().mtime == 9);
}

TEST_CASE("entries that escape the root are rejected naming the layer") {
    for (const std::string entry : {"../etc/passwd", "a/../../x", "./../x", "a/.."}) {
        Workspace ws;
        const auto layer = ws.layer(TarBuilder().dir("a").file(entry, "evil"));
        CHECK(error_of([&] { ws.merge({layer}); }, ExitCode::bad_input) ==
              escape_message(layer, entry));
    }
    Workspace ws;
    const auto whiteout = ws.layer(TarBuilder().file("a/.wh...", ""));
    CHECK(error_of([&] { ws.merge({whiteout}); }, ExitCode::bad_input) ==
          escape_message(whiteout, "a/.wh..."));
    const auto link = ws.layer(TarBuilder().file("a", "x").hardlink("b", "../a"));
    CHECK(error_of([&] { ws.merge({link}); }, ExitCode::bad_input) ==
          "image oci:test: layer " + link.digest +
              " entry 'b' is a hard link to '../a', which escapes the image root; the image is "
              "malformed or malicious");
}

TEST_CASE("names longer than Linux allows are rejected naming the layer; deep paths cost linear "
          "memory") {
    std::string deep;
    while (deep.size() < 5000) {
        deep += "d/";
    }
    deep += "file";
    {
        Workspace ws;
        const auto layer = ws.layer(TarBuilder().file(deep, "x"));
        const std::string message = error_of([&] { ws.merge({layer}); }, ExitCode::bad_input);
        CHECK(message.starts_with("image oci:test: layer " + layer.digest + " entry 'd/d/d/"));
        CHECK(message.find("is 5004 bytes long; Linux allows 4095 (PATH_MAX)") != std::string::npos);
        CHECK(message.size() < 400); // the name is shown cut short
    }
    {
        Workspace ws;
        const auto layer = ws.layer(TarBuilder().file("etc/" + std::string(256, 'n'), "x"));
        CHECK(error_of([&] { ws.merge({layer}); }, ExitCode::bad_input)
                  .find("has a 256-byte component; Linux allows 255 (NAME_MAX)") !=
              std::string::npos);
    }
    {
        Workspace ws;
        const auto layer = ws.layer(TarBuilder().symlink("link", std::string(4096, 't')));
        CHECK(error_of([&] { ws.merge({layer}); }, ExitCode::bad_input)
                  .find("is a symbolic link whose target is 4096 bytes long") != std::string::npos);
    }
    {
        Workspace ws;
        const auto layer = ws.layer(TarBuilder().file("a", "x").hardlink("b", std::string(300, 'a')));
        CHECK(error_of([&] { ws.merge({layer}); }, ExitCode::bad_input)
                  .find("is a hard link whose target has a 300-byte component") !=
              std::string::npos);
    }
    // Near the limit: 2040 levels, where whiteouts and an opaque marker still apply.
    std::string at_limit;
    while (at_limit.size() < 4080) {
        at_limit += "d/";
    }
    Workspace ws;
    ws.merge({ws.layer(TarBuilder().file(at_limit + "f", "lower").file(at_limit + "g", "lower")),
              ws.layer(TarBuilder().file(at_limit + ".wh.f", "").file(at_limit + "h", "upper")),
              ws.layer(TarBuilder().file(at_limit + "i", "top").file(at_limit + ".wh..wh..opq", ""))});
    CHECK_FALSE(ws.has(at_limit + "f"));
    CHECK_FALSE(ws.has(at_limit + "g"));
    CHECK_FALSE(ws.has(at_limit + "h"));
    CHECK(ws.content(at_limit + "i") == "top");
}

TEST_CASE("entries under a symbolic link are rejected, a directory entry replaces the link") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder().dir("usr").dir("usr/lib").symlink("lib", "usr/lib"))});
    const auto through = ws.layer(TarBuilder().file("lib/evil", "x"));
    CHECK(error_of([&] { ws.merge({through}); }, ExitCode::bad_input) ==
          "image oci:test: layer " + through.digest +
              " entry 'lib/evil' goes through the symbolic link 'lib' (-> usr/lib); the image is "
              "malformed or malicious");
    const auto whiteout = ws.layer(TarBuilder().file("lib/.wh.x", ""));
    CHECK(error_of([&] { ws.merge({whiteout}); }, ExitCode::bad_input) ==
          "image oci:test: layer " + whiteout.digest +
              " entry 'lib/.wh.x' goes through the symbolic link 'lib' (-> usr/lib); the image is "
              "malformed or malicious");
    CHECK_FALSE(ws.has("usr/lib/evil"));

    ws.merge({ws.layer(TarBuilder().dir("lib").file("lib/ok", "ok"))});
    CHECK(ws.tree.lookup("lib")->is_directory());
    CHECK(ws.content("lib/ok") == "ok");
}

TEST_CASE("entries inside a whiteout marker are rejected, AUFS bookkeeping is skipped") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder()
                           .dir(".wh..wh.plnk")
                           .file(".wh..wh.plnk/123.456", "aufs")
                           .file(".wh..wh.aufs", "")
                           .file("kept", "k"))});
    CHECK(ws.paths() == std::vector<std::string>{"/", "/kept"});
    const auto layer = ws.layer(TarBuilder().file("a/.wh.b/c", "x"));
    CHECK(error_of([&] { ws.merge({layer}); }, ExitCode::bad_input) ==
          "image oci:test: layer " + layer.digest +
              " entry 'a/.wh.b/c' lies inside a whiteout marker; the image is malformed");
}

TEST_CASE("a truncated gzip layer fails naming the layer and libarchive's message") {
    Workspace ws;
    std::string noise;
    for (int i = 0; i < 20000; ++i) {
        noise += util::sha256_hex(std::to_string(i));
    }
    const auto full =
        TarBuilder().file("big", noise).file("after", "x").build(TarCompression::gzip);
    const auto truncated = ws.layer(full.substr(0, full.size() / 2), TarCompression::gzip);
    const auto message = error_of([&] { ws.merge({truncated}); }, ExitCode::build_failed);
    CHECK(message == "image oci:test: layer " + truncated.digest +
                         " is truncated or corrupt: truncated gzip input");

    const auto garbage =
        ws.layer(std::string("\x1f\x8b\x08\x00garbage garbage", 19), TarCompression::gzip);
    CHECK(
        error_of([&] { ws.merge({garbage}); }, ExitCode::build_failed)
            .starts_with("image oci:test: layer " + garbage.digest + " is truncated or corrupt: "));
}

TEST_CASE("a layer that does not match its digest fails") {
    Workspace ws;
    auto layer = ws.layer(TarBuilder().file("a", "a"), TarCompression::gzip);
    const std::string actual = layer.digest;
    layer.digest = digest_of("something else");
    CHECK(error_of([&] { ws.merge({layer}); }, ExitCode::build_failed) ==
          "image oci:test: blob " + layer.digest + " (layer) is corrupt: its content hashes to " +
              actual + "; copy the image again");
}

TEST_CASE("plain, gzip and zstd layers merge alike; plain layers are referenced, not copied") {
    const auto builder = TarBuilder()
                             .dir("etc")
                             .file("etc/a", std::string(100000, 'a'))
                             .file("etc/empty", "")
                             .file("etc/b", "bee")
                             .hardlink("etc/c", "etc/b");
    std::vector<std::vector<std::string>> listings;
    for (const auto compression :
         {TarCompression::none, TarCompression::gzip, TarCompression::zstd}) {
        Workspace ws;
        const auto layer = ws.layer(builder, compression);
        const auto result = ws.merge({layer});
        listings.push_back(ws.paths());
        CHECK(ws.content("etc/a") == std::string(100000, 'a'));
        CHECK(ws.content("etc/b") == "bee");
        CHECK(ws.content("etc/c") == "bee");
        CHECK(ws.content("etc/empty").empty());
        CHECK(ws.tree.lookup("etc/empty")->data.kind == fs::DataRef::Kind::none);
        CHECK(result.total.entries == 5);
        CHECK(result.total.hard_links == 1);
        CHECK(result.total.data_bytes == 100003);
        CHECK(result.total.input_bytes == layer.size);
        CHECK(result.layers.at(0).digest == layer.digest);
        const auto kind = ws.tree.lookup("etc/a")->data.kind;
        if (compression == TarCompression::none) {
            CHECK(kind == fs::DataRef::Kind::blob);
            CHECK(result.total.spilled_bytes == 0);
            CHECK(ws.spill.size() == 0);
        } else {
            CHECK(kind == fs::DataRef::Kind::spill);
            CHECK(result.total.spilled_bytes == 100003);
        }
    }
    CHECK(listings.at(0) == listings.at(1));
    CHECK(listings.at(0) == listings.at(2));

    Workspace ws;
    oci::MergeOptions copy;
    copy.uncompressed_data = oci::UncompressedData::copy_to_spill;
    ws.merge({ws.layer(builder)}, copy);
    CHECK(ws.tree.lookup("etc/a")->data.kind == fs::DataRef::Kind::spill);
    CHECK(ws.content("etc/a") == std::string(100000, 'a'));
}

TEST_CASE("sparse files come back with their holes as zeros") {
    std::string content = "head" + std::string(1 << 20, '\0') + "tail";
    const auto builder =
        TarBuilder().add({.path = "sparse",
                          .content = content,
                          .sparse = {{0, 4}, {static_cast<std::int64_t>(content.size()) - 4, 4}}});
    for (const auto compression : {TarCompression::none, TarCompression::gzip}) {
        Workspace ws;
        ws.merge({ws.layer(builder, compression)});
        CHECK(ws.tree.lookup("sparse")->data.size == content.size());
        CHECK(ws.tree.lookup("sparse")->data.kind == fs::DataRef::Kind::spill);
        CHECK(ws.content("sparse") == content);
    }
}

TEST_CASE("names keep their bytes") {
    Workspace ws;
    ws.merge(
        {ws.layer(TarBuilder().file("usr/share/caf\xc3\xa9.txt", "utf-8").file("sp ace", "s"))});
    CHECK(ws.content("usr/share/caf\xc3\xa9.txt") == "utf-8");
    CHECK(ws.content("sp ace") == "s");
}

TEST_CASE("progress reports the layer bytes read, up to the total") {
    Workspace ws;
    std::string noise;
    for (int i = 0; i < 50000; ++i) {
        noise += util::sha256_hex(std::to_string(i));
    }
    const auto first = ws.layer(TarBuilder().file("a", noise), TarCompression::gzip);
    const auto second = ws.layer(TarBuilder().file("b", noise));
    std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
    oci::MergeOptions options;
    options.progress = [&](std::uint64_t done, std::uint64_t total) {
        calls.emplace_back(done, total);
    };
    ws.merge({first, second}, options);
    REQUIRE(calls.size() > 2);
    for (std::size_t i = 1; i < calls.size(); ++i) {
        CHECK(calls[i].first >= calls[i - 1].first);
    }
    CHECK(calls.back().first == first.size + second.size);
    CHECK(calls.back().second == first.size + second.size);

    oci::MergeOptions cancelling;
    cancelling.progress = [](std::uint64_t, std::uint64_t) {
        throw std::runtime_error("cancelled");
    };
    Workspace ws2;
    CHECK_THROWS_WITH_AS(ws2.merge({ws2.layer(TarBuilder().file("a", "a"))}, cancelling),
                         "cancelled", std::runtime_error);
}

TEST_CASE("apply_directory refers to host files in place and keeps hard links") {
    util::TempDir host;
    const auto root = host.path() / "rootfs";
    stdfs::create_directories(root / "etc");
    stdfs::create_directories(root / "bin");
    stdfs::create_directories(root / "empty");
    util::write_file_atomically(root / "etc" / "hostname", "edge\n");
    util::write_file_atomically(root / "bin" / "tool", "tool");
    stdfs::create_hard_link(root / "bin" / "tool", root / "bin" / "alias");
    stdfs::create_symlink("tool", root / "bin" / "link");
    util::write_file_atomically(root / ".wh.literal", "");
    ::chmod((root / "bin" / "tool").c_str(), 04750);
    ::chmod((root / "empty").c_str(), 0700);

    Workspace ws;
    const auto stats = oci::apply_directory(root, ws.tree);
    CHECK(ws.paths() == std::vector<std::string>{"/", "/.wh.literal", "/bin", "/bin/alias",
                                                 "/bin/link", "/bin/tool", "/empty", "/etc",
                                                 "/etc/hostname"});
    const auto hostname = ws.tree.lookup("etc/hostname");
    CHECK(hostname->data.kind == fs::DataRef::Kind::host_file);
    CHECK(hostname->data.path == root / "etc" / "hostname");
    CHECK(ws.content("etc/hostname") == "edge\n");
    CHECK(ws.tree.lookup("bin/alias") == ws.tree.lookup("bin/tool"));
    CHECK(ws.tree.lookup("bin/tool")->mode == 04750);
    CHECK(ws.tree.lookup("bin/link")->symlink_target == "tool");
    CHECK(ws.tree.lookup("empty")->mode == 0700);
    CHECK(ws.tree.lookup("etc/hostname")->uid == ::getuid());
    CHECK(stats.entries == 8);
    CHECK(stats.hard_links == 1);
    CHECK(stats.spilled_bytes == 0);
    CHECK(ws.spill.size() == 0);
}

TEST_CASE("an overlay directory adds root-owned files and keeps the image's directories") {
    Workspace ws;
    ws.merge({ws.layer(TarBuilder()
                           .add({.path = "etc", .type = AE_IFDIR, .mode = 0750, .uid = 5})
                           .file("etc/old", "old")
                           .dir("usr")
                           .dir("usr/lib")
                           .symlink("lib", "usr/lib"))});
    util::TempDir host;
    const auto overlay = host.path() / "overlay";
    stdfs::create_directories(overlay / "etc" / "new.d");
    util::write_file_atomically(overlay / "etc" / "new.d" / "conf", "conf");
    util::write_file_atomically(overlay / "etc" / "old", "replaced");
    ::chmod((overlay / "etc").c_str(), 0775);
    ::lsetxattr((overlay / "etc" / "old").c_str(), "user.origin", "x", 1, 0);

    oci::apply_directory(overlay, ws.tree, oci::DirectoryOptions::overlay());
    const auto etc = ws.tree.lookup("etc");
    CHECK(etc->mode == 0750);
    CHECK(etc->uid == 5);
    CHECK(ws.content("etc/old") == "replaced");
    CHECK(ws.tree.lookup("etc/old")->uid == 0);
    CHECK(ws.tree.lookup("etc/old")->xattrs.empty());
    CHECK(ws.tree.lookup("etc/new.d")->uid == 0);
    CHECK(ws.content("etc/new.d/conf") == "conf");

    stdfs::create_directories(overlay / "lib" / "firmware");
    CHECK(
        error_of([&] { oci::apply_directory(overlay, ws.tree, oci::DirectoryOptions::overlay()); },
                 ExitCode::bad_input) ==
        (overlay / "lib").string() +
            ": the image has a symbolic link at /lib (-> usr/lib), so this directory cannot be "
            "merged there; put its files under the link's target instead");
}

TEST_CASE("apply_directory reports files the build user cannot read") {
    if (::geteuid() == 0) {
        MESSAGE("skipped: root can read every file");
        return;
    }
    util::TempDir host;
    util::write_file_atomically(host.path() / "secret", "x");
    ::chmod((host.path() / "secret").c_str(), 0);
    Workspace ws;
    CHECK(error_of([&] { oci::apply_directory(host.path(), ws.tree); }, ExitCode::bad_input) ==
          "cannot read " + (host.path() / "secret").string() +
              ": Permission denied; edgeforge runs without root, so everything it puts into the "
              "image must be readable by the user running it");
}

namespace {

std::string hex_of(const std::string& bytes) {
    return util::to_hex(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

} // namespace

TEST_CASE("the fixture base image merges as its expect files say") {
    const auto layout = edgeforge::testing::fixtures_dir() / "base-amd64";
    if (!stdfs::exists(layout / "index.json")) {
        MESSAGE("skipped: no fixture image at "
                << layout.string() << " (build it with tests/fixtures/build-fixtures)");
        return;
    }
    const auto image = oci::open_image(oci::parse_reference("oci:" + layout.string() + ":latest"),
                                       Arch(Arch::Id::amd64));
    CHECK(image.layers.size() == 2);
    Workspace ws;
    const auto start = std::chrono::steady_clock::now();
    const auto result = oci::merge_layers(image, ws.tree, ws.spill);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    MESSAGE("merged " << image.description << ": " << result.total.entries << " entries, "
                      << util::format_bytes(result.total.data_bytes) << " of file data from "
                      << util::format_bytes(result.total.input_bytes) << " of layers in "
                      << elapsed.count() << " s ("
                      << static_cast<double>(result.total.input_bytes) / 1048576.0 / elapsed.count()
                      << " MiB/s of layer data, "
                      << static_cast<double>(result.total.data_bytes) / 1048576.0 / elapsed.count()
                      << " MiB/s of file data)");
    CHECK(result.total.whiteouts == 2);
    CHECK(result.total.opaque_directories == 1);

    std::istringstream expect(ws.content("etc/edgeforge-fixture/expect"));
    int checked = 0;
    for (std::string line; std::getline(expect, line);) {
        const auto words = util::split(line, ' ');
        if (words.size() != 2 || line.starts_with('#')) {
            continue;
        }
        ++checked;
        if (words[0] == "present") {
            CHECK_MESSAGE(ws.has(words[1]), line);
        } else if (words[0] == "absent") {
            CHECK_MESSAGE(!ws.has(words[1]), line);
        }
    }
    CHECK(checked > 20);

    std::istringstream attributes(ws.content("etc/edgeforge-fixture/expect-attrs"));
    for (std::string line; std::getline(attributes, line);) {
        const auto words = util::split(line, ' ');
        if (line.starts_with('#') || words.size() < 3) {
            continue;
        }
        INFO(line);
        const auto inode = ws.tree.lookup(words[1]);
        REQUIRE(inode);
        if (words[0] == "mode") {
            CHECK(fmt::format("{:o}", inode->mode) == words[2]);
        } else if (words[0] == "owner") {
            CHECK(fmt::format("{}:{}", inode->uid, inode->gid) == words[2]);
        } else if (words[0] == "symlink") {
            CHECK(inode->symlink_target == words[2]);
        } else if (words[0] == "hardlink") {
            CHECK(inode == ws.tree.lookup(words[2]));
        } else if (words[0] == "xattr" && words.size() == 4) {
            REQUIRE(inode->xattrs.contains(words[2]));
            CHECK(hex_of(inode->xattrs.at(words[2])) == words[3]);
        } else if (words[0] == "sha256") {
            CHECK(util::sha256_hex(fs::read_data(*inode, ws.spill)) == words[2]);
        }
    }
}

namespace {

// A gzip layer with its diff_id, as images with a config describe them.
struct UnpackableLayer {
    std::string tar;
    oci::Layer layer;
};

UnpackableLayer unpackable_layer(Workspace& ws, const std::string& tool) {
    TarBuilder builder;
    builder.dir("etc").file("etc/hostname", "edge\n").dir("usr").dir("usr/bin").file(
        "usr/bin/tool", tool, 0755);
    UnpackableLayer result{builder.build(), ws.layer(builder, TarCompression::gzip)};
    result.layer.diff_id = digest_of(result.tar);
    return result;
}

// A cache directory for unpacked copies and the merge options that use it.
struct UnpackedCache {
    util::TempDir dir;
    oci::MergeOptions options;

    UnpackedCache() { options.unpacked_layers = dir.path(); }
    stdfs::path path() const { return dir.path(); }
    stdfs::path copy_of(const std::string& diff_id) const {
        return dir.path() / "layers" / "sha256" / diff_id.substr(7);
    }
};

} // namespace

TEST_CASE("a gzip layer is unpacked into the cache once; later merges read the copy in place") {
    Workspace ws;
    const UnpackedCache cache;
    const std::string tool = edgeforge::testing::pseudo_random_bytes(300'000, 7);
    const auto [tar, layer] = unpackable_layer(ws, tool);
    const auto& options = cache.options;
    const stdfs::path copy = cache.copy_of(layer.diff_id);

    const auto first = ws.merge({layer}, options);
    CHECK(first.total.unpacked_layers == 1);
    CHECK(first.total.cached_layers == 0);
    CHECK(first.layers[0].digest == layer.digest);
    REQUIRE(stdfs::exists(copy));
    CHECK(util::read_file(copy) == tar);
    CHECK(first.total.spilled_bytes == 0); // the files stay in the copy
    CHECK(ws.tree.lookup("usr/bin/tool")->data.kind == fs::DataRef::Kind::blob);
    CHECK(ws.tree.lookup("usr/bin/tool")->data.path == copy);
    CHECK(ws.content("usr/bin/tool") == tool);
    CHECK(stdfs::is_empty(cache.path() / "layers" / "tmp"));

    Workspace again;
    const auto second = again.merge({layer}, options);
    CHECK(second.total.cached_layers == 1);
    CHECK(second.total.unpacked_layers == 0);
    CHECK(second.total.input_bytes == layer.size); // counted as the stored layer
    CHECK(again.content("usr/bin/tool") == tool);
    CHECK(again.content("etc/hostname") == "edge\n");
    CHECK(again.paths() == ws.paths());

    const auto listing = oci::list_cache(cache.path());
    REQUIRE(listing.entries.size() == 1);
    CHECK(listing.entries[0].kind == oci::CacheEntry::Kind::layer);
    CHECK(listing.entries[0].name == layer.diff_id);
    CHECK(listing.layer_bytes == tar.size());

    SUBCASE("cache prune leaves a copy alone while a tree refers to it") {
        const auto pruned = oci::prune_cache(cache.path(), std::nullopt);
        CHECK(pruned.busy == 1);
        CHECK(stdfs::exists(copy));
        again.tree = fs::Tree();
        ws.tree = fs::Tree();
        CHECK(oci::prune_cache(cache.path(), std::nullopt).removed.size() == 1);
        CHECK_FALSE(stdfs::exists(copy));
    }
}

TEST_CASE("a corrupt unpacked copy fails the merge, is removed, and is made again next time") {
    Workspace ws;
    const UnpackedCache cache;
    const std::string tool = edgeforge::testing::pseudo_random_bytes(100'000, 9);
    const auto [tar, layer] = unpackable_layer(ws, tool);
    const auto& options = cache.options;
    ws.merge({layer}, options);
    ws.tree = fs::Tree();
    const stdfs::path copy = cache.copy_of(layer.diff_id);
    std::string damaged = util::read_file(copy);
    damaged[damaged.find(tool.substr(0, 64)) + 10] ^= 0x01; // one bit of the tool's data
    write_bytes(copy, damaged);

    Workspace broken;
    const auto error = error_of([&, layer = layer] { broken.merge({layer}, options); }, ExitCode::build_failed);
    CHECK(error.find(layer.digest) != std::string::npos);
    CHECK(error.find("unpacked copy") != std::string::npos);
    CHECK(error.find("run the build again") != std::string::npos);
    CHECK_FALSE(stdfs::exists(copy));

    Workspace healed;
    CHECK(healed.merge({layer}, options).total.unpacked_layers == 1);
    CHECK(healed.content("usr/bin/tool") == tool);
}

TEST_CASE("a deferred check of an unpacked copy fails when finished, and removes the copy") {
    Workspace ws;
    const UnpackedCache cache;
    const std::string tool = edgeforge::testing::pseudo_random_bytes(100'000, 11);
    const auto [tar, layer] = unpackable_layer(ws, tool);
    auto options = cache.options;
    options.defer_copy_checks = true;
    ws.merge({layer}, options); // unpacks: the copy is checked as it is written, nothing deferred
    ws.tree = fs::Tree();
    const stdfs::path copy = cache.copy_of(layer.diff_id);

    // A good copy: the merge returns with the check pending, and it passes.
    Workspace good;
    const auto merged = good.merge({layer}, options);
    REQUIRE(merged.layers.size() == 1);
    REQUIRE(merged.layers[0].pending_check != nullptr);
    merged.layers[0].pending_check->finish();
    CHECK(good.content("usr/bin/tool") == tool);
    // One bit of file data changed: the merge succeeds; finishing the check fails the build.
    std::string damaged = util::read_file(copy);
    damaged[damaged.find(tool.substr(0, 64)) + 10] ^= 0x01;
    write_bytes(copy, damaged);
    Workspace broken;
    const auto deferred = broken.merge({layer}, options);
    REQUIRE(deferred.layers[0].pending_check != nullptr);
    const auto error =
        error_of([&] { deferred.layers[0].pending_check->finish(); }, ExitCode::build_failed);
    CHECK(error.find(layer.digest) != std::string::npos);
    CHECK(error.find("unpacked copy") != std::string::npos);
    CHECK(error.find("run the build again") != std::string::npos);
    CHECK_FALSE(stdfs::exists(copy));
}

TEST_CASE("a gzip layer whose content is not its diff_id fails and leaves nothing in the cache") {
    Workspace ws;
    const UnpackedCache cache;
    auto [tar, layer] = unpackable_layer(ws, "tool");
    layer.diff_id = digest_of(tar + "x"); // what a config with a wrong rootfs.diff_ids says
    const auto& options = cache.options;
    const auto error = error_of([&, layer = layer] { ws.merge({layer}, options); }, ExitCode::build_failed);
    CHECK(error.find(layer.digest) != std::string::npos);
    CHECK(error.find(layer.diff_id) != std::string::npos);
    CHECK(error.find(digest_of(tar)) != std::string::npos);
    CHECK(oci::list_cache(cache.path()).entries.empty());
}

TEST_CASE("layers without a diff_id, and zstd layers, are merged without a copy") {
    Workspace ws;
    const UnpackedCache cache;
    auto [tar, layer] = unpackable_layer(ws, "tool");
    layer.diff_id.clear();
    TarBuilder builder;
    builder.file("zstd-file", "z");
    auto zstd = ws.layer(builder, TarCompression::zstd);
    zstd.diff_id = digest_of(builder.build());
    const auto& options = cache.options;
    const auto result = ws.merge({layer, zstd}, options);
    CHECK(result.total.unpacked_layers == 0);
    CHECK(ws.content("usr/bin/tool") == "tool");
    CHECK(ws.content("zstd-file") == "z");
    CHECK(oci::list_cache(cache.path()).entries.empty());
}

TEST_CASE("every gzip layer of a multi-layer image ends up unpacked, the upper ones ahead") {
    Workspace ws;
    const UnpackedCache cache;
    std::vector<oci::Layer> layers;
    std::vector<std::string> tools;
    for (unsigned i = 0; i < 4; ++i) {
        tools.push_back(edgeforge::testing::pseudo_random_bytes(200'000, 20 + i));
        TarBuilder builder;
        builder.file("tool" + std::to_string(i), tools.back());
        layers.push_back(ws.layer(builder, TarCompression::gzip));
        layers.back().diff_id = digest_of(builder.build());
    }
    const auto& options = cache.options;

    SUBCASE("all good") {
        const auto result = ws.merge(layers, options);
        // Layer 0 is unpacked by the merge; the rest by the thread ahead of it, or by the merge
        // when it got there first.
        CHECK(result.total.unpacked_layers + result.total.cached_layers == 4);
        for (std::size_t i = 0; i < 4; ++i) {
            CHECK(ws.content("tool" + std::to_string(i)) == tools[i]);
            CHECK(stdfs::exists(cache.copy_of(layers[i].diff_id)));
        }
    }
    SUBCASE("a corrupt upper layer is reported by the merge, and has no copy") {
        std::string bytes = util::read_file(layers[2].path);
        bytes[bytes.size() / 2] ^= 0x40;
        write_bytes(layers[2].path, bytes);
        const auto error = error_of([&] { ws.merge(layers, options); }, ExitCode::build_failed);
        CHECK(error.find(layers[2].digest) != std::string::npos);
        CHECK_FALSE(stdfs::exists(cache.copy_of(layers[2].diff_id)));
        CHECK(stdfs::is_empty(cache.path() / "layers" / "tmp"));
    }
}

TEST_CASE("every layer is checked against its diff_id: plain, gzip, zstd and xz, cache or not") {
    for (const auto compression : {TarCompression::none, TarCompression::gzip,
                                   TarCompression::zstd}) {
        CAPTURE(static_cast<int>(compression));
        TarBuilder builder;
        builder.file("etc/hostname", "edge");
        Workspace ws;
        auto layer = ws.layer(builder, compression);
        layer.diff_id = digest_of(builder.build());
        CHECK(ws.merge({layer}).total.entries > 0); // the right diff_id passes

        Workspace wrong;
        auto lying = wrong.layer(builder, compression);
        lying.diff_id = digest_of("not the tar");
        const auto error =
            error_of([&, lying = lying] { wrong.merge({lying}); }, ExitCode::build_failed);
        CHECK(error.find("its uncompressed tar hashes to " + digest_of(builder.build()) +
                         ", but the image config lists the diff_id " + lying.diff_id) !=
              std::string::npos);
        CHECK(error.find(lying.digest.substr(0, 19)) != std::string::npos);
    }
}

TEST_CASE("an xz layer, inflated by libarchive, is checked against its diff_id too") {
    TarBuilder builder;
    builder.file("etc/hostname", "edge");
    const std::string tar = builder.build();
    archive* writer = archive_write_new();
    archive_write_add_filter_xz(writer);
    archive_write_set_format_raw(writer);
    std::string xz(tar.size() + 4096, '\0');
    std::size_t used = 0;
    REQUIRE(archive_write_open_memory(writer, xz.data(), xz.size(), &used) == ARCHIVE_OK);
    archive_entry* entry = archive_entry_new();
    archive_entry_set_filetype(entry, AE_IFREG);
    REQUIRE(archive_write_header(writer, entry) == ARCHIVE_OK);
    REQUIRE(archive_write_data(writer, tar.data(), tar.size()) ==
            static_cast<la_ssize_t>(tar.size()));
    archive_entry_free(entry);
    archive_write_close(writer);
    archive_write_free(writer);
    xz.resize(used);

    Workspace ws;
    auto layer = ws.layer(xz);
    layer.diff_id = digest_of(tar);
    CHECK(ws.content_after_merge(layer, "etc/hostname") == "edge");
    Workspace wrong;
    auto lying = wrong.layer(xz);
    lying.diff_id = digest_of("not the tar");
    CHECK(error_of([&, lying = lying] { wrong.merge({lying}); }, ExitCode::build_failed)
              .find("its uncompressed tar hashes to " + digest_of(tar)) != std::string::npos);
}

TEST_CASE("MergeOptions::under applies a tar below a directory, merged with what is there") {
    Workspace ws;
    const auto lower = ws.layer(TarBuilder().dir("opt").dir("opt/spectrocloud").file(
        "opt/spectrocloud/bin/agent", "agent"));
    ws.merge({lower});
    const auto ui = ws.layer(TarBuilder()
                                 .dir("./")
                                 .file("ui/index.html", "<html>")
                                 .hardlink("ui/copy.html", "ui/index.html")
                                 .symlink("ui/current", "index.html"));
    oci::MergeOptions options;
    options.under = {"opt", "spectrocloud"};
    oci::apply_layer(ui, "local UI", ws.tree, ws.spill, options);
    CHECK(ws.content("/opt/spectrocloud/bin/agent") == "agent"); // the agent's files stay
    CHECK(ws.content("/opt/spectrocloud/ui/index.html") == "<html>");
    CHECK(ws.content("/opt/spectrocloud/ui/copy.html") == "<html>");
    CHECK(ws.tree.lookup("/opt/spectrocloud/ui/current")->symlink_target == "index.html");
    CHECK_FALSE(ws.has("/ui"));
}

TEST_CASE("MergeOptions::under refuses entries and hard links that would leave the directory") {
    oci::MergeOptions options;
    options.under = {"opt", "spectrocloud"};
    for (const std::string& name : {std::string("../../etc/passwd"), std::string("a/../../x")}) {
        Workspace ws;
        const auto escaping = ws.layer(TarBuilder().file(name, "root::0:0"));
        CHECK(error_of([&] { oci::apply_layer(escaping, "local UI", ws.tree, ws.spill, options); },
                       ExitCode::bad_input)
                  .find("escapes the image root") != std::string::npos);
        CHECK_FALSE(ws.has("/etc/passwd"));
        CHECK_FALSE(ws.has("/x"));
    }
    Workspace ws;
    const auto linked = ws.layer(TarBuilder().hardlink("shadow", "../../etc/shadow"));
    CHECK(error_of([&] { oci::apply_layer(linked, "local UI", ws.tree, ws.spill, options); },
                   ExitCode::bad_input)
              .find("escapes the image root") != std::string::npos);
    // A path through a symbolic link the archive made is refused too.
    Workspace ws2;
    const auto through = ws2.layer(TarBuilder().symlink("up", "/etc").file("up/passwd", "x"));
    CHECK_THROWS_AS(oci::apply_layer(through, "local UI", ws2.tree, ws2.spill, options), Error);
    CHECK_FALSE(ws2.has("/etc/passwd"));
}
