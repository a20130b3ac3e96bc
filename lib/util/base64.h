// Base64 (RFC 4648, standard alphabet, padded) for checksums and credentials in HTTP headers.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace util {

std::string base64_encode(std::span<const std::uint8_t> bytes);
std::string base64_encode(std::string_view bytes);
// The decoded bytes, or nothing when `text` is not padded standard base64.
std::optional<std::string> base64_decode(std::string_view text);

} // namespace util
