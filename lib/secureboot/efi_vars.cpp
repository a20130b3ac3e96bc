// The byte layouts of UEFI Secure Boot variables: GUIDs, EFI_TIME, EFI_SIGNATURE_LIST and the
// EFI_VARIABLE_AUTHENTICATION_2 payload that sets PK, KEK and db (pure functions, no OpenSSL).
#include "secureboot/efi_vars.h"

#include <cctype>

#include <fmt/format.h>

namespace edgeforge::secureboot {
namespace {

void put_u16(std::string& out, std::uint16_t value) {
    out.push_back(static_cast<char>(value & 0xff));
    out.push_back(static_cast<char>(value >> 8));
}

void put_u32(std::string& out, std::uint32_t value) {
    for (int shift = 0; shift < 32; shift += 8) {
        out.push_back(static_cast<char>((value >> shift) & 0xff));
    }
}

// The text form's field order to storage order: positions of the 16 bytes in the 32 hex digits.
// Storage byte i is text byte k_text_index[i] (the first three fields are reversed).
constexpr std::array<int, 16> k_text_index{3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};

Guid guid_literal(std::string_view text) {
    return *parse_guid(text);
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower >= 'a' && lower <= 'f') {
        return lower - 'a' + 10;
    }
    return -1;
}

} // namespace

std::string Guid::str() const {
    std::array<std::uint8_t, 16> text{};
    for (std::size_t i = 0; i < 16; ++i) {
        text[static_cast<std::size_t>(k_text_index[i])] = bytes[i];
    }
    std::string out;
    for (std::size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out += '-';
        }
        out += fmt::format("{:02x}", text[i]);
    }
    return out;
}

std::string Guid::raw() const {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::optional<Guid> parse_guid(std::string_view text) {
    if (text.size() != 36) {
        return std::nullopt;
    }
    std::array<std::uint8_t, 16> parsed{};
    std::size_t digit = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') {
                return std::nullopt;
            }
            continue;
        }
        const int value = hex_value(text[i]);
        if (value < 0) {
            return std::nullopt;
        }
        parsed[digit / 2] = static_cast<std::uint8_t>((parsed[digit / 2] << 4) | value);
        ++digit;
    }
    Guid guid;
    for (std::size_t i = 0; i < 16; ++i) {
        guid.bytes[i] = parsed[static_cast<std::size_t>(k_text_index[i])];
    }
    return guid;
}

Guid guid_v4_from_random(const std::array<std::uint8_t, 16>& random) {
    Guid guid{random};
    // The version is the top nibble of the third field (a little-endian u16: storage byte 7);
    // the variant the top two bits of storage byte 8.
    guid.bytes[7] = static_cast<std::uint8_t>((guid.bytes[7] & 0x0f) | 0x40);
    guid.bytes[8] = static_cast<std::uint8_t>((guid.bytes[8] & 0x3f) | 0x80);
    return guid;
}

Guid efi_global_variable_guid() {
    return guid_literal("8be4df61-93ca-11d2-aa0d-00e098032b8c");
}

Guid efi_image_security_database_guid() {
    return guid_literal("d719b2cb-3d3a-4596-a3bc-dad00e67656f");
}

Guid efi_cert_x509_guid() {
    return guid_literal("a5c059a1-94e4-4aa7-87b5-ab155c2bf072");
}

Guid efi_cert_type_pkcs7_guid() {
    return guid_literal("4aafd29d-68df-49ee-8aa9-347d375665a7");
}

std::string EfiTime::raw() const {
    std::string out;
    put_u16(out, year);
    for (const std::uint8_t byte : {month, day, hour, minute, second}) {
        out.push_back(static_cast<char>(byte));
    }
    out.push_back('\0'); // Pad1
    put_u32(out, 0);     // Nanosecond
    put_u16(out, 0);     // TimeZone
    out.push_back('\0'); // Daylight
    out.push_back('\0'); // Pad2
    return out;
}

EfiTime efi_time_from_epoch(std::int64_t seconds) {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's days_from_civil, inverted).
    std::int64_t days = seconds / 86400;
    std::int64_t rest = seconds % 86400;
    if (rest < 0) {
        rest += 86400;
        --days;
    }
    days += 719468;
    const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    const std::int64_t day_of_era = days - era * 146097;
    const std::int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    const std::int64_t day_of_year =
        day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    const std::int64_t month_index = (5 * day_of_year + 2) / 153;
    const std::int64_t day = day_of_year - (153 * month_index + 2) / 5 + 1;
    const std::int64_t month = month_index < 10 ? month_index + 3 : month_index - 9;
    const std::int64_t year = year_of_era + era * 400 + (month <= 2 ? 1 : 0);
    EfiTime time;
    time.year = static_cast<std::uint16_t>(year);
    time.month = static_cast<std::uint8_t>(month);
    time.day = static_cast<std::uint8_t>(day);
    time.hour = static_cast<std::uint8_t>(rest / 3600);
    time.minute = static_cast<std::uint8_t>(rest % 3600 / 60);
    time.second = static_cast<std::uint8_t>(rest % 60);
    return time;
}

std::string make_esl(std::string_view certificate_der, const Guid& owner) {
    const auto signature_size = static_cast<std::uint32_t>(16 + certificate_der.size());
    std::string out = efi_cert_x509_guid().raw();
    put_u32(out, 28 + signature_size); // SignatureListSize
    put_u32(out, 0);                   // SignatureHeaderSize
    put_u32(out, signature_size);      // SignatureSize
    out += owner.raw();                // EFI_SIGNATURE_DATA.SignatureOwner
    out += certificate_der;            // EFI_SIGNATURE_DATA.SignatureData
    return out;
}

std::string auth_signed_data(std::string_view variable_name, const Guid& vendor,
                             std::uint32_t attributes, const EfiTime& timestamp,
                             std::string_view data) {
    std::string out;
    for (const char c : variable_name) {
        put_u16(out, static_cast<std::uint8_t>(c)); // UTF-16LE of ASCII, no NUL
    }
    out += vendor.raw();
    put_u32(out, attributes);
    out += timestamp.raw();
    out += data;
    return out;
}

std::string make_auth_payload(const EfiTime& timestamp, std::string_view pkcs7_der,
                              std::string_view data) {
    std::string out = timestamp.raw();
    // WIN_CERTIFICATE_UEFI_GUID: the 8-byte WIN_CERTIFICATE header and the 16-byte CertType
    // come before CertData, and dwLength counts them.
    put_u32(out, static_cast<std::uint32_t>(24 + pkcs7_der.size())); // Hdr.dwLength
    put_u16(out, 0x0200);                                            // Hdr.wRevision
    put_u16(out, 0x0ef1);                                            // WIN_CERT_TYPE_EFI_GUID
    out += efi_cert_type_pkcs7_guid().raw();                         // CertType
    out += pkcs7_der;                                                // CertData
    out += data;
    return out;
}

std::optional<Guid> vendor_guid_of(std::string_view variable_name) {
    if (variable_name == "PK" || variable_name == "KEK") {
        return efi_global_variable_guid();
    }
    if (variable_name == "db" || variable_name == "dbx") {
        return efi_image_security_database_guid();
    }
    return std::nullopt;
}

} // namespace edgeforge::secureboot
