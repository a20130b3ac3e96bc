// Reads back what formats/iso_writer writes: the ISO 9660 volume descriptor and El Torito catalog.
#include "formats/iso_reader.h"

#include <fcntl.h>

#include <cstring>
#include <span>
#include <string_view>

#include <fmt/format.h>

#include "util/fd.h"
#include "util/bytes.h"

namespace edgeforge::formats {
namespace {

using util::le16;
using util::le32;
using util::le64;

using util::bytes_at;

std::string trim_padding(std::span<const std::uint8_t> bytes) {
    std::string text(bytes.begin(), bytes.end());
    const auto end = text.find_last_not_of(std::string_view(" \0", 2));
    return end == std::string::npos ? std::string() : text.substr(0, end + 1);
}

std::string platform_name(std::uint8_t id) {
    switch (id) {
    case 0x00:
        return "bios";
    case 0x01:
        return "powerpc";
    case 0x02:
        return "mac";
    case 0xEF:
        return "efi";
    default:
        return fmt::format("0x{:02x}", id);
    }
}

std::string emulation_name(std::uint8_t media) {
    switch (media & 0x0F) {
    case 0:
        return "none";
    case 1:
        return "1.2M floppy";
    case 2:
        return "1.44M floppy";
    case 3:
        return "2.88M floppy";
    case 4:
        return "hard disk";
    default:
        return fmt::format("0x{:02x}", media & 0x0F);
    }
}

ElToritoEntry boot_entry(std::span<const std::uint8_t> entry, std::uint8_t platform) {
    ElToritoEntry out;
    out.platform = platform_name(platform);
    out.bootable = entry[0] == 0x88;
    out.emulation = emulation_name(entry[1]);
    out.sector_count = le16(entry, 6);
    out.load_rba = le32(entry, 8);
    return out;
}

} // namespace

std::optional<IsoVolume>
read_iso_volume(const std::function<std::vector<std::uint8_t>(std::uint32_t)>& read_block) {
    const std::vector<std::uint8_t> pvd = read_block(16);
    if (pvd.size() < 2048 || pvd[0] != 1 || !bytes_at(pvd, 1, "CD001")) {
        return std::nullopt;
    }
    IsoVolume volume;
    volume.volume_id = trim_padding(std::span(pvd).subspan(40, 32));
    volume.volume_blocks = le32(pvd, 80);
    volume.block_size = le16(pvd, 128);
    volume.volume_bytes = static_cast<std::uint64_t>(volume.volume_blocks) * volume.block_size;
    volume.root_directory_block = le32(pvd, 156 + 2);
    volume.root_directory_bytes = le32(pvd, 156 + 10);
    const std::vector<std::uint8_t> record = read_block(17);
    if (record.size() < 2048 || record[0] != 0 || !bytes_at(record, 1, "CD001") ||
        !bytes_at(record, 7, "EL TORITO SPECIFICATION")) {
        return volume;
    }
    const std::uint32_t catalog_block = le32(record, 0x47);
    volume.boot_catalog_block = catalog_block;
    const std::vector<std::uint8_t> catalog = read_block(catalog_block);
    // The validation entry: header id 1 and key 55 AA.
    if (catalog.size() < 2048 || catalog[0] != 1 || catalog[30] != 0x55 || catalog[31] != 0xAA) {
        return volume;
    }
    const std::span<const std::uint8_t> entries(catalog);
    volume.boot_entries.push_back(boot_entry(entries.subspan(32, 32), catalog[1]));
    std::size_t at = 64;
    while (at + 32 <= catalog.size()) {
        const std::uint8_t header = catalog[at];
        if (header != 0x90 && header != 0x91) {
            break;
        }
        const std::uint8_t platform = catalog[at + 1];
        const std::uint16_t count = le16(entries, at + 2);
        at += 32;
        for (std::uint16_t i = 0; i < count && at + 32 <= catalog.size(); ++i, at += 32) {
            // Section entry extensions (0x44) continue the previous entry's selection criteria.
            if (catalog[at] == 0x44) {
                --i;
                continue;
            }
            volume.boot_entries.push_back(boot_entry(entries.subspan(at, 32), platform));
        }
        if (header == 0x91) {
            break;
        }
    }
    return volume;
}

std::optional<IsoVolume> read_iso_volume_file(const std::filesystem::path& path) {
    util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        return std::nullopt;
    }
    return read_iso_volume([&](std::uint32_t block) {
        std::vector<std::uint8_t> bytes(2048);
        if (!util::pread_exact(fd.get(), bytes.data(), bytes.size(),
                               static_cast<std::uint64_t>(block) * 2048)) {
            bytes.clear();
        }
        return bytes;
    });
}

} // namespace edgeforge::formats
