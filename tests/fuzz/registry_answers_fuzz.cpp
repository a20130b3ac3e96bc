// What registries answer before any digest protects it: WWW-Authenticate challenges and token
// service answers. Input: the header value, then the token answer body.
#include "fuzz_support.h"
#include "oci/registry.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto parts = edgeforge::fuzz::split_input(data, size, 2);
    edgeforge::fuzz::expect_errors([&] {
        for (const auto& challenge : edgeforge::oci::parse_www_authenticate(parts[0])) {
            if (challenge.scheme.empty()) {
                __builtin_trap();
            }
        }
        const auto answer = edgeforge::oci::parse_token_answer(parts[1]);
        if (answer && answer->token.empty()) {
            __builtin_trap();
        }
    });
    return 0;
}
