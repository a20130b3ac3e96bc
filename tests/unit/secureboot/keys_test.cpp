// Unit tests for secureboot/keys: the generated certificates, lists and signed updates parsed
// back with OpenSSL, the option checks, and the key directory writer's refusals and modes.
#include <doctest/doctest.h>

#include <map>
#include <memory>

#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "secureboot/keys.h"
#include "support/errors.h"
#include "util/bytes.h"
#include "util/fs.h"
#include "util/openssl.h"

using namespace edgeforge;
using namespace edgeforge::secureboot;
using edgeforge::testing::error_of;

namespace {

using util::Bio;
using util::Pkcs7;
using util::Pkey;
using util::X509Ptr;

std::map<std::string, KeyFile> by_name(const KeySet& set) {
    std::map<std::string, KeyFile> files;
    for (const auto& file : set.files) {
        files[file.name] = file;
    }
    return files;
}

X509Ptr read_pem_certificate(const std::string& pem) {
    Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::string der_of(X509* certificate) {
    unsigned char* buffer = nullptr;
    const int length = i2d_X509(certificate, &buffer);
    std::string out(reinterpret_cast<char*>(buffer), static_cast<std::size_t>(length));
    OPENSSL_free(buffer);
    return out;
}

std::string name_entry(X509_NAME* name, int nid) {
    char text[256] = {};
    X509_NAME_get_text_by_NID(name, nid, text, sizeof text);
    return text;
}

std::uint32_t u32_at(const std::string& data, std::size_t offset) {
    return util::le32(util::byte_span(data), offset);
}

// `signed_data` (DER SignedData) inside a ContentInfo { pkcs7-signedData, [0] EXPLICIT ... },
// what EDK2's WrapPkcs7Data does before verifying.
std::string wrap_content_info(const std::string& signed_data) {
    const auto length_bytes = [](std::size_t length) {
        std::string out{'\x82'};
        out.push_back(static_cast<char>(length >> 8));
        out.push_back(static_cast<char>(length & 0xff));
        return out;
    };
    const std::string oid("\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02", 11);
    const std::string explicit_content = "\xa0" + length_bytes(signed_data.size()) + signed_data;
    return "\x30" + length_bytes(oid.size() + explicit_content.size()) + oid + explicit_content;
}

Pkcs7 read_signed_data(const std::string& signed_data) {
    const std::string wrapped = wrap_content_info(signed_data);
    const auto* cursor = reinterpret_cast<const unsigned char*>(wrapped.data());
    return Pkcs7(d2i_PKCS7(nullptr, &cursor, static_cast<long>(wrapped.size())));
}

// True when the .auth file's PKCS#7 is a valid detached signature of the signed bytes for
// `variable` and was made by `signer_pem` alone (no chain checks: the certificates are roots).
bool auth_signed_by(const std::string& auth, const std::string& variable,
                    const std::string& signer_pem) {
    const std::size_t length = u32_at(auth, 16) - 24;
    const std::string pkcs7_der = auth.substr(40, length);
    const std::string esl = auth.substr(40 + length);
    Pkcs7 pkcs7 = read_signed_data(pkcs7_der);
    if (!pkcs7) {
        return false;
    }
    EfiTime time;
    time.year = static_cast<std::uint16_t>(static_cast<unsigned char>(auth[0]) |
                                           (static_cast<unsigned char>(auth[1]) << 8));
    time.month = static_cast<std::uint8_t>(auth[2]);
    time.day = static_cast<std::uint8_t>(auth[3]);
    time.hour = static_cast<std::uint8_t>(auth[4]);
    time.minute = static_cast<std::uint8_t>(auth[5]);
    time.second = static_cast<std::uint8_t>(auth[6]);
    const std::string data = auth_signed_data(variable, *vendor_guid_of(variable),
                                              k_secure_boot_variable_attributes, time, esl);
    Bio content(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    X509Ptr signer = read_pem_certificate(signer_pem);
    STACK_OF(X509)* certificates = sk_X509_new_null();
    sk_X509_push(certificates, signer.get());
    // NOINTERN: only the given certificate may be the signer; NOVERIFY: no chain building.
    const int ok = PKCS7_verify(pkcs7.get(), certificates, nullptr, content.get(), nullptr,
                                PKCS7_BINARY | PKCS7_NOINTERN | PKCS7_NOVERIFY);
    sk_X509_free(certificates);
    ERR_clear_error();
    return ok == 1;
}

KeySetOptions acme_options() {
    KeySetOptions options;
    options.org = "ACME";
    options.not_before = 1700000000;
    options.owner = parse_guid("77fa9abd-0359-4d32-bd60-28f4e78f784b");
    return options;
}

} // namespace

TEST_CASE("secureboot keys: certificates carry the org, 15 years, RSA 2048, CA extensions") {
    const KeySet set = generate_key_set(acme_options());
    auto files = by_name(set);
    CHECK(set.owner.str() == "77fa9abd-0359-4d32-bd60-28f4e78f784b");
    CHECK(set.not_after - set.not_before == std::int64_t{5475} * 86400);
    for (const std::string variable : {"PK", "KEK", "db"}) {
        CAPTURE(variable);
        X509Ptr certificate = read_pem_certificate(files[variable + ".pem"].content);
        REQUIRE(certificate);
        CHECK(X509_get_version(certificate.get()) == 2); // v3
        CHECK(name_entry(X509_get_subject_name(certificate.get()), NID_commonName) ==
              "ACME " + variable);
        CHECK(name_entry(X509_get_subject_name(certificate.get()), NID_organizationName) == "ACME");
        CHECK(X509_NAME_cmp(X509_get_subject_name(certificate.get()),
                            X509_get_issuer_name(certificate.get())) == 0);
        int days = 0;
        int seconds = 0;
        REQUIRE(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(certificate.get()),
                               X509_get0_notAfter(certificate.get())) == 1);
        CHECK(days == 5475);
        CHECK(seconds == 0);
        CHECK(ASN1_TIME_cmp_time_t(X509_get0_notBefore(certificate.get()), 1700000000) == 0);
        EVP_PKEY* public_key = X509_get0_pubkey(certificate.get());
        CHECK(EVP_PKEY_get_base_id(public_key) == EVP_PKEY_RSA);
        CHECK(EVP_PKEY_get_bits(public_key) == 2048);
        CHECK(X509_verify(certificate.get(), public_key) == 1); // self-signed
        CHECK(X509_get_signature_nid(certificate.get()) == NID_sha256WithRSAEncryption);
        CHECK(X509_check_ca(certificate.get()) == 1); // basicConstraints CA:TRUE
        int critical = -1;
        auto* constraints = static_cast<BASIC_CONSTRAINTS*>(
            X509_get_ext_d2i(certificate.get(), NID_basic_constraints, &critical, nullptr));
        REQUIRE(constraints != nullptr);
        CHECK(critical == 1);
        BASIC_CONSTRAINTS_free(constraints);
        CHECK(X509_get0_subject_key_id(certificate.get()) != nullptr);
        CHECK(X509_get0_authority_key_id(certificate.get()) != nullptr);
        // The key file holds the certificate's private key; the DER is the same certificate.
        const std::string& key_pem = files[variable + ".key"].content;
        CHECK(files[variable + ".key"].secret);
        CHECK(key_pem.rfind("-----BEGIN PRIVATE KEY-----", 0) == 0);
        Bio key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
        Pkey key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
        REQUIRE(key);
        CHECK(X509_check_private_key(certificate.get(), key.get()) == 1);
        CHECK(files[variable + ".der"].content == der_of(certificate.get()));
        CHECK(files[variable + ".esl"].content ==
              make_esl(files[variable + ".der"].content, set.owner));
    }
    // Every certificate has its own key and serial.
    X509Ptr pk = read_pem_certificate(files["PK.pem"].content);
    X509Ptr db = read_pem_certificate(files["db.pem"].content);
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(pk.get()), X509_get0_serialNumber(db.get())) !=
          0);
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(pk.get()), X509_get0_pubkey(db.get())) != 1);
    CHECK(files["GUID.txt"].content == "77fa9abd-0359-4d32-bd60-28f4e78f784b\n");
    CHECK(files[".gitignore"].content.find("\n*.key\n") != std::string::npos);
    CHECK(files[".gitignore"].content.find("\ntpm2-pcr-private.pem\n") != std::string::npos);
    CHECK(files["tpm2-pcr-private.pem"].secret);
    CHECK(files["tpm2-pcr-public.pem"].content.rfind("-----BEGIN PUBLIC KEY-----", 0) == 0);
    // Only private keys are secret, and only they carry private key material.
    for (const auto& file : set.files) {
        CAPTURE(file.name);
        CHECK(file.secret == (file.content.find("PRIVATE KEY") != std::string::npos));
    }
}

