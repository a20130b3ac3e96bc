// Authenticode digest and signing (see authenticode.h).
#include "secureboot/authenticode.h"

#include <algorithm>
#include <functional>
#include <vector>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#include "base/error.h"
#include "secureboot/pe.h"
#include "util/bytes.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/openssl.h"

namespace edgeforge::secureboot {

namespace {

constexpr const char* k_spc_indirect_data = "1.3.6.1.4.1.311.2.1.4";

// Hashes an image for Authenticode up to `image_end` (where the certificate table starts):
// `hash(offset, length, sha)` feeds those bytes of the image to `sha`.
template <typename Hash>
std::array<std::uint8_t, 32> digest_of(const PeLayout& layout, std::uint64_t image_end,
                                       const Hash& hash) {
    util::Sha256 sha;
    const std::size_t checksum = layout.checksum_offset;
    const std::size_t directory = layout.certificate_directory_offset;
    hash(0, checksum, sha);
    hash(checksum + 4, directory - checksum - 4, sha);
    hash(directory + 8, layout.size_of_headers - directory - 8, sha);
    std::vector<PeSection> sections;
    for (const auto& section : layout.sections) {
        if (section.raw_size != 0) {
            sections.push_back(section);
        }
    }
    std::sort(sections.begin(), sections.end(),
              [](const auto& a, const auto& b) { return a.raw_pointer < b.raw_pointer; });
    std::uint64_t hashed_end = layout.size_of_headers;
    for (const auto& section : sections) {
        hash(section.raw_pointer, section.raw_size, sha);
        hashed_end = std::max<std::uint64_t>(hashed_end,
                                             std::uint64_t{section.raw_pointer} + section.raw_size);
    }
    if (image_end > hashed_end) {
        hash(hashed_end, image_end - hashed_end, sha);
    }
    return sha.finish();
}

std::array<std::uint8_t, 32> digest_of(std::string_view image, const PeLayout& layout,
                                       std::size_t image_end) {
    return digest_of(layout, image_end,
                     [&](std::uint64_t offset, std::uint64_t length, util::Sha256& sha) {
                         sha.update(image.substr(static_cast<std::size_t>(offset),
                                                 static_cast<std::size_t>(length)));
                     });
}

// The WIN_CERTIFICATE (revision 2.0, PKCS_SIGNED_DATA) holding `der`, padded to 8 bytes.
std::string certificate_table(const std::string& der) {
    const std::size_t length = 8 + der.size();
    std::string table(8, '\0');
    util::store_le32(table, 0, static_cast<std::uint32_t>(length));
    table[4] = 0x00; // wRevision 0x0200
    table[5] = 0x02;
    table[6] = 0x02; // wCertificateType 0x0002: PKCS_SIGNED_DATA
    table[7] = 0x00;
    table.append(der);
    table.resize((length + 7) / 8 * 8, '\0');
    return table;
}

// SpcIndirectDataContent for a PE image with a SHA-256 digest, DER.
std::string indirect_data_content(const std::array<std::uint8_t, 32>& digest) {
    static constexpr unsigned char head[] = {
        0x30, 0x68, // SEQUENCE
        0x30, 0x33, //  SpcAttributeTypeAndOptionalValue
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01,
        0x0f,                               // SPC_PE_IMAGE_DATAOBJ
        0x30, 0x25,                         //   SpcPeImageData
        0x03, 0x01, 0x00,                   //    flags: none
        0xa0, 0x20, 0xa2, 0x1e, 0x80, 0x1c, //    file:
                                            //    <<<Obsolete>>>
        0x00, '<', 0x00, '<', 0x00, '<', 0x00, 'O', 0x00, 'b', 0x00, 's', 0x00, 'o', 0x00, 'l',
        0x00, 'e', 0x00, 't', 0x00, 'e', 0x00, '>', 0x00, '>', 0x00, '>', 0x30, 0x31, //  DigestInfo
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
        0x04, 0x20};
    std::string der(reinterpret_cast<const char*>(head), sizeof head);
    der.append(reinterpret_cast<const char*>(digest.data()), digest.size());
    return der;
}

[[noreturn]] void openssl_failed(std::string_view what, std::string_view step) {
    throw build_failed("{}: signing failed ({}): {}", what, step, util::openssl_message());
}

std::string signed_data(const std::string& content, std::string_view key_pem,
                        std::string_view certificate_pem, std::int64_t signing_time,
                        std::string_view what) {
    const util::Pkey key = util::private_key_from_pem(key_pem);
    const util::X509Ptr cert = util::certificate_from_pem(certificate_pem);
    if (!key || !cert) {
        throw bad_input("{}: the signing key or certificate is not PEM: {}", what,
                        util::openssl_message());
    }
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
        util::openssl_message();
        throw bad_input("{}: the signing key does not belong to the certificate; give the key "
                        "and the certificate of the same db key pair",
                        what);
    }
    util::Pkcs7 p7(PKCS7_new());
    if (!p7 || PKCS7_set_type(p7.get(), NID_pkcs7_signed) != 1) {
        openssl_failed(what, "SignedData");
    }
    PKCS7_SIGNER_INFO* signer = PKCS7_add_signature(p7.get(), cert.get(), key.get(), EVP_sha256());
    ASN1_OBJECT* type = OBJ_txt2obj(k_spc_indirect_data, 1);
    if (signer == nullptr || type == nullptr ||
        PKCS7_add_signed_attribute(signer, NID_pkcs9_contentType, V_ASN1_OBJECT, type) != 1) {
        ASN1_OBJECT_free(type);
        openssl_failed(what, "attributes");
    }
    ASN1_TIME* time = ASN1_TIME_set(nullptr, static_cast<time_t>(signing_time));
    if (time == nullptr ||
        PKCS7_add_signed_attribute(signer, NID_pkcs9_signingTime, time->type, time) != 1) {
        ASN1_TIME_free(time);
        openssl_failed(what, "signing time");
    }
    if (PKCS7_add_certificate(p7.get(), cert.get()) != 1 ||
        PKCS7_content_new(p7.get(), NID_pkcs7_data) != 1) {
        openssl_failed(what, "certificate");
    }
    // The digest covers the content without its outer SEQUENCE header (Authenticode).
    BIO* data = PKCS7_dataInit(p7.get(), nullptr);
    if (data == nullptr) {
        openssl_failed(what, "init");
    }
    const int written = BIO_write(data, content.data() + 2, static_cast<int>(content.size() - 2));
    const bool finished = written == static_cast<int>(content.size() - 2) && BIO_flush(data) == 1 &&
                          PKCS7_dataFinal(p7.get(), data) == 1;
    BIO_free_all(data);
    if (!finished) {
        openssl_failed(what, "digest");
    }
    util::Pkcs7 inner(PKCS7_new());
    ASN1_STRING* sequence = ASN1_STRING_new();
    ASN1_TYPE* other = ASN1_TYPE_new();
    if (!inner || sequence == nullptr || other == nullptr ||
        ASN1_STRING_set(sequence, content.data(), static_cast<int>(content.size())) != 1) {
        ASN1_STRING_free(sequence);
        ASN1_TYPE_free(other);
        openssl_failed(what, "content");
    }
    ASN1_TYPE_set(other, V_ASN1_SEQUENCE, sequence);
    inner->type = OBJ_txt2obj(k_spc_indirect_data, 1);
    inner->d.other = other;
    if (PKCS7_set_content(p7.get(), inner.get()) != 1) {
        openssl_failed(what, "content");
    }
    (void)inner.release(); // owned by p7 now
    const int size = i2d_PKCS7(p7.get(), nullptr);
    if (size <= 0) {
        openssl_failed(what, "encoding");
    }
    std::string der(static_cast<std::size_t>(size), '\0');
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    i2d_PKCS7(p7.get(), &out);
    return der;
}

} // namespace

