// Unit tests for util/json: JSON from other people is parsed with a nesting limit.
#include <doctest/doctest.h>

#include <string>

#include "util/json.h"

namespace {

std::string nested(int levels) {
    return std::string(static_cast<std::size_t>(levels), '[') +
           std::string(static_cast<std::size_t>(levels), ']');
}

} // namespace

TEST_CASE("parse_json: ordinary documents parse as nlohmann parses them") {
    const auto document = util::parse_json(R"({"schemaVersion": 2, "layers": [{"size": 3}]})");
    CHECK(document["layers"][0]["size"] == 3);
    CHECK(util::parse_json(nested(64)).is_array());
}

TEST_CASE("parse_json: nesting past the limit is a json::exception, or discarded") {
    try {
        (void)util::parse_json(nested(100'000));
        FAIL("a document 100,000 levels deep was accepted");
    } catch (const nlohmann::json::exception& error) {
        CHECK(std::string(error.what()) ==
              "[json.exception.depth] the document nests deeper than 64 levels");
    }
    CHECK(util::parse_json("{\"a\":" + nested(65) + "}", false).is_discarded());
    CHECK(util::parse_json("{\"a\": [1,", false).is_discarded());
    CHECK_THROWS_AS((void)util::parse_json("{\"a\": [1,"), nlohmann::json::parse_error);
}
