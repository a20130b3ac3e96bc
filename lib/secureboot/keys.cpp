// Secure Boot key sets: the PK, KEK and db key pairs with their self-signed X.509 certificates,
// signature lists and authenticated variable updates, plus the TPM PCR policy key (OpenSSL).
#include "secureboot/keys.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <system_error>

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/error.h"
#include "secureboot/pcr_policy.h"
#include "util/fs.h"
#include "util/openssl.h"

namespace edgeforge::secureboot {
namespace {

namespace stdfs = std::filesystem;

using util::Bignum;
using util::Bio;
using util::openssl_message;
using util::Pkcs7;
using util::Pkey;
using util::PkeyCtx;
using util::X509Ext;
using util::X509Ptr;

[[noreturn]] void fail(std::string_view what) {
    throw build_failed("cannot {}: {}", what, openssl_message());
}

Bio memory_bio() {
    Bio bio(BIO_new(BIO_s_mem()));
    if (!bio) {
        fail("allocate an OpenSSL buffer");
    }
    return bio;
}

Bio memory_bio(std::string_view data) {
    Bio bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) {
        fail("allocate an OpenSSL buffer");
    }
    return bio;
}

std::string drain(BIO* bio) {
    std::string out(BIO_ctrl_pending(bio), '\0');
    if (!out.empty() &&
        BIO_read(bio, out.data(), static_cast<int>(out.size())) != static_cast<int>(out.size())) {
        fail("read an OpenSSL buffer");
    }
    return out;
}

Pkey generate_rsa(int bits) {
    PkeyCtx context(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
    EVP_PKEY* key = nullptr;
    if (!context || EVP_PKEY_keygen_init(context.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_keygen_bits(context.get(), bits) != 1 ||
        EVP_PKEY_generate(context.get(), &key) != 1) {
        fail(fmt::format("generate an RSA {} key", bits));
    }
    return Pkey(key);
}

std::string private_key_pem(EVP_PKEY* key) {
    Bio bio = memory_bio();
    if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        fail("encode a private key");
    }
    return drain(bio.get());
}

std::string public_key_pem(EVP_PKEY* key) {
    Bio bio = memory_bio();
    if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
        fail("encode a public key");
    }
    return drain(bio.get());
}

void add_extension(X509* certificate, X509V3_CTX& context, int nid, const char* value) {
    X509Ext extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
    if (!extension || X509_add_ext(certificate, extension.get(), -1) != 1) {
        fail(fmt::format("add the certificate extension {}", OBJ_nid2sn(nid)));
    }
}

// A self-signed v3 certificate of `key`: subject and issuer O=<org>, CN=<common_name>.
X509Ptr self_signed_certificate(EVP_PKEY* key, const std::string& org,
                                const std::string& common_name, std::int64_t not_before, int days) {
    X509Ptr certificate(X509_new());
    if (!certificate || X509_set_version(certificate.get(), 2) != 1) {
        fail("create a certificate");
    }
    // A random positive serial of up to 159 bits, as `openssl req -x509` makes it.
    std::array<unsigned char, 20> serial_bytes{};
    if (RAND_bytes(serial_bytes.data(), static_cast<int>(serial_bytes.size())) != 1) {
        fail("draw a random serial number");
    }
    serial_bytes[0] = static_cast<unsigned char>((serial_bytes[0] & 0x7f) | 0x01);
    Bignum serial(BN_bin2bn(serial_bytes.data(), static_cast<int>(serial_bytes.size()), nullptr));
    if (!serial ||
        BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(certificate.get())) == nullptr) {
        fail("set the serial number");
    }
    X509_NAME* name = X509_get_subject_name(certificate.get());
    const auto* org_bytes = reinterpret_cast<const unsigned char*>(org.c_str());
    const auto* cn_bytes = reinterpret_cast<const unsigned char*>(common_name.c_str());
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, org_bytes, -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, cn_bytes, -1, -1, 0) != 1 ||
        X509_set_issuer_name(certificate.get(), name) != 1) {
        fail("set the certificate subject");
    }
    const auto start = static_cast<time_t>(not_before);
    if (ASN1_TIME_set(X509_getm_notBefore(certificate.get()), start) == nullptr ||
        ASN1_TIME_adj(X509_getm_notAfter(certificate.get()), start, days, 0) == nullptr) {
        fail("set the certificate validity");
    }
    if (X509_set_pubkey(certificate.get(), key) != 1) {
        fail("set the certificate key");
    }
    X509V3_CTX context;
    X509V3_set_ctx(&context, certificate.get(), certificate.get(), nullptr, nullptr, 0);
    X509V3_set_issuer_pkey(&context, key);
    // What `openssl req -x509` adds from openssl.cnf's v3_ca section, the way efitools' and
    // Kairos' key scripts make PK, KEK and db.
    add_extension(certificate.get(), context, NID_subject_key_identifier, "hash");
    add_extension(certificate.get(), context, NID_authority_key_identifier, "keyid:always");
    add_extension(certificate.get(), context, NID_basic_constraints, "critical,CA:TRUE");
    if (X509_sign(certificate.get(), key, EVP_sha256()) == 0) {
        fail("sign the certificate");
    }
    return certificate;
}

