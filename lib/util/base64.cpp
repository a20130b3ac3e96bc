// Base64 (RFC 4648, standard alphabet, padded) for checksums and credentials in HTTP headers.
#include "util/base64.h"

#include <array>

namespace util {
namespace {

constexpr std::string_view k_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The 6-bit value of each alphabet character; -1 for everything else.
constexpr std::array<int, 256> make_decode_table() {
    std::array<int, 256> table{};
    for (auto& entry : table) {
        entry = -1;
    }
    for (std::size_t i = 0; i < k_alphabet.size(); ++i) {
        table[static_cast<unsigned char>(k_alphabet[i])] = static_cast<int>(i);
    }
    return table;
}

constexpr auto k_decode_table = make_decode_table();

} // namespace

std::string base64_encode(std::span<const std::uint8_t> bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        const std::uint32_t group =
            (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
        out.push_back(k_alphabet[(group >> 18) & 0x3f]);
        out.push_back(k_alphabet[(group >> 12) & 0x3f]);
        out.push_back(k_alphabet[(group >> 6) & 0x3f]);
        out.push_back(k_alphabet[group & 0x3f]);
    }
    const std::size_t rest = bytes.size() - i;
    if (rest != 0) {
        std::uint32_t group = std::uint32_t{bytes[i]} << 16;
        if (rest == 2) {
            group |= std::uint32_t{bytes[i + 1]} << 8;
        }
        out.push_back(k_alphabet[(group >> 18) & 0x3f]);
        out.push_back(k_alphabet[(group >> 12) & 0x3f]);
        out.push_back(rest == 2 ? k_alphabet[(group >> 6) & 0x3f] : '=');
        out.push_back('=');
    }
    return out;
}

std::string base64_encode(std::string_view bytes) {
    return base64_encode(
        std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

std::optional<std::string> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        const std::size_t padding =
            last ? (text[i + 3] == '=' ? (text[i + 2] == '=' ? 2 : 1) : 0) : 0;
        std::uint32_t group = 0;
        for (std::size_t j = 0; j < 4; ++j) {
            const char c = text[i + j];
            int value = 0;
            if (j >= 4 - padding) {
                if (c != '=') {
                    return std::nullopt;
                }
            } else {
                value = k_decode_table[static_cast<unsigned char>(c)];
                if (value < 0) {
                    return std::nullopt;
                }
            }
            group = (group << 6) | static_cast<std::uint32_t>(value);
        }
        out.push_back(static_cast<char>((group >> 16) & 0xff));
        if (padding < 2) {
            out.push_back(static_cast<char>((group >> 8) & 0xff));
        }
        if (padding < 1) {
            out.push_back(static_cast<char>(group & 0xff));
        }
    }
    return out;
}

} // namespace util
