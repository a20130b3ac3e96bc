// Certificates and EFI signature lists added to KEK, db or dbx.
#include "secureboot/signature_lists.h"

#include "secureboot/signing_key.h"

#include <algorithm>
#include <system_error>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/error.h"
#include "util/bytes.h"
#include "util/fs.h"
#include "util/openssl.h"

namespace edgeforge::secureboot {
namespace {

namespace stdfs = std::filesystem;

constexpr std::size_t k_list_header = 28; // SignatureType, ListSize, HeaderSize, SignatureSize
constexpr std::size_t k_max_certificates = 64;

bool known_variable(std::string_view name) {
    return name == "KEK" || name == "db" || name == "dbx";
}

// PEM certificates: every CERTIFICATE block; nothing when the data holds none.
std::vector<std::string> pem_certificates(std::string_view data, const std::string& origin) {
    std::vector<std::string> out;
    if (data.find("-----BEGIN") == std::string_view::npos) {
        return out;
    }
    util::Bio bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) {
        throw build_failed("cannot allocate an OpenSSL buffer");
    }
    for (;;) {
        util::X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
        if (!certificate) {
            break;
        }
        if (out.size() == k_max_certificates) {
            throw bad_input("{}: more than {} certificates; split it", origin, k_max_certificates);
        }
        std::string der = util::certificate_der(certificate.get());
        if (der.empty()) {
            throw bad_input("{}: certificate {} cannot be encoded as DER", origin,
                            out.size() + 1);
        }
        out.push_back(std::move(der));
    }
    // The read that ended the loop must have found no further PEM block; anything else is a
    // damaged certificate, never skipped.
    const unsigned long last = ERR_peek_last_error();
    const bool end_of_data = last == 0 || (ERR_GET_LIB(last) == ERR_LIB_PEM &&
                                           ERR_GET_REASON(last) == PEM_R_NO_START_LINE);
    const std::string problem = util::openssl_message();
    if (!end_of_data) {
        throw bad_input("{}: certificate {} cannot be read ({}); fix or remove it", origin,
                        out.size() + 1, problem);
    }
    if (out.empty()) {
        throw bad_input("{}: a PEM file without a readable CERTIFICATE block; give X.509 "
                        "certificates (PEM or DER) or EFI signature lists",
                        origin);
    }
    return out;
}

// One whole DER certificate; nothing when the data is not exactly that.
std::optional<std::string> der_certificate(std::string_view data) {
    const auto* cursor = reinterpret_cast<const unsigned char*>(data.data());
    util::X509Ptr certificate(d2i_X509(nullptr, &cursor, static_cast<long>(data.size())));
    if (!certificate ||
        cursor != reinterpret_cast<const unsigned char*>(data.data()) + data.size()) {
        (void)util::openssl_message();
        return std::nullopt;
    }
    return util::certificate_der(certificate.get());
}

} // namespace

std::optional<std::string> signature_list_problem(std::string_view data) {
    if (data.empty()) {
        return "no signature list (the data is empty)";
    }
    std::size_t at = 0;
    while (at < data.size()) {
        if (data.size() - at < k_list_header) {
            return fmt::format("a signature list header at byte {} is cut short ({} of {} bytes)",
                               at, data.size() - at, k_list_header);
        }
        const std::uint64_t list_size = util::le32(util::byte_span(data), at + 16);
        const std::uint64_t header_size = util::le32(util::byte_span(data), at + 20);
        const std::uint64_t signature_size = util::le32(util::byte_span(data), at + 24);
        if (list_size < k_list_header + header_size || list_size > data.size() - at) {
            return fmt::format("the signature list at byte {} gives a size of {} bytes, outside "
                               "its header and the {} bytes left",
                               at, list_size, data.size() - at);
        }
        const std::uint64_t entries = list_size - k_list_header - header_size;
        if (signature_size < 16 || entries == 0 || entries % signature_size != 0) {
            return fmt::format("the signature list at byte {} has entries of {} bytes in {} "
                               "bytes (an entry is a 16-byte owner and its data)",
                               at, signature_size, entries);
        }
        at += static_cast<std::size_t>(list_size);
    }
    return std::nullopt;
}

