// `edgeforge keys generate`: the Secure Boot key directory of a project (Trusted Boot, step 1).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "build/commands.h"
#include "secureboot/keys.h"

namespace edgeforge {

inline constexpr std::string_view k_default_keys_directory = "secureboot-keys";
inline constexpr std::string_view k_default_key_org = "edgeforge";

// Where a key directory keeps its files: edgeforge's (every file in it) or CanvOS's secure-boot/
// (private-keys/, public-keys/, enrollment/, as +uki-genkey and +uki-byok write them), told
// apart by private-keys/ and public-keys/ being there.
struct KeyLayout {
    bool canvos = false;
    std::filesystem::path secret;     // NAME.key, tpm2-pcr-private.pem
    std::filesystem::path open;       // NAME.pem, tpm2-pcr-public.pem
    std::filesystem::path enrollment; // NAME.esl, NAME.auth
    std::string_view name() const { return canvos ? "CanvOS secure-boot/" : "edgeforge"; }
};
KeyLayout key_layout(const std::filesystem::path& directory);

struct KeysRequest {
    std::string org{k_default_key_org};    // --org
    int days = secureboot::k_default_days; // --days
    std::string key_type = "rsa2048";      // --key-type
    std::filesystem::path directory;       // --keys; empty: <project>/secureboot-keys
    bool force = false;                    // --force: replace existing keys
    std::vector<std::string> include_certs; // --include-cert VARIABLE=FILE
    std::filesystem::path include_cert_dir; // --include-cert-dir DIR
    std::filesystem::path import_from;      // keys import --from DIR
};

// Generates PK, KEK, db and the TPM PCR policy key into the key directory (`request.directory`,
// else secureboot-keys/ in `project_dir`). notBefore and the .auth timestamps are
// SOURCE_DATE_EPOCH when it is set, else now. An existing GUID.txt there is kept as the owner
// GUID. Bad flags, a bad SOURCE_DATE_EPOCH, a key directory that is a file or unwritable, or
// existing keys without --force: Error (bad input), nothing written. Certificates and lists from
// --include-cert-dir, then --include-cert, are added to KEK, db and dbx (read and checked
// before any key is generated). The text and --json list
// the files, the owner GUID and the expiry, never key material.
CommandOutcome run_keys_generate(const KeysRequest& request,
                                 const std::filesystem::path& project_dir);

// `keys import --from DIR`: your own PK, KEK and db pairs (flat: NAME.key and NAME.pem in DIR;
// or CanvOS's secure-boot/: private-keys/NAME.key, public-keys/NAME.pem; tpm2-pcr-private.pem
// beside the keys when you have one) written into the key directory with their .der, .esl and
// .auth (timestamp SOURCE_DATE_EPOCH, else now), the extra certificates as for generate, and a
// new TPM PCR key when DIR has none. Every pair is checked first (readable PEM, the key the
// certificate's, the certificate valid today, files at most 1 MiB): Error (bad input) listing
// every problem, nothing written.
CommandOutcome run_keys_import(const KeysRequest& request,
                               const std::filesystem::path& project_dir);

} // namespace edgeforge
