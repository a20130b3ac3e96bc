// Test support: building on-disk structures byte by byte (little- and big-endian fields, magic
// strings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace edgeforge::testing {

inline std::vector<std::uint8_t> zeros(std::size_t size) {
    return std::vector<std::uint8_t>(size, 0);
}

inline void put(std::vector<std::uint8_t>& bytes, std::size_t at, std::string_view text) {
    std::memcpy(bytes.data() + at, text.data(), text.size());
}

inline void put16(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint16_t value) {
    bytes[at] = static_cast<std::uint8_t>(value);
    bytes[at + 1] = static_cast<std::uint8_t>(value >> 8);
}

inline void put32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t value) {
    for (std::size_t i = 0; i < 4; ++i) {
        bytes[at + i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

inline void put_be32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t value) {
    for (std::size_t i = 0; i < 4; ++i) {
        bytes[at + i] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
    }
}

inline void put_be64(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint64_t value) {
    put_be32(bytes, at, static_cast<std::uint32_t>(value >> 32));
    put_be32(bytes, at + 4, static_cast<std::uint32_t>(value));
}

} // namespace edgeforge::testing
