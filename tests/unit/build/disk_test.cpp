// Unit tests for formats/disk planning: formats, --bios, COS_STATE/COS_PERSISTENT sizes and the
// --disk-size check that runs before any work.
#include <doctest/doctest.h>

#include <string>

#include "build/disk.h"
#include "support/project.h"

using namespace edgeforge;
using edgeforge::testing::Project;

namespace {

void write_valid_project(Project& project) {
    project.write_image_layout("images/base");
    project.write("user-data", "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: x\n");
    project.write("edgeforge.yaml", "base:\n  image: oci:images/base:latest\n");
}

} // namespace

TEST_CASE("disk plan: every format has landed; outputs named as written") {
    Project project;
    write_valid_project(project);
    const DiskPlan plan =
        plan_disk(project.resolve(), {"vhd", "gce", "qcow2", "raw", "ami", "ova"});
    CHECK(plan.formats == std::vector<std::string>{"raw", "qcow2", "ova", "ami", "vhd", "gce"});
    CHECK(plan.artifact("vhd").filename() == "palette-edge-installer.vhd");
    CHECK(plan.artifact("gce").filename() == "palette-edge-installer-gce.tar.gz");
    CHECK(plan.artifact("ami").filename() == "palette-edge-installer-ami.raw");
    CHECK(plan.state_size == 0);
    CHECK(plan.persistent_size == 0);
}

TEST_CASE("disk plan: COS_STATE and COS_PERSISTENT sizes, rounded up to MiB") {
    Project project;
    write_valid_project(project);
    project.flags.push_back({"disk.state_size", {"100M"}});
    project.environment["EDGEFORGE_DISK_PERSISTENT_SIZE"] = "33554433"; // 32 MiB + 1 byte
    const DiskPlan plan = plan_disk(project.resolve(), {"raw"});
    CHECK(plan.state_size == 100ULL << 20);
    CHECK(plan.persistent_size == 33ULL << 20);
    CHECK(plan.to_json()["state_size"] == 100ULL << 20);
}

TEST_CASE("disk plan: bad sizes and --bios on arm64 are reported together, before any work") {
    Project project;
    write_valid_project(project);
    project.flags.push_back({"arch", {"arm64"}});
    project.flags.push_back({"disk.bios", {"true"}});
    project.flags.push_back({"disk.state_size", {"1M"}});
    project.flags.push_back({"disk.size", {"64M"}});
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_disk(config, {"raw"}); }) ==
          "3 problems found:\n"
          "  --bios: arm64 machines boot through UEFI only: there is no legacy BIOS boot to add "
          "(drop --bios / disk.bios)\n"
          "  --state-size: disk.state_size is 1.0 MiB; give 0 for no partition or at least "
          "16.0 MiB\n"
          "  --disk-size: 64.0 MiB is too small: even before the rootfs is added the disk needs "
          "more than 101.0 MiB (COS_GRUB 1.0 MiB, COS_OEM 64.0 MiB, COS_RECOVERY 32.0 MiB, "
          "BIOS 1.0 MiB, COS_STATE 1.0 MiB); give a bigger --disk-size or leave it unset for the "
          "smallest that fits");
}
