// PE images as they arrive in a base image: the systemd EFI stub and systemd-boot that
// `build uki` reads, parses, extends with sections and hashes for Authenticode. Input: the image.
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "secureboot/authenticode.h"
#include "secureboot/pe.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace secureboot = edgeforge::secureboot;
    const std::string_view image(reinterpret_cast<const char*>(data), size);
    edgeforge::fuzz::expect_errors([&] { (void)secureboot::authenticode_sha256(image, "fuzz"); });
    edgeforge::fuzz::expect_errors([&] {
        const std::string uki = secureboot::append_pe_sections(
            image, {{".osrel", "ID=fuzz\n"}, {".linux", std::string(3000, 'k')}}, "fuzz");
        (void)secureboot::authenticode_sha256(uki, "fuzz uki");
    });
    return 0;
}
