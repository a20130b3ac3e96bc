// TPM PCR 11 predictions for a Unified Kernel Image and its signed PCR policy (the .pcrsig
// section), computed exactly as Debian 12's systemd-measure 252 and systemd-stub 252 do, with
// OpenSSL only (no TPM: the TPM2_PolicyPCR trial-session digest is computed in software).
#include "secureboot/pcr_policy.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "base/error.h"
#include "util/base64.h"
#include "util/digest.h"
#include "util/openssl.h"

namespace edgeforge::secureboot {
namespace {

namespace stdfs = std::filesystem;

using Bytes = std::vector<std::uint8_t>;
using util::Bio;
using util::MdCtx;
using util::openssl_message;
using util::Pkey;

constexpr std::size_t k_read_buffer_size = 1 << 20;
constexpr std::array<std::string_view, 4> k_bank_names{"sha1", "sha256", "sha384", "sha512"};
constexpr std::uint32_t k_tpm_cc_policy_pcr = 0x0000017F;

[[noreturn]] void fail(std::string_view what) {
    throw build_failed("cannot {}: {}", what, openssl_message());
}

const EVP_MD* bank_md(PcrBank bank) {
    switch (bank) {
    case PcrBank::sha1:
        return EVP_sha1();
    case PcrBank::sha256:
        return EVP_sha256();
    case PcrBank::sha384:
        return EVP_sha384();
    case PcrBank::sha512:
        return EVP_sha512();
    }
    return EVP_sha256();
}

std::size_t bank_size(PcrBank bank) {
    return static_cast<std::size_t>(EVP_MD_get_size(bank_md(bank)));
}

// The TPM_ALG_ID of the bank's hash.
std::uint16_t tpm_alg_id(PcrBank bank) {
    switch (bank) {
    case PcrBank::sha1:
        return 0x0004;
    case PcrBank::sha256:
        return 0x000B;
    case PcrBank::sha384:
        return 0x000C;
    case PcrBank::sha512:
        return 0x000D;
    }
    return 0x000B;
}

MdCtx digest_context(const EVP_MD* md) {
    MdCtx context(EVP_MD_CTX_new());
    if (!context || EVP_DigestInit_ex(context.get(), md, nullptr) != 1) {
        fail("start a digest");
    }
    return context;
}

void digest_update(EVP_MD_CTX* context, const void* data, std::size_t size) {
    if (size != 0 && EVP_DigestUpdate(context, data, size) != 1) {
        fail("compute a digest");
    }
}

Bytes digest_final(EVP_MD_CTX* context) {
    Bytes out(static_cast<std::size_t>(EVP_MAX_MD_SIZE));
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(context, out.data(), &length) != 1) {
        fail("compute a digest");
    }
    out.resize(length);
    return out;
}

Bytes digest_of(const EVP_MD* md, const void* data, std::size_t size) {
    MdCtx context = digest_context(md);
    digest_update(context.get(), data, size);
    return digest_final(context.get());
}

// PCR extend: pcr = H(pcr || digest).
void extend(PcrBank bank, Bytes& pcr, const Bytes& digest) {
    MdCtx context = digest_context(bank_md(bank));
    digest_update(context.get(), pcr.data(), pcr.size());
    digest_update(context.get(), digest.data(), digest.size());
    pcr = digest_final(context.get());
}

// One digest context per bank, fed the same bytes.
struct BankDigests {
    std::vector<MdCtx> contexts;
    std::uint64_t size = 0;

    explicit BankDigests(const std::vector<PcrBank>& banks) {
        for (const PcrBank bank : banks) {
            contexts.push_back(digest_context(bank_md(bank)));
        }
    }
    void update(const void* data, std::size_t length) {
        for (const MdCtx& context : contexts) {
            digest_update(context.get(), data, length);
        }
        size += length;
    }
    std::vector<Bytes> finish() {
        std::vector<Bytes> out;
        for (const MdCtx& context : contexts) {
            out.push_back(digest_final(context.get()));
        }
        return out;
    }
};

void hash_file(const std::string& section, const stdfs::path& file, BankDigests& digests) {
    std::error_code error;
    if (stdfs::is_directory(file, error)) {
        throw bad_input("cannot read the {} section file {}: it is a directory", section,
                        file.string());
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw bad_input("cannot read the {} section file {}: {}", section, file.string(),
                        std::strerror(errno));
    }
    std::vector<char> buffer(k_read_buffer_size);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        digests.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
    }
    if (in.bad()) {
        throw build_failed("error reading the {} section file {}: {}", section, file.string(),
                           std::strerror(errno));
    }
}

