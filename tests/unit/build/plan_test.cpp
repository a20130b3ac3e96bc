// Unit tests for core/plan: every input checked before any work, problems reported together.
#include <doctest/doctest.h>

#include <filesystem>

#include "build/plan.h"
#include "support/project.h"

using namespace edgeforge;
using edgeforge::testing::Project;

namespace {

void write_valid_project(Project& project) {
    project.write_image_layout("images/base");
    project.write_image_layout("agent");
    project.write("user-data", "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: x\n");
    project.write("overlays/files/etc/motd", "hi\n");
    project.write("edgeforge.yaml",
                  "base:\n  image: oci:images/base:latest\nagent:\n  images: [oci:agent]\n");
}

} // namespace

TEST_CASE("a valid project plans every input") {
    Project project;
    write_valid_project(project);
    project.write("content-apps/apps.tar.zst", "bundle");
    project.environment["SOURCE_DATE_EPOCH"] = "1700000000";
    const IsoPlan plan = plan_iso(project.resolve());
    CHECK(plan.arch.name() == "amd64");
    CHECK(plan.name == "palette-edge-installer");
    // Local image paths in edgeforge.yaml are relative to its directory.
    const std::string base = "oci:" + (project.dir.path() / "images/base:latest").string();
    CHECK(plan.base.str() == base);
    REQUIRE(plan.agents.size() == 1);
    CHECK(plan.agents[0].path == project.dir.path() / "agent");
    CHECK(plan.user_data == project.dir.path() / "user-data");
    CHECK(plan.rootfs_overlay == project.dir.path() / "overlays/files");
    CHECK_FALSE(plan.iso_overlay.has_value()); // default directory absent: fine
    REQUIRE(plan.content_bundles.size() == 1);
    CHECK(plan.content_bundles[0] == project.dir.path() / "content-apps/apps.tar.zst");
    CHECK(plan.source_date_epoch == 1700000000);
    CHECK(plan.squashfs.compressor == fs::SquashfsCompressor::zstd);
    CHECK(plan.squashfs.block_size == 1048576u);
    CHECK(plan.iso_path() == project.dir.path() / "build/palette-edge-installer.iso");
    CHECK(plan.to_json()["base"] == base);
}

TEST_CASE("plan errors: no base, missing user-data, overlay that is a file") {
    Project project;
    project.write("overlays/files", "not a directory");
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_iso(config); }) ==
          "3 problems found:\n"
          "  base.image: no base image: set base.image in edgeforge.yaml, BASE_IMAGE in .arg, "
          "EDGEFORGE_BASE_IMAGE, or pass --base (e.g. --base oci:images/base)\n"
          "  user_data (default): user-data file <dir>/user-data is missing or unreadable; every "
          "installer needs one (set user_data, USER_DATA_FILE or --user-data)\n"
          "  overlays.rootfs (default): overlays.rootfs must be a directory, but "
          "<dir>/overlays/files is a file");
}

TEST_CASE("plan: user-data warnings are kept, errors stop the plan") {
    Project project;
    write_valid_project(project);
    project.write("user-data",
                  "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: x\n    nmae: y\n");
    const IsoPlan plan = plan_iso(project.resolve());
    REQUIRE(plan.warnings.size() == 1);
    CHECK(plan.warnings[0].find("user-data:5:5: stylus.site.nmae: unknown key 'nmae' looks like a "
                                "misspelling of 'name'") != std::string::npos);
    project.write("user-data", "#cloud-config\nstylus:\n  site:\n    name: x\n");
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_iso(config); }) ==
          "<dir>/user-data:4:5: stylus.site.paletteEndpoint: the management endpoint is mandatory "
          "and missing (add paletteEndpoint: api.example.com under stylus.site)");
}

TEST_CASE("plan errors: user-data without #cloud-config") {
    Project project;
    write_valid_project(project);
    project.write("user-data", "stylus: {}\n");
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_iso(config); }) ==
          "<dir>/user-data:1:1: the first line must be '#cloud-config' (cloud-init and the edge "
          "agent ignore the file otherwise)");
}

TEST_CASE("plan errors: output directory not writable") {
    Project project;
    write_valid_project(project);
    project.write("blocker", "a file where a directory should be");
    project.flags.push_back({"output_dir", {"blocker/out"}});
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_iso(config); }) ==
          "--output-dir: output directory <dir>/blocker/out: <dir>/blocker is not a directory");
}

TEST_CASE("plan: content bundles under the output directory are found too, each once") {
    Project project;
    write_valid_project(project);
    project.write("content-apps/apps.tar.zst", "bundle");
    project.write("build/content-edge/edge.tar.zst", "bundle");
    project.write("build/content-edge/edge.tar.zst.sha256", "x");
    project.write("build/.content-edge-tmp/edge.tar.zst", "a staging directory");
    project.flags.push_back(FlagValue{"content.bundles", {"build/content-edge/edge.tar.zst"}});
    const IsoPlan plan = plan_iso(project.resolve());
    REQUIRE(plan.content_bundles.size() == 2);
    CHECK(plan.content_bundles[0].filename() == "edge.tar.zst");
    CHECK(plan.content_bundles[1] == project.dir.path() / "content-apps/apps.tar.zst");
}
