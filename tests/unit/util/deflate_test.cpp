// Unit tests for util/deflate: round trips through zlib's inflate, and output that does not fit.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include <zlib.h>

#include "support/data.h"
#include "util/deflate.h"

namespace {

// Inflates a complete stream with the given window bits (negative: raw deflate).
std::string inflate_all(const std::vector<std::uint8_t>& compressed, std::size_t size,
                        int window_bits) {
    z_stream stream{};
    REQUIRE(inflateInit2(&stream, window_bits) == Z_OK);
    std::string out(size, '\0');
    stream.next_in = const_cast<Bytef*>(compressed.data());
    stream.avail_in = static_cast<uInt>(compressed.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    const int result = inflate(&stream, Z_FINISH);
    inflateEnd(&stream);
    CHECK(result == Z_STREAM_END);
    CHECK(stream.avail_out == 0);
    return out;
}

std::span<const std::uint8_t> bytes_of(const std::string& text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

} // namespace

TEST_CASE("Deflater output inflates back, raw with a small window and zlib-wrapped") {
    const std::string text = std::string(30000, 'a') + "edgeforge" + std::string(30000, 'b');
    util::Deflater raw(util::DeflateFormat::raw, 12);
    std::vector<std::uint8_t> out(raw.bound(text.size()));
    const auto raw_size = raw.compress(bytes_of(text), out);
    REQUIRE(raw_size.has_value());
    CHECK(*raw_size < 1000);
    out.resize(*raw_size);
    CHECK(inflate_all(out, text.size(), -12) == text);

    util::Deflater wrapped(util::DeflateFormat::zlib);
    std::vector<std::uint8_t> zlib_out(wrapped.bound(text.size()));
    const auto zlib_size = wrapped.compress(bytes_of(text), zlib_out);
    REQUIRE(zlib_size.has_value());
    zlib_out.resize(*zlib_size);
    CHECK(inflate_all(zlib_out, text.size(), 15) == text);

    // Each block is a stream of its own: the same input compresses the same again.
    std::vector<std::uint8_t> again(wrapped.bound(text.size()));
    const auto again_size = wrapped.compress(bytes_of(text), again);
    REQUIRE(again_size == zlib_size);
    again.resize(*again_size);
    CHECK(again == zlib_out);
}

TEST_CASE("Deflater says when the output does not fit") {
    const std::string noise = edgeforge::testing::pseudo_random_bytes(65536, 9);
    util::Deflater deflater(util::DeflateFormat::raw, 12);
    std::vector<std::uint8_t> out(noise.size() - 1);
    CHECK_FALSE(deflater.compress(bytes_of(noise), out).has_value());
    std::vector<std::uint8_t> enough(deflater.bound(noise.size()));
    CHECK(deflater.compress(bytes_of(noise), enough).has_value());
}

TEST_CASE("ISA-L Deflater: zlib streams that inflate back, within its bound on noise") {
    util::Deflater fast(util::DeflateFormat::zlib, 15, util::DeflateEngine::isal);
    const std::string text = std::string(30000, 'a') + "edgeforge" + std::string(30000, 'b');
    const std::string noise = edgeforge::testing::pseudo_random_bytes(65536, 3);
    for (const std::string& input : {text, noise, std::string()}) {
        std::vector<std::uint8_t> out(fast.bound(input.size()));
        const auto size = fast.compress(bytes_of(input), out);
        REQUIRE(size.has_value());
        out.resize(*size);
        CHECK(inflate_all(out, input.size(), 15) == input);
        // The same input gives the same stream again (reproducible outputs).
        std::vector<std::uint8_t> again(fast.bound(input.size()));
        const auto again_size = fast.compress(bytes_of(input), again);
        REQUIRE(again_size == size);
        again.resize(*again_size);
        CHECK(again == out);
    }
    std::vector<std::uint8_t> small(noise.size() / 2);
    CHECK_FALSE(fast.compress(bytes_of(noise), small).has_value());
    CHECK_THROWS_AS(util::Deflater(util::DeflateFormat::raw, 12, util::DeflateEngine::isal),
                    std::invalid_argument);
}
