// Renders the inspect report (the JSON of report.h) as the text people read.
#include "inspect/report_text.h"

#include <cstdint>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "util/strings.h"

namespace edgeforge::inspect {
namespace {

std::string located(const nlohmann::json& item) {
    const std::string label = item.value("label", "");
    return label.empty() ? item.value("device", "") : label;
}

} // namespace

std::string render_artifact_report(const nlohmann::json& report) {
    std::string out;
    auto line = [&](std::string_view key, const std::string& value) {
        out += fmt::format("{:<11} {}\n", key, value);
    };
    line("artifact", report.value("artifact", ""));
    line("format", report.value("format", ""));
    const auto file_size = report.value("file_size", std::uint64_t{0});
    const auto virtual_size = report.value("virtual_size", std::uint64_t{0});
    line("size",
         fmt::format("{} file ({} bytes), {} virtual ({} bytes)", util::format_bytes(file_size),
                     file_size, util::format_bytes(virtual_size), virtual_size));
    if (report.contains("ova")) {
        std::vector<std::string> members;
        for (const auto& member : report["ova"]["members"]) {
            members.push_back(
                fmt::format("{} ({})", member.value("name", ""),
                            util::format_bytes(member.value("size", std::uint64_t{0}))));
        }
        line("ova", util::join(members, ", "));
        line("disk", report["ova"].value("disk", ""));
    }
    if (report.contains("iso")) {
        const auto& iso = report["iso"];
        line("volume", fmt::format("{} ({})", iso.value("volume_id", ""),
                                   util::format_bytes(iso.value("volume_size", std::uint64_t{0}))));
        std::vector<std::string> entries;
        for (const auto& entry : iso["el_torito"]) {
            entries.push_back(fmt::format(
                "{}{} (emulation {}, block {}, {} sectors)", entry.value("platform", ""),
                entry.value("bootable", false) ? "" : " not bootable", entry.value("emulation", ""),
                entry.value("load_block", 0), entry.value("sectors", 0)));
        }
        line("el torito",
             entries.empty() ? "none (not bootable as a CD)" : util::join(entries, "; "));
    }
    std::string table = report.value("partition_table", "none");
    if (report.value("hybrid_mbr", false)) {
        table += " (with a hybrid MBR)";
    }
    if (report.contains("partition_table_problem")) {
        table += "; problem: " + report.value("partition_table_problem", "");
    }
    line("partitions", table);
    const auto& partitions = report.value("partitions", nlohmann::json::array());
    if (!partitions.empty()) {
        out += fmt::format("  {:>2}  {:>12}  {:>10}  {:<28}  {:<16}  {:<8}  {}\n", "#", "start",
                           "size", "type", "name", "fs", "label");
        for (const auto& part : partitions) {
            std::string type = part.value("type_name", "");
            if (part.contains("type_code") && !part["type_code"].get<std::string>().empty()) {
                type += " (" + part["type_code"].get<std::string>() + ")";
            } else if (type.empty()) {
                type = part.value("gpt_type", part.value("mbr_type", ""));
            }
            out += fmt::format("  {:>2}  {:>12}  {:>10}  {:<28}  {:<16}  {:<8}  {}\n",
                               part.value("number", 0), part.value("start", std::uint64_t{0}),
                               util::format_bytes(part.value("size", std::uint64_t{0})), type,
                               part.value("name", ""), part.value("filesystem", ""),
                               part.value("label", ""));
        }
    }
    for (const auto& fs : report.value("filesystems", nlohmann::json::array())) {
        if (fs.contains("problem")) {
            line("warning", fmt::format("{}: {}", fs.value("device", ""), fs.value("problem", "")));
        }
    }
    const auto items = [&](const char* key) { return report.value(key, nlohmann::json::array()); };
    if (items("esp").empty()) {
        line("esp", "none (no /EFI/BOOT on any filesystem)");
    }
    for (const auto& esp : items("esp")) {
        std::vector<std::string> files;
        for (const auto& file : esp["boot_files"]) {
            files.push_back(file.get<std::string>());
        }
        line("esp", fmt::format("{}: {}; grub.cfg {}", located(esp),
                                files.empty() ? "no .EFI files" : util::join(files, " "),
                                esp.value("grub_cfg", false) ? "present" : "missing"));
    }
    for (const auto& menu : items("grub_cfg")) {
        line("grub.cfg", fmt::format("{} on {}", menu.value("path", ""), located(menu)));
    }
    for (const char* kind : {"kernel", "initrd"}) {
        if (items(kind).empty()) {
            line(kind, "not found");
        }
        for (const auto& item : items(kind)) {
            line(kind, fmt::format("{} on {} ({})", item.value("path", ""), located(item),
                                   util::format_bytes(item.value("size", std::uint64_t{0}))));
        }
    }
    if (items("squashfs").empty()) {
        line("squashfs", "not found (no /rootfs.squashfs)");
    }
    for (const auto& sq : items("squashfs")) {
        if (sq.contains("problem")) {
            line("squashfs", fmt::format("{} on {}: {}", sq.value("path", ""), located(sq),
                                         sq.value("problem", "")));
            continue;
        }
        std::string compression = sq.value("compression", "");
        if (sq.contains("compression_level")) {
            compression += fmt::format(" level {}", sq.value("compression_level", 0));
        }
        line("squashfs",
             fmt::format("{} on {}: {}, {}, block size {}, {} inodes, {} fragments, squashfs {}",
                         sq.value("path", ""), located(sq),
                         util::format_bytes(sq.value("size", std::uint64_t{0})), compression,
                         sq.value("block_size", 0), sq.value("inode_count", 0),
                         sq.value("fragment_count", 0), sq.value("version", "")));
    }
    if (items("user_data").empty()) {
        line("user-data", "not found (no /config.yaml, no *.yaml on COS_OEM)");
    }
    for (const auto& ud : items("user_data")) {
        if (ud.contains("problem")) {
            line("user-data", fmt::format("{} on {}: cannot read it: {}", ud.value("path", ""),
                                          located(ud), ud.value("problem", "")));
            continue;
        }
        line("user-data",
             fmt::format("{} on {}: {}, {} lines, sha256 {}", ud.value("path", ""), located(ud),
                         util::format_bytes(ud.value("size", std::uint64_t{0})),
                         ud.value("lines", 0), ud.value("sha256", "")));
        if (ud.contains("stylus_site")) {
            for (const auto& [key, value] : ud["stylus_site"].items()) {
                line("", fmt::format("stylus.site.{} = {}", key,
                                     value.is_string() ? value.get<std::string>() : value.dump()));
            }
        } else {
            for (const auto& text : ud.value("first_lines", nlohmann::json::array())) {
                line("", "| " + text.get<std::string>());
            }
        }
    }
    if (report.contains("libguestfs")) {
        const auto& g = report["libguestfs"];
        line("libguestfs",
             fmt::format("{} backend{}, appliance launched in {:.1f} s", g.value("backend", ""),
                         g.value("tcg", false) ? ", TCG" : "", g.value("launch_seconds", 0.0)));
    }
    return out;
}

} // namespace edgeforge::inspect
