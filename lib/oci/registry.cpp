// The registry client: reaching the registry, authorised requests, manifests and blob downloads.
#include "oci/registry.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "oci/registry_credentials.h"
#include "oci/registry_state.h"
#include "util/digest.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::oci {
namespace stdfs = std::filesystem;

namespace {

using nlohmann::json;

constexpr std::size_t k_max_manifest_bytes = 4 << 20;
constexpr std::string_view k_manifest_accept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

} // namespace

RegistryClient::State::State(std::string registry_name, RegistryOptions client_options)
    : registry(std::move(registry_name)),
      api_host(registry == k_docker_hub ? "registry-1.docker.io" : registry),
      options(std::move(client_options)), registry_tls(registry, api_host, options),
      auth(registry, options, registry_tls) {
    if (options.max_attempts < 1) {
        options.max_attempts = 1;
    }
}

Error RegistryClient::State::unauthorized(std::string_view what, const Response& response) {
    std::lock_guard lock(mutex);
    return auth.unauthorized(what, response);
}

bool RegistryClient::State::reauthorize(const Response& response, const std::string& scope) {
    std::lock_guard lock(mutex);
    return auth.reauthorize(response, scope);
}

std::optional<std::string> RegistryClient::State::authorization(Connection& connection,
                                                                const std::string& scope) {
    std::lock_guard lock(mutex);
    return auth.authorization(connection, scope, tls);
}

Error RegistryClient::State::status_error(std::string_view what, const Response& response,
                                          std::string_view not_found) {
    if (response.status == 401 || response.status == 403) {
        return unauthorized(what, response);
    }
    const auto details = parse_registry_error(response.body);
    const std::string said = details.text.empty() ? "" : ": " + details.text;
    if (response.status == 404 && details.code == "NAME_UNKNOWN") {
        return bad_input("registry {}: {}: HTTP 404{}; the repository does not exist (check "
                         "the name)",
                         registry, what, said);
    }
    if (response.status == 404 && !not_found.empty()) {
        return bad_input("registry {}: {}: HTTP 404{}; {}", registry, what, said, not_found);
    }
    const std::string attempts =
        response.attempts > 1 ? fmt::format(" after {} attempts", response.attempts) : "";
    return build_failed("registry {}: {}: HTTP {}{}{}", registry, what, response.status, said,
                        attempts);
}

void RegistryClient::State::resolve(Connection& connection) {
    std::lock_guard lock(mutex);
    if (resolved) {
        return;
    }
    const bool insecure = options.is_insecure(registry) || options.is_insecure(api_host);
    struct Candidate {
        std::string scheme;
        bool verify;
        int attempts;
    };
    std::vector<Candidate> candidates;
    if (insecure) {
        candidates = {{"https", false, 1}, {"http", false, options.max_attempts}};
    } else {
        candidates = {{"https", true, options.max_attempts}};
    }
    Response last;
    std::string last_url;
    for (const auto& candidate : candidates) {
        const TlsSettings settings = registry_tls.settings(candidate.verify);
        const std::string base = candidate.scheme + "://" + api_host;
        Request request;
        request.url = base + "/v2/";
        last_url = request.url;
        last = perform_retrying(connection, request, settings, options, candidate.attempts);
        if (last.code == CURLE_OK) {
            base_url = base;
            tls = settings;
            if (last.status == 401) {
                auth.learn_challenge(last);
            }
            resolved = true;
            return;
        }
    }
    throw registry_tls.connection_error("GET /v2/", last_url, last, insecure);
}

