// Little-endian fields of on-disk structures (ISO 9660, squashfs, GPT, MBR), read from bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace util {

inline std::uint16_t le16(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint16_t>(bytes[at] | bytes[at + 1] << 8);
}

inline std::uint32_t le32(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint32_t>(bytes[at]) | static_cast<std::uint32_t>(bytes[at + 1]) << 8 |
           static_cast<std::uint32_t>(bytes[at + 2]) << 16 |
           static_cast<std::uint32_t>(bytes[at + 3]) << 24;
}

inline std::uint64_t le64(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint64_t>(le32(bytes, at)) |
           static_cast<std::uint64_t>(le32(bytes, at + 4)) << 32;
}

} // namespace util
