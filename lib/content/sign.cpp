// Detached signatures of content bundles: ECDSA P-256 or Ed25519 keys in PEM files (OpenSSL EVP).
#include "content/sign.h"

#include <cstdio>
#include <memory>
#include <vector>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include "base/error.h"
#include "util/fs.h"
#include "util/openssl.h"

namespace edgeforge::content {
namespace {

using util::Bio;
using util::MdCtx;
using util::Pkey;

// Where the key files fail, an empty error queue means the PEM text held no key.
std::string openssl_message() {
    return util::openssl_message("no PEM key found");
}

std::string read_key_file(const std::filesystem::path& file, std::string_view what) {
    try {
        return util::read_file(file);
    } catch (const std::system_error& error) {
        throw bad_input("cannot read the {} {}: {}", what, file.string(), error.code().message());
    }
}

enum class KeyKind { ecdsa_p256, ed25519 };

// "RSA", "DSA", "X448": how OpenSSL names the key's algorithm.
std::string type_name_of(EVP_PKEY* key) {
    const char* name = EVP_PKEY_get0_type_name(key);
    return name != nullptr ? name : "unknown";
}

// Which supported kind the key is; throws for RSA, other curves and the like.
KeyKind key_kind(EVP_PKEY* key, const std::filesystem::path& file, std::string_view what) {
    const int id = EVP_PKEY_get_base_id(key);
    if (id == EVP_PKEY_ED25519) {
        return KeyKind::ed25519;
    }
    if (id == EVP_PKEY_EC) {
        char curve[64] = {};
        std::size_t length = 0;
        if (EVP_PKEY_get_utf8_string_param(key, "group", curve, sizeof curve, &length) == 1 &&
            std::string_view(curve) == "prime256v1") {
            return KeyKind::ecdsa_p256;
        }
        throw bad_input("the {} {} is an EC key on the curve '{}'; bundles are signed with "
                        "ECDSA P-256 (prime256v1) or Ed25519 keys",
                        what, file.string(), curve);
    }
    throw bad_input("the {} {} is an {} key; bundles are signed with ECDSA P-256 or Ed25519 keys "
                    "(openssl genpkey -algorithm ed25519 -out key.pem)",
                    what, file.string(), type_name_of(key));
}

const EVP_MD* digest_for(KeyKind kind) {
    return kind == KeyKind::ed25519 ? nullptr : EVP_sha256();
}

} // namespace

std::string signed_message(std::string_view sha256_hex) {
    return "sha256:" + std::string(sha256_hex);
}

std::string sign_message(const std::filesystem::path& key_pem, std::string_view message) {
    const std::string pem = read_key_file(key_pem, "signing key");
    Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        throw bad_input("the signing key {} is not a PEM private key (unencrypted PKCS#8 or "
                        "EC PRIVATE KEY): {}",
                        key_pem.string(), openssl_message());
    }
    const KeyKind kind = key_kind(key.get(), key_pem, "signing key");
    MdCtx context(EVP_MD_CTX_new());
    std::size_t length = 0;
    const auto* data = reinterpret_cast<const unsigned char*>(message.data());
    if (!context ||
        EVP_DigestSignInit(context.get(), nullptr, digest_for(kind), nullptr, key.get()) != 1 ||
        EVP_DigestSign(context.get(), nullptr, &length, data, message.size()) != 1) {
        throw build_failed("cannot sign with {}: {}", key_pem.string(), openssl_message());
    }
    std::string signature(length, '\0');
    if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                       data, message.size()) != 1) {
        throw build_failed("cannot sign with {}: {}", key_pem.string(), openssl_message());
    }
    signature.resize(length);
    return signature;
}

bool verify_message(const std::filesystem::path& public_pem, std::string_view message,
                    std::string_view signature) {
    const std::string pem = read_key_file(public_pem, "public key");
    Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        ERR_clear_error();
        Bio again(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
        key.reset(PEM_read_bio_PrivateKey(again.get(), nullptr, nullptr, nullptr));
    }
    if (!key) {
        throw bad_input("the public key {} is not a PEM public key (-----BEGIN PUBLIC KEY-----; "
                        "make one with openssl pkey -in key.pem -pubout): {}",
                        public_pem.string(), openssl_message());
    }
    const KeyKind kind = key_kind(key.get(), public_pem, "public key");
    MdCtx context(EVP_MD_CTX_new());
    if (!context ||
        EVP_DigestVerifyInit(context.get(), nullptr, digest_for(kind), nullptr, key.get()) != 1) {
        throw build_failed("cannot verify with {}: {}", public_pem.string(), openssl_message());
    }
    const int result = EVP_DigestVerify(
        context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
        reinterpret_cast<const unsigned char*>(message.data()), message.size());
    ERR_clear_error();
    return result == 1;
}

} // namespace edgeforge::content
