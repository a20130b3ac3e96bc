// Unit tests for oci/image: every local transport, tag and platform selection, validation and
// the exact messages users see.
#include <doctest/doctest.h>

#include "support/errors.h"

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "fs/tree.h"
#include "image_builder.h"
#include "oci/image.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"

using namespace edgeforge;
using namespace test_images;
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

const Arch k_amd64(Arch::Id::amd64);
const Arch k_arm64(Arch::Id::arm64);

std::string os_release_layer(const std::string& id,
                             TarCompression compression = TarCompression::gzip) {
    return TarBuilder().dir("etc").file("etc/os-release", "ID=" + id + "\n").build(compression);
}

oci::Image open(const std::string& reference, Arch arch = k_amd64,
                const stdfs::path& work_dir = {}) {
    oci::OpenOptions options;
    options.work_dir = work_dir;
    return oci::open_image(oci::parse_reference(reference), arch, options);
}

using edgeforge::testing::error_of;

// The merged content of /etc/os-release.
std::string os_release_of(const oci::Image& image) {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    fs::Tree tree;
    oci::merge_layers(image, tree, spill);
    const auto inode = tree.lookup("etc/os-release");
    REQUIRE(inode);
    return fs::read_data(*inode, spill);
}

std::string digest_path_hex(const json& descriptor) {
    return descriptor["digest"].get<std::string>().substr(7);
}

} // namespace

TEST_CASE("an OCI layout with one tagged image opens with its layers, config and platform") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto lower = os_release_layer("lower", TarCompression::gzip);
    const auto upper =
        TarBuilder().file("etc/os-release", "ID=kairos\n").build(TarCompression::zstd);
    const auto manifest = layout.image("amd64", "",
                                       {{lower, media_type_for(TarCompression::gzip)},
                                        {upper, media_type_for(TarCompression::zstd)}});
    layout.write_index({LayoutBuilder::tagged(manifest, "latest")});

    const std::string name = "oci:" + layout.directory().string() + ":latest";
    for (const auto& reference : {name, "oci:" + layout.directory().string()}) {
        const auto image = open(reference);
        CHECK(image.name == reference);
        CHECK(image.manifest_digest == manifest["digest"]);
        CHECK(image.platform.str() == "linux/amd64");
        CHECK(image.config["architecture"] == "amd64");
        CHECK(image.config_digest.starts_with("sha256:"));
        REQUIRE(image.layers.size() == 2);
        CHECK(image.layers[0].kind == oci::LayerKind::tar);
        CHECK(image.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip");
        CHECK(image.layers[0].digest == digest_of(lower));
        CHECK(image.layers[0].size == lower.size());
        CHECK(image.layers[0].path ==
              layout.directory() / "blobs" / "sha256" / digest_of(lower).substr(7));
        CHECK(image.layers[1].media_type == "application/vnd.oci.image.layer.v1.tar+zstd");
        CHECK(image.layer_bytes() == lower.size() + upper.size());
        CHECK(image.description == reference + " (linux/amd64, 2 layers, " +
                                       util::format_bytes(lower.size() + upper.size()) + ")");
        CHECK(os_release_of(image) == "ID=kairos\n");
    }
}

TEST_CASE("tags select the image; an unknown or missing tag lists the available ones") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto v1 =
        layout.image("amd64", "", {{os_release_layer("v1"), media_type_for(TarCompression::gzip)}});
    const auto v2 =
        layout.image("amd64", "", {{os_release_layer("v2"), media_type_for(TarCompression::gzip)}});
    layout.write_index({LayoutBuilder::tagged(v1, "v1"), LayoutBuilder::tagged(v2, "v2")});
    const auto base = "oci:" + layout.directory().string();

    CHECK(os_release_of(open(base + ":v2")) == "ID=v2\n");
    CHECK(open(base + ":v1").manifest_digest == v1["digest"]);
    CHECK(error_of([&] { open(base + ":v3"); }, ExitCode::bad_input) ==
          "image " + base + ":v3: the layout has no tag 'v3' (available tags: v1, v2)");
    CHECK(error_of([&] { open(base); }, ExitCode::bad_input) ==
          "image " + base + " holds several images; add a tag to the reference, e.g. " + base +
              ":v1 (available tags: v1, v2)");

    // Full references as ref.name (as some tools write them) match by their tag.
    layout.write_index({LayoutBuilder::tagged(v1, "registry.example.com/edge/base:v1")});
    CHECK(open(base + ":v1").manifest_digest == v1["digest"]);

    layout.write_index({v1});
    CHECK(error_of([&] { open(base + ":v1"); }, ExitCode::bad_input) ==
          "image " + base + ":v1: the layout has no tag 'v1' (it has no tagged images)");

    auto bare1 = v1;
    auto bare2 = v2;
    bare1.erase("platform");
    bare2.erase("platform");
    layout.write_index({bare1, bare2});
    CHECK(error_of([&] { open(base); }, ExitCode::bad_input) ==
          "image " + base +
              " holds 2 untagged images and nothing tells them apart; copy the one "
              "you mean into a layout of its own with a tag");
}

