// Unit tests for build/iso_disk_image: CanvOS's tag and name rule for +iso-disk-image, the
// member path, and the plan (every problem reported together, with where each value came from).
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "build/iso_disk_image.h"
#include "support/project.h"

using namespace edgeforge;
using edgeforge::testing::Project;

namespace {

void write_valid_project(Project& project, const std::string& extra_yaml = "") {
    project.write_image_layout("images/base");
    project.write("user-data", "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: x\n");
    project.write("edgeforge.yaml",
                  "name: edge\nbase:\n  image: oci:images/base:latest\nagent:\n  images: []\n" +
                      extra_yaml);
}

} // namespace

TEST_CASE("iso-disk-image tag: PE_VERSION, then -CUSTOM_TAG, as CanvOS's IMAGE_TAG") {
    CHECK(iso_disk_image_tag("v4.5.0", "") == "v4.5.0");
    CHECK(iso_disk_image_tag("v4.5.0", "demo") == "v4.5.0-demo");
    CHECK(iso_disk_image_tag("latest", "") == "latest"); // agent.version's default
    CHECK(iso_disk_image_tag("v4.5.0+build.1", "a+b") == "v4.5.0_build.1-a_b");
    CHECK(iso_disk_image_tag(std::string(128, 'a'), "") == std::string(128, 'a'));
    CHECK(iso_disk_image_tag(std::string(120, 'a'), "12345678").empty()); // 129 characters
    CHECK(iso_disk_image_tag("", "").empty());
}

TEST_CASE("iso-disk-image name: IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG") {
    CHECK(iso_disk_image_reference("registry.example.com", "edge", "installer", "v4.5.0") ==
          "registry.example.com/edge/installer:v4.5.0");
    CHECK(iso_disk_image_reference("127.0.0.1:5000//", "edge/os/", "demo", "latest") ==
          "127.0.0.1:5000/edge/os/demo:latest");
    // The provider images' rule: the repository alone is a name, the registry alone is not.
    CHECK(iso_disk_image_reference("", "quay.io/edge", "demo", "t") == "quay.io/edge/demo:t");
    CHECK(iso_disk_image_reference("registry.example.com", "", "demo", "t").empty());
    CHECK(iso_disk_image_reference("", "", "demo", "t").empty());
    CHECK(iso_disk_image_member("palette-edge-installer") == "disk/palette-edge-installer.iso");
}

TEST_CASE("iso-disk-image plan: layout, tag and reference from the CanvOS variables") {
    Project project;
    write_valid_project(project);
    project.write(".arg", "IMAGE_REGISTRY=registry.example.com\nIMAGE_REPO=edge\n"
                          "CUSTOM_TAG=lab\nPE_VERSION=v4.5.0\n");
    const IsoDiskImagePlan plan = plan_iso_disk_image(project.resolve(), true, true);
    CHECK(plan.tag == "v4.5.0-lab");
    CHECK(plan.reference == "registry.example.com/edge/edge:v4.5.0-lab");
    CHECK(plan.push);
    CHECK(plan.layout == project.dir.path() / "build/edge-disk-image");
    CHECK(plan.iso.iso_path() == project.dir.path() / "build/edge.iso");
    const auto json = plan.to_json();
    CHECK(json["member"] == "disk/edge.iso");
    CHECK(json["owner"] == "107:107");
    CHECK(json["mode"] == "0444");
    CHECK(render_iso_disk_image_plan(plan).find("registry.example.com/edge/edge:v4.5.0-lab") !=
          std::string::npos);
}

TEST_CASE("iso-disk-image plan: without a registry name, only the layout; --push is bad input") {
    Project project;
    write_valid_project(project);
    const IsoDiskImagePlan plan = plan_iso_disk_image(project.resolve(), false, true);
    CHECK(plan.tag == "latest");
    CHECK(plan.reference.empty());
    CHECK_FALSE(plan.push);
    // `build all --push`: nothing to push is fine.
    CHECK_FALSE(plan_iso_disk_image(project.resolve(), true, false).push);
    const std::string message =
        project.error_of([&] { plan_iso_disk_image(project.resolve(), true, true); });
    CHECK(message.find("--push: --push needs somewhere to push the iso-disk-image: set "
                       "IMAGE_REGISTRY and IMAGE_REPO") != std::string::npos);
}

TEST_CASE("iso-disk-image plan errors are reported together, with where each value came from") {
    Project project;
    project.write("edgeforge.yaml", "name: Edge\nprovider:\n  repository: edge\n");
    project.write("build/Edge-disk-image", "a file");
    const std::string message =
        project.error_of([&] { plan_iso_disk_image(project.resolve(), false, true); });
    // The ISO's own problem (no base image), the name a registry cannot hold (upper case: at
    // the name's line), and the layout path taken by a file.
    CHECK(message.find("base") != std::string::npos);
    INFO(message);
    CHECK(message.find("edgeforge.yaml:1:1: the iso-disk-image name edge/Edge:latest") !=
          std::string::npos);
    CHECK(message.find("repository names must be lowercase") != std::string::npos);
    CHECK(message.find("<dir>/build/Edge-disk-image exists and is not an OCI layout") !=
          std::string::npos);
}