std::array<std::uint8_t, 32> authenticode_sha256(std::string_view image, std::string_view what) {
    const PeLayout layout = parse_pe(image, what);
    const std::size_t end =
        layout.certificate_table_size != 0 ? layout.certificate_table_pointer : image.size();
    return digest_of(image, layout, end);
}

std::string sign_pe(std::string_view image, std::string_view key_pem,
                    std::string_view certificate_pem, std::int64_t signing_time,
                    std::string_view what) {
    const PeLayout layout = parse_pe(image, what);
    std::string out(image.substr(
        0, layout.certificate_table_size != 0 ? layout.certificate_table_pointer : image.size()));
    out.resize((out.size() + 7) / 8 * 8, '\0');
    util::store_le32(out, layout.certificate_directory_offset, 0);
    util::store_le32(out, layout.certificate_directory_offset + 4, 0);
    const std::string der = signed_data(indirect_data_content(digest_of(out, layout, out.size())),
                                        key_pem, certificate_pem, signing_time, what);
    const std::string table = certificate_table(der);
    if (out.size() + table.size() > k_max_pe_image_size) {
        throw bad_input("{}: the signed image would pass {} bytes", what, k_max_pe_image_size);
    }
    const std::size_t at = out.size();
    out.append(table);
    util::store_le32(out, layout.certificate_directory_offset, static_cast<std::uint32_t>(at));
    util::store_le32(out, layout.certificate_directory_offset + 4,
                     static_cast<std::uint32_t>(table.size()));
    util::store_le32(out, layout.checksum_offset, pe_checksum(out, layout.checksum_offset));
    return out;
}