TEST_CASE("the platform is picked from an image index by --arch; arm64 prefers v8") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto layer = [](const std::string& id) {
        return std::vector<std::pair<std::string, std::string>>{
            {os_release_layer(id), media_type_for(TarCompression::gzip)}};
    };
    const auto arm = layout.image("arm", "v7", layer("arm-v7"));
    const auto arm64 = layout.image("arm64", "", layer("arm64"));
    const auto arm64_v8 = layout.image("arm64", "v8", layer("arm64-v8"));
    const auto amd64 = layout.image("amd64", "", layer("amd64"));
    const auto amd64_v3 = layout.image("amd64", "v3", layer("amd64-v3"));
    const auto index = layout.index({arm, arm64, arm64_v8, amd64_v3, amd64});
    layout.write_index({LayoutBuilder::tagged(index, "multi")});
    const auto name = "oci:" + layout.directory().string() + ":multi";

    const auto arm_image = open(name, k_arm64);
    CHECK(arm_image.platform.str() == "linux/arm64/v8");
    CHECK(os_release_of(arm_image) == "ID=arm64-v8\n");
    const auto amd_image = open(name, k_amd64);
    CHECK(amd_image.platform.str() == "linux/amd64");
    CHECK(os_release_of(amd_image) == "ID=amd64\n");

    // Docker manifest lists work the same way, and so do untagged platform entries in index.json.
    const auto list =
        layout.index({arm64, amd64}, "application/vnd.docker.distribution.manifest.list.v2+json");
    layout.write_index({LayoutBuilder::tagged(list, "multi")});
    CHECK(os_release_of(open(name, k_arm64)) == "ID=arm64\n");
    layout.write_index({arm64, amd64});
    CHECK(os_release_of(open("oci:" + layout.directory().string(), k_amd64)) == "ID=amd64\n");

    const auto arm_only = layout.index({arm, arm64_v8});
    layout.write_index({LayoutBuilder::tagged(arm_only, "multi")});
    CHECK(error_of([&] { open(name, k_amd64); }, ExitCode::bad_input) ==
          "image " + name +
              " has no linux/amd64 image (it provides linux/arm/v7, linux/arm64/v8); "
              "pass --arch arm64 or use an image built for amd64");
}

TEST_CASE("Docker v2 manifests, configs and layers in a layout are read like OCI ones") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto layer = os_release_layer("docker-v2");
    const json config = {{"architecture", "amd64"},
                         {"os", "linux"},
                         {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id_of(layer)}}}}};
    const json manifest = {
        {"schemaVersion", 2},
        {"mediaType", "application/vnd.docker.distribution.manifest.v2+json"},
        {"config", layout.blob(config.dump(), "application/vnd.docker.container.image.v1+json")},
        {"layers", {layout.blob(layer, "application/vnd.docker.image.rootfs.diff.tar.gzip")}}};
    layout.write_index({LayoutBuilder::tagged(
        layout.blob(manifest.dump(), "application/vnd.docker.distribution.manifest.v2+json"),
        "latest")});
    const auto image = open("oci:" + layout.directory().string() + ":latest");
    CHECK(image.layers.at(0).media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip");
    CHECK(os_release_of(image) == "ID=docker-v2\n");
}

