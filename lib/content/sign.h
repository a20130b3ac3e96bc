// Detached signatures of content bundles: ECDSA P-256 or Ed25519 keys in PEM files (OpenSSL EVP).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace edgeforge::content {

// The exact bytes a bundle signature covers: the ASCII text "sha256:" followed by the 64
// lowercase hex digits of the archive's SHA-256, without a newline (71 bytes). ECDSA keys sign
// them with SHA-256 (DER signature, what `openssl dgst -sha256 -sign` writes); Ed25519 keys sign
// them as they are (64-byte signature, what `openssl pkeyutl -sign -rawin` writes).
std::string signed_message(std::string_view sha256_hex);

// Signs `message` with the private key in `key_pem` (PEM, PKCS#8 or traditional, unencrypted).
// Throws Error (bad input) naming the file when it cannot be read or is not an ECDSA P-256 or
// Ed25519 private key.
std::string sign_message(const std::filesystem::path& key_pem, std::string_view message);

// True when `signature` is a valid signature of `message` by the public key in `public_pem`
// (a PEM public key; a PEM private key is accepted too and its public half used). Throws Error
// (bad input) naming the file when it cannot be read or holds no supported key.
bool verify_message(const std::filesystem::path& public_pem, std::string_view message,
                    std::string_view signature);

} // namespace edgeforge::content
