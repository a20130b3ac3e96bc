// Reads back what formats/iso_writer writes: the ISO 9660 volume descriptor and El Torito catalog.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace edgeforge::formats {

// One El Torito boot catalog entry (the initial entry and each section entry).
struct ElToritoEntry {
    std::string platform;  // "bios", "efi", "powerpc", "mac", or "0xNN"
    bool bootable = false; // boot indicator 0x88
    std::string emulation; // "none", "1.2M floppy", "1.44M floppy", "2.88M floppy", "hard disk"
    std::uint32_t load_rba = 0;     // 2048-byte block of the boot image
    std::uint16_t sector_count = 0; // 512-byte virtual sectors loaded
};

// The identity of an ISO 9660 image: its primary volume descriptor and boot catalog.
struct IsoVolume {
    std::string volume_id;
    std::uint64_t volume_bytes = 0; // volume space size x logical block size
    std::uint32_t volume_blocks = 0; // volume space size, in logical blocks
    std::uint16_t block_size = 0;    // logical block size (2048 in every ISO edgeforge reads)
    std::uint32_t root_directory_block = 0; // extent of the root directory record, in blocks
    std::uint32_t root_directory_bytes = 0; // and its data length
    std::optional<std::uint32_t> boot_catalog_block;
    std::vector<ElToritoEntry> boot_entries;
};

// Reads the primary volume descriptor (block 16), the El Torito boot record (block 17) and the
// boot catalog it points to from an ISO 9660 image read by `read_block` (2048 bytes of block
// N, or an empty vector past the end). nullopt when block 16 is no primary volume descriptor.
std::optional<IsoVolume>
read_iso_volume(const std::function<std::vector<std::uint8_t>(std::uint32_t)>& read_block);

// read_iso_volume of the image file at `path`; nullopt when it cannot be opened or holds no
// primary volume descriptor.
std::optional<IsoVolume> read_iso_volume_file(const std::filesystem::path& path);

} // namespace edgeforge::formats
