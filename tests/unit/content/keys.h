// Test support: ECDSA P-256, Ed25519 and RSA key pairs written as PEM files.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "util/fs.h"

namespace test_keys {

// Writes <directory>/<name>.pem (private, PKCS#8) and <name>.pub.pem; `type` is "ED25519",
// "EC" (P-256) or "RSA".
inline void write_key_pair(const std::filesystem::path& directory, const std::string& name,
                           const std::string& type) {
    EVP_PKEY* key = nullptr;
    if (type == "EC") {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    } else if (type == "RSA") {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
    } else {
        key = EVP_PKEY_Q_keygen(nullptr, nullptr, type.c_str());
    }
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> owned(key, EVP_PKEY_free);
    const auto write = [&](const std::filesystem::path& file, bool public_only) {
        BIO* bio = BIO_new(BIO_s_mem());
        if (public_only) {
            PEM_write_bio_PUBKEY(bio, key);
        } else {
            PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
        }
        char* data = nullptr;
        const long size = BIO_get_mem_data(bio, &data);
        util::write_file_atomically(file, std::string(data, static_cast<std::size_t>(size)));
        BIO_free(bio);
    };
    write(directory / (name + ".pem"), false);
    write(directory / (name + ".pub.pem"), true);
}

} // namespace test_keys
