// Unit tests for util/yaml_check: alias bombs, depth and repeated keys, found without recursion.
#include <doctest/doctest.h>

#include <string>

#include "support/yaml.h"
#include "util/yaml_check.h"

using edgeforge::testing::alias_bomb;

TEST_CASE("check_yaml: an ordinary document passes") {
    CHECK(!util::check_yaml(YAML::Load("name: x\nlist: [1, 2]\nmap: {a: 1, b: {c: 2}}\n")));
    const YAML::Node shared = YAML::Load("base: &b {x: 1}\none: *b\ntwo: *b\n");
    CHECK(!util::check_yaml(shared)); // a few aliases are fine
}

TEST_CASE("check_yaml: an alias bomb is refused after the node limit, quickly") {
    const auto issue = util::check_yaml(YAML::Load(alias_bomb()));
    REQUIRE(issue);
    CHECK(issue->message.find("more than 100000 nodes") != std::string::npos);
    CHECK(issue->line > 0);
}

TEST_CASE("check_yaml: a repeated key is named with both positions") {
    const auto issue = util::check_yaml(YAML::Load("name: a\niso:\n  x: 1\nname: b\n"));
    REQUIRE(issue);
    CHECK(issue->line == 4);
    CHECK(issue->column == 1);
    CHECK(issue->message == "the key 'name' is given twice (first at line 1, column 1); keep one");
    const auto nested = util::check_yaml(YAML::Load("iso:\n  x: 1\n  y: 2\n  x: 3\n"));
    REQUIRE(nested);
    CHECK(nested->line == 4);
}

TEST_CASE("check_yaml: nesting deeper than the limit is refused") {
    std::string deep;
    for (int i = 0; i < 70; ++i) {
        deep += "[";
    }
    deep += std::string(70, ']');
    const auto issue = util::check_yaml(YAML::Load(deep));
    REQUIRE(issue);
    CHECK(issue->message.find("deeper than 64") != std::string::npos);
    util::YamlLimits roomy;
    roomy.max_depth = 100;
    CHECK(!util::check_yaml(YAML::Load(deep), roomy));
}

TEST_CASE("check_yaml_text reports bytes that are not UTF-8 and NUL bytes at line and column") {
    CHECK_FALSE(util::check_yaml_text("name: gr\xc3\xbc\xc3\x9f\n"));
    const auto bad = util::check_yaml_text("a: 1\nstages:\n  in\xc3tramfs: x\n");
    REQUIRE(bad);
    CHECK(bad->line == 3);
    CHECK(bad->column == 5);
    CHECK(bad->message == "byte 0xc3 is not valid UTF-8; save the file as UTF-8");
    const auto nul = util::check_yaml_text(std::string_view("a: b\0", 5));
    REQUIRE(nul);
    CHECK(nul->line == 1);
    CHECK(nul->column == 5);
    CHECK(nul->message ==
          "the control character 0x00 (NUL) is not allowed in YAML; YAML files are text: remove it");
}

TEST_CASE("load_yaml: text, syntax and limits in one call, the first problem wins") {
    const auto good = util::load_yaml("a: [1, 2]\n");
    REQUIRE_FALSE(good.issue);
    CHECK(good.root["a"].size() == 2);

    const auto syntax = util::load_yaml("a: [1, 2\n");
    REQUIRE(syntax.issue);
    CHECK(syntax.issue->syntax_error);
    CHECK(syntax.issue->line == 2);
    CHECK(syntax.root.IsNull());

    const auto limits = util::load_yaml(alias_bomb());
    REQUIRE(limits.issue);
    CHECK_FALSE(limits.issue->syntax_error);
    CHECK(limits.root.IsNull());

    const auto text = util::load_yaml("a: \xff\n");
    REQUIRE(text.issue);
    CHECK_FALSE(text.issue->syntax_error);
    CHECK(text.issue->column == 4);
}

TEST_CASE("check_yaml_text: control characters other than tab, CR and LF are refused") {
    CHECK_FALSE(util::check_yaml_text("a:\tb\r\nc: d\n"));
    const auto escape = util::check_yaml_text("a: b\nc: \x1b[31m\n");
    REQUIRE(escape);
    CHECK(escape->line == 2);
    CHECK(escape->column == 4);
    CHECK(escape->message == "the control character 0x1b is not allowed in YAML; remove it");
    const auto del = util::check_yaml_text("a: \x7f\n");
    REQUIRE(del);
    CHECK(del->column == 4);
    // The first problem wins, whichever kind it is.
    const auto first = util::check_yaml_text("a: \x01 \xff\n");
    REQUIRE(first);
    CHECK(first->column == 4);
    CHECK(util::check_yaml_text("a: \xed\xa0\x80\n")); // a UTF-16 surrogate
    CHECK(util::check_yaml_text("a: \xc0\xaf\n"));     // an overlong '/'
    CHECK(util::check_yaml_text("a: \xe2\x82\n"));     // cut short
}

TEST_CASE("load_yaml: a second document is refused, an empty one after '---' is not") {
    const auto one = util::load_yaml("name: one\n---\n");
    REQUIRE_FALSE(one.issue);
    CHECK(one.root["name"].as<std::string>() == "one");

    const auto two = util::load_yaml("name: one\n---\nname: two\n");
    REQUIRE(two.issue);
    CHECK(two.issue->line == 3);
    CHECK(two.issue->message.find("a second YAML document") != std::string::npos);
    CHECK(two.root.IsNull());
}

TEST_CASE("load_yaml: flow nesting past yaml-cpp's recursion guard is reported as nesting") {
    const std::string deep = "a: " + std::string(5000, '[') + std::string(5000, ']') + "\n";
    const auto loaded = util::load_yaml(deep);
    REQUIRE(loaded.issue);
    CHECK(loaded.issue->message.find("nests deeper than 64 levels") != std::string::npos);
}

TEST_CASE("load_yaml: a stray ',' at the top level is a syntax error, not an endless document "
          "stream") {
    // Found by the userdata fuzzer: yaml-cpp 0.7 restarts an empty document at the ',' forever
    // (LoadAll allocated past 2 GB); YAML::Load alone returns an empty document.
    const auto stuck = util::load_yaml("#cloud-config\n,    projectName: edge\n    network#c0lou");
    REQUIRE(stuck.issue);
    CHECK(stuck.issue->syntax_error);
    CHECK(stuck.issue->line == 2);
    CHECK(stuck.issue->column == 1);
    CHECK(stuck.issue->message ==
          "YAML syntax error: the parser cannot read past this point (a ',' or other flow "
          "indicator outside [...] or {...}?)");
    std::string documents;
    for (int i = 0; i < 1500; ++i) {
        documents += "---\n";
    }
    const auto empty_documents = util::load_yaml(documents);
    REQUIRE(empty_documents.issue);
    CHECK(empty_documents.issue->message.starts_with("more than 1000 YAML documents"));
}
