// Azure fixed VHDs: the raw disk followed by the 512-byte VHD footer (Virtual Hard Disk Image
// Format Specification, version 1.0).
#include "formats/vhd.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

#include "base/error.h"
#include "util/fd.h"
#include "util/fs.h"

namespace edgeforge::formats {
namespace {

constexpr std::size_t k_checksum_offset = 64;

void put_be(std::uint8_t* at, std::uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) {
        at[i] = static_cast<std::uint8_t>(value & 0xff);
        value >>= 8;
    }
}

} // namespace

VhdGeometry vhd_geometry(std::uint64_t disk_size) {
    std::uint64_t total = disk_size / 512;
    total = std::min<std::uint64_t>(total, 65535ULL * 16 * 255);
    std::uint64_t sectors = 0;
    std::uint64_t heads = 0;
    std::uint64_t cylinder_times_heads = 0;
    if (total >= 65535ULL * 16 * 63) {
        sectors = 255;
        heads = 16;
        cylinder_times_heads = total / sectors;
    } else {
        sectors = 17;
        cylinder_times_heads = total / sectors;
        heads = std::max<std::uint64_t>((cylinder_times_heads + 1023) / 1024, 4);
        if (cylinder_times_heads >= heads * 1024 || heads > 16) {
            sectors = 31;
            heads = 16;
            cylinder_times_heads = total / sectors;
        }
        if (cylinder_times_heads >= heads * 1024) {
            sectors = 63;
            heads = 16;
            cylinder_times_heads = total / sectors;
        }
    }
    return {static_cast<std::uint16_t>(cylinder_times_heads / heads),
            static_cast<std::uint8_t>(heads), static_cast<std::uint8_t>(sectors)};
}

std::uint32_t vhd_footer_checksum(const std::array<std::uint8_t, k_vhd_footer_size>& footer) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < footer.size(); ++i) {
        if (i < k_checksum_offset || i >= k_checksum_offset + 4) {
            sum += footer[i];
        }
    }
    return ~sum;
}

std::array<std::uint8_t, k_vhd_footer_size> make_vhd_footer(const VhdFooterOptions& options) {
    std::array<std::uint8_t, k_vhd_footer_size> footer{};
    std::uint8_t* f = footer.data();
    std::memcpy(f, "conectix", 8);
    put_be(f + 8, 2, 4); // features: the reserved bit the specification says is always set
    put_be(f + 12, 0x00010000, 4);        // file format version 1.0
    put_be(f + 16, ~std::uint64_t{0}, 8); // data offset: none, a fixed disk
    const std::int64_t since_2000 = std::max<std::int64_t>(options.timestamp - k_vhd_epoch, 0);
    put_be(f + 24, static_cast<std::uint64_t>(std::min<std::int64_t>(since_2000, 0xffffffff)), 4);
    // Creator: readers decide from it whether the disk size is the footer's current size or its
    // CHS geometry (qemu's vpc driver takes the geometry for unknown creators, and a geometry
    // rarely covers a whole-MiB disk, so the backup GPT would fall off the end). "win " (Hyper-V,
    // which Azure's own tools write too) is one every reader sizes by the current size.
    std::memcpy(f + 28, "win ", 4);
    put_be(f + 32, 0x000a0000, 4);        // creator version 10.0
    std::memcpy(f + 36, "Wi2k", 4);       // creator host OS
    put_be(f + 40, options.disk_size, 8); // original size
    put_be(f + 48, options.disk_size, 8); // current size
    const VhdGeometry geometry = vhd_geometry(options.disk_size);
    put_be(f + 56, geometry.cylinders, 2);
    f[58] = geometry.heads;
    f[59] = geometry.sectors_per_track;
    put_be(f + 60, 2, 4); // disk type: fixed
    // The unique id is stored in its text order, as Windows and qemu write it.
    std::copy(options.unique_id.bytes.begin(), options.unique_id.bytes.end(), f + 68);
    f[84] = 0; // saved state: none
    put_be(f + k_checksum_offset, vhd_footer_checksum(footer), 4);
    return footer;
}

void append_vhd_footer(const std::filesystem::path& raw, const VhdFooterOptions& options) {
    if (options.disk_size == 0 || options.disk_size % k_vhd_size_alignment != 0) {
        throw bad_input("the VHD data part of {} is {} bytes, not a whole number of MiB as Azure "
                        "requires",
                        raw.string(), options.disk_size);
    }
    const auto footer = make_vhd_footer(options);
    util::FileDescriptor fd(::open(raw.c_str(), O_WRONLY | O_CLOEXEC));
    try {
        if (!fd.valid()) {
            throw std::system_error(errno, std::generic_category(), "open");
        }
        util::pwrite_exact(fd.get(), footer.data(), footer.size(), options.disk_size);
        if (::fsync(fd.get()) != 0) {
            throw std::system_error(errno, std::generic_category(), "fsync");
        }
    } catch (const std::system_error& error) {
        throw build_failed("cannot write the VHD footer of {}: {}", raw.string(),
                           error.code().message());
    }
}

} // namespace edgeforge::formats
