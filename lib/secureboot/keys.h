// Secure Boot key sets: the PK, KEK and db key pairs with their self-signed X.509 certificates,
// signature lists and authenticated variable updates, plus the TPM PCR policy key (OpenSSL).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "secureboot/efi_vars.h"
#include "secureboot/signature_lists.h"

namespace edgeforge::secureboot {

enum class KeyType { rsa2048, rsa4096 };

// "rsa2048" or "rsa4096"; nothing for other text.
std::optional<KeyType> parse_key_type(std::string_view text);
std::string_view key_type_name(KeyType type);
int key_bits(KeyType type);

inline constexpr int k_default_days = 5475; // 15 years, CanvOS's EXPIRATION_IN_DAYS
inline constexpr int k_max_days = 36500;
inline constexpr std::size_t k_max_org_length = 64;

struct KeySetOptions {
    std::string org;                     // 1..64 printable ASCII characters
    int days = k_default_days;           // certificate validity, 1..36500
    KeyType key_type = KeyType::rsa2048; // PK, KEK and db; the TPM PCR key is always RSA 2048
    std::int64_t not_before = 0;         // seconds since the epoch: notBefore and .auth timestamps
    std::optional<Guid> owner;           // the SignatureOwner; empty: a new random GUID
    // Added after the set's own certificate: to KEK.esl/KEK.auth and db.esl/db.auth; dbx
    // ones make dbx.esl and dbx.auth (signed by KEK). Certificates get the set's owner GUID.
    std::vector<ExtraSignatures> extra;
};

// One file of a key directory, in memory until written.
struct KeyFile {
    std::string name;    // "PK.key", "db.auth", "GUID.txt", ...
    std::string content; // never logged: private keys are among them
    bool secret = false; // a private key: written with mode 0600 and listed in .gitignore
};

struct KeySet {
    Guid owner;
    std::int64_t not_before = 0;
    std::int64_t not_after = 0; // not_before + days
    std::vector<KeyFile> files; // in write order
};

// Every problem with the options, reported together: Error (bad input) naming --org and --days.
void check_key_set_options(const KeySetOptions& options);

// Generates the key set (checks the options first). For each of PK, KEK and db: NAME.key (PEM
// PKCS#8 private key), NAME.pem and NAME.der (the self-signed certificate: CN "<org> NAME",
// O "<org>", a random 159-bit serial, v3 with subjectKeyIdentifier, authorityKeyIdentifier and
// basicConstraints critical CA:TRUE, as `openssl req -x509` makes them for efitools and Kairos),
// NAME.esl (one EFI_CERT_X509_GUID entry owned by `owner`) and NAME.auth (the time-based
// authenticated update: PK signed by PK, KEK by PK, db by KEK). Then tpm2-pcr-private.pem and
// tpm2-pcr-public.pem (RSA 2048, the PEM files systemd-measure sign --private-key/--public-key
// take), GUID.txt, .gitignore (the private keys) and README.txt. With options.extra, KEK.esl and
// db.esl hold the own list followed by the extra ones (what `cat` of efitools' lists gives),
// and dbx.esl/dbx.auth are added after db. Throws Error (build failed) when OpenSSL fails.
KeySet generate_key_set(const KeySetOptions& options);

// Your own PK, KEK and db key pairs (CanvOS's UKI_BRING_YOUR_OWN_KEYS), checked by the caller
// (secureboot::signing_pair_problems).
struct ImportedKeys {
    struct Pair {
        std::string key_pem;
        std::string certificate_pem;
    };
    std::array<Pair, 3> pairs;                  // PK, KEK, db
    std::optional<std::string> pcr_private_pem; // tpm2-pcr-private.pem; none: a new one
    std::int64_t timestamp = 0;                 // of the .auth updates
    std::int64_t not_after = 0;                 // the earliest expiry, for reports
    std::optional<Guid> owner;                  // none: a new random GUID
    std::vector<ExtraSignatures> extra;
    std::string org; // for README.txt
};

// The key set of your own pairs: the same files generate_key_set writes, with your keys and
// certificates as they are, and a new TPM PCR key when none is given.
KeySet import_key_set(const ImportedKeys& keys);

// The PKCS#7 detached SignedData (DER) of `data` by the key and certificate given as PEM, made
// exactly as efitools 1.9's sign-efi-sig-list makes it: PKCS7_sign with PKCS7_BINARY |
// PKCS7_DETACHED | PKCS7_NOATTR, SHA-256, the signer certificate included, and encoded without
// the ContentInfo wrapper (i2d_PKCS7_SIGNED), as UEFI's WIN_CERTIFICATE_UEFI_GUID CertData
// holds it. Wrap it in a ContentInfo (OID pkcs7-signedData) to read it with d2i_PKCS7.
std::string sign_pkcs7_detached(std::string_view key_pem, std::string_view certificate_pem,
                                std::string_view data);

// The names generate_key_set writes, in order.
std::vector<std::string> key_directory_file_names();

// Reads `directory`/GUID.txt when it exists: the owner GUID to keep. Throws Error (bad input)
// naming the file when it holds anything but one GUID.
std::optional<Guid> read_owner_guid(const std::filesystem::path& directory);

// Writes the set into `directory` (created, mode 0700, when missing). Before writing anything
// it checks that `directory` is a writable directory and, without `force`, that none of the
// files exists but GUID.txt (whose GUID the caller kept): Error (bad input) naming them, and
// nothing changed. Each file is written atomically; secret ones with mode 0600.
void write_key_set(const std::filesystem::path& directory, const KeySet& set, bool force);

} // namespace edgeforge::secureboot
