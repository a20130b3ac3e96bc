// TPM PCR 11 predictions for a Unified Kernel Image and its signed PCR policy (the .pcrsig
// section), computed exactly as Debian 12's systemd-measure 252 and systemd-stub 252 do, with
// OpenSSL only (no TPM: the TPM2_PolicyPCR trial-session digest is computed in software).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace edgeforge::secureboot {

enum class PcrBank { sha1, sha256, sha384, sha512 };

// The bank for "sha1", "sha256", "sha384" or "sha512" (any case); nothing for other text.
std::optional<PcrBank> parse_pcr_bank(std::string_view text);
// "sha1", "sha256", "sha384" or "sha512".
std::string_view pcr_bank_name(PcrBank bank);
// Every bank, in the order systemd-measure reports them (what it uses without --bank).
std::vector<PcrBank> all_pcr_banks();

// The PCR systemd-stub measures the UKI into.
inline constexpr std::uint32_t k_uki_pcr = 11;

// The sections systemd-stub 252 measures, in the order it measures them.
inline constexpr std::array<std::string_view, 7> k_measured_uki_sections{
    ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"};

// Limits on what the functions below accept.
inline constexpr std::size_t k_max_pcr_phases = 64;
inline constexpr std::size_t k_max_pcr_phase_length = 1024;
inline constexpr std::size_t k_max_pcr_key_pem_size = 64 * 1024;

// The boot phases systemd-measure 252 signs without --phase: from entering the initrd to the
// system being ready, each a colon-separated path of the words systemd-pcrphase measures.
std::vector<std::string> default_pcr_phases();

// `phase` as systemd-measure normalizes a --phase: empty words dropped ("a::b:" is "a:b").
// Throws Error (bad input) for a phase over k_max_pcr_phase_length characters or with a
// character other than printable ASCII (no space, '"' or '\\').
std::string normalize_pcr_phase(std::string_view phase);

// One UKI section: a file (read streaming, for big initrds) or the bytes themselves.
struct UkiSectionContent {
    std::string name; // one of k_measured_uki_sections
    std::variant<std::filesystem::path, std::string> content;
};

// The value PCR 11 of one bank holds once the UKI is measured and `phase` reached.
struct PcrValue {
    PcrBank bank = PcrBank::sha256;
    std::string phase; // normalized; empty: right after the stub, before any phase word
    std::vector<std::uint8_t> value;

    std::string hex() const;
};

// PCR 11 for each bank and phase, as systemd-measure calculate 252 computes it: from all zeros,
// for each present section in k_measured_uki_sections order, extended with H(name and its NUL)
// then H(content) (a section with empty content is skipped, as the stub skips it); then per
// phase, each word extended as H(word). Sections may come in any order. Banks are sorted and
// deduplicated (none: all four, as systemd-measure without --bank); phases are normalized,
// sorted and deduplicated (none: default_pcr_phases()). The result is phase by phase, each
// phase bank by bank. Throws Error (bad input) for an unknown or repeated section name, over
// k_max_pcr_phases phases or a bad phase, or a section file that cannot be opened (naming it);
// Error (build failed) when reading a file fails part way (naming it) or OpenSSL fails.
std::vector<PcrValue> predict_pcr11(const std::vector<UkiSectionContent>& sections,
                                    const std::vector<PcrBank>& banks,
                                    const std::vector<std::string>& phases);

// The TPM2 policy digest (SHA-256 session) of one TPM2_PolicyPCR on PCR 11 of `bank` holding
// `pcr_value`: SHA256(zeros || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || SHA256(pcr_value)).
// Throws Error (bad input) when `pcr_value` is not the bank's digest size.
std::vector<std::uint8_t> pcr_policy_digest(PcrBank bank,
                                            const std::vector<std::uint8_t>& pcr_value);

// The .pcrsig section text, byte for byte what `systemd-measure sign --json=short` 252 prints
// (trailing newline included): {"<bank>":[{"pcrs":[11],"pkfp":..,"pol":..,"sig":..},...],...}
// with banks in all_pcr_banks() order and each bank's predictions in the given order. "sig" is
// the RSA PKCS#1 v1.5 signature of the policy digest with the bank's hash (SHA-1 for sha1, as
// systemd-measure does), "pkfp" the SHA-256 of the public key's PKCS#1 RSAPublicKey DER
// (i2d_PublicKey, as systemd's pubkey_fingerprint(); not the SubjectPublicKeyInfo).
// Throws Error (bad input) for no predictions or over 4 * k_max_pcr_phases, a private key that
// is not an unencrypted RSA PEM key, a public key PEM that cannot be read or does not match the
// private key (naming "the PCR public key"), or a PCR value of the wrong size; Error (build
// failed) when OpenSSL fails.
std::string sign_pcr_predictions(const std::vector<PcrValue>& predictions,
                                 std::string_view private_key_pem,
                                 std::optional<std::string_view> public_key_pem);

// The .pcrpkey section content: the PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----") of
// the RSA private key. Throws Error (bad input) for a key that is not an unencrypted RSA PEM
// key; Error (build failed) when OpenSSL fails.
std::string pcr_public_key_pem(std::string_view private_key_pem);

// The predictions as `systemd-measure calculate --json=short` 252 prints them (trailing newline
// included): {"<bank>":[{"phase":..,"pcr":11,"hash":..},...],...}, banks in all_pcr_banks()
// order, "phase" left out when empty. For --json reports.
std::string pcr_predictions_json(const std::vector<PcrValue>& predictions);

} // namespace edgeforge::secureboot
