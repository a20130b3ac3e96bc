// Unit tests for util/strings.
#include <doctest/doctest.h>

#include "util/strings.h"

TEST_CASE("split_list trims and drops empty pieces") {
    CHECK(util::split_list(" a, b ,,c ") == std::vector<std::string>{"a", "b", "c"});
    CHECK(util::split_list("").empty());
}

TEST_CASE("edit distance and closest match suggest plausible typos only") {
    CHECK(util::edit_distance("kitten", "sitting") == 3);
    CHECK(util::edit_distance("nmae", "name") == 1);
    const std::vector<std::string_view> keys{"name", "outputs", "base", "agent"};
    CHECK(util::closest_match("nmae", keys) == std::optional<std::string>("name"));
    CHECK(util::closest_match("ouptuts", keys) == std::optional<std::string>("outputs"));
    CHECK_FALSE(util::closest_match("zebra", keys).has_value());
}

TEST_CASE("sizes parse with binary suffixes and reject junk") {
    CHECK(util::parse_size("512") == 512u);
    CHECK(util::parse_size("4K") == 4096u);
    CHECK(util::parse_size("1M") == 1048576u);
    CHECK(util::parse_size("1MiB") == 1048576u);
    CHECK(util::parse_size("2 GB") == 2147483648u);
    CHECK_FALSE(util::parse_size("1X").has_value());
    CHECK_FALSE(util::parse_size("M").has_value());
    CHECK_FALSE(util::parse_size("99999999999999999999T").has_value());
}

TEST_CASE("bytes and durations format for people") {
    CHECK(util::format_bytes(830) == "830 B");
    CHECK(util::format_bytes(1536) == "1.5 KiB");
    CHECK(util::format_bytes(266ull << 20) == "266.0 MiB");
    CHECK(util::format_duration(12.4) == "12s");
    CHECK(util::format_duration(0.04) == "0.0s");
    CHECK(util::format_duration(0.46) == "0.5s");
    CHECK(util::format_duration(9.94) == "9.9s");
    CHECK(util::format_duration(9.96) == "10s");
    CHECK(util::format_duration(65) == "1m05s");
    CHECK(util::format_duration(3725) == "1h02m");
}

TEST_CASE("durations parse with one unit s, m, h, d or w") {
    CHECK(util::parse_duration_seconds("90s") == 90u);
    CHECK(util::parse_duration_seconds("30m") == 1800u);
    CHECK(util::parse_duration_seconds("12h") == 43200u);
    CHECK(util::parse_duration_seconds("7d") == 604800u);
    CHECK(util::parse_duration_seconds(" 2W ") == 1209600u);
    CHECK_FALSE(util::parse_duration_seconds("7").has_value());
    CHECK_FALSE(util::parse_duration_seconds("d").has_value());
    CHECK_FALSE(util::parse_duration_seconds("1y").has_value());
    CHECK_FALSE(util::parse_duration_seconds("99999999999999999999w").has_value());
}

TEST_CASE("printable_line: one line, no control characters, bounded") {
    CHECK(util::printable_line("  a\nb\r\n\tc\x01" "d  ", 100) == "a b cd");
    CHECK(util::printable_line("abcdef", 3) == "abc...");
}

TEST_CASE("invalid_utf8_offset finds the first byte that is not well-formed UTF-8, or a NUL") {
    CHECK_FALSE(util::invalid_utf8_offset("plain ascii"));
    CHECK_FALSE(util::invalid_utf8_offset("gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK(util::invalid_utf8_offset("ab\xff") == 2u);
    CHECK(util::invalid_utf8_offset(std::string_view("a\0b", 3)) == 1u);
    CHECK(util::invalid_utf8_offset("x\xc0\xaf") == 1u);         // overlong '/'
    CHECK(util::invalid_utf8_offset("\xed\xa0\x80") == 0u);       // a surrogate
    CHECK(util::invalid_utf8_offset("\xf4\x90\x80\x80") == 0u);   // past U+10FFFF
    CHECK(util::invalid_utf8_offset("ok\xe2\x82") == 2u);         // cut short
    CHECK(util::invalid_utf8_offset("in\xc3tramfs") == 2u);       // the fuzzer's find
}
