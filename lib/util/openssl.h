// OpenSSL handles owned by RAII, and the last OpenSSL error in words.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

namespace util {

template <auto Free> struct OpensslDeleter {
    template <typename T> void operator()(T* pointer) const { Free(pointer); }
};
using Pkey = std::unique_ptr<EVP_PKEY, OpensslDeleter<EVP_PKEY_free>>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, OpensslDeleter<EVP_PKEY_CTX_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, OpensslDeleter<EVP_MD_CTX_free>>;
using Bio = std::unique_ptr<BIO, OpensslDeleter<BIO_free>>;
using X509Ptr = std::unique_ptr<X509, OpensslDeleter<X509_free>>;
using X509Ext = std::unique_ptr<X509_EXTENSION, OpensslDeleter<X509_EXTENSION_free>>;
using Pkcs7 = std::unique_ptr<PKCS7, OpensslDeleter<PKCS7_free>>;
using Bignum = std::unique_ptr<BIGNUM, OpensslDeleter<BN_free>>;

// The last OpenSSL error in words (`when_none` when the queue is empty), and the queue cleared.
std::string openssl_message(std::string_view when_none = "unknown OpenSSL error");

// A PEM private key or X.509 certificate held in memory; null when it cannot be read (the
// reason is in the error queue). An encrypted key is never prompted for: it is unreadable.
Pkey private_key_from_pem(std::string_view pem);
X509Ptr certificate_from_pem(std::string_view pem);
// The DER encoding of `certificate`; empty when OpenSSL cannot encode it.
std::string certificate_der(X509* certificate);

} // namespace util
