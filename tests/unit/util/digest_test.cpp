// Unit tests for util/digest.
#include <doctest/doctest.h>

#include "util/background_hash.h"
#include "util/digest.h"
#include "util/fs.h"

TEST_CASE("sha256 matches the FIPS 180-2 test vectors") {
    CHECK(util::sha256_hex("") ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(util::sha256_hex("abc") ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("incremental and file hashing agree") {
    util::Sha256 hasher;
    hasher.update("a");
    hasher.update("bc");
    CHECK(hasher.finish_hex() == util::sha256_hex("abc"));
    util::TempDir dir;
    util::write_file_atomically(dir.path() / "f", "abc");
    CHECK(util::sha256_file_hex(dir.path() / "f") == util::sha256_hex("abc"));
}

TEST_CASE("xxh3_128_hex matches XXH3-128's published value for empty input") {
    // xxhsum -H2 of an empty file (XXH3_128bits, canonical big-endian form).
    CHECK(util::xxh3_128_hex("") == "99aa06d3014798d86001c324468d497f");
    CHECK(util::xxh3_128_hex("a") != util::xxh3_128_hex("b"));
    CHECK(util::xxh3_128_hex("edgeforge").size() == 32);
}

TEST_CASE("BackgroundSha256 gives the digest of the bytes and zeros in the order given") {
    std::string bytes;
    for (int i = 0; i < 300000; ++i) {
        bytes += static_cast<char>(i * 7 + i / 255);
    }
    // A bound smaller than most pieces: update() waits for the worker, and a piece over the
    // bound goes through alone.
    for (const std::size_t bound : {std::size_t{1}, std::size_t{4096}, std::size_t{16} << 20}) {
        CAPTURE(bound);
        util::BackgroundSha256 hash(bound);
        std::string expected;
        std::size_t at = 0;
        for (const std::size_t piece :
             {std::size_t{1}, std::size_t{5000}, std::size_t{100000}, std::size_t{194999}}) {
            hash.update(bytes.data() + at, piece);
            expected.append(bytes, at, piece);
            at += piece;
            hash.update_zeros(70000 + piece);
            expected.append(70000 + piece, '\0');
        }
        hash.update(bytes.data(), 0); // nothing
        hash.update_zeros(0);
        CHECK(hash.finish_hex() == util::sha256_hex(expected));
    }
    util::BackgroundSha256 unused; // destroyed without finish_hex: the worker stops
}
