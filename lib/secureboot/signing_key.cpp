// Checks a signing key pair before it is used.
#include "secureboot/signing_key.h"

#include <ctime>

#include <fmt/format.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/error.h"
#include "util/fs.h"
#include "util/openssl.h"

namespace edgeforge::secureboot {
namespace {

std::string asn1_time_text(const ASN1_TIME* time) {
    util::Bio bio(BIO_new(BIO_s_mem()));
    if (!bio || ASN1_TIME_print(bio.get(), time) != 1) {
        return "?";
    }
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(length));
}

} // namespace

std::string read_key_material(const std::filesystem::path& file, std::uintmax_t limit) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) {
        throw bad_input("{}: no such file (or not a regular file)", file.string());
    }
    const auto size = std::filesystem::file_size(file, ec);
    if (ec || size > limit) {
        throw bad_input("{}: {} bytes; a key, certificate or signature list is at most {} bytes: "
                        "is it the right file?",
                        file.string(), ec ? 0 : size, limit);
    }
    try {
        return util::read_file(file);
    } catch (const std::system_error& error) {
        throw bad_input("{}: cannot read it: {}", file.string(), error.code().message());
    }
}

std::vector<std::string> signing_pair_problems(std::string_view key_pem,
                                               std::string_view certificate_pem, std::int64_t now,
                                               const std::string& key_name,
                                               const std::string& certificate_name) {
    std::vector<std::string> problems;
    if (key_pem.size() > k_max_key_file_size || certificate_pem.size() > k_max_key_file_size) {
        problems.push_back(fmt::format("{} or {} is larger than {} bytes; a PEM key or "
                                       "certificate is a few KiB: are they the right files?",
                                       key_name, certificate_name, k_max_key_file_size));
        return problems;
    }
    const util::Pkey key = util::private_key_from_pem(key_pem);
    if (!key) {
        problems.push_back(fmt::format("{} is not an unencrypted PEM private key ({})", key_name,
                                       util::openssl_message()));
    }
    const util::X509Ptr certificate = util::certificate_from_pem(certificate_pem);
    if (!certificate) {
        problems.push_back(fmt::format("{} is not a PEM X.509 certificate ({})", certificate_name,
                                       util::openssl_message()));
    }
    if (!key || !certificate) {
        return problems;
    }
    if (X509_check_private_key(certificate.get(), key.get()) != 1) {
        (void)util::openssl_message();
        problems.push_back(fmt::format("{} is not the private key of {}: give the key and the "
                                       "certificate of the same key pair",
                                       key_name, certificate_name));
    }
    auto when = static_cast<time_t>(now);
    const int after = X509_cmp_time(X509_get0_notAfter(certificate.get()), &when);
    const int before = X509_cmp_time(X509_get0_notBefore(certificate.get()), &when);
    if (after == 0 || before == 0) {
        (void)util::openssl_message();
        problems.push_back(fmt::format("{} has validity dates OpenSSL cannot read: give a "
                                       "well-formed X.509 certificate",
                                       certificate_name));
    } else if (after < 0) {
        problems.push_back(fmt::format(
            "{} expired on {}: sign with a valid certificate (renew it, or `edgeforge keys "
            "generate --force` for new keys, which enrolled machines will not accept)",
            certificate_name, asn1_time_text(X509_get0_notAfter(certificate.get()))));
    } else if (before > 0) {
        problems.push_back(fmt::format("{} is not valid before {}: check the clock, or the "
                                       "SOURCE_DATE_EPOCH the keys were generated with",
                                       certificate_name,
                                       asn1_time_text(X509_get0_notBefore(certificate.get()))));
    }
    return problems;
}

} // namespace edgeforge::secureboot
