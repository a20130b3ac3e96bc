// Generic string helpers; nothing here knows about edgeforge.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace util {

// ASCII character classes, independent of the locale (for hand-written linear validators).
constexpr bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
constexpr bool is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_alnum(char c) {
    return is_digit(c) || is_letter(c);
}
constexpr bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view text);
std::vector<std::string> split(std::string_view text, char separator);

// Server-supplied text made fit for one line of an error message: trimmed, line breaks and tabs
// turned into single spaces, other control characters dropped, cut at `max_chars` with "...".
std::string printable_line(std::string_view text, std::size_t max_chars);
// The offset of the first byte that is not part of well-formed UTF-8 (overlong forms,
// surrogates and code points past U+10FFFF included), or of the first NUL byte; nullopt when
// there is none. Linear.
std::optional<std::size_t> invalid_utf8_offset(std::string_view text);
// Splits on the separator, trims each piece and drops empty pieces ("a, b,," -> {a, b}).
std::vector<std::string> split_list(std::string_view text, char separator = ',');
std::string join(std::span<const std::string> parts, std::string_view separator);
std::string join(std::span<const std::string_view> parts, std::string_view separator);
std::string to_lower(std::string_view text);
bool iequals(std::string_view a, std::string_view b);

// Levenshtein distance, used to suggest the key a user probably meant.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word` when it is close enough to be a plausible typo.
std::optional<std::string> closest_match(std::string_view word,
                                         std::span<const std::string_view> candidates);

// "1.5 MiB", "830 B": sizes for people.
std::string format_bytes(std::uint64_t bytes);
// "1m05s", "12s": durations for people.
std::string format_duration(double seconds);
// Parses "512", "4K", "1M", "2G", "1MiB", "3 GB" (binary multiples) into bytes.
std::optional<std::uint64_t> parse_size(std::string_view text);
// Parses "90s", "30m", "12h", "7d", "2w" (one number, one unit) into seconds.
std::optional<std::uint64_t> parse_duration_seconds(std::string_view text);
// `text` as a YAML double-quoted scalar ('"' and '\\' escaped, newline and tab as \\n, \\t, other
// control characters as \\xNN), for the YAML files edgeforge writes (init, init --from-canvos,
// the pipelines of plan --emit).
std::string yaml_double_quoted(std::string_view text);

} // namespace util
