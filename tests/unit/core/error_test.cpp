// Unit tests for core/error.
#include <doctest/doctest.h>

#include "core/error.h"

using namespace edgeforge;

TEST_CASE("source locations print as file:line:col") {
    CHECK(SourceLocation{"edgeforge.yaml", 4, 3}.str() == "edgeforge.yaml:4:3");
    CHECK(SourceLocation{".arg", 7, 0}.str() == ".arg:7");
    CHECK(SourceLocation{"--arch"}.str() == "--arch");
}

TEST_CASE("diagnostics report one problem plainly and several together") {
    Diagnostics one;
    one.error({"a.yaml", 1, 2}, "bad");
    CHECK_THROWS_WITH(one.throw_if_any(), "a.yaml:1:2: bad");

    Diagnostics two;
    two.error({"a.yaml", 1, 2}, "bad");
    two.error({"--arch"}, "worse");
    try {
        two.throw_if_any();
        FAIL("expected an error");
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::bad_input);
        CHECK(std::string(error.what()) == "2 problems found:\n  a.yaml:1:2: bad\n  --arch: worse");
    }
    Diagnostics none;
    CHECK_NOTHROW(none.throw_if_any());
}
