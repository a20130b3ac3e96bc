// Byte units and rounding to a multiple: the one definition every disk, partition and image
// writer uses.
#pragma once

#include <cstdint>

namespace util {

inline constexpr std::uint64_t k_kib = std::uint64_t{1} << 10;
inline constexpr std::uint64_t k_mib = std::uint64_t{1} << 20;
inline constexpr std::uint64_t k_gib = std::uint64_t{1} << 30;

// `value` rounded up to a multiple of `multiple` (> 0).
constexpr std::uint64_t round_up(std::uint64_t value, std::uint64_t multiple) {
    return (value + multiple - 1) / multiple * multiple;
}

// `value` / `divisor` (> 0), rounded up.
constexpr std::uint64_t divide_round_up(std::uint64_t value, std::uint64_t divisor) {
    return (value + divisor - 1) / divisor;
}

} // namespace util
