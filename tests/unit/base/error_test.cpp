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

TEST_CASE("Diagnostics::absorb_for_item reports a problem shared by many items once, counted") {
    Diagnostics all;
    const std::vector<std::string> versions = {"1.27.2", "1.28.5", "1.29.0"};
    for (const auto& version : versions) {
        Diagnostics item;
        const std::string tag = "k3s-" + version + "-v4.5.0";
        item.error({"--repository"},
                   "invalid image reference 'ttl.sh/Bad Repo:" + tag + "': must be lowercase");
        if (version == "1.28.5") {
            item.error({"kubernetes.artifacts"}, "oci:k8s/k3s-" + version + " does not exist");
        }
        all.absorb_for_item(item, {tag, version, "amd64"}, "provider images");
    }
    CHECK(all.messages() ==
          std::vector<std::string>{
              "3 provider images have this problem; the first: --repository: invalid image "
              "reference 'ttl.sh/Bad Repo:k3s-1.27.2-v4.5.0': must be lowercase",
              "kubernetes.artifacts: oci:k8s/k3s-1.28.5 does not exist"});

    // The same problem on both arches of one item counts once.
    Diagnostics arches;
    for (const auto& version : versions) {
        Diagnostics item;
        for (const std::string arch : {"amd64", "arm64"}) {
            item.error({"base.image"}, "oci:base-" + arch + " does not exist");
        }
        arches.absorb_for_item(item, {"k3s-" + version, version, "amd64", "arm64"},
                               "provider images");
    }
    CHECK(arches.messages() == std::vector<std::string>{
                                   "3 provider images have this problem; the first: base.image: "
                                   "oci:base-amd64 does not exist"});
}
