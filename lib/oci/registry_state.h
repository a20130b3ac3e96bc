// RegistryClient::State: the connections, endpoint and authorised requests of one registry client.
#pragma once

// Internal to lib/oci/registry.cpp (pull) and registry_push.cpp (push): the public API is
// oci/registry.h.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "oci/blob_cache.h"
#include "oci/registry.h"
#include "oci/registry_auth.h"
#include "oci/registry_tls.h"
#include "oci/registry_transport.h"

namespace edgeforge::oci {

struct RegistryClient::State {
    // Reads --ca-cert and the registry's certs.d directory (RegistryTls): throws on a broken file.
    State(std::string registry_name, RegistryOptions client_options);

    std::string registry; // as in references: "docker.io"
    std::string api_host; // what we connect to: "registry-1.docker.io"
    RegistryOptions options;
    RegistryTls registry_tls; // CA bundle and client certificate, read once

    std::mutex mutex; // guards everything below
    bool resolved = false;
    std::string base_url; // "https://host:port"
    TlsSettings tls;
    RegistryAuth auth;
    std::vector<std::unique_ptr<Connection>> idle;

    // A connection from the pool, returned on destruction.
    class Lease {
      public:
        explicit Lease(State& state) : state_(state) {
            std::lock_guard lock(state_.mutex);
            if (!state_.idle.empty()) {
                connection_ = std::move(state_.idle.back());
                state_.idle.pop_back();
            }
            if (!connection_) {
                connection_ = std::make_unique<Connection>();
            }
        }
        ~Lease() {
            std::lock_guard lock(state_.mutex);
            state_.idle.push_back(std::move(connection_));
        }
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        Connection& operator*() { return *connection_; }

      private:
        State& state_;
        std::unique_ptr<Connection> connection_;
    };

    // RegistryAuth's, under the mutex.
    Error unauthorized(std::string_view what, const Response& response);
    bool reauthorize(const Response& response, const std::string& scope);
    std::optional<std::string> authorization(Connection& connection, const std::string& scope);

    Error status_error(std::string_view what, const Response& response, std::string_view not_found);

    // Learns how to talk to the registry: https (or, for insecure hosts, http when https does
    // not work) and which authentication /v2/ asks for.
    void resolve(Connection& connection);

    // Sends a request with authorization, retrying connection errors, 429 and 5xx with backoff
    // and a 401 once with fresh authorization. Returns whatever response came last; throws only
    // when no response arrived at all.
    Response send(Connection& connection, Request request, const std::string& scope,
                  std::string_view what);

    std::string absolute(const std::string& location) const;

    std::filesystem::path fetch_blob(Connection& connection, std::string_view repository,
                                     const BlobRequest& blob, const BlobCache& cache,
                                     const std::function<void(std::uint64_t)>* on_bytes = nullptr);

    // Starts an upload session; returns its Location. (registry_push.cpp)
    std::string start_upload(Connection& connection, std::string_view repository,
                             const std::string& scope, std::string_view what);
};

// Runs task(0), ..., task(count - 1) on up to `threads` threads, each taking the next index.
// After the first exception no new index is handed out; it is rethrown once every thread is
// done.
void run_parallel(std::size_t count, std::size_t threads,
                  const std::function<void(std::size_t)>& task);

} // namespace edgeforge::oci
