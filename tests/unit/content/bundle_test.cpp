// Unit tests for content/bundle: dedup across images, reproducible archives, verify, split and
// incremental bundles, and nothing left behind on failure.
#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>

#include "content/bundle.h"
#include "content/keys.h"
#include "content/tar_zst_writer.h"
#include "oci/archive.h"
#include "oci/image_builder.h"
#include "support/errors.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::error_of;
namespace stdfs = std::filesystem;

namespace {

struct Fixture {
    util::TempDir dir;
    stdfs::path images = dir.path() / "images";
    stdfs::path output = dir.path() / "build";
    Console console{ConsoleOptions{Verbosity::quiet, false, false, false}};

    // Three images sharing one base layer: base (1 layer), app1 and app2 (base + their own).
    Fixture() {
        const std::string base_layer =
            test_images::TarBuilder().file("etc/os-release", "ID=edge\n").build();
        for (const std::string name : {"base", "app1", "app2"}) {
            test_images::LayoutBuilder layout(images / name);
            std::vector<std::pair<std::string, std::string>> layers{
                {base_layer, "application/vnd.oci.image.layer.v1.tar"}};
            if (name != "base") {
                layers.emplace_back(
                    test_images::TarBuilder().file("opt/" + name, name + " payload\n").build(),
                    "application/vnd.oci.image.layer.v1.tar");
            }
            layout.write_index(
                {test_images::LayoutBuilder::tagged(layout.image("amd64", "", layers), "1.0")});
        }
    }

    content::BundleInputs inputs(const std::vector<std::string>& names) const {
        content::BundleInputs in;
        for (const auto& name : names) {
            in.images.push_back(content::image_request("oci:" + (images / name).string() + ":1.0",
                                                       SourceLocation{"--image"}));
        }
        return in;
    }

    content::BuildOptions options(const std::string& name) const {
        content::BuildOptions build;
        build.name = name;
        build.output_dir = output;
        build.source_date_epoch = 1700000000;
        build.threads = 2;
        build.open.work_dir = dir.path() / "work";
        return build;
    }
};

// The member names of a .tar.zst, in order.
std::vector<std::string> members(const stdfs::path& archive) {
    auto reader = oci::new_tar_reader();
    REQUIRE(archive_read_open_filename(reader.get(), archive.c_str(), 1 << 16) == ARCHIVE_OK);
    std::vector<std::string> names;
    archive_entry* entry = nullptr;
    while (archive_read_next_header(reader.get(), &entry) == ARCHIVE_OK) {
        names.push_back(oci::entry_pathname(entry));
        CHECK(archive_entry_mtime(entry) == 1700000000);
        CHECK(archive_entry_uid(entry) == 0);
    }
    return names;
}

std::size_t count_blobs(const std::vector<std::string>& names) {
    return static_cast<std::size_t>(std::count_if(names.begin(), names.end(), [](const auto& n) {
        return n.starts_with("blobs/sha256/") && n.size() > 13;
    }));
}

} // namespace

TEST_CASE("content bundle: shared blobs once, ref names, listing, reproducible") {
    Fixture fixture;
    const auto result = content::build_bundle(fixture.inputs({"base", "app1", "app2"}),
                                              fixture.options("apps"), fixture.console);
    CHECK(result.archive == fixture.output / "content-apps" / "apps.tar.zst");
    CHECK(stdfs::exists(fixture.output / "content-apps" / "apps.tar.zst.sha256"));
    const auto names = members(result.archive);
    REQUIRE(names.size() > 3);
    CHECK(names[0] == "bundle.json");
    CHECK(names[1] == "oci-layout");
    CHECK(names[2] == "index.json");
    // 3 manifests + 3 configs (each lists its own layers' diff_ids) + 1 shared base layer + 2 app
    // layers: the base layer is stored once.
    CHECK(count_blobs(names) == 9);
    CHECK(util::sha256_file_hex(result.archive) == result.sha256);

    const auto manifest = content::read_bundle_manifest_json(result.archive);
    REQUIRE(manifest["images"].size() == 3);
    CHECK(manifest["images"][0]["ref"] == "base:1.0");
    CHECK(manifest["images"][1]["ref"] == "app1:1.0");
    CHECK(manifest["images"][1]["platforms"] == nlohmann::json::array({"linux/amd64"}));
    CHECK(manifest["blobs"].size() == 9);
    const auto listing = content::render_listing(manifest);
    CHECK(listing.find("bundle apps: 3 images, 0 charts, 0 files; 9 blobs") == 0);
    CHECK(listing.find("app2:1.0") != std::string::npos);

    // No staging directory is left, and a second build gives the same bytes.
    for (const auto& entry : stdfs::directory_iterator(fixture.output)) {
        CHECK(entry.path().filename() == "content-apps");
    }
    const auto again = content::build_bundle(fixture.inputs({"base", "app1", "app2"}),
                                             fixture.options("apps"), fixture.console);
    CHECK(again.sha256 == result.sha256);
}

