// Fields and magic strings of on-disk structures: little-endian (ISO 9660, squashfs, GPT, MBR,
// VMDK) and big-endian (QCOW2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

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

inline std::uint32_t be32(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint32_t>(bytes[at]) << 24 |
           static_cast<std::uint32_t>(bytes[at + 1]) << 16 |
           static_cast<std::uint32_t>(bytes[at + 2]) << 8 | static_cast<std::uint32_t>(bytes[at + 3]);
}

inline std::uint64_t be64(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint64_t>(be32(bytes, at)) << 32 | be32(bytes, at + 4);
}

// The bytes of a string (a built structure held as std::string), for the readers above.
inline std::span<const std::uint8_t> byte_span(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

// Overwrites 2 or 4 bytes of `bytes` at `at` (which must fit) with `value`, little-endian.
inline void store_le16(std::string& bytes, std::size_t at, std::uint16_t value) {
    bytes[at] = static_cast<char>(value & 0xff);
    bytes[at + 1] = static_cast<char>(value >> 8);
}
inline void store_le32(std::string& bytes, std::size_t at, std::uint32_t value) {
    store_le16(bytes, at, static_cast<std::uint16_t>(value & 0xffff));
    store_le16(bytes, at + 2, static_cast<std::uint16_t>(value >> 16));
}

// Whether `magic` stands at `at` (false when the bytes end before it).
inline bool bytes_at(std::span<const std::uint8_t> bytes, std::size_t at, std::string_view magic) {
    return bytes.size() >= at && bytes.size() - at >= magic.size() &&
           std::memcmp(bytes.data() + at, magic.data(), magic.size()) == 0;
}

} // namespace util
