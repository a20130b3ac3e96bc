// Unit tests for formats/disk planning: formats, --bios, COS_STATE/COS_PERSISTENT sizes, the
// COS_CONTENT partition (disk.content_partition) and the --disk-size check that runs before any
// work.
#include <doctest/doctest.h>

#include <string>

#include "build/disk.h"
#include "content/parts.h"
#include "support/project.h"
#include "util/digest.h"

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

TEST_CASE("disk.content_partition: auto follows CanvOS, true needs something, false never") {
    CHECK(wants_content_partition("auto", false) == false);
    CHECK(wants_content_partition("auto", true) == true);
    CHECK(wants_content_partition("true", true) == true);
    CHECK(wants_content_partition("true", false) == std::nullopt);
    CHECK(wants_content_partition("false", true) == false);
    CHECK(wants_content_partition("false", false) == false);
}

TEST_CASE("COS_CONTENT size: the files in ext4 blocks, a tenth more and 32 MiB, whole MiB") {
    CHECK(content_partition_size({}) == 32ULL << 20);
    CHECK(content_partition_size({1, 1}) == 33ULL << 20); // two 4 KiB blocks: 8 KiB + 0.8 KiB
    CHECK(content_partition_size({100ULL << 20}) == 142ULL << 20); // 100 + 10 + 32
    CHECK(content_partition_size({5'000'000'000ULL}) % (1ULL << 20) == 0);
    CHECK(content_partition_size({5'000'000'000ULL}) > 5'500'000'000ULL);
}

TEST_CASE("disk plan: COS_CONTENT by default only when there is content (CanvOS's rule)") {
    Project project;
    write_valid_project(project);
    const DiskPlan none = plan_disk(project.resolve(), {"raw"});
    CHECK(none.content_size == 0);
    CHECK(none.content_files.empty());
    CHECK(none.to_json()["content_partition"].is_null());

    project.write("content-apps/apps.tar.zst", std::string(5000, 'z'));
    project.write("spc.tgz", "cluster");
    project.write("edge.yaml", "custom: true\n");
    project.write("edgeforge.yaml", "base:\n  image: oci:images/base:latest\n"
                                    "cluster_config: spc.tgz\nedge_custom_config: edge.yaml\n");
    const DiskPlan plan = plan_disk(project.resolve(), {"qcow2"});
    REQUIRE(plan.content_files.size() == 3);
    CHECK(plan.content_files[0].path == "bundle-content/apps.tar.zst");
    CHECK(plan.content_files[0].size == 5000);
    CHECK(!plan.content_files[0].split);
    CHECK(plan.content_files[1].path == "spc-config/spc.tgz");
    CHECK(plan.content_files[2].path == "edge-config/.edge_custom_config.yaml");
    CHECK(plan.content_size == content_partition_size({5000, 7, 13}));
    const auto json = plan.to_json()["content_partition"];
    CHECK(json["label"] == "COS_CONTENT");
    CHECK(json["size"] == plan.content_size);
    CHECK(json["files"].size() == 3);
    const std::string text = render_disk_plan(plan);
    CHECK(text.find("COS_RECOVERY, COS_CONTENT 33.0 MiB") != std::string::npos);
    CHECK(text.find("-> COS_CONTENT:/spc-config/spc.tgz") != std::string::npos);
    CHECK(text.find("/opt/spectrocloud/content/") == std::string::npos);

    project.flags.push_back({"disk.content_partition", {"false"}});
    const DiskPlan off = plan_disk(project.resolve(), {"raw"});
    CHECK(off.content_size == 0);
    CHECK(off.content_files.empty());
    CHECK(render_disk_plan(off).find("not on the disk (disk.content_partition is false)") !=
          std::string::npos);
}

TEST_CASE("disk plan: disk.content_partition true with nothing to hold is refused") {
    Project project;
    write_valid_project(project);
    project.environment["EDGEFORGE_DISK_CONTENT_PARTITION"] = "true";
    CHECK(project.error_of([&] { plan_disk(project.resolve(), {"raw"}); }) ==
          "environment variable EDGEFORGE_DISK_CONTENT_PARTITION: disk.content_partition is "
          "true, but there is "
          "nothing to put on COS_CONTENT: no content bundle (content.bundles, "
          "content-*/*.zst), cluster_config or edge_custom_config; add one, or set it to "
          "auto or false");
    project.write("edge.yaml", "custom: true\n");
    project.flags.push_back({"edge_custom_config", {"edge.yaml"}});
    const DiskPlan plan = plan_disk(project.resolve(), {"raw"});
    REQUIRE(plan.content_files.size() == 1);
    CHECK(plan.content_size == 33ULL << 20);
}

TEST_CASE("disk plan: a split bundle goes on COS_CONTENT whole, sized by its parts index") {
    Project project;
    write_valid_project(project);
    content::PartsIndex index;
    index.name = "big.tar.zst";
    index.size = 6000;
    index.sha256 = util::sha256_hex(std::string(6000, 'b'));
    index.split_size = 4096;
    index.parts = {{"big.tar.zst.part-000", 4096, util::sha256_hex(std::string(4096, 'b'))},
                   {"big.tar.zst.part-001", 1904, util::sha256_hex(std::string(1904, 'b'))}};
    project.write("content-big/big.tar.zst.part-000", std::string(4096, 'b'));
    project.write("content-big/big.tar.zst.part-001", std::string(1904, 'b'));
    project.write("content-big/big.tar.zst.parts.json", index.text());
    const DiskPlan plan = plan_disk(project.resolve(), {"raw"});
    REQUIRE(plan.content_files.size() == 1);
    CHECK(plan.content_files[0].path == "bundle-content/big.tar.zst");
    CHECK(plan.content_files[0].size == 6000);
    CHECK(plan.content_files[0].split);
    CHECK(plan.content_files[0].source.filename() == "big.tar.zst.parts.json");
}

TEST_CASE("disk plan: --disk-size counts COS_CONTENT") {
    Project project;
    write_valid_project(project);
    project.write("content-apps/apps.tar.zst", std::string(100, 'z'));
    project.flags.push_back({"disk.size", {"120M"}});
    CHECK(project.error_of([&] { plan_disk(project.resolve(), {"raw"}); }) ==
          "--disk-size: 120.0 MiB is too small: even before the rootfs is added the disk needs "
          "more than 132.0 MiB (COS_GRUB 1.0 MiB, COS_OEM 64.0 MiB, COS_RECOVERY 32.0 MiB, "
          "COS_CONTENT 33.0 MiB); give a bigger --disk-size or leave it unset for the smallest "
          "that fits");
}
