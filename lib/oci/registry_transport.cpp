// The registry client's HTTP transport: one curl exchange, and which failures are retried.
#include "oci/registry_transport.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <new>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/version.h"
#include "util/fd.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::oci {

namespace {

using nlohmann::json;

constexpr std::size_t k_max_message_chars = 300;
constexpr std::array<std::string_view, 7> k_client_certificate_alerts = {
    "alert certificate required",   "alert bad certificate",     "alert unknown ca",
    "alert certificate unknown",    "alert certificate expired", "alert certificate revoked",
    "alert unsupported certificate"};

std::optional<std::string> find_header(const std::vector<Header>& headers, std::string_view name) {
    for (const auto& header : headers) {
        if (util::iequals(header.name, name)) {
            return header.value;
        }
    }
    return std::nullopt;
}

// What one exchange receives. Blob downloads stream 2xx bodies into a BlobWriter; everything
// else (and every error body) is kept in memory up to a limit.
struct Sink {
    long status = 0;
    std::vector<Header> headers;
    std::string body;
    std::size_t body_limit = k_max_response_bytes;
    BlobWriter* blob = nullptr;
    const std::function<void(std::uint64_t)>* on_bytes = nullptr;
    bool blob_started = false;
    bool blob_overflow = false;
    bool body_overflow = false;
};

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto* sink = static_cast<Sink*>(user);
    const std::size_t bytes = size * count;
    const std::string_view line = util::trim(std::string_view(data, bytes));
    if (line.starts_with("HTTP/")) {
        // A new response (after a redirect or 100 Continue): forget the previous one's headers.
        sink->headers.clear();
        const auto space = line.find(' ');
        sink->status =
            space == std::string_view::npos
                ? 0
                : std::strtol(std::string(line.substr(space + 1, 3)).c_str(), nullptr, 10);
    } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
        sink->headers.push_back(Header{std::string(util::trim(line.substr(0, colon))),
                                       std::string(util::trim(line.substr(colon + 1)))});
    }
    return bytes;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* sink = static_cast<Sink*>(user);
    const std::size_t bytes = size * count;
    if (sink->blob != nullptr && (sink->status == 200 || sink->status == 206)) {
        if (!sink->blob_started) {
            sink->blob_started = true;
            // A server that ignored our Range header sends the whole blob again.
            if (sink->status == 200 && sink->blob->size() > 0) {
                sink->blob->restart();
            }
        }
        if (!sink->blob->write(data, bytes)) {
            sink->blob_overflow = true;
            return 0; // makes curl stop with CURLE_WRITE_ERROR
        }
        if (sink->on_bytes != nullptr && *sink->on_bytes) {
            (*sink->on_bytes)(bytes);
        }
        return bytes;
    }
    if (sink->body.size() + bytes > sink->body_limit) {
        sink->body_overflow = true;
        return 0;
    }
    sink->body.append(data, bytes);
    return bytes;
}

// What one exchange sends: bytes in memory, or a range of a file.
struct Source {
    std::string_view bytes;
    int fd = -1;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    std::uint64_t done = 0;
};

std::size_t on_read(char* buffer, std::size_t size, std::size_t count, void* user) {
    auto* source = static_cast<Source*>(user);
    const std::uint64_t remaining = source->length - source->done;
    const std::size_t wanted =
        static_cast<std::size_t>(std::min<std::uint64_t>(remaining, size * count));
    if (wanted == 0) {
        return 0;
    }
    if (source->fd < 0) {
        std::copy_n(source->bytes.data() + source->done, wanted, buffer);
    } else {
        try {
            if (!util::pread_exact(source->fd, buffer, wanted, source->offset + source->done)) {
                return CURL_READFUNC_ABORT;
            }
        } catch (const std::system_error&) {
            return CURL_READFUNC_ABORT;
        }
    }
    source->done += wanted;
    return wanted;
}

bool is_retryable_curl_error(CURLcode code) {
    return util::is_transient_curl_error(code); // the one retry policy of our HTTP clients
}

// PEM held by the caller for as long as the handle uses it; nothing when empty.
void set_blob_option(CURL* handle, CURLoption option, std::string_view pem) {
    if (pem.empty()) {
        return;
    }
    curl_blob blob{};
    blob.data = const_cast<char*>(pem.data());
    blob.len = pem.size();
    blob.flags = CURL_BLOB_NOCOPY;
    curl_easy_setopt(handle, option, &blob);
}

} // namespace

