// Unit tests for formats/raw_reader: data chunks found past holes and zeros, and bad input.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "formats/raw_reader.h"
#include "support/data.h"
#include "support/disk_images.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;

TEST_CASE("RawImageReader yields the chunks with data, skipping holes and zeros") {
    util::TempDir dir;
    // 10 chunks of 4 KiB and a half one; data in chunks 0, 3 (two bytes), 6 and 10; chunk 5
    // holds zeros written as data.
    testing::RawDisk raw(dir.path() / "disk.raw", 10 * 4096 + 2048);
    raw.write(0, "first")
        .write(3 * 4096 + 10, "a")
        .write(4 * 4096 - 1, "b")
        .write_zeros(5 * 4096, 4096)
        .write(6 * 4096, testing::pseudo_random_bytes(4096, 5))
        .write(10 * 4096 + 2047, "e");

    formats::RawImageReader reader(raw.path(), 4096);
    CHECK(reader.size() == 10 * 4096 + 2048);
    CHECK(reader.chunk_count() == 11);
    std::vector<std::uint64_t> indexes;
    std::string last;
    while (const auto chunk = reader.next_data_chunk()) {
        CHECK(chunk->bytes.size() == 4096);
        indexes.push_back(chunk->index);
        last.assign(chunk->bytes.begin(), chunk->bytes.end());
    }
    CHECK(indexes == std::vector<std::uint64_t>{0, 3, 6, 10});
    // The partial last chunk is padded with zeros.
    CHECK(last == std::string(2047, '\0') + "e" + std::string(2048, '\0'));
    CHECK_FALSE(reader.next_data_chunk());
}

TEST_CASE("RawImageReader finds nothing in an image of holes") {
    util::TempDir dir;
    testing::RawDisk raw(dir.path() / "disk.raw", 64 << 20);
    formats::RawImageReader reader(raw.path(), 65536);
    CHECK_FALSE(reader.next_data_chunk());
}

TEST_CASE("RawImageReader rejects files that are not disk images") {
    util::TempDir dir;
    testing::RawDisk odd(dir.path() / "odd.raw", 513);
    const std::string message =
        testing::error_of([&] { formats::RawImageReader(odd.path(), 4096); }, ExitCode::bad_input);
    CHECK(message.find(odd.path().string()) != std::string::npos);
    CHECK(message.find("513 bytes") != std::string::npos);
}
