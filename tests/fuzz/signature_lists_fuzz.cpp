// Certificates and EFI signature lists given to `keys generate --include-cert` (Microsoft's
// certificates, lists exported from firmware): PEM, DER or signature lists. Input: the file.
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "secureboot/signature_lists.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace secureboot = edgeforge::secureboot;
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    (void)secureboot::signature_list_problem(bytes);
    edgeforge::fuzz::expect_errors(
        [&] { (void)secureboot::parse_extra_signatures("db", bytes, "fuzz"); });
    return 0;
}
