// The byte layouts of UEFI Secure Boot variables: GUIDs, EFI_TIME, EFI_SIGNATURE_LIST and the
// EFI_VARIABLE_AUTHENTICATION_2 payload that sets PK, KEK and db (pure functions, no OpenSSL).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace edgeforge::secureboot {

// A GUID in the byte order UEFI stores it: the first three fields little-endian, the last
// eight bytes as written ("8be4df61-93ca-11d2-aa0d-00e098032b8c" starts 61 df e4 8b ca 93 d2 11).
struct Guid {
    std::array<std::uint8_t, 16> bytes{};

    // The canonical lowercase text form, 36 characters.
    std::string str() const;
    // The 16 bytes as a string, for concatenation into payloads.
    std::string raw() const;
    bool operator==(const Guid&) const = default;
};

// Parses "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (either case); nothing for any other text.
std::optional<Guid> parse_guid(std::string_view text);
// A version 4 (random) GUID made of 16 random bytes the caller supplies: the version and
// RFC 4122 variant bits are set, the rest kept.
Guid guid_v4_from_random(const std::array<std::uint8_t, 16>& random);

// EFI_GLOBAL_VARIABLE: the vendor GUID of PK and KEK.
Guid efi_global_variable_guid();
// EFI_IMAGE_SECURITY_DATABASE_GUID: the vendor GUID of db and dbx.
Guid efi_image_security_database_guid();
// EFI_CERT_X509_GUID: the SignatureType of a list of DER X.509 certificates.
Guid efi_cert_x509_guid();
// EFI_CERT_TYPE_PKCS7_GUID: the CertType of a WIN_CERTIFICATE_UEFI_GUID holding PKCS#7.
Guid efi_cert_type_pkcs7_guid();

// EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS |
// TIME_BASED_AUTHENTICATED_WRITE_ACCESS: the attributes of PK, KEK and db updates.
inline constexpr std::uint32_t k_secure_boot_variable_attributes = 0x01 | 0x02 | 0x04 | 0x20;

// EFI_TIME (16 bytes): Year u16, Month, Day, Hour, Minute, Second, Pad1 u8, Nanosecond u32,
// TimeZone i16, Daylight u8, Pad2 u8, all little-endian. A time-based authenticated variable's
// timestamp keeps Pad1, Nanosecond, TimeZone, Daylight and Pad2 zero.
struct EfiTime {
    std::uint16_t year = 0;
    std::uint8_t month = 0;
    std::uint8_t day = 0;
    std::uint8_t hour = 0;
    std::uint8_t minute = 0;
    std::uint8_t second = 0;

    std::string raw() const; // the 16 bytes
    bool operator==(const EfiTime&) const = default;
};

// The UTC calendar time of `seconds` since 1970-01-01 00:00:00 UTC (no time zone, no leap
// seconds). `seconds` must lie in years 1970..9999.
EfiTime efi_time_from_epoch(std::int64_t seconds);

// An EFI_SIGNATURE_LIST with one EFI_CERT_X509_GUID entry: SignatureType (16), ListSize u32
// (= 28 + 16 + der.size()), HeaderSize u32 (0), SignatureSize u32 (= 16 + der.size()), then the
// EFI_SIGNATURE_DATA: SignatureOwner (16) and the DER certificate. What efitools'
// cert-to-efi-sig-list -g OWNER writes.
std::string make_esl(std::string_view certificate_der, const Guid& owner);

// The bytes the PKCS#7 signature of an authenticated variable update covers (UEFI 2.x 8.2.2):
// VariableName as UTF-16LE without the terminating NUL || VendorGuid || Attributes (u32 LE) ||
// TimeStamp (EFI_TIME) || the new variable data. `variable_name` is ASCII ("PK", "KEK", "db").
std::string auth_signed_data(std::string_view variable_name, const Guid& vendor,
                             std::uint32_t attributes, const EfiTime& timestamp,
                             std::string_view data);

// A complete time-based authenticated variable update, as efitools' sign-efi-sig-list writes it
// and SetVariable() and firmware setup menus take it: EFI_VARIABLE_AUTHENTICATION_2 = TimeStamp
// (16) + WIN_CERTIFICATE_UEFI_GUID { dwLength u32 (= 24 + pkcs7.size()), wRevision u16 0x0200,
// wCertificateType u16 0x0EF1 (WIN_CERT_TYPE_EFI_GUID), CertType EFI_CERT_TYPE_PKCS7_GUID,
// CertData = `pkcs7_der` }, followed by the variable data.
std::string make_auth_payload(const EfiTime& timestamp, std::string_view pkcs7_der,
                              std::string_view data);

// The vendor GUID UEFI gives the variable: EFI_GLOBAL_VARIABLE for "PK" and "KEK",
// EFI_IMAGE_SECURITY_DATABASE_GUID for "db" and "dbx"; nothing for other names.
std::optional<Guid> vendor_guid_of(std::string_view variable_name);

} // namespace edgeforge::secureboot