ExtraSignatures read_extra_signatures(std::string_view variable, const stdfs::path& file) {
    const std::string origin = file.string();
    if (!known_variable(variable)) {
        throw bad_input("{}: '{}' is not a variable certificates can be added to; use KEK, db "
                        "or dbx",
                        origin, std::string(variable));
    }
    return parse_extra_signatures(variable, read_key_material(file, k_max_signature_file_size),
                                  origin);
}

ExtraSignatures parse_extra_signatures(std::string_view variable, std::string data,
                                       const std::string& origin) {
    if (!known_variable(variable)) {
        throw bad_input("{}: '{}' is not a variable certificates can be added to; use KEK, db "
                        "or dbx",
                        origin, std::string(variable));
    }
    ExtraSignatures extra{std::string(variable), {}, {}, origin};
    extra.certificates_der = pem_certificates(data, origin);
    if (!extra.certificates_der.empty()) {
        return extra;
    }
    if (auto der = der_certificate(data)) {
        extra.certificates_der.push_back(std::move(*der));
        return extra;
    }
    if (const auto problem = signature_list_problem(data)) {
        throw bad_input("{}: neither an X.509 certificate (PEM or DER) nor EFI signature lists "
                        "({}); give a certificate, or a list as efi-readvar or "
                        "cert-to-efi-sig-list writes it",
                        origin, *problem);
    }
    extra.signature_lists = std::move(data);
    return extra;
}

ExtraSignatures read_included_cert(std::string_view spec) {
    const auto equals = spec.find('=');
    if (equals == std::string_view::npos || equals == 0 || equals + 1 == spec.size()) {
        throw bad_input("--include-cert '{}': give VARIABLE=FILE, VARIABLE one of KEK, db, dbx "
                        "(e.g. db=MicCorUEFCA2011.crt)",
                        std::string(spec.substr(0, 200)));
    }
    return read_extra_signatures(spec.substr(0, equals), stdfs::path(spec.substr(equals + 1)));
}

std::vector<ExtraSignatures> read_included_cert_dir(const stdfs::path& directory) {
    std::error_code ec;
    if (!stdfs::is_directory(directory, ec)) {
        throw bad_input("--include-cert-dir {}: not a directory", directory.string());
    }
    std::vector<stdfs::path> entries;
    for (const auto& entry : stdfs::directory_iterator(directory, ec)) {
        entries.push_back(entry.path());
        if (entries.size() > k_max_included_files) {
            throw bad_input("{}: more than {} entries; certificates and lists for KEK, db and "
                            "dbx are a handful",
                            directory.string(), k_max_included_files);
        }
    }
    if (ec) {
        throw bad_input("cannot read the directory {}: {}", directory.string(), ec.message());
    }
    std::sort(entries.begin(), entries.end());
    std::vector<ExtraSignatures> out;
    for (const auto& entry : entries) {
        const std::string stem = entry.stem().string();
        const std::string name = entry.filename().string();
        if (stdfs::is_directory(entry, ec) && known_variable(name)) {
            std::vector<stdfs::path> files;
            for (const auto& item : stdfs::directory_iterator(entry, ec)) {
                files.push_back(item.path());
                if (files.size() > k_max_included_files) {
                    throw bad_input("{}: more than {} files", entry.string(), k_max_included_files);
                }
            }
            std::sort(files.begin(), files.end());
            for (const auto& file : files) {
                out.push_back(read_extra_signatures(name, file));
            }
            continue;
        }
        const std::string extension = entry.extension().string();
        const bool known_extension = extension.empty() || extension == ".esl" ||
                                     extension == ".pem" || extension == ".der" ||
                                     extension == ".crt" || extension == ".cer";
        if (stdfs::is_regular_file(entry, ec) && known_variable(stem) && known_extension) {
            out.push_back(read_extra_signatures(stem, entry));
            continue;
        }
        throw bad_input("{}: not a certificate source edgeforge reads; name files KEK, db or dbx "
                        "(optionally .esl/.pem/.der/.crt/.cer), or put them into KEK/, db/ or "
                        "dbx/ subdirectories",
                        entry.string());
    }
    if (out.empty()) {
        throw bad_input("--include-cert-dir {}: no KEK, db or dbx certificates in it",
                        directory.string());
    }
    return out;
}

} // namespace edgeforge::secureboot