TEST_CASE("content bundle: verify, tampering, signatures, split parts") {
    Fixture fixture;
    test_keys::write_key_pair(fixture.dir.path(), "ed", "ED25519");
    test_keys::write_key_pair(fixture.dir.path(), "ec", "EC");
    auto options = fixture.options("apps");
    options.signing_key = fixture.dir.path() / "ed.pem";
    const auto result =
        content::build_bundle(fixture.inputs({"base", "app1"}), options, fixture.console);
    content::VerifyOptions verify;
    verify.public_key = fixture.dir.path() / "ed.pub.pem";
    CHECK(content::verify_bundle(result.archive, verify).ok);
    verify.public_key = fixture.dir.path() / "ec.pub.pem";
    const auto wrong_key = content::verify_bundle(result.archive, verify);
    CHECK_FALSE(wrong_key.ok);
    REQUIRE(wrong_key.problems.size() == 1);
    CHECK(wrong_key.problems[0].starts_with("signature apps.tar.zst.sig does not match"));

    // One flipped byte: the checksum and the signature fail.
    std::string bytes = util::read_file(result.archive);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
    util::write_file_atomically(result.archive, bytes);
    verify.public_key = fixture.dir.path() / "ed.pub.pem";
    const auto tampered = content::verify_bundle(result.archive, verify);
    CHECK_FALSE(tampered.ok);
    CHECK(tampered.problems.size() == 2);

    // Split: parts, a parts index, no whole archive; verify and ls read the parts.
    options.split_size = 512;
    options.signing_key.reset();
    const auto split =
        content::build_bundle(fixture.inputs({"base", "app1"}), options, fixture.console);
    CHECK_FALSE(stdfs::exists(split.archive));
    CHECK_FALSE(stdfs::exists(split.directory / "apps.tar.zst.sig")); // stale one removed
    const auto index = split.directory / "apps.tar.zst.parts.json";
    REQUIRE(stdfs::exists(index));
    CHECK(stdfs::exists(split.directory / "apps.tar.zst.part-000"));
    CHECK(stdfs::exists(split.directory / "apps.tar.zst.part-001"));
    CHECK(content::verify_bundle(index, {}).ok);
    CHECK(content::verify_bundle(split.archive, {}).ok); // the missing whole finds its index
    CHECK(content::read_bundle_manifest_json(index)["images"].size() == 2);
    std::string part = util::read_file(split.directory / "apps.tar.zst.part-001");
    part[0] = static_cast<char>(part[0] ^ 0x01);
    util::write_file_atomically(split.directory / "apps.tar.zst.part-001", part);
    const auto broken = content::verify_bundle(index, {});
    CHECK_FALSE(broken.ok);
    REQUIRE_FALSE(broken.problems.empty());
    CHECK(broken.problems[0].starts_with("part apps.tar.zst.part-001 does not match"));
}

TEST_CASE("content bundle: an incremental bundle leaves out the base bundle's blobs") {
    Fixture fixture;
    const auto base =
        content::build_bundle(fixture.inputs({"base"}), fixture.options("base"), fixture.console);
    auto options = fixture.options("apps");
    options.existing_bundle = base.archive;
    const auto apps =
        content::build_bundle(fixture.inputs({"app1", "app2"}), options, fixture.console);
    const auto manifest = content::read_bundle_manifest_json(apps.archive);
    // app1/app2: 2 manifests, 2 configs and 2 own layers; the shared layer comes from the base.
    CHECK(manifest["blobs"].size() == 6);
    REQUIRE(manifest.contains("base"));
    CHECK(manifest["base"]["sha256"] == base.sha256);
    CHECK(manifest["base"]["bundle"] == "base.tar.zst");
    CHECK(manifest["base"]["blobs"].size() == 1);
    CHECK(count_blobs(members(apps.archive)) == 6);
    CHECK(content::render_listing(manifest).find("incremental: 1 blob (") != std::string::npos);
}

