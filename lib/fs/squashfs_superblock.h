// Reads a squashfs 4.0 superblock (as fs/squashfs writes it) and the compressor options after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace edgeforge::fs {

// The fields of a squashfs 4.0 superblock (the first 96 bytes of the filesystem, little-endian)
// that say what the filesystem is.
struct SquashfsSuperblock {
    std::uint32_t inode_count = 0;
    std::uint32_t modification_time = 0;
    std::uint32_t block_size = 0;
    std::uint32_t fragment_count = 0;
    std::uint16_t compression_id = 0;
    std::uint16_t flags = 0;
    std::uint16_t id_count = 0;
    std::uint16_t version_major = 0;
    std::uint16_t version_minor = 0;
    std::uint64_t bytes_used = 0;
    // From the compressor options that follow the superblock (flag 0x400), when present and
    // given: the level of gzip, lzo and zstd, the dictionary size of xz.
    std::optional<std::uint32_t> compression_level;
    std::optional<std::uint32_t> xz_dictionary_size;

    // "gzip", "lzma", "lzo", "xz", "lz4", "zstd".
    std::string_view compression() const;
};

struct SquashfsParse {
    std::optional<SquashfsSuperblock> superblock;
    std::string problem; // why there is no superblock: "too short", "bad magic", ...
};

// Parses the 96-byte superblock; checks the magic, the version (4.0), the compressor id and that
// the block size is a power of two between 4 KiB and 1 MiB matching its log field. Given the
// k_squashfs_head_bytes, it also reads the compressor options stored right after it.
inline constexpr std::size_t k_squashfs_head_bytes = 96 + 2 + 8;
SquashfsParse parse_squashfs_superblock(std::span<const std::uint8_t> bytes);

} // namespace edgeforge::fs