TEST_CASE("secureboot keys: PK signs PK and KEK updates, KEK signs db updates") {
    const KeySet set = generate_key_set(acme_options());
    auto files = by_name(set);
    const std::string& pk = files["PK.pem"].content;
    const std::string& kek = files["KEK.pem"].content;
    const std::string& db = files["db.pem"].content;
    for (const std::string variable : {"PK", "KEK", "db"}) {
        CAPTURE(variable);
        const std::string& auth = files[variable + ".auth"].content;
        CHECK(auth.substr(0, 16) == efi_time_from_epoch(1700000000).raw());
        CHECK(auth.substr(auth.size() - files[variable + ".esl"].content.size()) ==
              files[variable + ".esl"].content);
    }
    CHECK(auth_signed_by(files["PK.auth"].content, "PK", pk));
    CHECK(auth_signed_by(files["KEK.auth"].content, "KEK", pk));
    CHECK(auth_signed_by(files["db.auth"].content, "db", kek));
    // Wrong signer, wrong variable name: rejected (the test can fail).
    CHECK_FALSE(auth_signed_by(files["db.auth"].content, "db", pk));
    CHECK_FALSE(auth_signed_by(files["db.auth"].content, "db", db));
    CHECK_FALSE(auth_signed_by(files["db.auth"].content, "dbx", kek));
    CHECK_FALSE(auth_signed_by(files["KEK.auth"].content, "KEK", kek));
}