TEST_CASE("content bundle: a missing image fails naming it, and leaves nothing") {
    Fixture fixture;
    auto inputs = fixture.inputs({"base"});
    inputs.images.push_back(content::image_request(
        "oci:" + (fixture.images / "nope").string() + ":1.0", SourceLocation{"list.txt", 7}));
    const auto message =
        error_of([&] { content::build_bundle(inputs, fixture.options("apps"), fixture.console); },
                 ExitCode::build_failed);
    CHECK(message.starts_with(
        "list.txt:7: cannot bundle image oci:" + (fixture.images / "nope").string() + ":1.0: "));
    CHECK_FALSE(stdfs::exists(fixture.output));

    // An unreadable signing key is bad input, found before anything is pulled.
    auto options = fixture.options("apps");
    options.signing_key = fixture.dir.path() / "missing.pem";
    CHECK(
        error_of([&] { content::build_bundle(fixture.inputs({"base"}), options, fixture.console); },
                 ExitCode::bad_input) == "cannot read the signing key " +
                                             (fixture.dir.path() / "missing.pem").string() +
                                             ": No such file or directory");
    CHECK_FALSE(stdfs::exists(fixture.output));
}

TEST_CASE("content bundle: the dry-run plan checks inputs and writes nothing") {
    Fixture fixture;
    auto inputs = fixture.inputs({"base", "app1"});
    inputs.images[1].ref_name = "edge/app:1";
    const auto plan = content::plan_bundle(inputs, fixture.options("apps"));
    REQUIRE(plan["images"].size() == 2);
    CHECK(plan["images"][0]["ref"] == "base:1.0");
    CHECK(plan["images"][1]["ref"] == "edge/app:1");
    CHECK(plan["archive"] == (fixture.output / "content-apps" / "apps.tar.zst").string());
    const auto text = content::render_plan(plan);
    CHECK(text.find("  image  edge/app:1  <- oci:" + (fixture.images / "app1").string() +
                    ":1.0 (--image)\n") != std::string::npos);
    CHECK_FALSE(stdfs::exists(fixture.output));
    inputs.images[1].ref_name = "base:1.0";
    CHECK(error_of([&] { content::plan_bundle(inputs, fixture.options("apps")); },
                   ExitCode::bad_input) ==
          "--image: the image name 'base:1.0' is already used at --image; give one of them "
          "another name");
}

TEST_CASE("content bundle: a bundle.json nested 100,000 deep is refused, not a stack overflow") {
    util::TempDir dir;
    const auto bundle = dir.path() / "deep.tar.zst";
    const std::string body =
        "{\"images\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
    archive* writer = archive_write_new();
    archive_write_add_filter_zstd(writer);
    archive_write_set_format_pax_restricted(writer);
    REQUIRE(archive_write_open_filename(writer, bundle.c_str()) == ARCHIVE_OK);
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, "bundle.json");
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_entry_set_size(entry, static_cast<la_int64_t>(body.size()));
    REQUIRE(archive_write_header(writer, entry) == ARCHIVE_OK);
    REQUIRE(archive_write_data(writer, body.data(), body.size()) ==
            static_cast<la_ssize_t>(body.size()));
    archive_entry_free(entry);
    archive_write_close(writer);
    archive_write_free(writer);
    const std::string message = error_of(
        [&] { content::read_bundle_manifest_json(bundle); }, ExitCode::build_failed);
    CHECK(message.find("bundle.json is not valid JSON: [json.exception.depth] the document nests "
                       "deeper than 64 levels") != std::string::npos);
}

TEST_CASE("content bundle writer: a full disk names the file and ENOSPC, not 'unknown error'") {
    // /dev/full takes the open and fails every write with ENOSPC. Whichever step reaches it
    // first (the archive's final flush in close(), or the sink's own) must say so; the e2e
    // catalogue (tests/e2e/badinput_test.sh, a full tmpfs) hits the close() path.
    const Console console{ConsoleOptions{Verbosity::quiet, false, false, false}};
    Progress progress(console, "test", 0);
    content::detail::ZstdFileSink sink("/dev/full", 1, 1);
    std::string message;
    {
        content::detail::TarZstWriter writer(sink, 0, progress);
        writer.bytes("bundle.json", std::string(300000, 'x'));
        message = error_of(
            [&] {
                writer.close();
                sink.finish();
            },
            ExitCode::build_failed);
    }
    CHECK(message == "cannot write /dev/full: No space left on device");
}
