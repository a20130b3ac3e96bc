// Unit tests for content/inputs: images files, bundle manifests and their error messages.
#include <doctest/doctest.h>

#include "content/inputs.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::error_of;

TEST_CASE("content inputs: default ref names are the full reference") {
    CHECK(content::default_ref_name(oci::parse_reference("registry.example.com/edge/app:1.0")) ==
          "registry.example.com/edge/app:1.0");
    CHECK(content::default_ref_name(oci::parse_reference("docker://127.0.0.1:5000/a/b")) ==
          "127.0.0.1:5000/a/b:latest");
    CHECK(content::default_ref_name(
              oci::parse_reference("docker://r.io/a@sha256:" + std::string(64, 'a'))) ==
          "r.io/a@sha256:" + std::string(64, 'a'));
    CHECK(content::default_ref_name(oci::parse_reference("oci:/images/base-amd64:v2")) ==
          "base-amd64:v2");
    CHECK(content::default_ref_name(oci::parse_reference("oci-archive:/x/agent.tar")) ==
          "agent:latest");
}

TEST_CASE("content inputs: images file with comments, names and locations") {
    util::TempDir dir;
    const auto file = dir.path() / "images.txt";
    util::write_file_atomically(file, "# edge apps\n\nregistry.example.com/edge/app:1.0\n"
                                      "  oci:/images/base:latest   base:1  # pinned name\n");
    content::BundleInputs inputs;
    content::read_images_file(file, inputs);
    REQUIRE(inputs.images.size() == 2);
    CHECK(inputs.images[0].text == "registry.example.com/edge/app:1.0");
    CHECK(inputs.images[0].where.str() == file.string() + ":3");
    CHECK(inputs.images[1].reference.path == "/images/base");
    CHECK(inputs.images[1].ref_name == "base:1");
    CHECK(inputs.images[1].where.str() == file.string() + ":4");

    util::write_file_atomically(file, "registry.example.com/edge/app:1.0\nQuay.io/Org/Image\n");
    content::BundleInputs bad;
    const auto message =
        error_of([&] { content::read_images_file(file, bad); }, ExitCode::bad_input);
    CHECK(message.starts_with(file.string() + ":2: invalid image reference 'Quay.io/Org/Image': "
                                              "repository names must be lowercase"));

    util::write_file_atomically(file, "dir:/rootfs\n");
    CHECK(error_of([&] { content::read_images_file(file, bad); }, ExitCode::bad_input) ==
          file.string() + ":1: dir:/rootfs is a root filesystem, not an image with a manifest; "
                          "content bundles carry OCI images (oci:, oci-archive:, "
                          "docker-archive:, docker://)");
    CHECK(error_of([&] { content::read_images_file(dir.path() / "nope", bad); },
                   ExitCode::bad_input) == "cannot read the images file " +
                                               (dir.path() / "nope").string() +
                                               ": No such file or directory");
}

TEST_CASE("content inputs: bundle manifest with images, charts and files") {
    util::TempDir dir;
    const auto file = dir.path() / "bundle.yaml";
    util::write_file_atomically(file, "images:\n"
                                      "  - registry.example.com/edge/app:1.0\n"
                                      "  - {ref: oci:/images/base, name: edge/base:1}\n"
                                      "charts:\n"
                                      "  - charts/nginx-1.0.0.tgz\n"
                                      "files:\n"
                                      "  - path: scripts/setup.sh\n"
                                      "    dest: bin/setup.sh\n"
                                      "    mode: '0755'\n"
                                      "  - path: /etc/hostname\n");
    content::BundleInputs inputs;
    content::read_bundle_manifest(file, inputs);
    REQUIRE(inputs.images.size() == 2);
    CHECK(inputs.images[1].ref_name == "edge/base:1");
    CHECK(inputs.images[1].where.str() == file.string() + ":3:5");
    REQUIRE(inputs.charts.size() == 1);
    CHECK(inputs.charts[0].path == dir.path() / "charts/nginx-1.0.0.tgz");
    REQUIRE(inputs.files.size() == 2);
    CHECK(inputs.files[0].source == dir.path() / "scripts/setup.sh");
    CHECK(inputs.files[0].dest == "bin/setup.sh");
    CHECK(inputs.files[0].mode == 0755u);
    CHECK(inputs.files[1].source == "/etc/hostname");
    CHECK(inputs.files[1].dest == "hostname");
    CHECK(inputs.files[1].mode == 0644u);
}

TEST_CASE("content inputs: bundle manifest errors name file, line and column") {
    util::TempDir dir;
    const auto file = dir.path() / "bundle.yaml";
    content::BundleInputs inputs;
    util::write_file_atomically(file, "images: []\nchart:\n  - x.tgz\n");
    CHECK(error_of([&] { content::read_bundle_manifest(file, inputs); }, ExitCode::bad_input) ==
          file.string() +
              ":2:1: unknown key 'chart' in the bundle manifest (expected images, charts, files)");
    util::write_file_atomically(file, "files:\n  - path: a\n    dest: ../etc/passwd\n");
    CHECK(error_of([&] { content::read_bundle_manifest(file, inputs); }, ExitCode::bad_input) ==
          file.string() + ":2:5: dest '../etc/passwd' must be a relative path without '.' or "
                          "'..' components (it is stored under files/)");
    util::write_file_atomically(file, "files:\n  - path: a\n    mode: 999\n");
    CHECK(error_of([&] { content::read_bundle_manifest(file, inputs); }, ExitCode::bad_input) ==
          file.string() + ":3:11: mode '999' is not octal permission bits such as 0644 or 0755");
}

TEST_CASE("content inputs: duplicates and unreadable files are reported together") {
    util::TempDir dir;
    content::BundleInputs inputs;
    inputs.images.push_back(content::image_request("r.io/a:1", SourceLocation{"--image"}));
    inputs.images.push_back(content::image_request("docker://r.io/a:1", SourceLocation{"f", 2}));
    inputs.charts.push_back(content::ChartRequest{dir.path() / "missing.tgz", {"m.yaml", 3, 5}});
    CHECK(error_of([&] { content::check_inputs(inputs); }, ExitCode::bad_input) ==
          "2 problems found:\n"
          "  f:2: the image name 'r.io/a:1' is already used at --image; give one of them another "
          "name\n"
          "  m.yaml:3:5: the chart " +
              (dir.path() / "missing.tgz").string() + " is not a readable file");
    CHECK_NOTHROW(content::check_bundle_name("edge-apps_1.0"));
    CHECK(error_of([&] { content::check_bundle_name("../x"); }, ExitCode::bad_input)
              .starts_with("--name: '../x' is not a bundle name"));
}
