// Unit tests for build/arg_file: .arg lines as Earthly reads them, .installer.env literally.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "build/arg_file.h"
#include "build/setting_values.h"

using namespace edgeforge;

namespace {

struct Parsed {
    ParsedAssignments result;
    std::vector<std::string> errors;
    std::map<std::string, std::string> values; // last assignment wins

    std::string operator[](const std::string& name) const {
        const auto found = values.find(name);
        return found == values.end() ? "<unset>" : found->second;
    }
};

Parsed parse(const std::string& text, std::map<std::string, std::string> environment = {},
             AssignmentDialect dialect = AssignmentDialect::earthly_arg) {
    Diagnostics diagnostics;
    Parsed parsed;
    parsed.result = parse_assignments(
        text, ".arg", dialect,
        [environment](const std::string& name) -> std::optional<std::string> {
            const auto found = environment.find(name);
            if (found == environment.end()) {
                return std::nullopt;
            }
            return found->second;
        },
        diagnostics);
    parsed.errors = diagnostics.messages();
    for (const auto& assignment : parsed.result.assignments) {
        parsed.values[assignment.name] = assignment.value;
    }
    return parsed;
}

} // namespace

TEST_CASE(".arg: $NAME and ${NAME} expand from earlier keys, then the environment") {
    const auto parsed = parse("OS_DISTRIBUTION=ubuntu\n"
                              "IMAGE_REPO=$OS_DISTRIBUTION\n"
                              "TAG=${OS_DISTRIBUTION}-$USER_SUFFIX\n"
                              "OS_DISTRIBUTION=opensuse-leap\n"
                              "LATER=$OS_DISTRIBUTION\n",
                              {{"USER_SUFFIX", "x1"}, {"OS_DISTRIBUTION", "from-env"}});
    CHECK(parsed.errors.empty());
    CHECK(parsed.result.warnings.empty());
    CHECK(parsed["IMAGE_REPO"] == "ubuntu"); // the .arg key wins over the environment
    CHECK(parsed["TAG"] == "ubuntu-x1");
    CHECK(parsed["LATER"] == "opensuse-leap"); // the latest earlier assignment
}

TEST_CASE(".arg: an undefined reference expands to empty, with a warning at its position") {
    const auto parsed = parse("A=x\nIMAGE_REPO=edge/$NOPE/y\n");
    CHECK(parsed.errors.empty());
    CHECK(parsed["IMAGE_REPO"] == "edge//y");
    REQUIRE(parsed.result.warnings.size() == 1);
    CHECK(parsed.result.warnings[0] ==
          ".arg:2:17: $NOPE is not set earlier in this file nor in the environment; it expands "
          "to empty, as Earthly does (set it, or write ${NOPE:-default})");
}

TEST_CASE(".arg: ${NAME:-default}, escapes and a lone $") {
    const auto parsed = parse("A=${UNSET:-fallback}\n"
                              "B=${UNSET:-${ALSO_UNSET:-deep}}\n"
                              "C=price\\$5 and $ alone and $1\n"
                              "D=\"quoted \\\"$A\\\" \\\\ \\$A\"\n"
                              "E='single $A stays'\n"
                              "EMPTY=\n"
                              "F=${EMPTY:-was-empty}\n");
    CHECK(parsed.errors.empty());
    CHECK(parsed.result.warnings.empty());
    CHECK(parsed["A"] == "fallback");
    CHECK(parsed["B"] == "deep");
    CHECK(parsed["C"] == "price$5 and $ alone and $1");
    CHECK(parsed["D"] == "quoted \"fallback\" \\ $A");
    CHECK(parsed["E"] == "single $A stays");
    CHECK(parsed["F"] == "was-empty");
}