TEST_CASE("secureboot keys: the PKCS#7 is a bare detached SignedData, SHA-256, no attributes") {
    const KeySet set = generate_key_set(acme_options());
    auto files = by_name(set);
    const std::string signature =
        sign_pkcs7_detached(files["KEK.key"].content, files["KEK.pem"].content, "payload");
    // RSA PKCS#1 v1.5 is deterministic: the same input signs to the same bytes.
    CHECK(signature ==
          sign_pkcs7_detached(files["KEK.key"].content, files["KEK.pem"].content, "payload"));
    // SignedData itself, no ContentInfo: SEQUENCE (long form length), then INTEGER version 1.
    CHECK(signature.substr(0, 2) == "\x30\x82");
    CHECK(signature.substr(4, 3) == std::string("\x02\x01\x01", 3));
    const auto* cursor = reinterpret_cast<const unsigned char*>(signature.data());
    CHECK(d2i_PKCS7(nullptr, &cursor, static_cast<long>(signature.size())) == nullptr);
    ERR_clear_error();
    Pkcs7 pkcs7 = read_signed_data(signature);
    REQUIRE(pkcs7);
    CHECK(PKCS7_type_is_signed(pkcs7.get()));
    CHECK(PKCS7_get_detached(pkcs7.get()) == 1);
    STACK_OF(PKCS7_SIGNER_INFO)* signers = PKCS7_get_signer_info(pkcs7.get());
    REQUIRE(sk_PKCS7_SIGNER_INFO_num(signers) == 1);
    PKCS7_SIGNER_INFO* signer = sk_PKCS7_SIGNER_INFO_value(signers, 0);
    CHECK(sk_X509_ATTRIBUTE_num(PKCS7_get_signed_attributes(signer)) <= 0);
    X509_ALGOR* digest = nullptr;
    PKCS7_SIGNER_INFO_get0_algs(signer, nullptr, &digest, nullptr);
    const ASN1_OBJECT* digest_object = nullptr;
    X509_ALGOR_get0(&digest_object, nullptr, nullptr, digest);
    CHECK(OBJ_obj2nid(digest_object) == NID_sha256);
    // The signer's certificate travels with the signature, as with sign-efi-sig-list.
    CHECK(sk_X509_num(pkcs7->d.sign->cert) == 1);
}

