// Azure fixed VHDs: the raw disk followed by the 512-byte VHD footer (Virtual Hard Disk Image
// Format Specification, version 1.0).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "fs/gpt.h"

namespace edgeforge::formats {

inline constexpr std::size_t k_vhd_footer_size = 512;
// VHD timestamps count seconds from 2000-01-01 00:00:00 UTC.
inline constexpr std::int64_t k_vhd_epoch = 946684800;

struct VhdGeometry {
    std::uint16_t cylinders = 0;
    std::uint8_t heads = 0;
    std::uint8_t sectors_per_track = 0;
    friend bool operator==(const VhdGeometry&, const VhdGeometry&) = default;
};

// The CHS geometry the VHD specification's algorithm (appendix "CHS Calculation") gives a disk of
// `disk_size` bytes; disks over 65535 x 16 x 255 sectors get that maximum.
VhdGeometry vhd_geometry(std::uint64_t disk_size);

struct VhdFooterOptions {
    std::uint64_t disk_size = 0; // bytes of data before the footer, a whole number of sectors
    // Seconds since the Unix epoch; the footer stores them relative to 2000-01-01 (times before
    // that are stored as 0).
    std::int64_t timestamp = 0;
    fs::Guid unique_id;
};

// The footer of a fixed VHD of `disk_size` bytes: cookie "conectix", features 2 (reserved bit),
// format version 1.0, data offset all ones (fixed disks have no dynamic header), the timestamp,
// creator "win " 10.0 on "Wi2k" (see vhd.cpp for why), original and current size, the CHS
// geometry, disk type 2 (fixed), the one's complement checksum, the unique id, saved state 0.
std::array<std::uint8_t, k_vhd_footer_size> make_vhd_footer(const VhdFooterOptions& options);

// The checksum the specification defines: the one's complement of the sum of the footer's bytes
// with its checksum field (offset 64, 4 bytes) taken as zero.
std::uint32_t vhd_footer_checksum(const std::array<std::uint8_t, k_vhd_footer_size>& footer);

// Azure wants the virtual size of a VHD to be a whole number of MiB.
inline constexpr std::uint64_t k_vhd_size_alignment = std::uint64_t{1} << 20;

// Turns the raw disk `raw` (its size a whole number of MiB) into a fixed VHD in place: the footer
// is appended after its last byte. Error (bad input) for a size that is not whole MiB; Error
// (build failed) when writing fails.
void append_vhd_footer(const std::filesystem::path& raw, const VhdFooterOptions& options);

} // namespace edgeforge::formats
