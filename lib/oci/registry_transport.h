// The registry client's HTTP transport: one curl exchange (request, response) and its retry policy.
#pragma once

// Internal to lib/oci/registry*.cpp: the public API is oci/registry.h.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/blob_cache.h"
#include "oci/registry.h"
#include "util/curl.h"

namespace edgeforge::oci {

inline constexpr std::size_t k_max_response_bytes = 256 << 10;
// Redirects followed (blob downloads only) before the request fails as a loop.
inline constexpr long k_max_redirects = 5;

struct Header {
    std::string name;
    std::string value;
};

// Printable, one line, bounded: server text goes into our error messages.
std::string clean_message(std::string_view text);

// What a registry error body says: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}.
struct RegistryErrorDetails {
    std::string code;
    std::string text; // "MANIFEST_UNKNOWN: manifest unknown", or the start of a non-JSON body
};

RegistryErrorDetails parse_registry_error(std::string_view body);

std::string url_escape(CURL* handle, std::string_view text);

std::string with_query(const std::string& url, std::string_view parameter);

struct Request {
    std::string method = "GET";
    std::string url; // absolute, or a path below the registry's base URL
    std::vector<std::string> headers;
    bool has_body = false; // POST, PUT and PATCH always send one, perhaps empty
    std::string_view body;
    int file_fd = -1;
    std::uint64_t file_offset = 0;
    std::uint64_t file_length = 0;
    BlobWriter* blob = nullptr;
    const std::function<void(std::uint64_t)>* on_bytes = nullptr; // blob bytes as they arrive
    std::size_t body_limit = k_max_response_bytes;
    bool follow_redirects = false;
    // Bounded by options.request_timeout, retries included; blobs (and uploads) are bounded by
    // the low-speed limit only, as their time grows with their size.
    bool small = true;
    // When a small request must have ended; set by perform_retrying() and send() from
    // options.request_timeout, left alone when the caller set it. The epoch means none.
    std::chrono::steady_clock::time_point deadline{};
};

struct Response {
    CURLcode code = CURLE_OK;
    std::string curl_error; // curl's message when code is not CURLE_OK
    long status = 0;
    std::vector<Header> headers;
    std::string body;
    bool blob_overflow = false;
    bool body_overflow = false;
    std::size_t body_limit = 0; // the request's body_limit, for messages
    // When code is CURLE_OPERATION_TIMEDOUT after connecting: which limit ended the transfer,
    // for messages ("no complete answer within 60 s (registry.timeout)").
    std::string timed_out;
    bool past_deadline = false; // a small request's deadline passed: no retry
    int attempts = 0;

    std::optional<std::string> header(std::string_view name) const;
};

// A curl easy handle and what it points to between calls; declared so that the handle is
// cleaned up first.
struct Connection {
    char error_buffer[CURL_ERROR_SIZE] = {};
    util::CurlList header_list;
    util::CurlEasy handle = util::new_curl_easy();
};

// Views of the PEM a RegistryTls holds for the client's lifetime (RegistryTls::settings).
struct TlsSettings {
    std::string_view ca_bundle;   // system CAs + the extra ones; empty means curl's default
    std::string_view client_cert; // PEM, for mutual TLS; empty means none
    std::string_view client_key;
    bool verify = true;
};

// The TLS alerts a server sends about the client's certificate, as OpenSSL words them in
// curl's message: "tlsv13 alert certificate required" (TLS 1.3, none sent), "sslv3 alert bad
// certificate" (TLS 1.2: none sent, or not trusted), "tlsv1 alert unknown ca" (signed by a CA
// the server does not trust). Received by a client they can only be about its own certificate.
bool client_certificate_refused(const Response& response);

// A connection error worth asking again for (not a refused client certificate).
bool is_retryable_failure(const Response& response);

// An HTTP status worth asking again for: 429 and 5xx.
bool is_retryable_status(long status);

// Sleeps before attempt `attempt` + 1 (1-based `attempt` has failed): the backoff of `options`,
// and false without sleeping when the request's deadline would pass first (no retry then).
bool wait_before_retry(const RegistryOptions& options, const Request& request, int attempt);

// A small request's deadline from options.request_timeout, unless it has one already.
void set_deadline(Request& request, const RegistryOptions& options);

Response perform(Connection& connection, const Request& request, const TlsSettings& tls,
                 const RegistryOptions& options);

// One exchange, repeated after connection errors, 429 and 5xx with backoff: `attempts` in all.
Response perform_retrying(Connection& connection, const Request& request, const TlsSettings& tls,
                          const RegistryOptions& options, int attempts);

} // namespace edgeforge::oci