TEST_CASE("a single-architecture image for another architecture names both") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    layout.write_index({LayoutBuilder::tagged(
        layout.image("arm64", "v8",
                     {{os_release_layer("x"), media_type_for(TarCompression::gzip)}}),
        "latest")});
    const auto name = "oci:" + layout.directory().string() + ":latest";
    CHECK(error_of([&] { open(name, k_amd64); }, ExitCode::bad_input) ==
          "image " + name +
              " is for arm64, but the build targets amd64; pass --arch arm64 or use "
              "an amd64 image");
    CHECK(open(name, k_arm64).platform.str() == "linux/arm64/v8");

    layout.write_index({LayoutBuilder::tagged(
        layout.image("s390x", "", {{os_release_layer("x"), media_type_for(TarCompression::gzip)}}),
        "latest")});
    CHECK(error_of([&] { open(name, k_amd64); }, ExitCode::bad_input) ==
          "image " + name + " is for s390x, but the build targets amd64; use an amd64 image");
}

TEST_CASE("blobs that do not match their digest or size are build failures") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto layer = os_release_layer("x");
    const auto manifest =
        layout.image("amd64", "", {{layer, media_type_for(TarCompression::gzip)}});
    layout.write_index({LayoutBuilder::tagged(manifest, "latest")});
    const auto name = "oci:" + layout.directory().string() + ":latest";
    const auto blobs = layout.directory() / "blobs" / "sha256";

    const auto manifest_path = blobs / digest_path_hex(manifest);
    const auto original = util::read_file(manifest_path);
    auto tampered = original;
    tampered[10] ^= 1;
    util::write_file_atomically(manifest_path, tampered);
    CHECK(error_of([&] { open(name); }, ExitCode::build_failed) ==
          "image " + name + ": blob " + manifest["digest"].get<std::string>() +
              " (manifest) is corrupt: its content hashes to " + digest_of(tampered) +
              "; copy the image again");
    util::write_file_atomically(manifest_path, original + " ");
    CHECK(error_of([&] { open(name); }, ExitCode::build_failed) ==
          "image " + name + ": blob " + manifest["digest"].get<std::string>() + " (manifest) is " +
              std::to_string(original.size() + 1) + " bytes, but its descriptor says " +
              std::to_string(original.size()) + "; the image is corrupt, copy it again");
    util::write_file_atomically(manifest_path, original);

    // A layer is checked while it is merged: the one read that happens anyway.
    const auto layer_path = blobs / digest_of(layer).substr(7);
    auto bad_layer = layer;
    bad_layer[bad_layer.size() / 2] ^= 0x55;
    util::write_file_atomically(layer_path, bad_layer);
    const auto image = open(name);
    util::TempDir work;
    fs::SpillFile spill(work.path());
    fs::Tree tree;
    const auto message =
        error_of([&] { oci::merge_layers(image, tree, spill); }, ExitCode::build_failed);
    CHECK((message == "image " + name + ": blob " + digest_of(layer) +
                          " (layer) is corrupt: its content hashes to " + digest_of(bad_layer) +
                          "; copy the image again" ||
           message.starts_with("image " + name + ": layer " + digest_of(layer) +
                               " is truncated or corrupt: ")));
    CHECK_THROWS_WITH_AS(oci::verify_blob(layer_path, digest_of(layer), name, "layer"),
                         ("image " + name + ": blob " + digest_of(layer) +
                          " (layer) is corrupt: its content hashes to " + digest_of(bad_layer) +
                          "; copy the image again")
                             .c_str(),
                         Error);
    util::write_file_atomically(layer_path, layer);
    CHECK_NOTHROW(oci::verify_blob(layer_path, digest_of(layer), name, "layer"));
}

TEST_CASE("malformed JSON names the file and the parser's message") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    write_bytes(layout.directory() / "index.json", "{nope");
    const auto name = "oci:" + layout.directory().string();
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input) ==
          "image " + name + ": " + (layout.directory() / "index.json").string() +
              " is not valid JSON: parse error at line 1, column 3: syntax error while parsing "
              "object key - invalid literal; last read: '{no'; expected string literal");

    write_bytes(layout.directory() / "index.json", R"({"schemaVersion": 2})");
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input) ==
          "image " + name + ": " + (layout.directory() / "index.json").string() +
              ": 'manifests' is missing or not an array");

    write_bytes(
        layout.directory() / "index.json",
        R"({"manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../etc", "size": 1}]})");
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input) ==
          "image " + name + ": " + (layout.directory() / "index.json").string() +
              ": manifests[0] has an invalid digest 'sha256:../../etc'");
}

