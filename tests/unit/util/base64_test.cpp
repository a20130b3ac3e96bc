// Unit tests for util/base64.
#include <doctest/doctest.h>

#include "util/base64.h"

TEST_CASE("base64 matches the RFC 4648 test vectors both ways") {
    const std::pair<std::string_view, std::string_view> vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (const auto& [plain, encoded] : vectors) {
        CHECK(util::base64_encode(plain) == encoded);
        CHECK(util::base64_decode(encoded) == std::string(plain));
    }
    CHECK(util::base64_encode(std::string_view("\xff\xfe\x00", 3)) == "//4A");
}

TEST_CASE("base64_decode rejects what is not padded standard base64") {
    CHECK_FALSE(util::base64_decode("Zg").has_value());
    CHECK_FALSE(util::base64_decode("Z===").has_value());
    CHECK_FALSE(util::base64_decode("Zm-v").has_value());
    CHECK_FALSE(util::base64_decode("Zg==Zg==").has_value());
}