Response RegistryClient::State::send(Connection& connection, Request request,
                                     const std::string& scope, std::string_view what) {
    resolve(connection);
    if (!request.url.starts_with("http://") && !request.url.starts_with("https://")) {
        request.url = base_url + request.url;
    }
    set_deadline(request, options);
    const std::vector<std::string> base_headers = request.headers;
    bool reauthorized = false;
    for (int attempt = 1;; ++attempt) {
        request.headers = base_headers;
        if (const auto header = authorization(connection, scope)) {
            request.headers.push_back("Authorization: " + *header);
        }
        if (request.blob != nullptr && request.blob->size() > 0) {
            request.headers.push_back(fmt::format("Range: bytes={}-", request.blob->size()));
        }
        Response response = perform(connection, request, tls, options);
        response.attempts = attempt;
        if (response.code != CURLE_OK) {
            if (response.blob_overflow || response.body_overflow) {
                return response;
            }
            if (is_retryable_failure(response) && !response.past_deadline &&
                attempt < options.max_attempts &&
                wait_before_retry(options, request, attempt)) {
                continue;
            }
            throw registry_tls.connection_error(what, request.url, response, !tls.verify);
        }
        if (response.status == 401 && !reauthorized) {
            reauthorized = true;
            if (reauthorize(response, scope)) {
                --attempt; // a new token is not a retry
                continue;
            }
        }
        if (is_retryable_status(response.status) && attempt < options.max_attempts &&
            wait_before_retry(options, request, attempt)) {
            continue;
        }
        return response;
    }
}

std::string RegistryClient::State::absolute(const std::string& location) const {
    if (location.starts_with("http://") || location.starts_with("https://")) {
        return location;
    }
    return base_url + (location.starts_with('/') ? "" : "/") + location;
}

stdfs::path RegistryClient::State::fetch_blob(Connection& connection, std::string_view repository,
                                           const BlobRequest& blob, const BlobCache& cache,
                                           const std::function<void(std::uint64_t)>* on_bytes) {
    if (const auto found = cache.find(blob.digest, blob.size)) {
        return *found;
    }
    const auto lock = cache.lock(blob.digest);
    if (const auto found = cache.find(blob.digest, blob.size)) {
        return *found; // another process downloaded it while we waited
    }
    const std::string what = fmt::format("{} {} of {}", blob.what, blob.digest,
                                         blob.image.empty() ? repository : blob.image);
    const std::string scope = fmt::format("repository:{}:pull", repository);
    for (int from_scratch = 0;; ++from_scratch) {
        BlobWriter writer(cache, blob.digest, blob.size);
        if (from_scratch > 0) {
            writer.restart();
        }
        Request request;
        request.url = fmt::format("/v2/{}/blobs/{}", repository, blob.digest);
        request.blob = &writer;
        request.on_bytes = on_bytes;
        request.follow_redirects = true;
        request.small = false;
        const Response response = send(connection, request, scope, what);
        if (response.blob_overflow) {
            writer.discard();
            throw build_failed("registry {}: {} is corrupt: the registry sent more than the "
                               "{} bytes its descriptor says; nothing was stored in the "
                               "cache; the registry's copy is damaged, push the image again",
                               registry, what, blob.size);
        }
        if (response.status != 200 && response.status != 206) {
            throw status_error(what, response,
                               "the registry does not have this blob; push the image again");
        }
        try {
            return writer.commit();
        } catch (const BlobCorrupt& corrupt) {
            if (writer.resumed_from() > 0 && from_scratch == 0) {
                continue; // the earlier partial download may have been the bad part
            }
            throw build_failed("registry {}: {} is corrupt: {}; nothing was stored in the "
                               "cache; the registry's copy is damaged, push the image again",
                               registry, what,
                               corrupt.actual().empty()
                                   ? fmt::format("it is {} bytes, the descriptor says {}",
                                                 corrupt.size(), blob.size)
                                   : fmt::format("its content hashes to {}", corrupt.actual()));
        }
    }
}

RegistryClient::RegistryClient(std::string registry, RegistryOptions options)
    : state_(std::make_unique<State>(std::move(registry), std::move(options))) {}

RegistryClient::~RegistryClient() = default;

const std::string& RegistryClient::registry() const {
    return state_->registry;
}

ManifestResponse RegistryClient::get_manifest(std::string_view repository,
                                              std::string_view reference) {
    return *fetch_manifest(repository, reference, false);
}

std::optional<ManifestResponse> RegistryClient::find_manifest(std::string_view repository,
                                                              std::string_view reference) {
    return fetch_manifest(repository, reference, true);
}

