// Unit tests for oci/registry: auth header and config parsing, credential helpers, and the client
// against tests/fixtures/fake-registry (bearer tokens, identity tokens, 429, interrupted downloads,
// corrupt blobs).
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "oci/blob_cache.h"
#include "oci/image.h"
#include "oci/registry.h"
#include "support/env.h"
#include "support/errors.h"
#include "util/base64.h"
#include "util/curl.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"

extern char** environ;

using namespace edgeforge;
using edgeforge::testing::error_of;
using edgeforge::testing::ScopedEnv;
using nlohmann::json;
namespace stdfs = std::filesystem;

namespace {

// tests/fixtures/fake-registry as a child process for the lifetime of the object.
class FakeRegistry {
  public:
    explicit FakeRegistry(bool misbehave = false, const std::string& realm_host = {})
        : FakeRegistry(options_of(misbehave, realm_host)) {}
    // With the fake's own options: {"--trickle", "manifest"}, {"--redirect-loop"}, ...
    explicit FakeRegistry(const std::vector<std::string>& options) {
        const auto python = util::find_program("python3");
        REQUIRE(python);
        const auto port_file = dir_.path() / "port";
        std::vector<std::string> arguments = {
            python->string(),
            (stdfs::path(EDGEFORGE_SOURCE_DIR) / "tests" / "fixtures" / "fake-registry").string(),
            "--port-file", port_file.string()};
        arguments.insert(arguments.end(), options.begin(), options.end());
        std::vector<char*> argv;
        for (auto& argument : arguments) {
            argv.push_back(argument.data());
        }
        argv.push_back(nullptr);
        REQUIRE(::posix_spawn(&pid_, python->c_str(), nullptr, nullptr, argv.data(), environ) == 0);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!stdfs::exists(port_file)) {
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        port_ = std::stoi(util::read_file(port_file));
    }
    ~FakeRegistry() {
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
    }
    FakeRegistry(const FakeRegistry&) = delete;
    FakeRegistry& operator=(const FakeRegistry&) = delete;

    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

    // Every request the registry saw: method, path, range, authorization scheme.
    json requests() const {
        const util::CurlEasy handle = util::new_curl_easy();
        std::string body;
        const std::string url = "http://" + host() + "/_log";
        curl_easy_setopt(handle.get(), CURLOPT_URL, url.c_str());
        curl_easy_setopt(
            handle.get(), CURLOPT_WRITEFUNCTION,
            +[](char* data, std::size_t size, std::size_t count, void* user) {
                static_cast<std::string*>(user)->append(data, size * count);
                return size * count;
            });
        curl_easy_setopt(handle.get(), CURLOPT_WRITEDATA, &body);
        REQUIRE(curl_easy_perform(handle.get()) == CURLE_OK);
        return json::parse(body);
    }

  private:
    static std::vector<std::string> options_of(bool misbehave, const std::string& realm_host) {
        std::vector<std::string> options;
        if (misbehave) {
            options.emplace_back("--misbehave");
        }
        if (!realm_host.empty()) {
            options.emplace_back("--realm-host");
            options.push_back(realm_host);
        }
        return options;
    }

