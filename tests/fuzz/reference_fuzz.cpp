// Image references as typed on the command line or in settings: oci:DIR:TAG, docker://HOST/REPO.
#include "fuzz_support.h"
#include "oci/reference.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    edgeforge::fuzz::expect_errors([&] {
        const auto reference = edgeforge::oci::parse_reference(text);
        // What was accepted must print and parse back to the same thing.
        const std::string printed = reference.str();
        const auto again = edgeforge::oci::parse_reference(printed);
        if (again.str() != printed) {
            __builtin_trap();
        }
        if (reference.is_registry()) {
            (void)reference.api_host();
        }
    });
    return 0;
}
