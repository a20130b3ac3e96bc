// OpenSSL handles owned by RAII, and the last OpenSSL error in words.
#include "util/openssl.h"

#include <openssl/err.h>
#include <openssl/pem.h>

namespace util {

std::string openssl_message(std::string_view when_none) {
    const unsigned long code = ERR_peek_last_error();
    ERR_clear_error();
    if (code == 0) {
        return std::string(when_none);
    }
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    return text;
}

namespace {

int no_passphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*user*/) {
    return -1;
}

Bio memory_bio(std::string_view data) {
    return Bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

} // namespace

Pkey private_key_from_pem(std::string_view pem) {
    const Bio bio = memory_bio(pem);
    return Pkey(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr)
                    : nullptr);
}

X509Ptr certificate_from_pem(std::string_view pem) {
    const Bio bio = memory_bio(pem);
    return X509Ptr(bio ? PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
}

std::string certificate_der(X509* certificate) {
    const int length = i2d_X509(certificate, nullptr);
    if (length <= 0) {
        return {};
    }
    std::string der(static_cast<std::size_t>(length), '\0');
    auto* cursor = reinterpret_cast<unsigned char*>(der.data());
    return i2d_X509(certificate, &cursor) == length ? der : std::string();
}

} // namespace util