// Printable, one line, bounded: server text goes into our error messages.
std::string clean_message(std::string_view text) {
    return util::printable_line(text, k_max_message_chars);
}

RegistryErrorDetails parse_registry_error(std::string_view body) {
    RegistryErrorDetails details;
    const auto document = util::parse_json(body, false);
    if (document.is_object() && document.contains("errors") && document["errors"].is_array() &&
        !document["errors"].empty() && document["errors"][0].is_object()) {
        const auto& first = document["errors"][0];
        details.code = clean_message(first.value("code", ""));
        const std::string message = clean_message(first.value("message", ""));
        details.text = details.code.empty() ? message
                       : message.empty()    ? details.code
                                            : details.code + ": " + message;
        return details;
    }
    // OAuth2 token services (RFC 6749 5.2): {"error": "invalid_grant", "error_description": ..}
    if (document.is_object() && document.contains("error") && document["error"].is_string()) {
        details.code = clean_message(document["error"].get<std::string>());
        const auto description = document.find("error_description");
        const std::string message = description != document.end() && description->is_string()
                                        ? clean_message(description->get<std::string>())
                                        : "";
        details.text = message.empty() ? details.code : details.code + ": " + message;
        return details;
    }
    details.text = clean_message(body.substr(0, 200));
    return details;
}

std::string url_escape(CURL* handle, std::string_view text) {
    char* escaped = curl_easy_escape(handle, text.data(), static_cast<int>(text.size()));
    if (escaped == nullptr) {
        throw std::bad_alloc();
    }
    std::string out(escaped);
    curl_free(escaped);
    return out;
}

std::string with_query(const std::string& url, std::string_view parameter) {
    return url + (url.find('?') == std::string::npos ? "?" : "&") + std::string(parameter);
}

std::optional<std::string> Response::header(std::string_view name) const {
    return find_header(headers, name);
}

bool client_certificate_refused(const Response& response) {
    if (response.code == CURLE_OK) {
        return false;
    }
    const std::string text = util::to_lower(response.curl_error);
    return std::any_of(
        k_client_certificate_alerts.begin(), k_client_certificate_alerts.end(),
        [&](std::string_view alert) { return text.find(alert) != std::string::npos; });
}

// A refused client certificate comes as a receive error under TLS 1.3 (the alert follows the
// handshake), which asking again cannot fix.
bool is_retryable_failure(const Response& response) {
    return response.code != CURLE_OK && is_retryable_curl_error(response.code) &&
           !client_certificate_refused(response);
}

bool is_retryable_status(long status) {
    return util::is_transient_http_status(status);
}

bool wait_before_retry(const RegistryOptions& options, const Request& request, int attempt) {
    const auto delay =
        util::backoff_delay(options.retry_base_delay, options.retry_max_delay, attempt - 1);
    if (request.deadline != std::chrono::steady_clock::time_point{} &&
        std::chrono::steady_clock::now() + delay >= request.deadline) {
        return false;
    }
    std::this_thread::sleep_for(delay);
    return true;
}

void set_deadline(Request& request, const RegistryOptions& options) {
    if (request.small && request.deadline == std::chrono::steady_clock::time_point{}) {
        request.deadline = std::chrono::steady_clock::now() + options.request_timeout;
    }
}

namespace {

std::string seconds_text(std::chrono::milliseconds duration) {
    const auto count = duration.count();
    return count % 1000 == 0 ? fmt::format("{} s", count / 1000)
                             : fmt::format("{:.1f} s", static_cast<double>(count) / 1000.0);
}

} // namespace

