// Unit tests for util/gunzip: the background inflater against zlib-made gzip streams.
#include <doctest/doctest.h>

#include <zlib.h>
#include <zstd.h>

#include <random>
#include <stdexcept>
#include <string>

#include "util/background_reader.h"

namespace {

std::string gzip(const std::string& data, int level = 6) {
    z_stream stream{};
    REQUIRE(deflateInit2(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&stream, static_cast<uLong>(data.size())) + 64, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

std::string zstd(const std::string& data, int level = 3) {
    std::string out(ZSTD_compressBound(data.size()), '\0');
    const std::size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
    REQUIRE_FALSE(ZSTD_isError(size));
    out.resize(size);
    return out;
}

// Half text, half random bytes: compressible and incompressible stretches.
std::string sample(std::size_t size, unsigned seed) {
    std::mt19937 random(seed);
    std::string data;
    data.reserve(size);
    while (data.size() < size) {
        if ((data.size() / 100000) % 2 == 0) {
            data += "edgeforge layer line " + std::to_string(data.size()) + "\n";
        } else {
            data += static_cast<char>(random() & 0xff);
        }
    }
    data.resize(size);
    return data;
}

struct Result {
    std::string output;
    std::string error;
    std::size_t read = 0;
};

// Feeds `compressed` in chunks of `chunk` bytes; small blocks exercise every boundary.
Result inflate(const std::string& compressed, std::size_t chunk = 7000, std::size_t block = 4096,
               util::BackgroundReader::Decode decode = util::BackgroundReader::Decode::gzip) {
    Result result;
    std::size_t offset = 0;
    util::BackgroundReader gunzip(
        [&](char* buffer, std::size_t capacity) {
            const std::size_t n = std::min({chunk, capacity, compressed.size() - offset});
            std::copy_n(compressed.data() + offset, n, buffer);
            offset += n;
            result.read += n;
            return n;
        },
        decode, block, 3);
    for (std::string_view part = gunzip.next(); !part.empty(); part = gunzip.next()) {
        result.output += part;
    }
    result.error = gunzip.error();
    return result;
}

} // namespace

TEST_CASE("gunzip inflates what zlib compressed, across every chunk and block boundary") {
    const std::string data = sample(1'500'000, 1);
    const std::string compressed = gzip(data);
    for (const std::size_t chunk : {std::size_t{1} << 20, std::size_t{7000}, std::size_t{1}}) {
        if (chunk == 1 && compressed.size() > 300'000) {
            // byte-at-a-time on a shorter stream keeps the test quick
            const std::string small = sample(200'000, 2);
            const Result result = inflate(gzip(small), 1);
            CHECK(result.error.empty());
            CHECK(result.output == small);
            continue;
        }
        CAPTURE(chunk);
        const Result result = inflate(compressed, chunk);
        CHECK(result.error.empty());
        CHECK(result.output.size() == data.size());
        CHECK(result.output == data);
        CHECK(result.read == compressed.size());
    }
}

TEST_CASE("gunzip: concatenated members are one stream; bytes after the last are read") {
    const std::string a = sample(300'000, 3);
    const std::string b = sample(200'000, 4);
    const std::string padding(1024, '\0');
    const std::string compressed = gzip(a) + gzip(b, 1) + padding;
    const Result result = inflate(compressed);
    CHECK(result.error.empty());
    CHECK(result.output == a + b);
    CHECK(result.read == compressed.size()); // the padding too: the caller's digest covers it
}

TEST_CASE("gunzip: truncated and corrupt streams end with an error, not with short data") {
    const std::string data = sample(400'000, 5);
    const std::string compressed = gzip(data);
    const Result truncated = inflate(compressed.substr(0, compressed.size() / 2));
    CHECK(truncated.error == "truncated gzip input");
    CHECK(truncated.output.size() < data.size());

    std::string bad_crc = compressed;
    bad_crc[bad_crc.size() - 6] = static_cast<char>(bad_crc[bad_crc.size() - 6] ^ 0x55);
    CHECK(inflate(bad_crc).error == "gzip CRC mismatch (the layer is corrupt)");

    std::string bad_data = compressed;
    for (std::size_t i = 100; i < 200; ++i) {
        bad_data[i] = static_cast<char>(0xff);
    }
    const Result garbage = inflate(bad_data);
    CHECK_FALSE(garbage.error.empty());
}

TEST_CASE("gunzip: an exception of the source reaches the consumer") {
    util::BackgroundReader gunzip([](char*, std::size_t) -> std::size_t {
        throw std::runtime_error("disk on fire");
    });
    CHECK_THROWS_WITH(gunzip.next(), "disk on fire");
}

TEST_CASE("gunzip: a consumer that stops early does not hang") {
    const std::string compressed = gzip(sample(2'000'000, 6));
    std::size_t offset = 0;
    {
        util::BackgroundReader gunzip(
            [&](char* buffer, std::size_t capacity) {
                const std::size_t n = std::min(capacity, compressed.size() - offset);
                std::copy_n(compressed.data() + offset, n, buffer);
                offset += n;
                return n;
            },
            util::BackgroundReader::Decode::gzip, 4096, 2);
        CHECK_FALSE(gunzip.next().empty());
    } // the destructor stops the worker, which waits for a free block
    CHECK(offset < compressed.size());
}

TEST_CASE("background reader without decoding hands on every byte in order, all of the source") {
    const std::string data = sample(300'000, 3) + gzip("not inflated");
    for (const std::size_t chunk : {std::size_t{1000}, std::size_t{4096}, std::size_t{100'000}}) {
        CAPTURE(chunk);
        const Result result = inflate(data, chunk, 4096, util::BackgroundReader::Decode::none);
        CHECK(result.error.empty());
        CHECK(result.read == data.size());
        CHECK(result.output == data);
    }
}

TEST_CASE("zstd: frames decompress across every chunk and block boundary, padding is read") {
    using Decode = util::BackgroundReader::Decode;
    const std::string a = sample(700'000, 11);
    const std::string b = sample(90'000, 12);
    // A skippable frame between the two (magic 0x184D2A50, 4 bytes of length, then the bytes).
    const std::string skippable("\x50\x2a\x4d\x18\x03\x00\x00\x00xyz", 11);
    const std::string padding(1024, '\0');
    const std::string compressed = zstd(a) + skippable + zstd(b, 19) + padding;
    for (const std::size_t chunk : {std::size_t{1}, std::size_t{4093}, std::size_t{1} << 20}) {
        const Result result = inflate(compressed, chunk, 4096, Decode::zstd);
        CHECK(result.error.empty());
        CHECK(result.output == a + b);
        CHECK(result.read == compressed.size());
    }
    CHECK(util::looks_like_zstd(compressed));
    CHECK_FALSE(util::looks_like_zstd(gzip(a)));
}

TEST_CASE("zstd: truncated and corrupt streams end with an error") {
    using Decode = util::BackgroundReader::Decode;
    const std::string data = sample(400'000, 13);
    const std::string compressed = zstd(data);
    const Result truncated =
        inflate(compressed.substr(0, compressed.size() / 2), 7000, 4096, Decode::zstd);
    CHECK(truncated.error == "truncated zstd input");
    std::string bad = compressed;
    for (std::size_t i = 40; i < 400; ++i) {
        bad[i] = static_cast<char>(0xff);
    }
    CHECK(inflate(bad, 7000, 4096, Decode::zstd).error.starts_with("invalid zstd data"));
}