TEST_CASE("missing files say what is missing and what to do") {
    util::TempDir dir;
    CHECK(
        error_of([&] { open("oci:" + (dir.path() / "nothere").string()); }, ExitCode::bad_input) ==
        "image oci:" + (dir.path() / "nothere").string() + ": the directory " +
            (dir.path() / "nothere").string() + " does not exist");
    const auto empty = dir.path().string();
    CHECK(error_of([&] { open("oci:" + empty); }, ExitCode::bad_input) ==
          "image oci:" + empty + ": " + empty + "/index.json not found; " + empty +
              " is not an OCI image layout (make one with `skopeo copy docker://IMAGE oci:" +
              empty + ":TAG`)");

    LayoutBuilder layout(dir.path() / "layout");
    const auto layer = os_release_layer("x");
    layout.write_index({LayoutBuilder::tagged(
        layout.image("amd64", "", {{layer, media_type_for(TarCompression::gzip)}}), "latest")});
    const auto layer_path = layout.directory() / "blobs" / "sha256" / digest_of(layer).substr(7);
    stdfs::remove(layer_path);
    const auto name = "oci:" + layout.directory().string() + ":latest";
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input) ==
          "image " + name + ": blob " + digest_of(layer) +
              " (layer) is missing: " + layer_path.string() +
              " does not exist; the layout is incomplete, copy the image again");

    CHECK(error_of([&] { open("tar:" + (dir.path() / "rootfs.tar").string()); },
                   ExitCode::bad_input) ==
          "image tar:" + (dir.path() / "rootfs.tar").string() + ": the tarball " +
              (dir.path() / "rootfs.tar").string() + " does not exist or is not a file");
    CHECK(error_of([&] { open("oci-archive:" + (dir.path() / "x.tar").string()); },
                   ExitCode::bad_input) == "image oci-archive:" + (dir.path() / "x.tar").string() +
                                               ": the archive " + (dir.path() / "x.tar").string() +
                                               " does not exist");
}

