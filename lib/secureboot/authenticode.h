// Authenticode signatures of PE images as UEFI Secure Boot checks them (db key, SHA-256): the
// image digest, the SpcIndirectDataContent and the PKCS#7 SignedData in a WIN_CERTIFICATE.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "secureboot/pe.h"

namespace edgeforge::secureboot {

// The Authenticode SHA-256 of an image: headers without the checksum and the certificate table
// directory entry, the sections in file order, then any data up to the certificate table.
// Throws Error (bad input) naming `what` for a malformed image.
std::array<std::uint8_t, 32> authenticode_sha256(std::string_view image, std::string_view what);

// The image signed with the key and certificate (PEM): any earlier signature replaced, the
// certificate table (WIN_CERTIFICATE revision 2.0, PKCS_SIGNED_DATA) appended 8-byte aligned, the
// checksum updated. The SignedData carries contentType, signingTime (`signing_time`, seconds since
// the epoch: SOURCE_DATE_EPOCH keeps the bytes reproducible) and messageDigest, and the
// certificate. Throws Error (bad input) for a key that does not match the certificate.
std::string sign_pe(std::string_view image, std::string_view key_pem,
                    std::string_view certificate_pem, std::int64_t signing_time,
                    std::string_view what);

// sign_pe() for an image assembled from files (a UKI holding the OS): the same bytes, written
// atomically to `output`, reading the image in pieces (twice: the digest, then the checksum and
// the copy), never whole. Patches the image's head (certificate directory, checksum).
void sign_pe_to_file(PeImage& image, std::string_view key_pem, std::string_view certificate_pem,
                     std::int64_t signing_time, std::string_view what,
                     const std::filesystem::path& output);

} // namespace edgeforge::secureboot
