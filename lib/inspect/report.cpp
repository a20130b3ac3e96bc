// The inspect report model: what the readers found, as the JSON keys `inspect --json` prints.
#include "inspect/report.h"

#include <cstddef>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "inspect/secrets.h"
#include "util/digest.h"
#include "util/strings.h"
#include "util/yaml_check.h"

namespace edgeforge::inspect {

nlohmann::json iso_report(const formats::IsoVolume& volume) {
    nlohmann::json entries = nlohmann::json::array();
    for (const auto& entry : volume.boot_entries) {
        entries.push_back({{"platform", entry.platform},
                           {"bootable", entry.bootable},
                           {"emulation", entry.emulation},
                           {"load_block", entry.load_rba},
                           {"sectors", entry.sector_count}});
    }
    nlohmann::json iso = {{"volume_id", volume.volume_id},
                          {"volume_size", volume.volume_bytes},
                          {"el_torito", entries}};
    if (volume.boot_catalog_block) {
        iso["boot_catalog_block"] = *volume.boot_catalog_block;
    }
    return iso;
}

void add_partition_table(const fs::PartitionTable& table, nlohmann::json& report) {
    report["partition_table"] = table.type;
    if (table.hybrid_mbr) {
        report["hybrid_mbr"] = true;
    }
    if (!table.problem.empty()) {
        report["partition_table_problem"] = table.problem;
    }
}

nlohmann::json partition_report(const fs::PartitionEntry& p) {
    nlohmann::json part = {{"number", p.number}, {"start", p.start}, {"size", p.size}};
    if (!p.gpt_type.empty()) {
        std::string code;
        part["gpt_type"] = p.gpt_type;
        part["type_name"] = fs::gpt_type_name(p.gpt_type, code);
        part["type_code"] = code;
        part["name"] = p.name;
    }
    if (p.mbr_type) {
        part["mbr_type"] = fmt::format("0x{:02x}", *p.mbr_type);
        part["bootable"] = p.bootable;
    }
    return part;
}

void add_squashfs(const fs::SquashfsParse& parsed, nlohmann::json& out) {
    if (!parsed.superblock) {
        out["problem"] = parsed.problem;
        return;
    }
    const fs::SquashfsSuperblock& sb = *parsed.superblock;
    out["compression"] = sb.compression();
    if (sb.compression_level) {
        out["compression_level"] = *sb.compression_level;
    }
    if (sb.xz_dictionary_size) {
        out["xz_dictionary_size"] = *sb.xz_dictionary_size;
    }
    out["block_size"] = sb.block_size;
    out["inode_count"] = sb.inode_count;
    out["fragment_count"] = sb.fragment_count;
    out["bytes_used"] = sb.bytes_used;
    out["version"] = fmt::format("{}.{}", sb.version_major, sb.version_minor);
    out["modification_time"] = sb.modification_time;
}

nlohmann::json user_data_summary(const std::string& content) {
    nlohmann::json out;
    out["size"] = content.size();
    out["sha256"] = util::sha256_hex(content);
    const std::vector<std::string> lines = util::split(content, '\n');
    out["lines"] = lines.size() - (!lines.empty() && lines.back().empty() ? 1 : 0);
    nlohmann::json first = nlohmann::json::array();
    for (std::size_t i = 0; i < lines.size() && i < 5; ++i) {
        first.push_back(util::printable_line(mask_secret(lines[i]), 120));
    }
    out["first_lines"] = first;
    // The artifact's user-data is someone else's YAML: read within the limits of any other.
    const auto loaded = util::load_yaml(content);
    if (loaded.issue) {
        out["yaml_error"] = fmt::format("line {}, column {}: {}", loaded.issue->line,
                                        loaded.issue->column, loaded.issue->message);
        return out;
    }
    try {
        const YAML::Node& document = loaded.root;
        if (document.IsMap() && document["stylus"] && document["stylus"]["site"]) {
            out["stylus_site"] = masked_settings(document["stylus"]["site"]);
        }
    } catch (const YAML::Exception& error) {
        out["yaml_error"] = error.what();
    }
    return out;
}

} // namespace edgeforge::inspect
