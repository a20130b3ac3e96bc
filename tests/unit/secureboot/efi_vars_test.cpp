// Unit tests for secureboot/efi_vars: GUID byte order, EFI_TIME, EFI_SIGNATURE_LIST and the
// EFI_VARIABLE_AUTHENTICATION_2 layout, byte by byte.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "secureboot/efi_vars.h"
#include "util/bytes.h"

using namespace edgeforge::secureboot;

namespace {

std::string bytes(std::initializer_list<int> values) {
    std::string out;
    for (const int value : values) {
        out.push_back(static_cast<char>(value));
    }
    return out;
}

std::uint32_t u32_at(const std::string& data, std::size_t offset) {
    return util::le32(util::byte_span(data), offset);
}

std::uint16_t u16_at(const std::string& data, std::size_t offset) {
    return util::le16(util::byte_span(data), offset);
}

} // namespace

TEST_CASE("secureboot GUIDs: text and UEFI byte order") {
    // EFI_GLOBAL_VARIABLE as gnu-efi's EFI_GUID initializer writes it:
    // {0x8be4df61, 0x93ca, 0x11d2, {0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c}}.
    CHECK(efi_global_variable_guid().raw() ==
          bytes({0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
                 0x2b, 0x8c}));
    CHECK(efi_global_variable_guid().str() == "8be4df61-93ca-11d2-aa0d-00e098032b8c");
    CHECK(efi_image_security_database_guid().raw() ==
          bytes({0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45, 0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67,
                 0x65, 0x6f}));
    CHECK(efi_cert_x509_guid().str() == "a5c059a1-94e4-4aa7-87b5-ab155c2bf072");
    CHECK(efi_cert_type_pkcs7_guid().str() == "4aafd29d-68df-49ee-8aa9-347d375665a7");
    const auto parsed = parse_guid("77FA9ABD-0359-4D32-BD60-28F4E78F784B");
    REQUIRE(parsed);
    CHECK(parsed->str() == "77fa9abd-0359-4d32-bd60-28f4e78f784b");
    CHECK_FALSE(parse_guid("77fa9abd-0359-4d32-bd60-28f4e78f784"));
    CHECK_FALSE(parse_guid("77fa9abd+0359-4d32-bd60-28f4e78f784b"));
    CHECK_FALSE(parse_guid("77fa9abd-0359-4d32-bd60-28f4e78f784g"));
    CHECK_FALSE(parse_guid(""));
}

TEST_CASE("secureboot GUIDs: a random GUID is version 4, RFC 4122 variant") {
    std::array<std::uint8_t, 16> random{};
    random.fill(0xff);
    const std::string text = guid_v4_from_random(random).str();
    CHECK(text == "ffffffff-ffff-4fff-bfff-ffffffffffff");
    random.fill(0x00);
    CHECK(guid_v4_from_random(random).str() == "00000000-0000-4000-8000-000000000000");
}

TEST_CASE("secureboot EFI_TIME: UTC calendar fields from epoch seconds, 16 bytes") {
    CHECK(efi_time_from_epoch(0) == EfiTime{1970, 1, 1, 0, 0, 0});
    CHECK(efi_time_from_epoch(1700000000) == EfiTime{2023, 11, 14, 22, 13, 20});
    CHECK(efi_time_from_epoch(951782400) == EfiTime{2000, 2, 29, 0, 0, 0}); // a leap day
    CHECK(efi_time_from_epoch(4102444799) == EfiTime{2099, 12, 31, 23, 59, 59});
    CHECK(efi_time_from_epoch(253402300799) == EfiTime{9999, 12, 31, 23, 59, 59});
    const std::string raw = EfiTime{2023, 11, 14, 22, 13, 20}.raw();
    // Year LE, Month, Day, Hour, Minute, Second, then Pad1, Nanosecond, TimeZone, Daylight,
    // Pad2 all zero.
    CHECK(raw == bytes({0xe7, 0x07, 11, 14, 22, 13, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST_CASE("secureboot EFI_SIGNATURE_LIST: one X.509 entry with its owner") {
    const std::string der = std::string("\x30\x82", 2) + std::string(600, 'x');
    const Guid owner = *parse_guid("77fa9abd-0359-4d32-bd60-28f4e78f784b");
    const std::string esl = make_esl(der, owner);
    CHECK(esl.size() == 28 + 16 + der.size());
    CHECK(esl.substr(0, 16) == efi_cert_x509_guid().raw());
    CHECK(esl.substr(0, 4) == bytes({0xa1, 0x59, 0xc0, 0xa5}));
    CHECK(u32_at(esl, 16) == esl.size());      // SignatureListSize
    CHECK(u32_at(esl, 20) == 0);               // SignatureHeaderSize
    CHECK(u32_at(esl, 24) == 16 + der.size()); // SignatureSize
    CHECK(esl.substr(28, 16) == owner.raw());  // SignatureOwner
    CHECK(esl.substr(44) == der);              // SignatureData
}

TEST_CASE("secureboot authenticated variables: the signed bytes") {
    const EfiTime time{2023, 11, 14, 22, 13, 20};
    const std::string data = "ESL";
    const std::string signed_db =
        auth_signed_data("db", efi_image_security_database_guid(), 0x27, time, data);
    CHECK(signed_db == bytes({'d', 0, 'b', 0}) + efi_image_security_database_guid().raw() +
                           bytes({0x27, 0, 0, 0}) + time.raw() + data);
    const std::string signed_kek = auth_signed_data("KEK", *vendor_guid_of("KEK"),
                                                    k_secure_boot_variable_attributes, time, data);
    CHECK(signed_kek.substr(0, 6) == bytes({'K', 0, 'E', 0, 'K', 0}));
    CHECK(signed_kek.substr(6, 16) == efi_global_variable_guid().raw());
    CHECK(u32_at(signed_kek, 22) == 0x27);
    CHECK(signed_kek.size() == 6 + 16 + 4 + 16 + data.size());
    CHECK(k_secure_boot_variable_attributes == 0x27);
    CHECK(*vendor_guid_of("PK") == efi_global_variable_guid());
    CHECK(*vendor_guid_of("db") == efi_image_security_database_guid());
    CHECK_FALSE(vendor_guid_of("MokList"));
}

TEST_CASE("secureboot authenticated variables: EFI_VARIABLE_AUTHENTICATION_2 then the data") {
    const EfiTime time{2023, 11, 14, 22, 13, 20};
    const std::string pkcs7(1234, 'p');
    const std::string esl(100, 'e');
    const std::string auth = make_auth_payload(time, pkcs7, esl);
    CHECK(auth.size() == 16 + 24 + pkcs7.size() + esl.size());
    CHECK(auth.substr(0, 16) == time.raw());
    CHECK(u32_at(auth, 16) == 24 + pkcs7.size()); // dwLength covers the header and CertType
    CHECK(u16_at(auth, 20) == 0x0200);            // wRevision
    CHECK(u16_at(auth, 22) == 0x0ef1);            // WIN_CERT_TYPE_EFI_GUID
    CHECK(auth.substr(24, 16) == efi_cert_type_pkcs7_guid().raw());
    CHECK(auth.substr(40, pkcs7.size()) == pkcs7);
    CHECK(auth.substr(40 + pkcs7.size()) == esl);
}