Response perform(Connection& connection, const Request& request, const TlsSettings& tls,
                 const RegistryOptions& options) {
    CURL* handle = connection.handle.get();
    curl_easy_reset(handle); // forgets the previous options but keeps live connections
    connection.header_list.reset();
    for (const auto& line : request.headers) {
        util::append_curl_header(connection.header_list, line);
    }
    util::append_curl_header(connection.header_list, "Expect:");

    static const std::string user_agent = fmt::format("edgeforge/{}", k_version);
    Sink sink;
    sink.body_limit = request.body_limit;
    sink.blob = request.blob;
    sink.on_bytes = request.on_bytes;
    Source source;
    source.bytes = request.body;
    source.fd = request.file_fd;
    source.offset = request.file_offset;
    source.length = request.file_fd >= 0 ? request.file_length : request.body.size();

    connection.error_buffer[0] = '\0';
    curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle, CURLOPT_USERAGENT, user_agent.c_str());
    if (!options.proxy.empty()) {
        curl_easy_setopt(handle, CURLOPT_PROXY, options.proxy.c_str());
    }
    if (!options.no_proxy.empty()) {
        curl_easy_setopt(handle, CURLOPT_NOPROXY, options.no_proxy.c_str());
    }
    curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout.count()));
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, options.low_speed_bytes);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(options.low_speed_time.count()));
    if (request.small) {
        // What is left of the request's deadline (its retries share it), at least 1 ms.
        const auto left =
            request.deadline == std::chrono::steady_clock::time_point{}
                ? options.request_timeout
                : std::chrono::duration_cast<std::chrono::milliseconds>(
                      request.deadline - std::chrono::steady_clock::now());
        curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
                         static_cast<long>(std::max<std::int64_t>(left.count(), 1)));
    }
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, connection.header_list.get());
    curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, connection.error_buffer);
    curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(handle, CURLOPT_HEADERDATA, &sink);
    curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &sink);
    // Blob downloads are redirected to object storage by many registries. curl does not send
    // our Authorization header to another host on a redirect (CURLOPT_UNRESTRICTED_AUTH is off).
    curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
    curl_easy_setopt(handle, CURLOPT_MAXREDIRS, k_max_redirects);
    set_blob_option(handle, CURLOPT_CAINFO_BLOB, tls.ca_bundle);
    set_blob_option(handle, CURLOPT_SSLCERT_BLOB, tls.client_cert);
    set_blob_option(handle, CURLOPT_SSLKEY_BLOB, tls.client_key);
    if (!tls.verify) {
        curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (request.method == "HEAD") {
        curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
    } else if (request.has_body) {
        curl_easy_setopt(handle, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
        curl_easy_setopt(handle, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(handle, CURLOPT_READDATA, &source);
        curl_easy_setopt(handle, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(source.length));
    } else if (request.method != "GET") {
        curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    } else {
        curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
    }

    Response response;
    response.code = curl_easy_perform(handle);
    if (response.code != CURLE_OK) {
        response.curl_error = connection.error_buffer[0] != '\0'
                                  ? std::string(connection.error_buffer)
                                  : std::string(curl_easy_strerror(response.code));
    }
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    response.status = status != 0 ? status : sink.status;
    response.headers = std::move(sink.headers);
    response.body = std::move(sink.body);
    response.blob_overflow = sink.blob_overflow;
    response.body_overflow = sink.body_overflow;
    response.body_limit = request.body_limit;
    // A transfer too slow after connecting (curl's words, stable since 7.x): the low-speed limit
    // ("Operation too slow. Less than ..."), or the deadline of a small request ("Operation
    // timed out after ..."). Connect and resolve timeouts keep the unreachable-host message.
    const bool too_slow = response.curl_error.starts_with("Operation too slow");
    const bool deadline = response.curl_error.starts_with("Operation timed out");
    if (response.code == CURLE_OPERATION_TIMEDOUT && (too_slow || deadline)) {
        response.past_deadline = request.small && deadline;
        response.timed_out =
            response.past_deadline
                ? fmt::format("no complete answer within {} (registry.timeout, "
                              "--registry-timeout)",
                              seconds_text(options.request_timeout))
                : fmt::format("less than {} bytes/s arrived for {} s (registry.stall_timeout, "
                              "--registry-stall-timeout)",
                              options.low_speed_bytes, options.low_speed_time.count());
    }
    // The connection must not be reused with pointers to this call's buffers.
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, nullptr);
    return response;
}

Response perform_retrying(Connection& connection, const Request& original,
                          const TlsSettings& tls, const RegistryOptions& options, int attempts) {
    Request request = original;
    set_deadline(request, options);
    for (int attempt = 1;; ++attempt) {
        Response response = perform(connection, request, tls, options);
        response.attempts = attempt;
        const bool retry = (is_retryable_failure(response) && !response.past_deadline) ||
                           (response.code == CURLE_OK && is_retryable_status(response.status));
        if (!retry || attempt >= attempts || !wait_before_retry(options, request, attempt)) {
            return response;
        }
    }
}

} // namespace edgeforge::oci
