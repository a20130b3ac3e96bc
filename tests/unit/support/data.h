// Test support: where the fixture images are, and deterministic test bytes.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace edgeforge::testing {

// The fixture cache of tests/fixtures/build-fixtures: $EDGEFORGE_FIXTURES_DIR, else
// $XDG_CACHE_HOME/edgeforge/fixtures, else ~/.cache/edgeforge/fixtures.
inline std::filesystem::path fixtures_dir() {
    if (const char* dir = std::getenv("EDGEFORGE_FIXTURES_DIR"); dir != nullptr && *dir != '\0') {
        return dir;
    }
    if (const char* cache = std::getenv("XDG_CACHE_HOME"); cache != nullptr && *cache != '\0') {
        return std::filesystem::path(cache) / "edgeforge" / "fixtures";
    }
    const char* home = std::getenv("HOME");
    return std::filesystem::path(home != nullptr ? home : "/") / ".cache" / "edgeforge" /
           "fixtures";
}

// `size` pseudo-random (incompressible, reproducible) bytes.
inline std::string pseudo_random_bytes(std::size_t size, unsigned seed) {
    std::string out(size, '\0');
    unsigned state = seed * 2654435761u + 1;
    for (auto& c : out) {
        state = state * 1103515245u + 12345u;
        c = static_cast<char>(state >> 24);
    }
    return out;
}

} // namespace edgeforge::testing