TEST_CASE("secureboot keys: rsa4096 on request; the TPM PCR key stays RSA 2048") {
    KeySetOptions options = acme_options();
    options.key_type = KeyType::rsa4096;
    options.days = 30;
    const KeySet set = generate_key_set(options);
    auto files = by_name(set);
    X509Ptr db = read_pem_certificate(files["db.pem"].content);
    CHECK(EVP_PKEY_get_bits(X509_get0_pubkey(db.get())) == 4096);
    const std::string& tpm = files["tpm2-pcr-public.pem"].content;
    Bio bio(BIO_new_mem_buf(tpm.data(), static_cast<int>(tpm.size())));
    Pkey tpm_key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    REQUIRE(tpm_key);
    CHECK(EVP_PKEY_get_bits(tpm_key.get()) == 2048);
    CHECK(set.not_after - set.not_before == 30 * 86400);
    CHECK(parse_key_type("rsa4096") == KeyType::rsa4096);
    CHECK_FALSE(parse_key_type("ec256"));
}

TEST_CASE("secureboot keys: bad --org and --days are bad input, reported together") {
    KeySetOptions options = acme_options();
    options.org = "";
    options.days = 0;
    const std::string message =
        error_of([&] { check_key_set_options(options); }, ExitCode::bad_input);
    CHECK(message.find("--org") != std::string::npos);
    CHECK(message.find("--days") != std::string::npos);
    for (const std::string& org :
         {std::string(65, 'a'), std::string("AC\nME"), std::string("caf\xc3\xa9")}) {
        options = acme_options();
        options.org = org;
        CHECK(
            error_of([&] { check_key_set_options(options); }, ExitCode::bad_input).find("--org") !=
            std::string::npos);
    }
    options = acme_options();
    options.days = 36501;
    CHECK(error_of([&] { check_key_set_options(options); }, ExitCode::bad_input).find("36500") !=
          std::string::npos);
    options.days = 36500;
    options.org = std::string(64, 'a');
    CHECK_NOTHROW(check_key_set_options(options));
}

TEST_CASE("secureboot keys: the key directory writer refuses overwrites, files, and keeps modes") {
    util::TempDir temp;
    const auto directory = temp.path() / "keys";
    const KeySet set = generate_key_set(acme_options());
    write_key_set(directory, set, false);
    struct stat info {};
    REQUIRE(::stat((directory / "PK.key").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    REQUIRE(::stat((directory / "tpm2-pcr-private.pem").c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    REQUIRE(::stat(directory.c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0700);
    for (const auto& name : key_directory_file_names()) {
        CAPTURE(name);
        CHECK(std::filesystem::is_regular_file(directory / name));
    }
    CHECK(read_owner_guid(directory) == set.owner);

    // A second run without force: bad input naming the files, nothing changed.
    const std::string before = util::read_file(directory / "db.key");
    const KeySet other = generate_key_set(acme_options());
    const std::string message =
        error_of([&] { write_key_set(directory, other, false); }, ExitCode::bad_input);
    CHECK(message.find("PK.key") != std::string::npos);
    CHECK(message.find("--force") != std::string::npos);
    CHECK(util::read_file(directory / "db.key") == before);
    write_key_set(directory, other, true);
    CHECK(util::read_file(directory / "db.key") != before);

    // A file where the directory should be.
    util::write_file_atomically(temp.path() / "file", "x");
    CHECK(error_of([&] { write_key_set(temp.path() / "file", set, false); }, ExitCode::bad_input)
              .find("not a directory") != std::string::npos);
    // A GUID.txt that is not a GUID.
    util::write_file_atomically(directory / "GUID.txt", "not a guid\n");
    CHECK(error_of([&] { read_owner_guid(directory); }, ExitCode::bad_input).find("GUID.txt") !=
          std::string::npos);
    CHECK_FALSE(read_owner_guid(temp.path() / "missing"));
}