void sign_pe_to_file(PeImage& image, std::string_view key_pem, std::string_view certificate_pem,
                     std::int64_t signing_time, std::string_view what,
                     const std::filesystem::path& output) {
    const PeLayout& layout = image.layout();
    const std::uint64_t size = image.size();
    const std::uint64_t table_at = (size + 7) / 8 * 8;
    // Bytes past the image up to the table are zeros, as sign_pe() pads them.
    const auto read = [&](std::uint64_t offset, std::uint64_t length,
                          const std::function<void(std::string_view)>& sink) {
        static const std::string zeros(8, '\0');
        const std::uint64_t inside = offset < size ? std::min(length, size - offset) : 0;
        if (inside != 0) {
            image.read(offset, inside, sink);
        }
        if (length > inside) {
            sink(std::string_view(zeros.data(), static_cast<std::size_t>(length - inside)));
        }
    };
    util::store_le32(image.head(), layout.certificate_directory_offset, 0);
    util::store_le32(image.head(), layout.certificate_directory_offset + 4, 0);
    const auto digest = digest_of(
        layout, table_at, [&](std::uint64_t offset, std::uint64_t length, util::Sha256& sha) {
            read(offset, length, [&](std::string_view bytes) { sha.update(bytes); });
        });
    const std::string table = certificate_table(
        signed_data(indirect_data_content(digest), key_pem, certificate_pem, signing_time, what));
    if (table_at + table.size() > k_max_pe_image_size) {
        throw bad_input("{}: the signed image would pass {} bytes", what, k_max_pe_image_size);
    }
    util::store_le32(image.head(), layout.certificate_directory_offset,
                     static_cast<std::uint32_t>(table_at));
    util::store_le32(image.head(), layout.certificate_directory_offset + 4,
                     static_cast<std::uint32_t>(table.size()));
    PeChecksum checksum(layout.checksum_offset);
    std::uint64_t at = 0;
    read(0, table_at, [&](std::string_view bytes) {
        checksum.add(at, bytes);
        at += bytes.size();
    });
    checksum.add(table_at, table);
    util::store_le32(image.head(), layout.checksum_offset,
                     checksum.finish(table_at + table.size()));

    util::AtomicFile out(output);
    read(0, table_at, [&](std::string_view bytes) { out.write(bytes); });
    out.write(table);
    out.commit();
}

} // namespace edgeforge::secureboot
