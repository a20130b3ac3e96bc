// Unit tests for content/sign: ECDSA P-256 and Ed25519 signatures over the bundle digest text.
#include <doctest/doctest.h>

#include "content/keys.h"
#include "content/sign.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::error_of;

TEST_CASE("content signatures: the signed message is the digest text") {
    CHECK(content::signed_message(std::string(64, 'a')) == "sha256:" + std::string(64, 'a'));
    CHECK(content::signed_message(std::string(64, 'a')).size() == 71);
}

TEST_CASE("content signatures: ECDSA P-256 and Ed25519 sign and verify; others do not") {
    util::TempDir dir;
    for (const std::string type : {"EC", "ED25519"}) {
        CAPTURE(type);
        test_keys::write_key_pair(dir.path(), type, type);
        test_keys::write_key_pair(dir.path(), type + "-other", type);
        const auto message = content::signed_message(std::string(64, 'b'));
        const auto signature = content::sign_message(dir.path() / (type + ".pem"), message);
        CHECK(!signature.empty());
        CHECK(content::verify_message(dir.path() / (type + ".pub.pem"), message, signature));
        // The private key file works as the public key too.
        CHECK(content::verify_message(dir.path() / (type + ".pem"), message, signature));
        // Another message, another key, a damaged signature: all rejected.
        CHECK_FALSE(content::verify_message(dir.path() / (type + ".pub.pem"),
                                            content::signed_message(std::string(64, 'c')),
                                            signature));
        CHECK_FALSE(
            content::verify_message(dir.path() / (type + "-other.pub.pem"), message, signature));
        std::string damaged = signature;
        damaged[damaged.size() / 2] = static_cast<char>(damaged[damaged.size() / 2] ^ 1);
        CHECK_FALSE(content::verify_message(dir.path() / (type + ".pub.pem"), message, damaged));
    }
}

TEST_CASE("content signatures: unreadable and unsupported keys are bad input naming the file") {
    util::TempDir dir;
    const auto missing = dir.path() / "missing.pem";
    CHECK(error_of([&] { content::sign_message(missing, "x"); }, ExitCode::bad_input) ==
          "cannot read the signing key " + missing.string() + ": No such file or directory");
    util::write_file_atomically(dir.path() / "junk.pem", "not a key\n");
    CHECK(
        error_of([&] { content::sign_message(dir.path() / "junk.pem", "x"); }, ExitCode::bad_input)
            .starts_with("the signing key " + (dir.path() / "junk.pem").string() +
                         " is not a PEM private key"));
    CHECK(error_of([&] { content::verify_message(dir.path() / "junk.pem", "x", "y"); },
                   ExitCode::bad_input)
              .starts_with("the public key " + (dir.path() / "junk.pem").string() +
                           " is not a PEM public key"));
    test_keys::write_key_pair(dir.path(), "rsa", "RSA");
    CHECK(error_of([&] { content::sign_message(dir.path() / "rsa.pem", "x"); }, ExitCode::bad_input)
              .starts_with("the signing key " + (dir.path() / "rsa.pem").string() +
                           " is an RSA key; bundles are signed with ECDSA P-256 or Ed25519"));
}
