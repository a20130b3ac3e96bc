// Unit tests for util/background_sink.
#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "util/background_sink.h"

namespace {

std::string pattern(std::size_t size) {
    std::string bytes;
    for (std::size_t i = 0; i < size; ++i) {
        bytes += static_cast<char>(i * 7 + i / 251);
    }
    return bytes;
}

} // namespace

TEST_CASE("BackgroundSink passes the bytes and zeros on in the order given") {
    const std::string bytes = pattern(200000);
    for (const std::size_t bound : {std::size_t{1}, std::size_t{4096}, std::size_t{16} << 20}) {
        CAPTURE(bound);
        std::string consumed; // only the worker touches it until finish() returns
        util::BackgroundSink sink(
            [&](const std::uint8_t* data, std::size_t size) {
                consumed.append(reinterpret_cast<const char*>(data), size);
            },
            bound);
        std::string expected;
        std::size_t at = 0;
        for (const std::size_t piece : {std::size_t{1}, std::size_t{5000}, std::size_t{194999}}) {
            sink.update(bytes.data() + at, piece);
            expected.append(bytes, at, piece);
            at += piece;
            sink.update_zeros(70000 + piece);
            expected.append(70000 + piece, '\0');
        }
        sink.update(bytes.data(), 0);
        sink.update_zeros(0);
        sink.finish();
        CHECK(consumed.size() == expected.size());
        CHECK(consumed == expected);
    }
}

TEST_CASE("BackgroundSink gives the consumer's exception to the caller and drops the rest") {
    const std::string bytes = pattern(4096);
    std::atomic<int> calls{0};
    const auto failing = [&](const std::uint8_t*, std::size_t) {
        if (++calls == 3) {
            throw std::runtime_error("disk full");
        }
    };
    SUBCASE("from a later update()") {
        util::BackgroundSink sink(failing, 4096); // one piece at a time: update() waits
        bool thrown = false;
        for (int i = 0; i < 100 && !thrown; ++i) {
            try {
                sink.update(bytes.data(), bytes.size());
            } catch (const std::runtime_error& error) {
                CHECK(std::string(error.what()) == "disk full");
                thrown = true;
            }
        }
        CHECK(thrown);
        CHECK(calls == 3); // nothing consumed after the failure
    }
    SUBCASE("from finish()") {
        util::BackgroundSink sink(failing, std::size_t{1} << 20);
        for (int i = 0; i < 3; ++i) {
            sink.update(bytes.data(), bytes.size()); // all fit: none of them waits
        }
        CHECK_THROWS_WITH_AS(sink.finish(), "disk full", std::runtime_error);
    }
}

TEST_CASE("BackgroundSink destroyed without finish() stops its worker") {
    std::atomic<std::size_t> consumed{0};
    {
        util::BackgroundSink sink([&](const std::uint8_t*, std::size_t size) { consumed += size; },
                                  1);
        const std::string bytes = pattern(1000);
        for (int i = 0; i < 50; ++i) {
            sink.update(bytes.data(), bytes.size());
        }
    } // the destructor drops what is queued and joins
    CHECK(consumed <= 50 * 1000);
    CHECK(consumed >= 49 * 1000); // with a bound of 1, at most one piece was still queued
}