// The content digest of one section per bank, or nothing when the content is empty.
std::optional<std::vector<Bytes>> section_digests(const UkiSectionContent& section,
                                                  const std::vector<PcrBank>& banks) {
    BankDigests digests(banks);
    if (const auto* file = std::get_if<stdfs::path>(&section.content)) {
        hash_file(section.name, *file, digests);
    } else {
        const std::string& bytes = std::get<std::string>(section.content);
        digests.update(bytes.data(), bytes.size());
    }
    if (digests.size == 0) {
        return std::nullopt;
    }
    return digests.finish();
}

std::size_t section_rank(std::string_view name) {
    const auto* found =
        std::find(k_measured_uki_sections.begin(), k_measured_uki_sections.end(), name);
    if (found == k_measured_uki_sections.end()) {
        throw bad_input("{} is not a UKI section systemd-stub measures (those are .linux, "
                        ".osrel, .cmdline, .initrd, .splash, .dtb and .pcrpkey)",
                        name);
    }
    return static_cast<std::size_t>(found - k_measured_uki_sections.begin());
}

// The sections in measuring order; unknown or repeated names refused.
std::vector<const UkiSectionContent*>
ordered_sections(const std::vector<UkiSectionContent>& sections) {
    std::array<const UkiSectionContent*, k_measured_uki_sections.size()> slots{};
    for (const UkiSectionContent& section : sections) {
        const std::size_t rank = section_rank(section.name);
        if (slots[rank] != nullptr) {
            throw bad_input("the UKI section {} is given twice", section.name);
        }
        slots[rank] = &section;
    }
    std::vector<const UkiSectionContent*> out;
    for (const UkiSectionContent* section : slots) {
        if (section != nullptr) {
            out.push_back(section);
        }
    }
    return out;
}

std::vector<PcrBank> normalized_banks(const std::vector<PcrBank>& banks) {
    std::vector<PcrBank> out = banks.empty() ? all_pcr_banks() : banks;
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::vector<std::string> normalized_phases(const std::vector<std::string>& phases) {
    if (phases.empty()) {
        return default_pcr_phases();
    }
    if (phases.size() > k_max_pcr_phases) {
        throw bad_input("{} PCR phases given; at most {} can be signed", phases.size(),
                        k_max_pcr_phases);
    }
    std::vector<std::string> out;
    for (const std::string& phase : phases) {
        out.push_back(normalize_pcr_phase(phase));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

// The non-empty colon-separated words of a phase.
std::vector<std::string_view> phase_words(std::string_view phase) {
    std::vector<std::string_view> words;
    std::size_t start = 0;
    while (start <= phase.size()) {
        const std::size_t end = std::min(phase.find(':', start), phase.size());
        if (end > start) {
            words.push_back(phase.substr(start, end - start));
        }
        start = end + 1;
    }
    return words;
}

// The PCR values of all banks once the sections are measured.
std::vector<Bytes> measure_sections(const std::vector<UkiSectionContent>& sections,
                                    const std::vector<PcrBank>& banks) {
    std::vector<Bytes> pcrs;
    for (const PcrBank bank : banks) {
        pcrs.emplace_back(bank_size(bank), 0);
    }
    for (const UkiSectionContent* section : ordered_sections(sections)) {
        const auto digests = section_digests(*section, banks);
        if (!digests) {
            continue;
        }
        for (std::size_t i = 0; i < banks.size(); ++i) {
            // The name is measured with its terminating NUL, as the stub hashes the C string.
            const Bytes name =
                digest_of(bank_md(banks[i]), section->name.c_str(), section->name.size() + 1);
            extend(banks[i], pcrs[i], name);
            extend(banks[i], pcrs[i], (*digests)[i]);
        }
    }
    return pcrs;
}

void append_u32(Bytes& out, std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        out.push_back(static_cast<std::uint8_t>(value >> shift));
    }
}

void append_u16(Bytes& out, std::uint16_t value) {
    out.push_back(static_cast<std::uint8_t>(value >> 8));
    out.push_back(static_cast<std::uint8_t>(value & 0xff));
}

int no_passphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*user*/) {
    return -1;
}

void check_pem_size(std::string_view pem, std::string_view what) {
    if (pem.size() > k_max_pcr_key_pem_size) {
        throw bad_input("{} is {} bytes, over the {} a PEM key may have", what, pem.size(),
                        k_max_pcr_key_pem_size);
    }
}

Bio memory_bio(std::string_view data) {
    Bio bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) {
        fail("allocate an OpenSSL buffer");
    }
    return bio;
}

