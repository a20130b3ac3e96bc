// Unit tests for util/process.
#include <doctest/doctest.h>

#include <cstdlib>
#include <system_error>

#include "util/process.h"

TEST_CASE("run_process passes argv verbatim, captures both streams and the exit code") {
    const auto result = util::run_process(
        {"sh", "-c", "printf '%s|' \"$@\"; echo oops >&2; exit 3", "sh", "a b", "$HOME", "'q'"});
    CHECK(result.exit_code == 3);
    CHECK(result.standard_output == "a b|$HOME|'q'|");
    CHECK(result.standard_error == "oops\n");
}

TEST_CASE("run_process feeds standard input and handles large output") {
    util::ProcessOptions options;
    options.standard_input = std::string(300000, 'x');
    const auto result = util::run_process({"cat"}, options);
    CHECK(result.exit_code == 0);
    CHECK(result.standard_output.size() == 300000);
}

TEST_CASE("run_process names a program that does not exist") {
    try {
        util::run_process({"edgeforge-no-such-tool"});
        FAIL("expected an exception");
    } catch (const std::system_error& error) {
        CHECK(std::string(error.what()).find("edgeforge-no-such-tool") != std::string::npos);
    }
}

TEST_CASE("find_program also searches sbin directories") {
    CHECK(util::find_program("sh").has_value());
    CHECK_FALSE(util::find_program("edgeforge-no-such-tool").has_value());
}

TEST_CASE("extra environment entries override inherited ones") {
    ::setenv("EDGEFORGE_TEST_VARIABLE", "inherited", 1);
    util::ProcessOptions options;
    options.extra_environment = {"EDGEFORGE_TEST_VARIABLE=override"};
    const auto result = util::run_process({"sh", "-c", "echo $EDGEFORGE_TEST_VARIABLE"}, options);
    CHECK(result.standard_output == "override\n");
    ::unsetenv("EDGEFORGE_TEST_VARIABLE");
}