TEST_CASE("unknown media types are named") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto layer = os_release_layer("x");
    layout.write_index({LayoutBuilder::tagged(
        layout.image("amd64", "", {{layer, "application/vnd.oci.image.layer.v1.tar+bzip2"}}),
        "latest")});
    const auto name = "oci:" + layout.directory().string() + ":latest";
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input) ==
          "image " + name + ": layer " + digest_of(layer) +
              " has the media type 'application/vnd.oci.image.layer.v1.tar+bzip2', which edgeforge "
              "cannot unpack (it reads tar layers: plain, gzip or zstd)");

    const auto config = layout.blob("{}", "application/vnd.cncf.helm.config.v1+json");
    const json manifest = {{"schemaVersion", 2},
                           {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                           {"config", config},
                           {"layers", json::array()}};
    layout.write_index({LayoutBuilder::tagged(
        layout.blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json"), "latest")});
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input) ==
          "image " + name +
              " is not a container image: its config has the media type "
              "'application/vnd.cncf.helm.config.v1+json'");

    // A manifest listing more layers than any runtime takes is refused before a blob is read.
    const auto oci_config = layout.blob("{}", "application/vnd.oci.image.config.v1+json");
    json many = manifest;
    many["config"] = oci_config;
    const json one_layer = layout.blob(layer, "application/vnd.oci.image.layer.v1.tar");
    many["layers"] = json::array();
    for (int i = 0; i < 1001; ++i) {
        many["layers"].push_back(one_layer);
    }
    layout.write_index({LayoutBuilder::tagged(
        layout.blob(many.dump(), "application/vnd.oci.image.manifest.v1+json"), "latest")});
    CHECK(error_of([&] { open(name); }, ExitCode::bad_input)
              .ends_with("'layers' lists 1001 layers; edgeforge reads at most 1000 (Docker stops "
                         "near 128): rebuild the image with fewer layers"));

    CHECK(oci::is_layer_media_type("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"));
    CHECK(oci::is_layer_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"));
    CHECK_FALSE(oci::is_layer_media_type("application/vnd.in-toto+json"));
}

TEST_CASE("oci-archive files are extracted into the work directory and read like layouts") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto layer = os_release_layer("archived", TarCompression::none);
    layout.write_index({LayoutBuilder::tagged(
        layout.image("amd64", "", {{layer, media_type_for(TarCompression::none)}}), "v1")});
    const auto archive = dir.path() / "image.tar";
    write_bytes(archive, tar_of_directory(layout.directory()));
    const auto work = dir.path() / "work";

    fs::Tree tree;
    fs::SpillFile spill(dir.path());
    {
        const auto image = open("oci-archive:" + archive.string() + ":v1", k_amd64, work);
        CHECK(image.layers.at(0).path.string().starts_with(work.string()));
        CHECK(image.layers.at(0).digest == digest_of(layer));
        CHECK_FALSE(stdfs::is_empty(work));
        oci::merge_layers(image, tree, spill);
    }
    // The uncompressed layer's files point into the extracted archive, which the tree keeps.
    const auto inode = tree.lookup("etc/os-release");
    CHECK(inode->data.kind == fs::DataRef::Kind::blob);
    CHECK(fs::read_data(*inode, spill) == "ID=archived\n");
    tree = fs::Tree();
    CHECK(stdfs::is_empty(work));

    CHECK(error_of([&] { open("oci-archive:" + archive.string() + ":v9", k_amd64, work); },
                   ExitCode::bad_input) ==
          "image oci-archive:" + archive.string() +
              ":v9: the layout has no tag 'v9' (available tags: v1)");
}

TEST_CASE("archives with unsafe entries are rejected before anything is read") {
    util::TempDir dir;
    const auto work = dir.path() / "work";
    const auto archive = dir.path() / "evil.tar";
    const auto name = "oci-archive:" + archive.string();

    write_bytes(archive, TarBuilder().file("index.json", "{}").file("../evil", "x").build());
    CHECK(error_of([&] { open(name, k_amd64, work); }, ExitCode::bad_input) ==
          "image " + name +
              ": archive entry '../evil' escapes the extraction directory; the "
              "archive is malformed or malicious");
    CHECK_FALSE(stdfs::exists(work / "evil"));

    write_bytes(archive, TarBuilder().file("/etc/evil", "x").build());
    CHECK(error_of([&] { open(name, k_amd64, work); }, ExitCode::bad_input) ==
          "image " + name +
              ": archive entry '/etc/evil' is an absolute path; the archive is "
              "malformed or malicious");

    write_bytes(archive,
                TarBuilder().symlink("link", dir.path().string()).file("link/evil", "x").build());
    CHECK(error_of([&] { open(name, k_amd64, work); }, ExitCode::bad_input) ==
          "image " + name +
              ": archive entry 'link/evil' goes through the symbolic link 'link'; the "
              "archive is malformed or malicious");
    CHECK_FALSE(stdfs::exists(dir.path() / "evil"));
    CHECK(stdfs::is_empty(work));

    // A docker-archive whose manifest points out of the archive through a symlink.
    const auto docker = dir.path() / "docker.tar";
    write_bytes(docker,
                TarBuilder()
                    .file("manifest.json", R"([{"Config": "config.json", "Layers": ["l.tar"]}])")
                    .file("config.json", R"({"architecture": "amd64", "os": "linux"})")
                    .symlink("l.tar", "/etc/passwd")
                    .build());
    CHECK(error_of([&] { open("docker-archive:" + docker.string(), k_amd64, work); },
                   ExitCode::bad_input) ==
          "image docker-archive:" + docker.string() + ": " +
              "manifest.json: the layer 'l.tar' is not in the archive");
}

TEST_CASE("docker-archive files from docker save are read, old and new layouts") {
    util::TempDir dir;
    const auto root = dir.path() / "saved";
    const auto plain = TarBuilder().dir("etc").file("etc/os-release", "ID=docker\n").build();
    const auto upper_tar = TarBuilder().file("etc/extra", "extra").build();
    const auto upper_gzip = TarBuilder().file("etc/extra", "extra").build(TarCompression::gzip);
    const json config = {
        {"architecture", "amd64"},
        {"os", "linux"},
        {"rootfs",
         {{"type", "layers"},
          {"diff_ids", {digest_of(plain), digest_of(upper_tar), digest_of(plain)}}}}};
    const auto config_text = config.dump();
    const auto config_name = util::sha256_hex(config_text) + ".json";
    write_bytes(root / config_name, config_text);
    write_bytes(root / "aaa" / "layer.tar", plain);
    write_bytes(root / "bbb" / "layer.tar", upper_gzip);
    stdfs::create_directories(root / "ccc");
    stdfs::create_symlink("../aaa/layer.tar",
                          root / "ccc" / "layer.tar"); // what docker does for repeats
    const json manifest =
        json::array({{{"Config", config_name},
                      {"RepoTags", {"edge/base:1"}},
                      {"Layers", {"aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"}}}});
    write_bytes(root / "manifest.json", manifest.dump());
    const auto archive = dir.path() / "saved.tar";
    write_bytes(archive, tar_of_directory(root));
    const auto name = "docker-archive:" + archive.string();

    const auto image = open(name, k_amd64, dir.path() / "work");
    CHECK(image.platform.str() == "linux/amd64");
    CHECK(image.config_digest == digest_of(config_text));
    REQUIRE(image.layers.size() == 3);
    CHECK(image.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar");
    CHECK(image.layers[0].digest == digest_of(plain));
    CHECK(image.layers[1].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip");
    CHECK(image.layers[1].digest.empty()); // docker records only the uncompressed digest
    CHECK(image.layers[2].digest == digest_of(plain));
    CHECK(image.description == name + " (linux/amd64, 3 layers, " +
                                   util::format_bytes(2 * plain.size() + upper_gzip.size()) + ")");
    CHECK(os_release_of(image) == "ID=docker\n");

    CHECK(error_of([&] { open(name, k_arm64, dir.path() / "work"); }, ExitCode::bad_input) ==
          "image " + name +
              " is for amd64, but the build targets arm64; pass --arch amd64 or use "
              "an arm64 image");

    // Docker 25+: the archive is an OCI layout plus manifest.json naming blobs.
    const auto modern = dir.path() / "modern";
    json one_layer_config = config;
    one_layer_config["rootfs"]["diff_ids"] = {digest_of(plain)};
    const auto modern_config = one_layer_config.dump();
    write_bytes(modern / "blobs" / "sha256" / digest_of(modern_config).substr(7), modern_config);
    write_bytes(modern / "blobs" / "sha256" / digest_of(plain).substr(7), plain);
    const json modern_manifest =
        json::array({{{"Config", "blobs/sha256/" + digest_of(modern_config).substr(7)},
                      {"RepoTags", json::array()},
                      {"Layers", {"blobs/sha256/" + digest_of(plain).substr(7)}}}});
    write_bytes(modern / "manifest.json", modern_manifest.dump());
    write_bytes(archive, tar_of_directory(modern));
    const auto modern_image = open(name, k_amd64, dir.path() / "work");
    CHECK(modern_image.layers.at(0).digest == digest_of(plain));
    CHECK(os_release_of(modern_image) == "ID=docker\n");

    const json two =
        json::array({{{"Config", config_name}, {"RepoTags", {"a:1"}}, {"Layers", json::array()}},
                     {{"Config", config_name}, {"RepoTags", {"b:2"}}, {"Layers", json::array()}}});
    write_bytes(root / "manifest.json", two.dump());
    write_bytes(archive, tar_of_directory(root));
    CHECK(error_of([&] { open(name, k_amd64, dir.path() / "work"); }, ExitCode::bad_input) ==
          "image " + name +
              ": the archive holds 2 images (a:1, b:2); save one image per archive "
              "(docker save IMAGE)");

    write_bytes(archive, TarBuilder().file("x", "y").build());
    CHECK(error_of([&] { open(name, k_amd64, dir.path() / "work"); }, ExitCode::bad_input) ==
          "image " + name + ": the archive has no manifest.json; is it `docker save` output?");
}

TEST_CASE("dir: and tar: sources are one layer without metadata") {
    util::TempDir dir;
    const auto rootfs = dir.path() / "rootfs";
    write_bytes(rootfs / "etc" / "os-release", "ID=dir\n");
    const auto from_dir = open("dir:" + rootfs.string(), k_arm64);
    REQUIRE(from_dir.layers.size() == 1);
    CHECK(from_dir.layers[0].kind == oci::LayerKind::directory);
    CHECK(from_dir.platform.empty());
    CHECK(from_dir.config.is_null());
    CHECK(from_dir.description == "dir:" + rootfs.string() + " (root filesystem directory)");
    CHECK(os_release_of(from_dir) == "ID=dir\n");
    stdfs::create_directory_symlink(rootfs, dir.path() / "current");
    CHECK(os_release_of(open("dir:" + (dir.path() / "current").string())) == "ID=dir\n");
    CHECK(
        error_of([&] { open("dir:" + (dir.path() / "nothere").string()); }, ExitCode::bad_input) ==
        "image dir:" + (dir.path() / "nothere").string() + ": the directory " +
            (dir.path() / "nothere").string() + " does not exist");

    for (const auto compression :
         {TarCompression::none, TarCompression::gzip, TarCompression::zstd, TarCompression::xz}) {
        const auto bytes = os_release_layer("tarball", compression);
        const auto tarball = dir.path() / "rootfs.tar.any";
        write_bytes(tarball, bytes);
        const auto image = open("tar:" + tarball.string(), k_arm64);
        REQUIRE(image.layers.size() == 1);
        CHECK(image.layers[0].digest.empty());
        CHECK(image.layers[0].size == bytes.size());
        CHECK(image.description == "tar:" + tarball.string() + " (root filesystem tarball, " +
                                       util::format_bytes(bytes.size()) + ")");
        util::TempDir work;
        fs::SpillFile spill(work.path());
        fs::Tree tree;
        const auto result = oci::merge_layers(image, tree, spill);
        CHECK(fs::read_data(*tree.lookup("etc/os-release"), spill) == "ID=tarball\n");
        CHECK(result.layers.at(0).digest == digest_of(bytes));
    }
}

TEST_CASE("a config whose rootfs.diff_ids contradict the manifest is refused, naming the layer") {
    util::TempDir dir;
    LayoutBuilder layout(dir.path() / "layout");
    const auto first = os_release_layer("one");
    const auto second = os_release_layer("two");
    const auto with_config = [&](const std::string& tag, const json& rootfs) {
        json config = {{"architecture", "amd64"}, {"os", "linux"}};
        if (!rootfs.is_null()) {
            config["rootfs"] = rootfs;
        }
        const json manifest = {
            {"schemaVersion", 2},
            {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
            {"config", layout.blob(config.dump(), "application/vnd.oci.image.config.v1+json")},
            {"layers",
             {layout.blob(first, media_type_for(TarCompression::gzip)),
              layout.blob(second, media_type_for(TarCompression::gzip))}}};
        return LayoutBuilder::tagged(
            layout.blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json"), tag);
    };
    layout.write_index(
        {with_config("good", {{"type", "layers"}, {"diff_ids", {diff_id_of(first), diff_id_of(second)}}}),
         with_config("none", nullptr),
         with_config("short", {{"type", "layers"}, {"diff_ids", {diff_id_of(first)}}}),
         with_config("number", {{"type", "layers"}, {"diff_ids", {diff_id_of(first), 7}}}),
         with_config("md5", {{"type", "layers"}, {"diff_ids", {"md5:00", diff_id_of(second)}}})});
    const std::string base = "oci:" + layout.directory().string() + ":";
    const auto good = open(base + "good");
    CHECK(good.layers.at(1).diff_id == diff_id_of(second));

    CHECK(error_of([&] { open(base + "none"); }, ExitCode::bad_input)
              .find("its config has no rootfs.diff_ids list") != std::string::npos);
    CHECK(error_of([&] { open(base + "short"); }, ExitCode::bad_input) ==
          "image " + base + "short: its config lists 1 diff_id (rootfs.diff_ids) for 2 layers; "
          "the config does not belong to these layers: build or push the image again");
    const auto number = error_of([&] { open(base + "number"); }, ExitCode::bad_input);
    CHECK(number.find("layer 2 of 2 (" + digest_of(second).substr(0, 19)) != std::string::npos);
    CHECK(number.find("(rootfs.diff_ids[1]) is 7, not a sha256 digest") != std::string::npos);
    CHECK(error_of([&] { open(base + "md5"); }, ExitCode::bad_input)
              .find("(rootfs.diff_ids[0]) is \"md5:00\"") != std::string::npos);
}
