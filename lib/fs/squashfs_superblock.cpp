// Reads a squashfs 4.0 superblock (as fs/squashfs writes it) and the compressor options after it.
#include "fs/squashfs_superblock.h"

#include <cstring>

#include <fmt/format.h>

#include "util/bytes.h"

namespace edgeforge::fs {
namespace {

using util::le16;
using util::le32;
using util::le64;

using util::bytes_at;

} // namespace

std::string_view SquashfsSuperblock::compression() const {
    switch (compression_id) {
    case 1:
        return "gzip";
    case 2:
        return "lzma";
    case 3:
        return "lzo";
    case 4:
        return "xz";
    case 5:
        return "lz4";
    case 6:
        return "zstd";
    default:
        return "unknown";
    }
}

SquashfsParse parse_squashfs_superblock(std::span<const std::uint8_t> bytes) {
    SquashfsParse out;
    if (bytes.size() < 96) {
        out.problem =
            fmt::format("too short for a squashfs superblock ({} of 96 bytes)", bytes.size());
        return out;
    }
    if (!bytes_at(bytes, 0, "hsqs")) {
        out.problem = bytes_at(bytes, 0, "sqsh") ? "a big-endian squashfs (not supported)"
                                                 : "no squashfs magic (hsqs)";
        return out;
    }
    SquashfsSuperblock sb;
    sb.inode_count = le32(bytes, 4);
    sb.modification_time = le32(bytes, 8);
    sb.block_size = le32(bytes, 12);
    sb.fragment_count = le32(bytes, 16);
    sb.compression_id = le16(bytes, 20);
    const std::uint16_t block_log = le16(bytes, 22);
    sb.flags = le16(bytes, 24);
    sb.id_count = le16(bytes, 26);
    sb.version_major = le16(bytes, 28);
    sb.version_minor = le16(bytes, 30);
    sb.bytes_used = le64(bytes, 40);
    if (sb.version_major != 4 || sb.version_minor != 0) {
        out.problem = fmt::format("squashfs version {}.{} (only 4.0 is read)", sb.version_major,
                                  sb.version_minor);
        return out;
    }
    if (sb.compression() == "unknown") {
        out.problem = fmt::format("unknown compressor id {}", sb.compression_id);
        return out;
    }
    if (block_log < 12 || block_log > 20 || sb.block_size != (1u << block_log)) {
        out.problem = fmt::format("inconsistent block size {} (log {})", sb.block_size, block_log);
        return out;
    }
    // Compressor options: a metadata block (2-byte header, stored uncompressed) of 8 bytes.
    constexpr std::uint16_t k_compressor_options = 0x0400;
    if ((sb.flags & k_compressor_options) != 0 && bytes.size() >= k_squashfs_head_bytes &&
        (le16(bytes, 96) & 0x8000) != 0) {
        const std::size_t length = le16(bytes, 96) & 0x7FFF;
        if (sb.compression_id == 1 || sb.compression_id == 6) { // gzip, zstd: level first
            sb.compression_level = length >= 4 ? std::optional(le32(bytes, 98)) : std::nullopt;
        } else if (sb.compression_id == 3 && length >= 8) { // lzo: algorithm, level
            sb.compression_level = le32(bytes, 102);
        } else if (sb.compression_id == 4 && length >= 4) { // xz: dictionary size, filters
            sb.xz_dictionary_size = le32(bytes, 98);
        }
    }
    out.superblock = sb;
    return out;
}

} // namespace edgeforge::fs