    // A proxy from the environment must not carry requests to the loopback fake.
    ScopedEnv no_proxy_{"no_proxy", "127.0.0.1,localhost"};
    ScopedEnv no_proxy_upper_{"NO_PROXY", "127.0.0.1,localhost"};
    util::TempDir dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

oci::RegistryOptions test_options(const std::string& host) {
    oci::RegistryOptions options;
    options.insecure_hosts = {host};
    options.retry_base_delay = std::chrono::milliseconds(1);
    options.retry_max_delay = std::chrono::milliseconds(5);
    options.connect_timeout = std::chrono::milliseconds(2000);
    options.auth_files = {"/nonexistent/auth.json"};  // never the tester's own credentials
    options.certs_d_roots = {"/nonexistent/certs.d"}; // nor certificates
    return options;
}

oci::Credentials user_secret() {
    return oci::Credentials{"user", "secret", "--creds"};
}

std::size_t count_requests(const json& log, std::string_view path_prefix) {
    std::size_t count = 0;
    for (const auto& entry : log) {
        if (entry["path"].get<std::string>().starts_with(path_prefix)) {
            ++count;
        }
    }
    return count;
}

json manifest_of(oci::RegistryClient& client) {
    return json::parse(client.get_manifest("test/image", "latest").body);
}

// The layers of a manifest as fetch_blobs() requests.
std::vector<oci::BlobRequest> layer_requests(const json& manifest) {
    std::vector<oci::BlobRequest> blobs;
    for (const auto& layer : manifest["layers"]) {
        blobs.push_back(
            {layer["digest"].get<std::string>(), layer["size"].get<std::uint64_t>(), "layer"});
    }
    return blobs;
}

} // namespace

TEST_CASE("WWW-Authenticate: bearer and basic challenges, quoted values, several challenges") {
    auto challenges = oci::parse_www_authenticate(
        R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
        R"(scope="repository:library/alpine:pull,push")");
    REQUIRE(challenges.size() == 1);
    CHECK(challenges[0].scheme == "bearer");
    CHECK(challenges[0].parameters["realm"] == "https://auth.docker.io/token");
    CHECK(challenges[0].parameters["service"] == "registry.docker.io");
    CHECK(challenges[0].parameters["scope"] == "repository:library/alpine:pull,push");

    challenges = oci::parse_www_authenticate(
        R"(Basic realm="Registry \"Realm\"", Bearer Realm=https://x/token , Service = s)");
    REQUIRE(challenges.size() == 2);
    CHECK(challenges[0].scheme == "basic");
    CHECK(challenges[0].parameters["realm"] == "Registry \"Realm\"");
    CHECK(challenges[1].scheme == "bearer");
    CHECK(challenges[1].parameters["realm"] == "https://x/token");
    CHECK(challenges[1].parameters["service"] == "s");

    CHECK(oci::parse_www_authenticate("").empty());
    CHECK(oci::parse_www_authenticate("Basic")[0].parameters.empty());
}

TEST_CASE("docker config: auths with base64 auth, username/password, docker.io spellings") {
    const std::string encoded = util::base64_encode("alice:pa:ss");
    const json config = {
        {"auths",
         {{"registry.example.com:5000", {{"auth", encoded}}},
          {"https://index.docker.io/v1/", {{"auth", util::base64_encode("hub:token")}}},
          {"http://plain.example.com/v2/", {{"username", "bob"}, {"password", "pw"}}}}}};
    const auto found =
        oci::credentials_from_auth_config(config, "registry.example.com:5000", "cfg");
    REQUIRE(found);
    CHECK(found->username == "alice");
    CHECK(found->password == "pa:ss");
    CHECK(found->source == "cfg");
    const auto hub = oci::credentials_from_auth_config(config, "docker.io", "cfg");
    REQUIRE(hub);
    CHECK(hub->username == "hub");
    const auto plain = oci::credentials_from_auth_config(config, "plain.example.com", "cfg");
    REQUIRE(plain);
    CHECK(plain->password == "pw");
    CHECK_FALSE(oci::credentials_from_auth_config(config, "registry.example.com", "cfg"));
    CHECK_FALSE(oci::credentials_from_auth_config(config, "other.example.com", "cfg"));

    const json broken = {{"auths", {{"r.example.com", {{"auth", "bm90LWJhc2U2NA==="}}}}}};
    CHECK(error_of([&] { oci::credentials_from_auth_config(broken, "r.example.com", "cfg"); },
                   ExitCode::bad_input) ==
          "cfg: auths.\"r.example.com\".auth is not the base64 of USER:PASSWORD; log in again "
          "(docker login r.example.com)");
}

TEST_CASE("docker config: identitytoken (an OAuth2 refresh token) wins over auth") {
    const json config = {
        {"auths",
         {{"r.example.com", {{"auth", util::base64_encode("alice:")}, {"identitytoken", "rt-1"}}},
          {"s.example.com", {{"identitytoken", "rt-2"}}},
          {"t.example.com", {{"auth", util::base64_encode("bob:pw")}, {"identitytoken", ""}}}}}};
    const auto found = oci::credentials_from_auth_config(config, "r.example.com", "cfg");
    REQUIRE(found);
    CHECK(found->username == "alice");
    CHECK(found->password.empty());
    CHECK(found->identity_token == "rt-1");
    CHECK(found->source == "cfg");
    const auto bare = oci::credentials_from_auth_config(config, "s.example.com", "cfg");
    REQUIRE(bare);
    CHECK(bare->username.empty());
    CHECK(bare->identity_token == "rt-2");
    // An empty identitytoken is no identity token: the auth entry is used.
    const auto plain = oci::credentials_from_auth_config(config, "t.example.com", "cfg");
    REQUIRE(plain);
    CHECK(plain->password == "pw");
    CHECK(plain->identity_token.empty());
}

TEST_CASE("docker config: credHelpers win over auths, credsStore is the fallback") {
    std::vector<std::string> asked;
    const oci::CredentialHelperRunner helper =
        [&](std::string_view name, std::string_view server) -> std::optional<oci::Credentials> {
        asked.push_back(std::string(name) + " " + std::string(server));
        if (name == "empty") {
            return std::nullopt;
        }
        return oci::Credentials{"from-" + std::string(name), "secret",
                                "docker-credential-" + std::string(name)};
    };
    const json config = {{"credHelpers", {{"ecr.example.com", "ecr-login"}}},
                         {"auths", {{"ecr.example.com", {{"auth", util::base64_encode("a:b")}}}}},
                         {"credsStore", "desktop"}};
    CHECK(oci::credentials_from_auth_config(config, "ecr.example.com", "cfg", helper)->username ==
          "from-ecr-login");
    CHECK(oci::credentials_from_auth_config(config, "docker.io", "cfg", helper)->username ==
          "from-desktop");
    CHECK(asked == std::vector<std::string>{"ecr-login ecr.example.com",
                                            "desktop https://index.docker.io/v1/"});
    const json empty_store = {{"credsStore", "empty"}};
    CHECK_FALSE(oci::credentials_from_auth_config(empty_store, "x.example.com", "cfg", helper));
}

TEST_CASE("credential helpers run as docker-credential-NAME get, server on stdin") {
    util::TempDir dir;
    const auto script = dir.path() / "docker-credential-edgetest";
    util::write_file_atomically(
        script, "#!/bin/sh\nread -r server\n"
                "[ \"$1\" = get ] || exit 3\n"
                "case \"$server\" in\n"
                "  good.example.com) echo '{\"ServerURL\":\"x\",\"Username\":\"u1\","
                "\"Secret\":\"s1\"}' ;;\n"
                "  broken.example.com) echo 'keychain locked' >&2; exit 1 ;;\n"
                "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
                "esac\n");
    stdfs::permissions(script, stdfs::perms::owner_all);
    const std::string path = dir.path().string() + ":" + std::getenv("PATH");
    const ScopedEnv env("PATH", path.c_str());

    const auto found = oci::run_credential_helper("edgetest", "good.example.com");
    REQUIRE(found);
    CHECK(found->username == "u1");
    CHECK(found->password == "s1");
    CHECK(found->source == "docker-credential-edgetest");
    CHECK_FALSE(oci::run_credential_helper("edgetest", "other.example.com"));
    CHECK(error_of([] { oci::run_credential_helper("edgetest", "broken.example.com"); },
                   ExitCode::bad_input) ==
          "the credential helper docker-credential-edgetest failed for broken.example.com (exit "
          "1): keychain locked");
    CHECK(
        error_of([] { oci::run_credential_helper("missing-helper", "x"); }, ExitCode::bad_input) ==
        "the credential helper docker-credential-missing-helper is not installed (not found on "
        "PATH); install it or remove it from the docker config");

    // Through a docker config file found via DOCKER_CONFIG.
    util::write_file_atomically(dir.path() / "config.json",
                                R"({"credHelpers":{"good.example.com":"edgetest"}})");
    const ScopedEnv docker_config("DOCKER_CONFIG", dir.path().c_str());
    const ScopedEnv no_auth_file("REGISTRY_AUTH_FILE", nullptr);
    const ScopedEnv no_runtime("XDG_RUNTIME_DIR", nullptr);
    const auto via_file = oci::find_credentials("good.example.com", oci::RegistryOptions{});
    REQUIRE(via_file);
    CHECK(via_file->username == "u1");
}

TEST_CASE("credentials: --creds first, then REGISTRY_AUTH_FILE; secrets stay out of messages") {
    util::TempDir dir;
    const auto auth_file = dir.path() / "auth.json";
    util::write_file_atomically(
        auth_file,
        json{{"auths", {{"r.example.com", {{"auth", util::base64_encode("f:g")}}}}}}.dump());
    const ScopedEnv env("REGISTRY_AUTH_FILE", auth_file.c_str());
    const ScopedEnv docker_config("DOCKER_CONFIG", dir.path().c_str());
    oci::RegistryOptions options;
    CHECK(oci::find_credentials("r.example.com", options)->username == "f");
    CHECK(oci::find_credentials("r.example.com", options)->source == auth_file.string());
    CHECK_FALSE(oci::find_credentials("s.example.com", options));
    options.credentials = oci::parse_credentials_option("cli:pw:with:colons");
    CHECK(oci::find_credentials("r.example.com", options)->password == "pw:with:colons");

    CHECK(error_of([] { oci::parse_credentials_option("no-colon-secret"); }, ExitCode::bad_input) ==
          "--creds: expected USER:PASSWORD (the value is not shown)");

    util::write_file_atomically(auth_file, R"({"auths":{"r.example.com":{"auth":"c2VjcmV0)");
    CHECK(error_of([] { oci::find_credentials("r.example.com", oci::RegistryOptions{}); },
                   ExitCode::bad_input) ==
          auth_file.string() +
              " is not valid JSON; fix or remove it (credentials for registries are read from it)");
    const ScopedEnv missing("REGISTRY_AUTH_FILE", "/nonexistent/auth.json");
    CHECK(error_of([] { oci::find_credentials("r.example.com", oci::RegistryOptions{}); },
                   ExitCode::bad_input) ==
          "REGISTRY_AUTH_FILE=/nonexistent/auth.json does not exist or is not a file");
}

TEST_CASE("insecure registries match host:port, or the host on any port") {
    oci::RegistryOptions options;
    options.insecure_hosts = {"127.0.0.1:5000", "plain.example.com"};
    CHECK(options.is_insecure("127.0.0.1:5000"));
    CHECK_FALSE(options.is_insecure("127.0.0.1:5001"));
    CHECK_FALSE(options.is_insecure("localhost:5000"));
    CHECK(options.is_insecure("plain.example.com"));
    CHECK(options.is_insecure("plain.example.com:8080"));
    CHECK_FALSE(options.is_insecure("example.com"));
}

TEST_CASE("an unreachable registry fails in seconds, naming the host") {
    const ScopedEnv no_proxy("no_proxy", "127.0.0.1");
    oci::RegistryOptions options = test_options("127.0.0.1:1");
    oci::RegistryClient client("127.0.0.1:1", options);
    const auto started = std::chrono::steady_clock::now();
    const std::string message =
        error_of([&] { client.get_manifest("edge/base", "latest"); }, ExitCode::build_failed);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
    CHECK(message.starts_with("registry 127.0.0.1:1 is unreachable: GET /v2/: "));
    CHECK(message.find("(after 4 attempts); check the host name and port, the network, and "
                       "HTTPS_PROXY/NO_PROXY") != std::string::npos);
}

TEST_CASE("--ca-cert must name PEM certificates") {
    util::TempDir dir;
    oci::RegistryOptions options;
    options.ca_cert = dir.path() / "missing.crt";
    CHECK(error_of([&] { oci::RegistryClient client("r.example.com", options); },
                   ExitCode::bad_input) ==
          "--ca-cert: " + options.ca_cert.string() + " does not exist");
    options.ca_cert = dir.path();
    CHECK(error_of([&] { oci::RegistryClient client("r.example.com", options); },
                   ExitCode::bad_input) ==
          "--ca-cert: the directory " + dir.path().string() + " has no *.crt or *.pem files");
    util::write_file_atomically(dir.path() / "ca.crt", "not a certificate\n");
    CHECK(error_of([&] { oci::RegistryClient client("r.example.com", options); },
                   ExitCode::bad_input) ==
          "--ca-cert: " + (dir.path() / "ca.crt").string() + " holds no PEM certificate");
}

namespace {

// A PEM-looking file: certs.d files are checked for their PEM type when a client is made; the
// certificate itself is only parsed by the TLS handshake (the e2e tests make real ones).
void write_pem(const stdfs::path& file, std::string_view type) {
    stdfs::create_directories(file.parent_path());
    util::write_file_atomically(
        file, fmt::format("-----BEGIN {0}-----\nMIIBfake\n-----END {0}-----\n", type));
}

} // namespace

TEST_CASE("certs.d: the first root with the registry's directory wins; *.crt, NAME.cert + .key") {
    util::TempDir dir;
    const auto first = dir.path() / "first";
    const auto second = dir.path() / "second";
    const auto third = dir.path() / "third";
    const std::string host = "r.example.com:5000";
    write_pem(first / "other.example.com" / "ca.crt", "CERTIFICATE");
    write_pem(first / "r.example.com" / "ca.crt", "CERTIFICATE"); // another port's: not this one
    write_pem(second / host / "ca.crt", "CERTIFICATE");
    write_pem(second / host / "b-intermediate.crt", "CERTIFICATE");
    write_pem(second / host / "ignored.pem", "CERTIFICATE"); // containers/image reads *.crt only
    write_pem(second / host / "client.cert", "CERTIFICATE");
    write_pem(second / host / "client.key", "PRIVATE KEY");
    util::write_file_atomically(second / host / "README", "not read\n");
    stdfs::create_directories(second / host / "sub.crt"); // a directory, not a file
    write_pem(third / host / "later.crt", "CERTIFICATE"); // not merged: second wins
    oci::RegistryOptions options;
    options.certs_d_roots = {first, second, third};

    const auto found = oci::find_registry_certificates(host, options);
    CHECK(found.directory == second / host);
    CHECK(found.ca_files ==
          std::vector<stdfs::path>{second / host / "b-intermediate.crt", second / host / "ca.crt"});
    CHECK(found.client_cert == second / host / "client.cert");
    CHECK(found.client_key == second / host / "client.key");

    // Only the CAs: no client certificate.
    const auto only_ca = oci::find_registry_certificates("r.example.com", options);
    CHECK(only_ca.directory == first / "r.example.com");
    CHECK(only_ca.ca_files == std::vector<stdfs::path>{first / "r.example.com" / "ca.crt"});
    CHECK(only_ca.client_cert.empty());
    CHECK(only_ca.client_key.empty());

    const auto none = oci::find_registry_certificates("r.example.com:6000", options);
    CHECK(none.directory.empty());
    CHECK(none.ca_files.empty());
    CHECK(none.client_cert.empty());

    // The client made with them reads every file (they are valid PEM types).
    CHECK_NOTHROW([&] { oci::RegistryClient client(host, options); }());
}

TEST_CASE("certs.d: a .cert without its .key (or the reverse), or two pairs, is bad input") {
    util::TempDir dir;
    const auto host_dir = dir.path() / "127.0.0.1:5000";
    oci::RegistryOptions options;
    options.certs_d_roots = {dir.path()};
    write_pem(host_dir / "ca.crt", "CERTIFICATE");
    write_pem(host_dir / "client.cert", "CERTIFICATE");
    CHECK(error_of([&] { oci::find_registry_certificates("127.0.0.1:5000", options); },
                   ExitCode::bad_input) ==
          "registry 127.0.0.1:5000: the client certificate " + (host_dir / "client.cert").string() +
              " has no key: " + (host_dir / "client.key").string() +
              " is missing (CA certificates take the extension .crt)");
    // The client is not made either.
    CHECK(error_of([&] { oci::RegistryClient client("127.0.0.1:5000", options); },
                   ExitCode::bad_input)
              .find("has no key") != std::string::npos);

    stdfs::remove(host_dir / "client.cert");
    write_pem(host_dir / "client.key", "PRIVATE KEY");
    CHECK(error_of([&] { oci::find_registry_certificates("127.0.0.1:5000", options); },
                   ExitCode::bad_input) ==
          "registry 127.0.0.1:5000: the client key " + (host_dir / "client.key").string() +
              " has no certificate: " + (host_dir / "client.cert").string() + " is missing");

    write_pem(host_dir / "client.cert", "CERTIFICATE");
    write_pem(host_dir / "other.cert", "CERTIFICATE");
    write_pem(host_dir / "other.key", "PRIVATE KEY");
    CHECK(error_of([&] { oci::find_registry_certificates("127.0.0.1:5000", options); },
                   ExitCode::bad_input) ==
          "registry 127.0.0.1:5000: the certs.d directory " + host_dir.string() +
              " holds 2 client certificates (client.cert, other.cert); edgeforge sends one: keep "
              "a single NAME.cert with its NAME.key");
}

TEST_CASE("certs.d files that are not PEM of their kind stop the client from being made") {
    util::TempDir dir;
    const auto host_dir = dir.path() / "r.example.com";
    oci::RegistryOptions options;
    options.certs_d_roots = {dir.path()};
    stdfs::create_directories(host_dir);
    util::write_file_atomically(host_dir / "ca.crt", "not a certificate\n");
    CHECK(error_of([&] { oci::RegistryClient client("r.example.com", options); },
                   ExitCode::bad_input) ==
          "registry r.example.com: certs.d: " + (host_dir / "ca.crt").string() +
              " holds no PEM certificate");
    write_pem(host_dir / "ca.crt", "CERTIFICATE");
    write_pem(host_dir / "client.cert", "CERTIFICATE");
    write_pem(host_dir / "client.key", "CERTIFICATE"); // the certificate copied twice
    CHECK(error_of([&] { oci::RegistryClient client("r.example.com", options); },
                   ExitCode::bad_input) ==
          "registry r.example.com: certs.d: " + (host_dir / "client.key").string() +
              " holds no PEM private key");
    write_pem(host_dir / "client.key", "EC PRIVATE KEY");
    CHECK_NOTHROW([&] { oci::RegistryClient client("r.example.com", options); }());
}

TEST_CASE(
    "certs.d default roots: $XDG_CONFIG_HOME (else ~/.config), /etc/containers, /etc/docker") {
    util::TempDir dir;
    {
        const ScopedEnv config("XDG_CONFIG_HOME", dir.path().c_str());
        CHECK(oci::default_certs_d_roots() ==
              std::vector<stdfs::path>{dir.path() / "containers" / "certs.d",
                                       "/etc/containers/certs.d", "/etc/docker/certs.d"});
        // An empty override list means these roots.
        const std::string host = "certs-d-unit-test.invalid:5000";
        write_pem(dir.path() / "containers" / "certs.d" / host / "ca.crt", "CERTIFICATE");
        CHECK(oci::find_registry_certificates(host, oci::RegistryOptions{}).ca_files ==
              std::vector<stdfs::path>{dir.path() / "containers" / "certs.d" / host / "ca.crt"});
    }
    const ScopedEnv no_config("XDG_CONFIG_HOME", nullptr);
    const ScopedEnv home("HOME", dir.path().c_str());
    CHECK(oci::default_certs_d_roots().front() ==
          dir.path() / ".config" / "containers" / "certs.d");
}

TEST_CASE("bearer token flow: challenge, token with Basic credentials, reuse, parallel pulls") {
    FakeRegistry registry;
    util::TempDir cache_dir;
    const oci::BlobCache cache(cache_dir.path());
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    oci::RegistryClient client(registry.host(), options);
    const auto blobs = layer_requests(manifest_of(client));
    const auto paths = client.fetch_blobs("test/image", blobs, cache);
    REQUIRE(paths.size() == 2);
    for (std::size_t i = 0; i < paths.size(); ++i) {
        CHECK("sha256:" + util::sha256_file_hex(paths[i]) == blobs[i].digest);
    }
    const auto log = registry.requests();
    CHECK(count_requests(log, "/token") == 1); // one token for the scope, reused by every request
    CHECK(count_requests(log, "/v2/test/image/blobs/") == 2);

    // Pinned by digest: verified against the body.
    const auto by_digest =
        client.get_manifest("test/image", client.get_manifest("test/image", "latest").digest);
    CHECK(by_digest.media_type == "application/vnd.oci.image.manifest.v1+json");
}

TEST_CASE("credentials never go to a plain-HTTP token service that is not --insecure-registry") {
    // The registry is listed as insecure; its challenge names a token service on another host
    // name (localhost) over http://.
    FakeRegistry registry(false, "localhost");
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    {
        oci::RegistryClient client(registry.host(), options);
        const std::string message = error_of(
            [&] { (void)client.get_manifest("test/image", "latest"); }, ExitCode::bad_input);
        CHECK(message.find("token service http://localhost:") != std::string::npos);
        CHECK(message.find("plain HTTP") != std::string::npos);
        CHECK(message.find("--insecure-registry") != std::string::npos);
        CHECK(message.find("secret") == std::string::npos);
        CHECK(count_requests(registry.requests(), "/token") == 0); // nothing was sent there
    }
    // Listed too, the token service gets them.
    options.insecure_hosts.push_back("localhost");
    oci::RegistryClient trusting(registry.host(), options);
    CHECK(trusting.get_manifest("test/image", "latest").media_type ==
          "application/vnd.oci.image.manifest.v1+json");
    CHECK(count_requests(registry.requests(), "/token") == 1);
}

TEST_CASE("bearer token flow without or with wrong credentials: 401 says how to log in") {
    FakeRegistry registry;
    {
        oci::RegistryClient client(registry.host(), test_options(registry.host()));
        const std::string message =
            error_of([&] { client.get_manifest("test/image", "latest"); }, ExitCode::bad_input);
        CHECK(message == "registry " + registry.host() + ": the token service http://" +
                             registry.host() +
                             "/token requires credentials (401 UNAUTHORIZED: bad creds); log in "
                             "with 'docker login " +
                             registry.host() +
                             "' (or podman login), set REGISTRY_AUTH_FILE to an auth.json, or "
                             "pass --creds USER:PASSWORD");
    }
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = oci::Credentials{"user", "not-the-Secret-42", "--creds"};
    oci::RegistryClient client(registry.host(), options);
    const std::string message =
        error_of([&] { client.get_manifest("test/image", "latest"); }, ExitCode::bad_input);
    CHECK(message.find("refused the credentials from --creds") != std::string::npos);
    CHECK(message.find("not-the-Secret-42") == std::string::npos);
}

TEST_CASE("identity token: POST realm grant_type=refresh_token, one token reused; refused token") {
    FakeRegistry registry;
    util::TempDir dir;
    const auto config = dir.path() / "config.json";
    util::write_file_atomically(
        config,
        json{{"auths",
              {{registry.host(),
                {{"auth", util::base64_encode("user:")}, {"identitytoken", "refresh-Secret-77"}}}}}}
            .dump());
    util::TempDir cache_dir;
    const oci::BlobCache cache(cache_dir.path());
    oci::RegistryOptions options = test_options(registry.host());
    options.auth_files = {config};
    {
        oci::RegistryClient client(registry.host(), options);
        const auto blobs = layer_requests(manifest_of(client));
        CHECK(client.fetch_blobs("test/image", blobs, cache).size() == 2);
    }
    const auto log = registry.requests();
    std::vector<json> posts;
    for (const auto& entry : log) {
        if (entry["path"].get<std::string>().starts_with("/token")) {
            CHECK(entry["method"] == "POST"); // never GET with Basic "user:"
            posts.push_back(entry);
        }
    }
    REQUIRE(posts.size() == 1); // one token for the scope, reused by the manifest and both blobs
    CHECK(posts[0]["content_type"] == "application/x-www-form-urlencoded");
    CHECK(posts[0]["form"] == json{{"grant_type", "refresh_token"},
                                   {"refresh_token_matched", true},
                                   {"client_id", "edgeforge"},
                                   {"service", "fake"},
                                   {"scope", "repository:test/image:pull"}});
    CHECK(count_requests(log, "/v2/test/image/blobs/") == 2);

    // A refresh token the service does not know (expired, revoked): bad input, not shown.
    util::write_file_atomically(
        config,
        json{{"auths", {{registry.host(), {{"identitytoken", "stale-Refresh-99"}}}}}}.dump());
    oci::RegistryClient client(registry.host(), options);
    const std::string message =
        error_of([&] { client.get_manifest("test/image", "latest"); }, ExitCode::bad_input);
    CHECK(message == "registry " + registry.host() + ": the token service http://" +
                         registry.host() + "/token refused the identity token from " +
                         config.string() +
                         " (400 invalid_grant: unknown refresh token); it may have expired or "
                         "been revoked: log in again with 'docker login " +
                         registry.host() + "', or pass --creds USER:PASSWORD");
    CHECK(message.find("stale-Refresh-99") == std::string::npos);
}

TEST_CASE("429 is retried and an interrupted download resumes with Range") {
    FakeRegistry registry(true);
    util::TempDir cache_dir;
    const oci::BlobCache cache(cache_dir.path());
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    options.parallel_downloads = 1;
    oci::RegistryClient client(registry.host(), options);
    const auto manifest = manifest_of(client);
    const auto& layer2 = manifest["layers"][1];
    const std::string digest = layer2["digest"];
    const auto path = client.fetch_blob(
        "test/image", {digest, layer2["size"].get<std::uint64_t>(), "layer"}, cache);
    CHECK("sha256:" + util::sha256_file_hex(path) == digest);
    const auto log = registry.requests();
    std::vector<std::string> ranges;
    for (const auto& entry : log) {
        if (entry["path"] == "/v2/test/image/blobs/" + digest &&
            entry["authorization"] == "Bearer") {
            ranges.push_back(entry["range"].is_null() ? "" : entry["range"].get<std::string>());
        }
    }
    const std::size_t half = layer2["size"].get<std::size_t>() / 2;
    // 429, then the cut-off download, then the rest from the middle.
    CHECK(ranges == std::vector<std::string>{"", "", "bytes=" + std::to_string(half) + "-"});
}

TEST_CASE("a registry serving wrong bytes: error names the layer, nothing enters the cache") {
    FakeRegistry registry;
    util::TempDir cache_dir;
    oci::OpenOptions options;
    options.cache_dir = cache_dir.path();
    options.registry = test_options(registry.host());
    options.registry.credentials = user_secret();
    const auto reference = oci::parse_reference(registry.host() + "/test/corrupt:latest");
    const std::string message =
        error_of([&] { oci::open_image(reference, Arch(Arch::Id::amd64), options); },
                 ExitCode::build_failed);
    CHECK(message.starts_with("registry " + registry.host() + ": layer sha256:"));
    CHECK(message.find(" of test/corrupt:latest is corrupt: its content hashes to sha256:") !=
          std::string::npos);
    CHECK(message.ends_with("; nothing was stored in the cache; the registry's copy is damaged, "
                            "push the image again"));
    for (const auto& entry : oci::list_cache(cache_dir.path()).entries) {
        CHECK(entry.kind == oci::CacheEntry::Kind::blob);
        CHECK(entry.size != 1000); // the 1000-byte layer is not there; manifest and config are
    }
}

TEST_CASE("open_image pulls a registry image into the cache; a missing tag is bad input") {
    FakeRegistry registry;
    util::TempDir cache_dir;
    oci::OpenOptions options;
    options.cache_dir = cache_dir.path();
    options.registry = test_options(registry.host());
    options.registry.credentials = user_secret();
    std::vector<std::string> progress;
    options.on_progress = [&](const std::string& line) { progress.push_back(line); };
    std::uint64_t pulled = 0;
    std::uint64_t pull_total = 0;
    options.on_pull_bytes = [&](std::uint64_t done, std::uint64_t total) {
        CHECK(done >= pulled);
        pulled = done;
        pull_total = total;
    };
    const auto reference = oci::parse_reference("docker://" + registry.host() + "/test/image");
    const auto image = oci::open_image(reference, Arch(Arch::Id::amd64), options);
    CHECK(pulled == 112400);
    CHECK(pull_total == 112400);
    REQUIRE(image.layers.size() == 2);
    CHECK(image.platform.str() == "linux/amd64");
    CHECK(image.layers[0].path.parent_path() == cache_dir.path() / "blobs" / "sha256");
    CHECK(progress == std::vector<std::string>{"pulling docker://" + registry.host() +
                                               "/test/image:latest: 2 of 2 layers (109.8 KiB)"});
    progress.clear();
    oci::open_image(reference, Arch(Arch::Id::amd64), options);
    CHECK(progress.empty()); // everything came from the cache

    CHECK(error_of([&] { oci::open_image(reference, Arch(Arch::Id::arm64), options); },
                   ExitCode::bad_input) ==
          "image docker://" + registry.host() +
              "/test/image:latest is for amd64, but the build targets arm64; pass --arch amd64 "
              "or use an arm64 image");
    const auto missing = oci::parse_reference("docker://" + registry.host() + "/test/image:v9");
    CHECK(error_of([&] { oci::open_image(missing, Arch(Arch::Id::amd64), options); },
                   ExitCode::bad_input) ==
          "registry " + registry.host() +
              ": manifest test/image:v9: HTTP 404: MANIFEST_UNKNOWN: manifest unknown; the "
              "repository has no tag 'v9' (list the tags with 'skopeo list-tags docker://" +
              registry.host() + "/test/image')");
}

TEST_CASE("two pulls of one blob into a shared cache download it once (the blob lock)") {
    FakeRegistry registry;
    util::TempDir cache_dir;
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    std::string digest;
    std::uint64_t size = 0;
    {
        oci::RegistryClient client(registry.host(), options);
        const auto manifest = manifest_of(client);
        digest = manifest["layers"][1]["digest"];
        size = manifest["layers"][1]["size"];
    }
    // Two clients and two cache objects, as two edgeforge processes would have.
    std::vector<stdfs::path> paths(2);
    std::vector<std::string> errors(2);
    {
        std::vector<std::jthread> pulls;
        for (std::size_t i = 0; i < 2; ++i) {
            pulls.emplace_back([&, i] {
                try {
                    const oci::BlobCache cache(cache_dir.path());
                    oci::RegistryClient client(registry.host(), options);
                    paths[i] = client.fetch_blob("test/image", {digest, size, "layer"}, cache);
                } catch (const std::exception& error) {
                    errors[i] = error.what();
                }
            });
        }
    }
    CHECK(errors == std::vector<std::string>{"", ""});
    CHECK(paths[0] == paths[1]);
    CHECK("sha256:" + util::sha256_file_hex(paths[0]) == digest);
    std::size_t downloads = 0;
    for (const auto& entry : registry.requests()) {
        if (entry["path"] == "/v2/test/image/blobs/" + digest &&
            entry["authorization"] == "Bearer") {
            ++downloads;
        }
    }
    CHECK(downloads == 1);
}

TEST_CASE("a registry trickling an endless manifest or token fails at the deadline, naming it") {
    using namespace std::chrono_literals;
    for (const std::string what : {"manifest", "token"}) {
        CAPTURE(what);
        FakeRegistry registry(std::vector<std::string>{"--trickle", what});
        oci::RegistryOptions options = test_options(registry.host());
        options.credentials = user_secret();
        options.request_timeout = 1500ms;
        oci::RegistryClient client(registry.host(), options);
        const auto start = std::chrono::steady_clock::now();
        const std::string message = error_of(
            [&] { (void)client.get_manifest("test/image", "latest"); }, ExitCode::build_failed);
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(took < 6s); // one deadline for the request, its retries included
        const std::string named = what == "manifest"
                                      ? "registry " + registry.host() + ": manifest test/image:latest: "
                                      : "registry " + registry.host() + ": token for repository:test/image:pull: ";
        CHECK(message.starts_with(named));
        CHECK(message.find("attempts") == std::string::npos); // no retry past the deadline
        CHECK(message.find("no complete answer within 1.5 s (registry.timeout, "
                           "--registry-timeout)") != std::string::npos);
    }
}

TEST_CASE("a blob trickling below the low-speed limit is abandoned after the stall timeout") {
    using namespace std::chrono_literals;
    FakeRegistry registry(std::vector<std::string>{"--trickle", "blob"});
    util::TempDir cache_dir;
    const oci::BlobCache cache(cache_dir.path());
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    options.low_speed_time = 1s;
    options.max_attempts = 2;
    oci::RegistryClient client(registry.host(), options);
    const auto blobs = layer_requests(manifest_of(client));
    const auto start = std::chrono::steady_clock::now();
    const std::string message =
        error_of([&] { (void)client.fetch_blob("test/image", blobs[0], cache); },
                 ExitCode::build_failed);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    CHECK(message.starts_with("registry " + registry.host() + ": layer " + blobs[0].digest));
    CHECK(message.find("less than 1024 bytes/s arrived for 1 s (registry.stall_timeout, "
                       "--registry-stall-timeout) (after 2 attempts)") != std::string::npos);
    CHECK(count_requests(registry.requests(), "/v2/test/image/blobs/") >= 2);
}

TEST_CASE("a manifest or token answer larger than its cap stops there, whatever Content-Length says") {
    {
        FakeRegistry registry(std::vector<std::string>{"--flood", "manifest"});
        oci::RegistryOptions options = test_options(registry.host());
        options.credentials = user_secret();
        oci::RegistryClient client(registry.host(), options);
        CHECK(error_of([&] { (void)client.get_manifest("test/image", "latest"); },
                       ExitCode::build_failed) ==
              "registry " + registry.host() +
                  ": manifest test/image:latest is larger than 4.0 MiB; that is not an image "
                  "manifest");
    }
    FakeRegistry registry(std::vector<std::string>{"--flood", "token"});
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    oci::RegistryClient client(registry.host(), options);
    const std::string message = error_of(
        [&] { (void)client.get_manifest("test/image", "latest"); }, ExitCode::build_failed);
    CHECK(message == "registry " + registry.host() +
                         ": token for repository:test/image:pull: the answer is larger than "
                         "256.0 KiB, more than such an answer ever needs; nothing was used");
}

TEST_CASE("a blob redirected to another host gets no Authorization header there") {
    // libcurl drops a custom Authorization header when a redirect changes the host (and
    // CURLOPT_UNRESTRICTED_AUTH stays off); this holds it to that for the libcurl we build with.
    FakeRegistry registry(std::vector<std::string>{"--redirect-blobs", "localhost"});
    util::TempDir cache_dir;
    const oci::BlobCache cache(cache_dir.path());
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    oci::RegistryClient client(registry.host(), options);
    const auto blobs = layer_requests(manifest_of(client));
    const auto path = client.fetch_blob("test/image", blobs[0], cache);
    CHECK("sha256:" + util::sha256_file_hex(path) == blobs[0].digest);
    const auto log = registry.requests();
    std::size_t redirected = 0;
    for (const auto& entry : log) {
        if (entry["path"].get<std::string>().starts_with("/_redirected/")) {
            ++redirected;
            CHECK(entry["authorization"] == ""); // the bearer token stayed with the registry
        } else if (entry["path"].get<std::string>().starts_with("/v2/test/image/blobs/") &&
                   !entry["authorization"].get<std::string>().empty()) {
            CHECK(entry["authorization"] == "Bearer");
        }
    }
    CHECK(redirected == 1);
}

TEST_CASE("a redirect loop ends with an error naming the registry and the blob") {
    FakeRegistry registry(std::vector<std::string>{"--redirect-loop"});
    util::TempDir cache_dir;
    const oci::BlobCache cache(cache_dir.path());
    oci::RegistryOptions options = test_options(registry.host());
    options.credentials = user_secret();
    oci::RegistryClient client(registry.host(), options);
    const auto blobs = layer_requests(manifest_of(client));
    const std::string message = error_of(
        [&] { (void)client.fetch_blob("test/image", blobs[0], cache); }, ExitCode::build_failed);
    CHECK(message == "registry " + registry.host() + ": layer " + blobs[0].digest +
                         " of test/image: http://" + registry.host() + "/v2/test/image/blobs/" +
                         blobs[0].digest +
                         " answered with more than 5 redirects (a redirect loop?); nothing was "
                         "downloaded");
    CHECK(count_requests(registry.requests(), "/v2/test/image/blobs/") == 6); // 1 + 5 redirects
}

TEST_CASE("a config descriptor larger than 4 MiB is refused before anything is downloaded") {
    FakeRegistry registry;
    util::TempDir cache_dir;
    oci::OpenOptions options;
    options.cache_dir = cache_dir.path();
    options.registry = test_options(registry.host());
    options.registry.credentials = user_secret();
    const auto reference =
        oci::parse_reference("docker://" + registry.host() + "/test/hugeconfig:latest");
    const std::string message =
        error_of([&] { oci::open_image(reference, Arch(Arch::Id::amd64), options); },
                 ExitCode::bad_input);
    CHECK(message.find("is 1.0 GiB by its descriptor, larger than 4.0 MiB; that is not an image "
                       "config") != std::string::npos);
    CHECK(count_requests(registry.requests(), "/v2/test/hugeconfig/blobs/") == 0);
}