Pkey read_private_key(std::string_view pem) {
    check_pem_size(pem, "the PCR private key");
    Pkey key = util::private_key_from_pem(pem);
    if (!key) {
        throw bad_input("cannot read the PCR private key: not an unencrypted PEM private key ({})",
                        openssl_message());
    }
    if (EVP_PKEY_is_a(key.get(), "RSA") != 1) {
        throw bad_input("the PCR private key is a {} key; systemd's TPM2 support needs RSA",
                        EVP_PKEY_get0_type_name(key.get()));
    }
    return key;
}

Pkey read_public_key(std::string_view pem, EVP_PKEY* private_key) {
    check_pem_size(pem, "the PCR public key");
    Bio bio = memory_bio(pem);
    Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
    if (!key) {
        throw bad_input("cannot read the PCR public key: not a PEM public key ({})",
                        openssl_message());
    }
    if (EVP_PKEY_eq(key.get(), private_key) != 1) {
        throw bad_input("the PCR public key does not belong to the PCR private key");
    }
    return key;
}

// The key as systemd's pubkey_fingerprint() encodes it: i2d_PublicKey, for RSA the PKCS#1
// RSAPublicKey DER (not the SubjectPublicKeyInfo).
std::string public_key_der(EVP_PKEY* key) {
    const int length = i2d_PublicKey(key, nullptr);
    if (length <= 0) {
        fail("encode the PCR public key");
    }
    std::string out(static_cast<std::size_t>(length), '\0');
    auto* cursor = reinterpret_cast<unsigned char*>(out.data());
    if (i2d_PublicKey(key, &cursor) != length) {
        fail("encode the PCR public key");
    }
    return out;
}

Bytes sign(EVP_PKEY* key, const EVP_MD* md, const Bytes& data) {
    MdCtx context(EVP_MD_CTX_new());
    std::size_t size = 0;
    if (!context || EVP_DigestSignInit(context.get(), nullptr, md, nullptr, key) != 1 ||
        EVP_DigestSign(context.get(), nullptr, &size, data.data(), data.size()) != 1) {
        fail("sign the PCR policy");
    }
    Bytes signature(size);
    if (EVP_DigestSign(context.get(), signature.data(), &size, data.data(), data.size()) != 1) {
        fail("sign the PCR policy");
    }
    signature.resize(size);
    return signature;
}

std::string hex_of(const Bytes& bytes) {
    return util::to_hex(bytes.data(), bytes.size());
}

// One bank's entries, in the order given, for each bank in all_pcr_banks() order that has any.
template <typename Entry>
nlohmann::ordered_json by_bank(const std::vector<PcrValue>& predictions, Entry&& entry) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (const PcrBank bank : all_pcr_banks()) {
        nlohmann::ordered_json array = nlohmann::ordered_json::array();
        for (const PcrValue& prediction : predictions) {
            if (prediction.bank == bank) {
                array.push_back(entry(prediction));
            }
        }
        if (!array.empty()) {
            out[std::string(pcr_bank_name(bank))] = std::move(array);
        }
    }
    return out;
}

} // namespace

