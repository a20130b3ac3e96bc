// Unit tests for inspect/report and inspect/secrets: the JSON pieces and the masked user-data.
#include <doctest/doctest.h>

#include <string>

#include "inspect/report.h"
#include "inspect/secrets.h"
#include "support/yaml.h"

using namespace edgeforge;
using namespace edgeforge::inspect;

TEST_CASE("user_data_summary hides credentials in the first lines and in stylus.site") {
    const std::string content = "#cloud-config\n"
                                "passwd: hunter2\n"
                                "stylus:\n"
                                "  site:\n"
                                "    edgeHostToken: abc\n"
                                "    name: edge-1\n"
                                "    network:\n"
                                "      apiKey: ''\n"
                                "    tags: [a, b]\n";
    const nlohmann::json summary = user_data_summary(content);
    CHECK(summary["size"] == content.size());
    CHECK(summary["lines"] == 9);
    // printable_line trims the lines, so the indentation goes too.
    CHECK(summary["first_lines"] == nlohmann::json{"#cloud-config", "passwd: <hidden>",
                                                   "stylus:", "site:", "edgeHostToken: <hidden>"});
    CHECK(summary["stylus_site"] == nlohmann::json{{"edgeHostToken", "<hidden>"},
                                                   {"name", "edge-1"},
                                                   {"network.apiKey", ""},
                                                   {"tags", "[2 items]"}});
    CHECK_FALSE(summary.contains("yaml_error"));
    CHECK(user_data_summary("a: [\n").contains("yaml_error"));
    // An artifact's user-data is someone else's YAML: an alias bomb is reported, not expanded.
    const auto bombed = user_data_summary("#cloud-config\n" + edgeforge::testing::alias_bomb());
    REQUIRE(bombed.contains("yaml_error"));
    CHECK(bombed["yaml_error"].get<std::string>().find("100000") != std::string::npos);
    CHECK_FALSE(bombed.contains("stylus_site"));

    CHECK(looks_secret("edgeHostToken"));
    CHECK_FALSE(looks_secret("hostname"));
    CHECK(mask_secret("password:") == "password:");
    CHECK(mask_secret("no colon here") == "no colon here");
}

TEST_CASE("partition_report and iso_report: the JSON of the readers' results") {
    fs::PartitionEntry gpt;
    gpt.number = 1;
    gpt.start = 1048576;
    gpt.size = 2097152;
    gpt.gpt_type = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    gpt.name = "COS_GRUB";
    const nlohmann::json part = partition_report(gpt);
    CHECK(part["type_name"] == "EFI system partition");
    CHECK(part["type_code"] == "EF00");
    CHECK(part["name"] == "COS_GRUB");
    CHECK_FALSE(part.contains("mbr_type"));

    fs::PartitionEntry mbr;
    mbr.number = 2;
    mbr.mbr_type = 0x83;
    mbr.bootable = true;
    const nlohmann::json mbr_part = partition_report(mbr);
    CHECK(mbr_part["mbr_type"] == "0x83");
    CHECK(mbr_part["bootable"] == true);
    CHECK_FALSE(mbr_part.contains("gpt_type"));

    formats::IsoVolume volume;
    volume.volume_id = "COS_LIVE";
    volume.volume_bytes = 4096;
    volume.boot_entries.push_back({"efi", true, "none", 22, 2880});
    const nlohmann::json iso = iso_report(volume);
    CHECK(iso["volume_id"] == "COS_LIVE");
    CHECK(iso["el_torito"][0]["load_block"] == 22);
    CHECK_FALSE(iso.contains("boot_catalog_block"));
    volume.boot_catalog_block = 20;
    CHECK(iso_report(volume)["boot_catalog_block"] == 20);
}
