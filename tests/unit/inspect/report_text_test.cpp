// Unit tests for inspect/report_text: the text people read.
#include <doctest/doctest.h>

#include <string>

#include "inspect/report_text.h"

using namespace edgeforge::inspect;

TEST_CASE("render_artifact_report: the text people read") {
    const nlohmann::json report = {
        {"artifact", "out/x.raw"},
        {"format", "raw"},
        {"file_size", 2097152},
        {"virtual_size", 2097152},
        {"partition_table", "gpt"},
        {"partitions",
         {{{"number", 1},
           {"start", 1048576},
           {"size", 1048576},
           {"gpt_type", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
           {"type_name", "EFI system partition"},
           {"type_code", "EF00"},
           {"name", "COS_GRUB"},
           {"filesystem", "vfat"},
           {"label", "COS_GRUB"}}}},
        {"esp",
         {{{"device", "/dev/sda1"},
           {"label", "COS_GRUB"},
           {"boot_files", {"EFI/BOOT/BOOTX64.EFI"}},
           {"grub_cfg", true}}}},
        {"squashfs",
         {{{"device", "/dev/sda3"},
           {"label", "COS_RECOVERY"},
           {"path", "/rootfs.squashfs"},
           {"problem", "no squashfs magic (hsqs)"}}}},
        {"user_data",
         {{{"device", "/dev/sda2"},
           {"label", "COS_OEM"},
           {"path", "/99_userdata.yaml"},
           {"size", 20},
           {"lines", 2},
           {"sha256", "ab"},
           {"first_lines", {"#cloud-config", "passwd: <hidden>"}}}}},
        {"libguestfs", {{"backend", "direct"}, {"tcg", true}, {"launch_seconds", 12.5}}}};
    const std::string text = render_artifact_report(report);
    CHECK(text.find("format      raw\n") != std::string::npos);
    CHECK(
        text.find("size        2.0 MiB file (2097152 bytes), 2.0 MiB virtual (2097152 bytes)\n") !=
        std::string::npos);
    CHECK(text.find("   1       1048576     1.0 MiB  EFI system partition (EF00)   COS_GRUB") !=
          std::string::npos);
    CHECK(text.find("esp         COS_GRUB: EFI/BOOT/BOOTX64.EFI; grub.cfg present\n") !=
          std::string::npos);
    CHECK(text.find("kernel      not found\n") != std::string::npos);
    CHECK(text.find("squashfs    /rootfs.squashfs on COS_RECOVERY: no squashfs magic (hsqs)\n") !=
          std::string::npos);
    CHECK(text.find("user-data   /99_userdata.yaml on COS_OEM: 20 B, 2 lines, sha256 ab\n"
                    "            | #cloud-config\n"
                    "            | passwd: <hidden>\n") != std::string::npos);
    CHECK(text.find("libguestfs  direct backend, TCG, appliance launched in 12.5 s\n") !=
          std::string::npos);
}