TEST_CASE(".arg: quotes, comments after values, export, blanks and CRLF") {
    const auto parsed = parse("# a comment\n"
                              "\n"
                              "MY_ORG=\"ACME Corporation\"   # the organisation\n"
                              "ISO_NAME=palette-edge-installer # trailing comment\n"
                              "export ARCH=amd64\r\n"
                              "HASH=a#b\n"
                              "HTTPS_PROXY=\n"
                              "  SPACED = value with spaces  \n");
    CHECK(parsed.errors.empty());
    CHECK(parsed["MY_ORG"] == "ACME Corporation");
    CHECK(parsed["ISO_NAME"] == "palette-edge-installer");
    CHECK(parsed["ARCH"] == "amd64");
    CHECK(parsed["HASH"] == "a#b"); // '#' starts a comment only after a blank
    CHECK(parsed["HTTPS_PROXY"].empty());
    CHECK(parsed["SPACED"] == "value with spaces");
    REQUIRE(parsed.result.assignments.size() == 6);
    CHECK(parsed.result.assignments[0].location.str() == ".arg:3:1");
    CHECK(parsed.result.assignments[0].value_location.str() == ".arg:3:8");
    CHECK(parsed.result.assignments[5].location.str() == ".arg:8:3");
}

TEST_CASE(".arg: malformed lines are reported with line:column and skipped") {
    const auto parsed = parse("JUSTAKEY\n"
                              "A=\"open\n"
                              "B=\"closed\" trailing\n"
                              "C=${UNCLOSED\n"
                              "D=${not a name}\n"
                              "1BAD=x\n"
                              "E=a\x01" "b\n"
                              "OK=yes\n");
    CHECK(parsed["OK"] == "yes");
    CHECK(parsed.result.assignments.size() == 1);
    REQUIRE(parsed.errors.size() == 7);
    CHECK(parsed.errors[0] ==
          ".arg:1:1: expected KEY=value (one setting per line, '#' starts a comment)");
    CHECK(parsed.errors[1] == ".arg:2:3: missing closing \" quote");
    CHECK(parsed.errors[2] ==
          ".arg:3:11: unexpected text after the closing \" quote (a comment starts with #)");
    CHECK(parsed.errors[3] == ".arg:4:3: unterminated '${' (write \\$ for a literal $)");
    CHECK(parsed.errors[4] ==
          ".arg:5:3: '${not a name}' is not a variable reference (${NAME} or ${NAME:-default})");
    CHECK(parsed.errors[5] == ".arg:6:1: '1BAD' is not a variable name (letters, digits and '_', "
                              "at most 256 characters)");
    CHECK(parsed.errors[6] ==
          ".arg:7:4: the control character 0x01 is not allowed; this file is text: remove it");
}

TEST_CASE(".arg: expansion is bounded (nesting, growth, line length)") {
    // 17 nested defaults: one past the limit.
    std::string nested = "A=";
    for (int i = 0; i < 17; ++i) {
        nested += "${U" + std::to_string(i) + ":-";
    }
    nested += "x" + std::string(17, '}') + "\n";
    auto parsed = parse(nested);
    REQUIRE(parsed.errors.size() == 1);
    CHECK(parsed.errors[0].find("nested more than 16 deep") != std::string::npos);

    // Each line doubles the value: it stops at the value limit, named at the line that passes it.
    std::string doubling = "A=" + std::string(1000, 'x') + "\n";
    for (int i = 0; i < 10; ++i) {
        doubling += "A=$A$A\n";
    }
    parsed = parse(doubling);
    REQUIRE_FALSE(parsed.errors.empty());
    CHECK(parsed.errors[0] == ".arg:5:5: the value grows past 8192 characters once its "
                              "$VARIABLES are expanded");
    CHECK(parsed["A"].size() <= k_max_setting_value_length);

    parsed = parse("A=" + std::string(k_max_setting_value_length + 1, 'y') + "\n");
    REQUIRE(parsed.errors.size() == 1);
    CHECK(parsed.errors[0] ==
          ".arg:1:3: the value is longer than edgeforge allows (at most 8192 characters)");
}

TEST_CASE(".installer.env: values are literal") {
    const auto parsed = parse("A=x\nB=$A ${A}\n", {}, AssignmentDialect::installer_env);
    CHECK(parsed.errors.empty());
    CHECK(parsed.result.warnings.empty());
    CHECK(parsed["B"] == "$A ${A}");
}