std::optional<ManifestResponse> RegistryClient::fetch_manifest(std::string_view repository,
                                                               std::string_view reference,
                                                               bool missing_ok) {
    State::Lease connection(*state_);
    const bool by_digest = reference.starts_with("sha256:");
    const std::string what =
        fmt::format("manifest {}{}{}", repository, by_digest ? "@" : ":", reference);
    Request request;
    request.url = fmt::format("/v2/{}/manifests/{}", repository, reference);
    request.headers.emplace_back(k_manifest_accept);
    request.body_limit = k_max_manifest_bytes;
    const Response response =
        state_->send(*connection, request, fmt::format("repository:{}:pull", repository), what);
    if (response.body_overflow) {
        throw build_failed("registry {}: {} is larger than {}; that is not an image manifest",
                           state_->registry, what, util::format_bytes(k_max_manifest_bytes));
    }
    if (response.status == 404 && missing_ok) {
        const auto code = parse_registry_error(response.body).code;
        if (code.empty() || code == "MANIFEST_UNKNOWN" || code == "NAME_UNKNOWN") {
            return std::nullopt;
        }
    }
    if (response.status != 200) {
        throw state_->status_error(
            what, response,
            by_digest ? "the repository has no manifest with this digest"
                      : fmt::format("the repository has no tag '{}' (list the tags with "
                                    "'skopeo list-tags docker://{}/{}')",
                                    reference, state_->registry, repository));
    }
    ManifestResponse manifest;
    manifest.body = response.body;
    manifest.digest = "sha256:" + util::sha256_hex(manifest.body);
    if (by_digest && manifest.digest != reference) {
        throw build_failed("registry {}: {} is corrupt: the manifest it served hashes to {}; "
                           "nothing was used",
                           state_->registry, what, manifest.digest);
    }
    if (const auto stated = response.header("Docker-Content-Digest");
        stated && stated->starts_with("sha256:") && *stated != manifest.digest) {
        throw build_failed("registry {}: {}: the manifest it served hashes to {}, but the "
                           "registry says {}; it was altered on the way",
                           state_->registry, what, manifest.digest, *stated);
    }
    const auto document = util::parse_json(manifest.body, false);
    if (document.is_object() && document.contains("mediaType") &&
        document["mediaType"].is_string()) {
        manifest.media_type = document["mediaType"].get<std::string>();
    } else if (const auto type = response.header("Content-Type")) {
        manifest.media_type = std::string(util::trim(type->substr(0, type->find(';'))));
    }
    return manifest;
}

stdfs::path RegistryClient::fetch_blob(std::string_view repository, const BlobRequest& blob,
                                    const BlobCache& cache) {
    State::Lease connection(*state_);
    return state_->fetch_blob(*connection, repository, blob, cache);
}

void run_parallel(std::size_t count, std::size_t threads,
                  const std::function<void(std::size_t)>& task) {
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::exception_ptr first_error;
    const auto worker = [&] {
        while (!failed) {
            const std::size_t index = next++;
            if (index >= count) {
                return;
            }
            try {
                task(index);
            } catch (...) {
                const std::lock_guard lock(mutex);
                if (!first_error) {
                    first_error = std::current_exception();
                }
                failed = true;
            }
        }
    };
    threads = std::min(std::max<std::size_t>(threads, 1), count);
    if (threads <= 1) {
        worker();
    } else {
        std::vector<std::jthread> pool;
        for (std::size_t i = 0; i < threads; ++i) {
            pool.emplace_back(worker);
        }
    }
    if (first_error) {
        std::rethrow_exception(first_error);
    }
}

std::vector<stdfs::path>
RegistryClient::fetch_blobs(std::string_view repository, const std::vector<BlobRequest>& blobs,
                            const BlobCache& cache,
                            const std::function<void(std::uint64_t)>& on_bytes) {
    std::vector<stdfs::path> paths(blobs.size());
    std::mutex mutex;
    // The workers report received bytes one call at a time.
    const std::function<void(std::uint64_t)> report = [&](std::uint64_t bytes) {
        const std::lock_guard lock(mutex);
        on_bytes(bytes);
    };
    const auto* reporter = on_bytes ? &report : nullptr;
    run_parallel(blobs.size(), state_->options.parallel_downloads, [&](std::size_t index) {
        State::Lease connection(*state_);
        paths[index] = state_->fetch_blob(*connection, repository, blobs[index], cache, reporter);
    });
    return paths;
}

} // namespace edgeforge::oci