std::optional<PcrBank> parse_pcr_bank(std::string_view text) {
    std::string lower;
    for (const char c : text) {
        lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    for (std::size_t i = 0; i < k_bank_names.size(); ++i) {
        if (lower == k_bank_names[i]) {
            return static_cast<PcrBank>(i);
        }
    }
    return std::nullopt;
}

std::string_view pcr_bank_name(PcrBank bank) {
    return k_bank_names.at(static_cast<std::size_t>(bank));
}

std::vector<PcrBank> all_pcr_banks() {
    return {PcrBank::sha1, PcrBank::sha256, PcrBank::sha384, PcrBank::sha512};
}

std::vector<std::string> default_pcr_phases() {
    return {"enter-initrd", "enter-initrd:leave-initrd", "enter-initrd:leave-initrd:sysinit",
            "enter-initrd:leave-initrd:sysinit:ready"};
}

std::string normalize_pcr_phase(std::string_view phase) {
    if (phase.size() > k_max_pcr_phase_length) {
        throw bad_input("a PCR phase is {} characters long, over the {} allowed", phase.size(),
                        k_max_pcr_phase_length);
    }
    for (const char c : phase) {
        if (c <= 0x20 || c > 0x7e || c == '"' || c == '\\') {
            throw bad_input("the PCR phase \"{}\" has a character other than printable ASCII "
                            "(no space, '\"' or '\\')",
                            phase);
        }
    }
    std::string out;
    for (const std::string_view word : phase_words(phase)) {
        out += out.empty() ? "" : ":";
        out += word;
    }
    return out;
}

std::string PcrValue::hex() const {
    return hex_of(value);
}

std::vector<PcrValue> predict_pcr11(const std::vector<UkiSectionContent>& sections,
                                    const std::vector<PcrBank>& banks,
                                    const std::vector<std::string>& phases) {
    const std::vector<PcrBank> used_banks = normalized_banks(banks);
    const std::vector<std::string> used_phases = normalized_phases(phases);
    const std::vector<Bytes> measured = measure_sections(sections, used_banks);
    std::vector<PcrValue> out;
    for (const std::string& phase : used_phases) {
        const std::vector<std::string_view> words = phase_words(phase);
        for (std::size_t i = 0; i < used_banks.size(); ++i) {
            PcrValue value{used_banks[i], phase, measured[i]};
            for (const std::string_view word : words) {
                extend(value.bank, value.value,
                       digest_of(bank_md(value.bank), word.data(), word.size()));
            }
            out.push_back(std::move(value));
        }
    }
    return out;
}

std::vector<std::uint8_t> pcr_policy_digest(PcrBank bank,
                                            const std::vector<std::uint8_t>& pcr_value) {
    if (pcr_value.size() != bank_size(bank)) {
        throw bad_input("a {} PCR value has {} bytes, not {}", pcr_bank_name(bank), bank_size(bank),
                        pcr_value.size());
    }
    // The policy session's hash is SHA-256 whatever the bank: so is the digest of the PCR values.
    const Bytes pcr_digest = digest_of(EVP_sha256(), pcr_value.data(), pcr_value.size());
    Bytes data(32, 0); // the trial session's initial policy digest
    append_u32(data, k_tpm_cc_policy_pcr);
    append_u32(data, 1); // TPML_PCR_SELECTION.count
    append_u16(data, tpm_alg_id(bank));
    data.push_back(3); // sizeofSelect: PCRs 0..23
    data.push_back(0x00);
    data.push_back(static_cast<std::uint8_t>(1U << (k_uki_pcr % 8)));
    data.push_back(0x00);
    data.insert(data.end(), pcr_digest.begin(), pcr_digest.end());
    return digest_of(EVP_sha256(), data.data(), data.size());
}

std::string sign_pcr_predictions(const std::vector<PcrValue>& predictions,
                                 std::string_view private_key_pem,
                                 std::optional<std::string_view> public_key_pem) {
    if (predictions.empty() || predictions.size() > 4 * k_max_pcr_phases) {
        throw bad_input("{} PCR predictions to sign; 1 to {} can be", predictions.size(),
                        4 * k_max_pcr_phases);
    }
    const Pkey key = read_private_key(private_key_pem);
    if (public_key_pem) {
        read_public_key(*public_key_pem, key.get());
    }
    const std::string fingerprint = util::sha256_hex(public_key_der(key.get()));
    const auto entry = [&](const PcrValue& prediction) {
        const Bytes policy = pcr_policy_digest(prediction.bank, prediction.value);
        const Bytes signature = sign(key.get(), bank_md(prediction.bank), policy);
        nlohmann::ordered_json object;
        object["pcrs"] = nlohmann::ordered_json::array({k_uki_pcr});
        object["pkfp"] = fingerprint;
        object["pol"] = hex_of(policy);
        object["sig"] = util::base64_encode(std::span<const std::uint8_t>(signature));
        return object;
    };
    return by_bank(predictions, entry).dump() + "\n";
}

std::string pcr_public_key_pem(std::string_view private_key_pem) {
    const Pkey key = read_private_key(private_key_pem);
    Bio bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) {
        fail("encode the PCR public key");
    }
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(length));
}

std::string pcr_predictions_json(const std::vector<PcrValue>& predictions) {
    const auto entry = [](const PcrValue& prediction) {
        nlohmann::ordered_json object;
        if (!prediction.phase.empty()) {
            object["phase"] = prediction.phase;
        }
        object["pcr"] = k_uki_pcr;
        object["hash"] = prediction.hex();
        return object;
    };
    return by_bank(predictions, entry).dump() + "\n";
}

} // namespace edgeforge::secureboot
