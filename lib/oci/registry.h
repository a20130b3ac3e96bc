// A client of the OCI distribution API (Docker registry v2): pull into the blob cache, and push.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/blob_cache.h"
#include "oci/reference.h"

namespace edgeforge::oci {

// A user name and password (or token) for one registry. Never printed, logged or put in an
// error message; messages name where credentials came from instead (Credentials::source).
struct Credentials {
    std::string username;
    std::string password;
    std::string source; // "--creds", "/home/u/.docker/config.json", "docker-credential-pass"
    // An OAuth2 refresh token ("identitytoken" of a docker config auths entry, written by
    // `docker login` when the token service hands one out). When set, bearer tokens are asked
    // for with POST realm grant_type=refresh_token instead of GET realm with Basic credentials;
    // a token service that answers the POST with 404 or 405 (no OAuth2) is asked with GET and
    // Basic USERNAME:IDENTITY_TOKEN instead, USERNAME being "<token>" when none is stored.
    std::string identity_token;
};

// One challenge of a WWW-Authenticate header: scheme lowercased ("bearer", "basic"), parameter
// names lowercased, values unquoted.
struct AuthChallenge {
    std::string scheme;
    std::map<std::string, std::string> parameters;
};
// Parses every challenge of a WWW-Authenticate header value, e.g.
// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="a,b"`.
std::vector<AuthChallenge> parse_www_authenticate(std::string_view value);

// A token service's answer: {"token": ..} or {"access_token": ..}, with "expires_in" seconds.
struct TokenAnswer {
    std::string token;
    std::optional<std::int64_t> expires_in; // as sent; absent when missing or not an integer
};
// nullopt when `body` is no JSON object holding a non-empty token.
std::optional<TokenAnswer> parse_token_answer(std::string_view body);

// "USER:PASS" as given to --creds. Throws Error (bad input) without echoing the value.
Credentials parse_credentials_option(std::string_view text);

// Runs `docker-credential-<helper> get` with the server on standard input and reads its JSON
// answer. nullopt when the helper has nothing for the server; throws Error (bad input) when the
// helper is not installed or fails otherwise.
using CredentialHelperRunner =
    std::function<std::optional<Credentials>(std::string_view helper, std::string_view server)>;
std::optional<Credentials> run_credential_helper(std::string_view helper, std::string_view server);

// Looks `registry` up in a docker config.json or containers auth.json document: credHelpers,
// then auths ("identitytoken", base64 "auth", or "username"/"password"), then credsStore.
// `source` names the file for messages; malformed entries throw Error (bad input) naming both.
std::optional<Credentials>
credentials_from_auth_config(const nlohmann::json& config, std::string_view registry,
                             std::string_view source,
                             const CredentialHelperRunner& helper = run_credential_helper);

struct RegistryOptions {
    // --creds USER:PASS: used for every registry and before any file.
    std::optional<Credentials> credentials;
    // Extra CA certificates (a PEM file, or a directory of *.pem/*.crt), trusted in addition to
    // the system's.
    std::filesystem::path ca_cert;
    // Hosts ("host" or "host:port") that may be reached over plain HTTP, or over HTTPS without
    // certificate verification. HTTPS is tried first.
    std::vector<std::string> insecure_hosts;
    // A proxy for every request ("http://host:port"), and the hosts that bypass it; empty means
    // the environment's HTTPS_PROXY/HTTP_PROXY/NO_PROXY (libcurl's own rules).
    std::string proxy;
    std::string no_proxy;
    std::chrono::milliseconds connect_timeout{10'000};
    // Manifests, tokens, the /v2/ check and every other answer but blobs: the whole request,
    // retries included, must end within this (registry.timeout), so that a registry trickling an
    // endless answer fails instead of hanging.
    std::chrono::milliseconds request_timeout{60'000};
    // Every transfer (blobs too, whose time grows with their size) slower than low_speed_bytes
    // per second for low_speed_time (registry.stall_timeout) is abandoned, and retried (a blob
    // resumes where it stopped), so a stalled registry fails instead of hanging.
    long low_speed_bytes = 1024;
    std::chrono::seconds low_speed_time{30};
    // Attempts per request, the first included; connection errors, 429 and 5xx are retried
    // after retry_base_delay * 2^retry (capped at retry_max_delay).
    int max_attempts = 4;
    std::chrono::milliseconds retry_base_delay{250};
    std::chrono::milliseconds retry_max_delay{8'000};
    // Blobs downloaded at once, and uploaded at once by a push (each on its own connection).
    unsigned parallel_downloads = 3;
    // Push: blobs larger than this are uploaded in chunks of this size (PATCH with
    // Content-Range); 0 uploads every blob in one PUT.
    std::uint64_t upload_chunk_size = 0;
    // Tests only: where docker config.json / auth.json are looked for; empty means the
    // environment ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR, $DOCKER_CONFIG, $HOME).
    std::vector<std::filesystem::path> auth_files;
    // certs.d roots, each holding a HOST[:PORT] directory per registry (--certs-dir, and tests);
    // empty means default_certs_d_roots().
    std::vector<std::filesystem::path> certs_d_roots;

    bool is_insecure(std::string_view host) const;
};

// The credentials for `registry` ("docker.io", "host:5000"): options.credentials, else the first
// auth file that has the registry: $REGISTRY_AUTH_FILE (else
// $XDG_RUNTIME_DIR/containers/auth.json), then $DOCKER_CONFIG/config.json (else
// ~/.docker/config.json). nullopt means anonymous.
std::optional<Credentials> find_credentials(std::string_view registry,
                                            const RegistryOptions& options);

// The certs.d roots of containers-certs.d(5) and Docker, in the order they are looked in:
// $XDG_CONFIG_HOME/containers/certs.d (else ~/.config/containers/certs.d),
// /etc/containers/certs.d, /etc/docker/certs.d.
std::vector<std::filesystem::path> default_certs_d_roots();

// What the certs.d directory of one registry holds.
struct RegistryCertificates {
    std::filesystem::path directory;             // ROOT/HOST[:PORT]; empty when no root has one
    std::vector<std::filesystem::path> ca_files; // *.crt, by name: CAs for this registry only
    std::filesystem::path client_cert;           // NAME.cert, for mutual TLS; empty: none
    std::filesystem::path client_key;            // NAME.key of the same NAME
};
// The certs.d directory for `registry` ("host" or "host:port", as written in references): the
// first root (options.certs_d_roots, else the defaults) that has a directory of that name
// wins, as containers/image and Docker do; the others are not merged. A NAME.cert without
// NAME.key, or the other way round, or more than one pair, is an Error (bad input) naming the
// files.
RegistryCertificates find_registry_certificates(std::string_view registry,
                                                const RegistryOptions& options);

struct ManifestResponse {
    std::string media_type; // from the content (mediaType), else the Content-Type header
    std::string digest;     // sha256 of the body, verified against a pinned digest
    std::string body;
};

// A blob to fetch, and how messages name it.
struct BlobRequest {
    std::string digest;
    std::uint64_t size = 0;
    std::string what = "layer"; // "layer", "config"
    // The image it belongs to, for messages: "edge/agent:latest"; empty names the repository.
    std::string image;
};

// A client of one registry. Thread-safe: each call uses its own connection, and authentication
// (the scheme found, bearer tokens per scope until they expire) is shared by all of them.
// Errors are edgeforge::Error naming the registry, the repository, the reference or digest, and
// what to do; bad input (2) for authentication, TLS trust, client certificates (certs.d) and
// missing images or tags, build failed (1) for unreachable hosts, server errors and corrupt
// blobs.
class RegistryClient {
  public:
    // `registry` as written in references ("docker.io", "127.0.0.1:5000"). Reads --ca-cert and
    // the registry's certs.d directory (find_registry_certificates) now, so that a broken file
    // is an Error here, before any request.
    RegistryClient(std::string registry, RegistryOptions options);
    ~RegistryClient();
    RegistryClient(const RegistryClient&) = delete;
    RegistryClient& operator=(const RegistryClient&) = delete;

    const std::string& registry() const;

    // GET /v2/<repository>/manifests/<reference> accepting OCI index and manifest and Docker
    // manifest list and v2 manifest. A digest reference is verified against the body.
    ManifestResponse get_manifest(std::string_view repository, std::string_view reference);
    // The same, but nullopt when the registry answers 404 for the tag or the repository (a tag
    // that may well not exist yet, such as a build cache entry's).
    std::optional<ManifestResponse> find_manifest(std::string_view repository,
                                                  std::string_view reference);

    // The blob in `cache`: found there, or downloaded (resuming a partial download with Range)
    // and verified on the way in. A blob that does not match its digest or size is an Error
    // (build failed) naming the registry, the image and the digest; nothing enters the cache.
    std::filesystem::path fetch_blob(std::string_view repository, const BlobRequest& blob,
                                     const BlobCache& cache);
    // Several blobs at once on options.parallel_downloads connections; paths in request order.
    // `on_bytes` (optional) is told how many new bytes arrived, from any thread, one call at a
    // time (for a progress bar).
    std::vector<std::filesystem::path>
    fetch_blobs(std::string_view repository, const std::vector<BlobRequest>& blobs,
                const BlobCache& cache,
                const std::function<void(std::uint64_t bytes)>& on_bytes = {});

    // Push side.
    bool blob_exists(std::string_view repository, std::string_view digest);
    // Cross-repository mount; false when the registry started an upload instead (the blob
    // is not there, or mounting is not allowed).
    bool mount_blob(std::string_view repository, std::string_view digest,
                    std::string_view from_repository);
    // Uploads the file as the blob `digest` (monolithic, or chunked per upload_chunk_size).
    void upload_blob(std::string_view repository, const std::filesystem::path& file,
                     std::string_view digest, std::uint64_t size);
    // PUT /v2/<repository>/manifests/<reference>; returns the digest of `body`.
    std::string put_manifest(std::string_view repository, std::string_view reference,
                             std::string_view media_type, std::string_view body);

  private:
    std::optional<ManifestResponse> fetch_manifest(std::string_view repository,
                                                   std::string_view reference, bool missing_ok);
    struct State;
    std::unique_ptr<State> state_;
};

struct PushOptions {
    // Repositories of the same registry to mount blobs from before uploading them.
    std::vector<std::string> mount_from;
    std::function<void(const std::string&)> on_progress; // one line per blob and manifest
};

struct PushResult {
    std::string digest; // of the pushed manifest or index
    std::string media_type;
    std::size_t uploaded = 0; // blobs sent
    std::size_t skipped = 0;  // blobs the registry had
    std::size_t mounted = 0;  // blobs mounted from another repository
};

// Pushes the image tagged `tag` in the OCI layout `layout` (a manifest, or an index and every
// manifest it lists, with their blobs) to `destination`, under destination's tag (or by digest).
PushResult push_layout(const std::filesystem::path& layout, std::string_view tag,
                       const ImageReference& destination, const RegistryOptions& options,
                       const PushOptions& push = {});

} // namespace edgeforge::oci
