// Checks a signing key pair given as PEM (the db key that signs EFI binaries) before it is used:
// both readable, the key the certificate's, the certificate valid now.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace edgeforge::secureboot {

inline constexpr std::size_t k_max_key_file_size = 1 << 20; // a PEM key or certificate: a few KiB

// The bytes of a key, certificate, signature list or enrolment file, which a key directory or
// the user gives: Error (bad input) naming the file when it is missing, not a regular file,
// larger than `limit` bytes or unreadable.
std::string read_key_material(const std::filesystem::path& file, std::uintmax_t limit);

// What is wrong with the pair, one sentence each naming `key_name`/`certificate_name` and what to
// do; empty when it is fine: the key is not an unencrypted PEM private key, the certificate not
// a PEM X.509 certificate, the key not the certificate's, the certificate expired (notAfter
// before `now`, seconds since the epoch) or not valid yet (notBefore after `now`).
std::vector<std::string> signing_pair_problems(std::string_view key_pem,
                                               std::string_view certificate_pem, std::int64_t now,
                                               const std::string& key_name,
                                               const std::string& certificate_name);

} // namespace edgeforge::secureboot
