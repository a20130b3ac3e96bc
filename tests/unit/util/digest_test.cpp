// Unit tests for util/digest.
#include <doctest/doctest.h>

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