std::string certificate_pem(X509* certificate) {
    Bio bio = memory_bio();
    if (PEM_write_bio_X509(bio.get(), certificate) != 1) {
        fail("encode a certificate");
    }
    return drain(bio.get());
}

std::string certificate_der(X509* certificate) {
    std::string der = util::certificate_der(certificate);
    if (der.empty()) {
        fail("encode a certificate");
    }
    return der;
}

bool printable_ascii(std::string_view text) {
    for (const char c : text) {
        if (c < 0x20 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

constexpr std::string_view k_gitignore =
    "# Private keys never go into version control: keep them offline or in a secret store.\n"
    "*.key\n"
    "tpm2-pcr-private.pem\n";

std::string readme_text(const KeySet& set, std::string_view org) {
    return fmt::format(
        "UEFI Secure Boot keys for {org}, written by `edgeforge keys generate`.\n"
        "\n"
        "PK   Platform Key: owns the platform; signs KEK updates.\n"
        "KEK  Key Exchange Key: signs db updates.\n"
        "db   Signature database key: signs what the firmware boots (the UKI, the boot loader).\n"
        "\n"
        "For each of PK, KEK and db:\n"
        "  NAME.key   the PEM private key (mode 0600): SECRET\n"
        "  NAME.pem   the self-signed X.509 certificate, PEM\n"
        "  NAME.der   the same certificate, DER (firmware setup menus take it)\n"
        "  NAME.esl   an EFI_SIGNATURE_LIST holding the certificate, owner GUID {guid}\n"
        "  NAME.auth  the signed update that enrolls it (efi-updatevar -f, KeyTool, firmware\n"
        "             menus): PK.auth signed by PK, KEK.auth by PK, db.auth by KEK\n"
        "tpm2-pcr-private.pem / tpm2-pcr-public.pem  the TPM PCR policy key pair\n"
        "             (systemd-measure sign): the private one is SECRET\n"
        "GUID.txt     the signature owner GUID of every list here\n"
        "\n"
        "Keep the SECRET files offline or in a secret store (a vault, a CI secret), never in\n"
        "version control (.gitignore here lists them), and back them up: whoever holds PK.key and\n"
        "KEK.key controls what these machines boot, and losing them means re-enrolling keys on\n"
        "every device. Commit or share only the certificates, .esl and .auth files.\n",
        fmt::arg("org", org), fmt::arg("guid", set.owner.str()));
}

} // namespace

std::optional<KeyType> parse_key_type(std::string_view text) {
    if (text == "rsa2048") {
        return KeyType::rsa2048;
    }
    if (text == "rsa4096") {
        return KeyType::rsa4096;
    }
    return std::nullopt;
}

std::string_view key_type_name(KeyType type) {
    return type == KeyType::rsa4096 ? "rsa4096" : "rsa2048";
}

int key_bits(KeyType type) {
    return type == KeyType::rsa4096 ? 4096 : 2048;
}

void check_key_set_options(const KeySetOptions& options) {
    Diagnostics diagnostics;
    if (options.org.empty() || options.org.size() > k_max_org_length ||
        !printable_ascii(options.org)) {
        diagnostics.error(SourceLocation{"--org"},
                          fmt::format("'{}' is not an organization name: use 1 to {} printable "
                                      "ASCII characters (e.g. --org \"ACME Corp\")",
                                      options.org, k_max_org_length));
    }
    if (options.days < 1 || options.days > k_max_days) {
        diagnostics.error(SourceLocation{"--days"},
                          fmt::format("{} is out of range: certificates last 1 to {} days "
                                      "(default {}, 15 years)",
                                      options.days, k_max_days, k_default_days));
    }
    if (options.not_before < 0 ||
        options.not_before > 253402300799 - std::int64_t{86400} * k_max_days) {
        diagnostics.error(
            SourceLocation{"SOURCE_DATE_EPOCH"},
            fmt::format("{} is not a usable start time for certificates", options.not_before));
    }
    diagnostics.throw_if_any();
}

std::string sign_pkcs7_detached(std::string_view key_pem, std::string_view certificate_pem,
                                std::string_view data) {
    const Pkey key = util::private_key_from_pem(key_pem);
    const X509Ptr certificate = util::certificate_from_pem(certificate_pem);
    if (!key || !certificate) {
        fail("read the signing key and certificate");
    }
    // The calls and flags of efitools' sign-efi-sig-list, so the bytes are the same.
    constexpr int flags = PKCS7_BINARY | PKCS7_DETACHED | PKCS7_NOATTR;
    Bio content = memory_bio(data);
    Pkcs7 pkcs7(PKCS7_sign(nullptr, nullptr, nullptr, content.get(), flags | PKCS7_PARTIAL));
    if (!pkcs7 ||
        PKCS7_sign_add_signer(pkcs7.get(), certificate.get(), key.get(), EVP_sha256(), flags) ==
            nullptr ||
        PKCS7_final(pkcs7.get(), content.get(), flags) != 1) {
        fail("make the PKCS#7 signature");
    }
    // The SignedData alone, without its ContentInfo wrapper: the form UEFI 2.x 8.2.2 asks for
    // and efitools 1.9 writes (i2d_PKCS7_SIGNED(p7->d.sign)); some firmware (HP) rejects the
    // wrapped form that efitools 1.8 wrote, while EDK2 takes both.
    const int length = i2d_PKCS7_SIGNED(pkcs7->d.sign, nullptr);
    if (length <= 0) {
        fail("encode the PKCS#7 signature");
    }
    std::string out(static_cast<std::size_t>(length), '\0');
    auto* cursor = reinterpret_cast<unsigned char*>(out.data());
    i2d_PKCS7_SIGNED(pkcs7->d.sign, &cursor);
    return out;
}

std::vector<std::string> key_directory_file_names() {
    std::vector<std::string> names;
    for (const char* variable : {"PK", "KEK", "db"}) {
        for (const char* extension : {".key", ".pem", ".der", ".esl", ".auth"}) {
            names.push_back(std::string(variable) + extension);
        }
    }
    for (const char* name :
         {"tpm2-pcr-private.pem", "tpm2-pcr-public.pem", "GUID.txt", ".gitignore", "README.txt"}) {
        names.emplace_back(name);
    }
    return names;
}

namespace {

// One of PK, KEK and db: its key pair as PEM.
struct VariablePair {
    std::string name;
    std::string key_pem;
    std::string certificate_pem;
};

// The key set of these PK, KEK and db pairs: NAME.key/.pem/.der/.esl/.auth each (the extra
// lists after the own one), dbx when given, the TPM PCR key (`pcr_private_pem`, else a new
// one), GUID.txt, .gitignore and README.txt.
KeySet assemble_key_set(const std::vector<VariablePair>& pairs, const Guid& owner,
                        std::int64_t timestamp_seconds, const std::vector<ExtraSignatures>& extra,
                        const std::optional<std::string>& pcr_private_pem, std::string_view org,
                        KeySet set) {
    set.owner = owner;
    const EfiTime timestamp = efi_time_from_epoch(timestamp_seconds);
    // The extra signature lists of one variable, in the order given.
    const auto extra_lists = [&](std::string_view variable) {
        std::string lists;
        for (const auto& item : extra) {
            if (item.variable != variable) {
                continue;
            }
            for (const auto& der : item.certificates_der) {
                lists += make_esl(der, owner);
            }
            lists += item.signature_lists;
        }
        return lists;
    };
    std::vector<std::string> esls;
    for (const auto& pair : pairs) {
        const X509Ptr certificate = util::certificate_from_pem(pair.certificate_pem);
        if (!certificate) {
            throw bad_input("the {} certificate is not PEM X.509 ({})", pair.name,
                            openssl_message());
        }
        const std::string der = certificate_der(certificate.get());
        esls.push_back(make_esl(der, owner) + extra_lists(pair.name));
        set.files.push_back({pair.name + ".key", pair.key_pem, true});
        set.files.push_back({pair.name + ".pem", pair.certificate_pem, false});
        set.files.push_back({pair.name + ".der", der, false});
        set.files.push_back({pair.name + ".esl", esls.back(), false});
        set.files.push_back({pair.name + ".auth", "", false}); // filled in below
    }
    // PK enrolls itself; PK signs KEK updates, KEK signs db updates.
    const std::array<std::size_t, 3> signer{0, 0, 1};
    for (std::size_t i = 0; i < pairs.size(); ++i) {
        const std::string signed_data =
            auth_signed_data(pairs[i].name, *vendor_guid_of(pairs[i].name),
                             k_secure_boot_variable_attributes, timestamp, esls[i]);
        const std::string pkcs7 = sign_pkcs7_detached(
            pairs[signer[i]].key_pem, pairs[signer[i]].certificate_pem, signed_data);
        set.files[i * 5 + 4].content = make_auth_payload(timestamp, pkcs7, esls[i]);
    }
    // dbx (revoked signatures) only from what was given; its updates are signed by KEK.
    if (const std::string dbx = extra_lists("dbx"); !dbx.empty()) {
        const std::string signed_data = auth_signed_data(
            "dbx", *vendor_guid_of("dbx"), k_secure_boot_variable_attributes, timestamp, dbx);
        const std::string pkcs7 =
            sign_pkcs7_detached(pairs[1].key_pem, pairs[1].certificate_pem, signed_data);
        set.files.push_back({"dbx.esl", dbx, false});
        set.files.push_back({"dbx.auth", make_auth_payload(timestamp, pkcs7, dbx), false});
    }
    if (pcr_private_pem) {
        // Refuses encrypted and non-RSA keys (Error, bad input), never prompts.
        set.files.push_back({"tpm2-pcr-private.pem", *pcr_private_pem, true});
        set.files.push_back(
            {"tpm2-pcr-public.pem", pcr_public_key_pem(*pcr_private_pem), false});
    } else {
        const Pkey tpm_key = generate_rsa(2048);
        set.files.push_back({"tpm2-pcr-private.pem", private_key_pem(tpm_key.get()), true});
        set.files.push_back({"tpm2-pcr-public.pem", public_key_pem(tpm_key.get()), false});
    }
    set.files.push_back({"GUID.txt", owner.str() + "\n", false});
    set.files.push_back({".gitignore", std::string(k_gitignore), false});
    set.files.push_back({"README.txt", readme_text(set, org), false});
    return set;
}

Guid random_owner() {
    std::array<std::uint8_t, 16> random{};
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
        fail("draw a random owner GUID");
    }
    return guid_v4_from_random(random);
}

} // namespace

KeySet generate_key_set(const KeySetOptions& options) {
    check_key_set_options(options);
    const Guid owner = options.owner ? *options.owner : random_owner();
    std::vector<VariablePair> pairs;
    for (const char* name : {"PK", "KEK", "db"}) {
        const Pkey key = generate_rsa(key_bits(options.key_type));
        const X509Ptr certificate = self_signed_certificate(
            key.get(), options.org, options.org + " " + name, options.not_before, options.days);
        pairs.push_back({name, private_key_pem(key.get()), certificate_pem(certificate.get())});
    }
    KeySet set;
    set.not_before = options.not_before;
    set.not_after = options.not_before + std::int64_t{86400} * options.days;
    return assemble_key_set(pairs, owner, options.not_before, options.extra, std::nullopt,
                            options.org, std::move(set));
}

KeySet import_key_set(const ImportedKeys& keys) {
    std::vector<VariablePair> pairs;
    const std::array<const char*, 3> names{"PK", "KEK", "db"};
    for (std::size_t i = 0; i < names.size(); ++i) {
        pairs.push_back({names[i], keys.pairs[i].key_pem, keys.pairs[i].certificate_pem});
    }
    KeySet set;
    set.not_before = keys.timestamp;
    set.not_after = keys.not_after;
    return assemble_key_set(pairs, keys.owner ? *keys.owner : random_owner(), keys.timestamp,
                            keys.extra, keys.pcr_private_pem, keys.org, std::move(set));
}

std::optional<Guid> read_owner_guid(const stdfs::path& directory) {
    const stdfs::path file = directory / "GUID.txt";
    std::error_code error;
    if (!stdfs::is_regular_file(file, error)) {
        return std::nullopt;
    }
    std::string text;
    try {
        text = util::read_file(file);
    } catch (const std::system_error& read_error) {
        throw bad_input("cannot read the owner GUID file {}: {}", file.string(),
                        read_error.code().message());
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
        text.pop_back();
    }
    const auto guid = parse_guid(text);
    if (!guid) {
        throw bad_input("{} does not hold a GUID (one line like "
                        "77fa9abd-0359-4d32-bd60-28f4e78f784b): fix it, or delete it to get a "
                        "new owner GUID",
                        file.string());
    }
    return guid;
}

void write_key_set(const stdfs::path& directory, const KeySet& set, bool force) {
    std::error_code error;
    const auto status = stdfs::status(directory, error);
    if (stdfs::exists(status) && !stdfs::is_directory(status)) {
        throw bad_input("the key directory {} is not a directory: remove that file or choose "
                        "another directory with --keys DIR",
                        directory.string());
    }
    if (!stdfs::exists(status)) {
        stdfs::create_directories(directory, error);
        if (error) {
            throw bad_input("cannot create the key directory {}: {}; choose another with "
                            "--keys DIR",
                            directory.string(), error.message());
        }
        stdfs::permissions(directory, stdfs::perms::owner_all, error);
    }
    if (::access(directory.c_str(), W_OK | X_OK) != 0) {
        throw bad_input("the key directory {} is not writable: fix its permissions or choose "
                        "another directory with --keys DIR",
                        directory.string());
    }
    if (!force) {
        std::vector<std::string> existing;
        for (const KeyFile& file : set.files) {
            if (file.name != "GUID.txt" &&
                stdfs::exists(stdfs::symlink_status(directory / file.name))) {
                existing.push_back(file.name);
            }
        }
        if (!existing.empty()) {
            std::string names;
            for (const auto& name : existing) {
                names += (names.empty() ? "" : ", ") + name;
            }
            throw bad_input("the key directory {} already holds keys ({}): nothing was written; "
                            "pass --force to replace them (the old keys are lost, and devices "
                            "enrolled with them will not accept the new ones), or choose another "
                            "directory with --keys DIR",
                            directory.string(), names);
        }
    }
    // A dbx list of an earlier set that this one does not have would be enrolled by mistake.
    const bool has_dbx = std::any_of(set.files.begin(), set.files.end(),
                                     [](const KeyFile& file) { return file.name == "dbx.auth"; });
    if (!has_dbx) {
        for (const char* name : {"dbx.esl", "dbx.auth"}) {
            stdfs::remove(directory / name, error);
        }
    }
    for (const KeyFile& file : set.files) {
        util::AtomicFile out(directory / file.name);
        if (file.secret && ::fchmod(out.fd(), 0600) != 0) {
            throw build_failed("cannot make {} private (mode 0600): {}",
                               (directory / file.name).string(),
                               std::generic_category().message(errno));
        }
        out.write(file.content);
        out.commit();
    }
}

} // namespace edgeforge::secureboot
