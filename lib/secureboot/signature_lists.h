// Certificates and EFI signature lists other people made, added to KEK, db or dbx beside a key
// set's own certificate: Microsoft's UEFI CA certificates (option ROMs, dual boot), a vendor's
// certificate, the lists exported from a machine's firmware (efi-readvar, CanvOS's
// secure-boot/exported-keys). Read bounded and checked before anything is signed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgeforge::secureboot {

inline constexpr std::uintmax_t k_max_signature_file_size = 4 << 20; // Microsoft's dbx: ~30 KiB
inline constexpr std::size_t k_max_included_files = 256;

// What one file adds to one variable.
struct ExtraSignatures {
    std::string variable;                      // "KEK", "db" or "dbx"
    std::vector<std::string> certificates_der; // X.509 certificates: one list each, our owner
    std::string signature_lists;               // EFI_SIGNATURE_LISTs as they were, owners kept
    std::string origin;                        // the file, for messages
};

// Nothing when `data` is a well-formed sequence of EFI_SIGNATURE_LISTs (at least one; each
// SignatureListSize >= 28 + SignatureHeaderSize and within the data, SignatureSize >= 16 and
// dividing the entries' bytes, at least one entry); else what is wrong, with the byte offset.
std::optional<std::string> signature_list_problem(std::string_view data);

// Reads `file` for `variable` (KEK, db or dbx): one or more PEM certificates, a DER
// certificate, or EFI signature lists. Error (bad input) naming the file for a missing or
// unreadable file, one over k_max_signature_file_size, another variable name, or anything else.
ExtraSignatures read_extra_signatures(std::string_view variable, const std::filesystem::path& file);

// The same for bytes already read (`origin` names them in messages).
ExtraSignatures parse_extra_signatures(std::string_view variable, std::string data,
                                       const std::string& origin);

// `--include-cert VARIABLE=FILE`: the same, from that text.
ExtraSignatures read_included_cert(std::string_view spec);

// A directory of them: files named KEK, db or dbx (optionally with .esl, .pem, .der, .crt or
// .cer: CanvOS's secure-boot/exported-keys, efi-readvar's output), or subdirectories KEK/, db/
// and dbx/ whose files (sorted) are read. Anything else in it is an error naming the entry;
// so is an empty directory.
std::vector<ExtraSignatures> read_included_cert_dir(const std::filesystem::path& directory);

} // namespace edgeforge::secureboot
