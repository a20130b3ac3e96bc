// Unit tests for core/error.
#include <doctest/doctest.h>

#include "base/error.h"

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

TEST_CASE("Diagnostics absorb the problems of another phase's error, one or many") {
    Diagnostics diagnostics;
    diagnostics.absorb(Error(ExitCode::bad_input, "one problem"));
    Diagnostics inner;
    inner.error(SourceLocation{"a.yaml", 1, 2}, "first");
    inner.error(SourceLocation{"--format"}, "second");
    try {
        inner.throw_if_any();
    } catch (const Error& error) {
        diagnostics.absorb(error);
    }
    CHECK(diagnostics.messages() ==
          std::vector<std::string>{"one problem", "a.yaml:1:2: first", "--format: second"});
}

TEST_CASE("Diagnostics::absorb keeps multi-line problems whole and known ones single") {
    Diagnostics inner;
    inner.error({"a.yaml", 3, 1}, "one\n  with a second line");
    inner.error({"b.yaml"}, "two");
    Diagnostics all;
    all.error({}, "b.yaml: two");
    try {
        inner.throw_if_any();
        FAIL("throw_if_any did not throw");
    } catch (const Error& error) {
        CHECK(error.problems().size() == 2);
        all.absorb(error);
    }
    CHECK(all.messages() ==
          std::vector<std::string>{"b.yaml: two", "a.yaml:3:1: one\n  with a second line"});
}
