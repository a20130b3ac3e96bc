// Unit tests for fs/squashfs_superblock: the superblock fields, the compressor options after it
// and what is wrong with a bad superblock.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "fs/squashfs_superblock.h"
#include "support/bytes.h"

using namespace edgeforge;
using namespace edgeforge::fs;

namespace {

using edgeforge::testing::zeros;
using edgeforge::testing::put;
using edgeforge::testing::put16;
using edgeforge::testing::put32;

// A valid squashfs 4.0 superblock: zstd, 128 KiB blocks, 42 inodes.
std::vector<std::uint8_t> superblock() {
    auto bytes = zeros(96);
    put(bytes, 0, "hsqs");
    put32(bytes, 4, 42);
    put32(bytes, 8, 1700000000);
    put32(bytes, 12, 131072);
    put32(bytes, 16, 3);
    put16(bytes, 20, 6);
    put16(bytes, 22, 17);
    put16(bytes, 28, 4);
    put16(bytes, 30, 0);
    put32(bytes, 40, 123456);
    return bytes;
}

} // namespace

TEST_CASE("parse_squashfs_superblock reads the 96-byte superblock") {
    const auto parsed = parse_squashfs_superblock(superblock());
    REQUIRE(parsed.superblock);
    const SquashfsSuperblock& sb = *parsed.superblock;
    CHECK(sb.inode_count == 42);
    CHECK(sb.modification_time == 1700000000);
    CHECK(sb.block_size == 131072);
    CHECK(sb.fragment_count == 3);
    CHECK(sb.compression() == "zstd");
    CHECK(sb.version_major == 4);
    CHECK(sb.version_minor == 0);
    CHECK(sb.bytes_used == 123456);
    CHECK(parsed.problem.empty());

    const char* names[] = {"gzip", "lzma", "lzo", "xz", "lz4", "zstd"};
    for (std::uint16_t id = 1; id <= 6; ++id) {
        auto bytes = superblock();
        put16(bytes, 20, id);
        const auto with = parse_squashfs_superblock(bytes);
        REQUIRE(with.superblock);
        CHECK(with.superblock->compression() == names[id - 1]);
    }
}

TEST_CASE("parse_squashfs_superblock reads the compressor options after the superblock") {
    auto bytes = superblock();
    bytes.resize(k_squashfs_head_bytes, 0);
    put16(bytes, 24, 0x0400);     // compressor options present
    put16(bytes, 96, 0x8000 | 4); // uncompressed metadata block of 4 bytes
    put32(bytes, 98, 15);         // zstd level
    auto parsed = parse_squashfs_superblock(bytes);
    REQUIRE(parsed.superblock);
    CHECK(parsed.superblock->compression_level == 15u);

    put16(bytes, 20, 4); // xz: dictionary size, filters
    put16(bytes, 96, 0x8000 | 8);
    put32(bytes, 98, 1u << 20);
    parsed = parse_squashfs_superblock(bytes);
    REQUIRE(parsed.superblock);
    CHECK_FALSE(parsed.superblock->compression_level);
    CHECK(parsed.superblock->xz_dictionary_size == 1u << 20);

    // Without the flag, or with only the 96 bytes, there are no options to report.
    put16(bytes, 20, 6);
    put16(bytes, 24, 0);
    CHECK_FALSE(parse_squashfs_superblock(bytes).superblock->compression_level);
    put16(bytes, 24, 0x0400);
    CHECK_FALSE(
        parse_squashfs_superblock(std::span(bytes).first(96)).superblock->compression_level);
}

TEST_CASE("parse_squashfs_superblock says what is wrong with a bad superblock") {
    auto bytes = superblock();
    CHECK(parse_squashfs_superblock(std::span(bytes).first(95)).problem ==
          "too short for a squashfs superblock (95 of 96 bytes)");

    auto bad_magic = superblock();
    put(bad_magic, 0, "xxxx");
    CHECK(parse_squashfs_superblock(bad_magic).problem == "no squashfs magic (hsqs)");
    put(bad_magic, 0, "sqsh");
    CHECK(parse_squashfs_superblock(bad_magic).problem == "a big-endian squashfs (not supported)");

    auto old = superblock();
    put16(old, 28, 3);
    put16(old, 30, 1);
    CHECK(parse_squashfs_superblock(old).problem == "squashfs version 3.1 (only 4.0 is read)");

    auto compressor = superblock();
    put16(compressor, 20, 9);
    CHECK(parse_squashfs_superblock(compressor).problem == "unknown compressor id 9");

    auto block = superblock();
    put16(block, 22, 16);
    CHECK(parse_squashfs_superblock(block).problem == "inconsistent block size 131072 (log 16)");
    put16(block, 22, 21);
    put32(block, 12, 1u << 21);
    CHECK(parse_squashfs_superblock(block).problem == "inconsistent block size 2097152 (log 21)");
    CHECK_FALSE(parse_squashfs_superblock(block).superblock);
}
