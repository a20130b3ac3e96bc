// A client of the OCI distribution API (Docker registry v2): pull into the blob cache, and push.
#include "oci/registry.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "base/version.h"
#include "oci/image.h"
#include "util/base64.h"
#include "util/curl.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::oci {
namespace fs = std::filesystem;

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::size_t k_max_manifest_bytes = 4 << 20;
constexpr std::size_t k_max_response_bytes = 256 << 10;
constexpr std::size_t k_max_message_chars = 300;
constexpr std::chrono::milliseconds k_small_request_timeout{60'000};
constexpr std::chrono::seconds k_default_token_lifetime{60};
constexpr std::chrono::seconds k_token_margin{10};
constexpr std::string_view k_docker_hub = "docker.io";
constexpr std::string_view k_docker_hub_server = "https://index.docker.io/v1/";
constexpr std::array<std::string_view, 7> k_client_certificate_alerts = {
    "alert certificate required",   "alert bad certificate",     "alert unknown ca",
    "alert certificate unknown",    "alert certificate expired", "alert certificate revoked",
    "alert unsupported certificate"};
// Docker's credential helpers name an identity token's user "<token>"; it stands in when the
// auth file stored no user name.
constexpr std::string_view k_identity_token_user = "<token>";
constexpr std::string_view k_manifest_accept =
    "Accept: application/vnd.oci.image.index.v1+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

struct Header {
    std::string name;
    std::string value;
};

std::optional<std::string> find_header(const std::vector<Header>& headers, std::string_view name) {
    for (const auto& header : headers) {
        if (util::iequals(header.name, name)) {
            return header.value;
        }
    }
    return std::nullopt;
}

// Printable, one line, bounded: server text goes into our error messages.
std::string clean_message(std::string_view text) {
    return util::printable_line(text, k_max_message_chars);
}

// What a registry error body says: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}.
struct RegistryErrorDetails {
    std::string code;
    std::string text; // "MANIFEST_UNKNOWN: manifest unknown", or the start of a non-JSON body
};

RegistryErrorDetails parse_registry_error(std::string_view body) {
    RegistryErrorDetails details;
    const auto document = json::parse(body, nullptr, false);
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

std::string normalise_registry_key(std::string_view key) {
    std::string_view host = util::trim(key);
    if (const auto scheme = host.find("://"); scheme != std::string_view::npos) {
        host.remove_prefix(scheme + 3);
    }
    if (const auto slash = host.find('/'); slash != std::string_view::npos) {
        host = host.substr(0, slash);
    }
    std::string normalised = util::to_lower(host);
    if (normalised == "index.docker.io" || normalised == "registry-1.docker.io") {
        normalised = std::string(k_docker_hub);
    }
    return normalised;
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

// --- one HTTP exchange -----------------------------------------------------------------------

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
    bool small = true; // bounded by k_small_request_timeout; blobs are bounded by speed instead
};

struct Response {
    CURLcode code = CURLE_OK;
    std::string curl_error; // curl's message when code is not CURLE_OK
    long status = 0;
    std::vector<Header> headers;
    std::string body;
    bool blob_overflow = false;
    bool body_overflow = false;
    int attempts = 0;

    std::optional<std::string> header(std::string_view name) const {
        return find_header(headers, name);
    }
};

// A curl easy handle and what it points to between calls; declared so that the handle is
// cleaned up first.
struct Connection {
    char error_buffer[CURL_ERROR_SIZE] = {};
    util::CurlList header_list;
    util::CurlEasy handle = util::new_curl_easy();
};

// Views of what RegistryClient::State holds for its lifetime.
struct TlsSettings {
    std::string_view ca_bundle;   // system CAs + the extra ones; empty means curl's default
    std::string_view client_cert; // PEM, for mutual TLS; empty means none
    std::string_view client_key;
    bool verify = true;
};

bool is_retryable_curl_error(CURLcode code) {
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

// The TLS alerts a server sends about the client's certificate, as OpenSSL words them in
// curl's message: "tlsv13 alert certificate required" (TLS 1.3, none sent), "sslv3 alert bad
// certificate" (TLS 1.2: none sent, or not trusted), "tlsv1 alert unknown ca" (signed by a CA
// the server does not trust). Received by a client they can only be about its own certificate.
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

bool is_tls_error(CURLcode code) {
    switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return true;
    default:
        return false;
    }
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
        curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
                         static_cast<long>(k_small_request_timeout.count()));
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
    curl_easy_setopt(handle, CURLOPT_MAXREDIRS, 5L);
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
    // The connection must not be reused with pointers to this call's buffers.
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, nullptr);
    return response;
}

// One exchange, repeated after connection errors, 429 and 5xx with backoff: `attempts` in all.
Response perform_retrying(Connection& connection, const Request& request, const TlsSettings& tls,
                          const RegistryOptions& options, int attempts) {
    for (int attempt = 1;; ++attempt) {
        Response response = perform(connection, request, tls, options);
        response.attempts = attempt;
        const bool retry =
            is_retryable_failure(response) ||
            (response.code == CURLE_OK && (response.status == 429 || response.status >= 500));
        if (!retry || attempt >= attempts) {
            return response;
        }
        std::this_thread::sleep_for(
            util::backoff_delay(options.retry_base_delay, options.retry_max_delay, attempt - 1));
    }
}

// The files --ca-cert names: a PEM file, or the *.crt and *.pem files of a directory.
std::vector<fs::path> ca_cert_files(const fs::path& extra) {
    std::error_code error;
    if (!fs::exists(extra, error)) {
        throw bad_input("--ca-cert: {} does not exist", extra.string());
    }
    if (!fs::is_directory(extra, error)) {
        return {extra};
    }
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(extra, error)) {
        const auto extension = entry.path().extension().string();
        if (entry.is_regular_file() && (extension == ".crt" || extension == ".pem")) {
            files.push_back(entry.path());
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        throw bad_input("--ca-cert: the directory {} has no *.crt or *.pem files", extra.string());
    }
    return files;
}

// curl's default CA bundle (the system's), or nothing when there is none.
std::string system_ca_bundle() {
    std::string system_bundle = "/etc/ssl/certs/ca-certificates.crt";
    {
        const util::CurlEasy probe = util::new_curl_easy();
        char* default_path = nullptr;
        if (curl_easy_getinfo(probe.get(), CURLINFO_CAINFO, &default_path) == CURLE_OK &&
            default_path != nullptr) {
            system_bundle = default_path;
        }
    }
    try {
        return util::read_file(system_bundle) + "\n";
    } catch (const std::system_error&) {
        return {}; // no system bundle: trust only the given certificates
    }
}

// Whether `content` has a "-----BEGIN ...KIND-----" line: keys may be "PRIVATE KEY",
// "RSA PRIVATE KEY", "EC PRIVATE KEY".
bool holds_pem(std::string_view content, std::string_view kind) {
    constexpr std::string_view begin = "-----BEGIN ";
    for (auto at = content.find(begin); at != std::string_view::npos;
         at = content.find(begin, at + 1)) {
        const auto label = at + begin.size();
        const auto end = content.find("-----", label);
        if (end != std::string_view::npos && content.substr(label, end - label).ends_with(kind)) {
            return true;
        }
    }
    return false;
}

// A PEM file that must hold `kind` ("CERTIFICATE", "PRIVATE KEY"); `what` says where it was
// given ("--ca-cert", "registry HOST: certs.d").
std::string read_pem_file(const fs::path& file, std::string_view kind, std::string_view what) {
    std::string content;
    try {
        content = util::read_file(file);
    } catch (const std::system_error& failure) {
        throw bad_input("{}: cannot read {}: {}", what, file.string(), failure.code().message());
    }
    if (!holds_pem(content, kind)) {
        throw bad_input("{}: {} holds no PEM {}", what, file.string(), util::to_lower(kind));
    }
    return content;
}

// The system CA bundle plus --ca-cert's and the registry's certs.d CAs, for
// CURLOPT_CAINFO_BLOB: adding a CA must not stop the client from trusting public registries.
// Empty (curl's default) when there are none.
std::string build_ca_bundle(const fs::path& ca_cert, const RegistryCertificates& certificates,
                            std::string_view registry) {
    std::vector<std::pair<fs::path, std::string>> files; // the file, what gave it
    if (!ca_cert.empty()) {
        for (auto& file : ca_cert_files(ca_cert)) {
            files.emplace_back(std::move(file), "--ca-cert");
        }
    }
    for (const auto& file : certificates.ca_files) {
        files.emplace_back(file, fmt::format("registry {}: certs.d", registry));
    }
    if (files.empty()) {
        return {};
    }
    std::string bundle = system_ca_bundle();
    for (const auto& [file, what] : files) {
        bundle += read_pem_file(file, "CERTIFICATE", what) + "\n";
    }
    return bundle;
}

std::string base64_credentials(const Credentials& credentials) {
    return util::base64_encode(credentials.username + ":" + credentials.password);
}

} // namespace

// --- credentials ------------------------------------------------------------------------------

std::vector<AuthChallenge> parse_www_authenticate(std::string_view value) {
    std::vector<AuthChallenge> challenges;
    std::size_t pos = 0;
    const auto skip = [&](std::string_view characters) {
        while (pos < value.size() && characters.find(value[pos]) != std::string_view::npos) {
            ++pos;
        }
    };
    while (true) {
        skip(" \t,");
        if (pos >= value.size()) {
            break;
        }
        const std::size_t start = pos;
        while (pos < value.size() && value[pos] != ' ' && value[pos] != '\t' && value[pos] != ',' &&
               value[pos] != '=') {
            ++pos;
        }
        const std::string token(value.substr(start, pos - start));
        skip(" \t");
        if (pos < value.size() && value[pos] == '=' && !challenges.empty()) {
            ++pos;
            skip(" \t");
            std::string parameter;
            if (pos < value.size() && value[pos] == '"') {
                ++pos;
                while (pos < value.size() && value[pos] != '"') {
                    if (value[pos] == '\\' && pos + 1 < value.size()) {
                        ++pos;
                    }
                    parameter.push_back(value[pos++]);
                }
                ++pos; // the closing quote
            } else {
                const std::size_t begin = pos;
                while (pos < value.size() && value[pos] != ',') {
                    ++pos;
                }
                parameter = std::string(util::trim(value.substr(begin, pos - begin)));
            }
            challenges.back().parameters[util::to_lower(token)] = parameter;
        } else if (pos < value.size() && value[pos] == '=') {
            // A parameter before any scheme: not a valid challenge; skip it.
            while (pos < value.size() && value[pos] != ',') {
                ++pos;
            }
        } else if (!token.empty()) {
            challenges.push_back(AuthChallenge{util::to_lower(token), {}});
        }
    }
    return challenges;
}

Credentials parse_credentials_option(std::string_view text) {
    const auto colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0) {
        throw bad_input("--creds: expected USER:PASSWORD (the value is not shown)");
    }
    return Credentials{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1)),
                       "--creds"};
}

std::optional<Credentials> run_credential_helper(std::string_view helper, std::string_view server) {
    const std::string program = "docker-credential-" + std::string(helper);
    if (!util::find_program(program)) {
        throw bad_input("the credential helper {} is not installed (not found on PATH); install "
                        "it or remove it from the docker config",
                        program);
    }
    util::ProcessOptions process_options;
    process_options.standard_input = std::string(server);
    util::ProcessResult result;
    try {
        result = util::run_process({program, "get"}, process_options);
    } catch (const std::system_error& failure) {
        throw bad_input("cannot run the credential helper {}: {}", program,
                        failure.code().message());
    }
    if (result.exit_code != 0) {
        const std::string said = clean_message(result.standard_output + result.standard_error);
        if (util::to_lower(said).find("credentials not found") != std::string::npos) {
            return std::nullopt;
        }
        // Only standard error goes into the message: standard output may hold a secret.
        throw bad_input("the credential helper {} failed for {} (exit {}): {}", program, server,
                        result.exit_code, clean_message(result.standard_error));
    }
    const auto answer = json::parse(result.standard_output, nullptr, false);
    if (!answer.is_object() || !answer.contains("Secret") || !answer["Secret"].is_string()) {
        throw bad_input("the credential helper {} answered for {} without a JSON object with "
                        "Username and Secret",
                        program, server);
    }
    Credentials credentials;
    credentials.username = answer.value("Username", "");
    credentials.password = answer["Secret"].get<std::string>();
    credentials.source = program;
    return credentials;
}

std::optional<Credentials> credentials_from_auth_config(const json& config,
                                                        std::string_view registry,
                                                        std::string_view source,
                                                        const CredentialHelperRunner& helper) {
    if (!config.is_object()) {
        throw bad_input("{} is not a JSON object", source);
    }
    const std::string wanted = normalise_registry_key(registry);
    const std::string helper_server =
        wanted == k_docker_hub ? std::string(k_docker_hub_server) : wanted;
    const auto named_helper = [&](const json& name) -> std::optional<Credentials> {
        if (!name.is_string() || name.get<std::string>().empty()) {
            return std::nullopt;
        }
        return helper(name.get<std::string>(), helper_server);
    };

    if (const auto helpers = config.find("credHelpers");
        helpers != config.end() && helpers->is_object()) {
        for (const auto& [key, name] : helpers->items()) {
            if (normalise_registry_key(key) == wanted) {
                if (auto found = named_helper(name)) {
                    return found;
                }
            }
        }
    }
    if (const auto auths = config.find("auths"); auths != config.end() && auths->is_object()) {
        for (const auto& [key, entry] : auths->items()) {
            if (normalise_registry_key(key) != wanted || !entry.is_object()) {
                continue;
            }
            // docker login stores an OAuth2 refresh token as "identitytoken", next to an "auth"
            // of "USER:" (no password): the token is what authenticates.
            if (const auto token = entry.find("identitytoken");
                token != entry.end() && token->is_string() && !token->get<std::string>().empty()) {
                Credentials credentials;
                credentials.source = std::string(source);
                credentials.identity_token = token->get<std::string>();
                credentials.username = entry.value("username", "");
                if (const auto auth = entry.find("auth");
                    auth != entry.end() && auth->is_string()) {
                    if (const auto decoded =
                            util::base64_decode(util::trim(auth->get<std::string>()))) {
                        credentials.username = decoded->substr(0, decoded->find(':'));
                    }
                }
                return credentials;
            }
            if (const auto auth = entry.find("auth");
                auth != entry.end() && auth->is_string() && !auth->get<std::string>().empty()) {
                const auto decoded = util::base64_decode(util::trim(auth->get<std::string>()));
                const auto colon = decoded ? decoded->find(':') : std::string::npos;
                if (!decoded || colon == std::string::npos) {
                    throw bad_input("{}: auths.\"{}\".auth is not the base64 of USER:PASSWORD; "
                                    "log in again (docker login {})",
                                    source, key, registry);
                }
                return Credentials{decoded->substr(0, colon), decoded->substr(colon + 1),
                                   std::string(source)};
            }
            const std::string username = entry.value("username", "");
            const std::string password = entry.value("password", "");
            if (!username.empty() || !password.empty()) {
                return Credentials{username, password, std::string(source)};
            }
        }
    }
    if (const auto store = config.find("credsStore"); store != config.end()) {
        return named_helper(*store);
    }
    return std::nullopt;
}

bool RegistryOptions::is_insecure(std::string_view host) const {
    const std::string wanted = util::to_lower(host);
    const std::string without_port = wanted.substr(0, wanted.rfind(':'));
    return std::any_of(insecure_hosts.begin(), insecure_hosts.end(), [&](const std::string& entry) {
        const std::string listed = normalise_registry_key(entry);
        return listed == wanted ||
               (listed.find(':') == std::string::npos && listed == without_port);
    });
}

std::optional<Credentials> find_credentials(std::string_view registry,
                                            const RegistryOptions& options) {
    if (options.credentials) {
        return options.credentials;
    }
    std::vector<fs::path> files = options.auth_files;
    if (files.empty()) {
        if (const char* auth_file = std::getenv("REGISTRY_AUTH_FILE");
            auth_file != nullptr && *auth_file != '\0') {
            std::error_code error;
            if (!fs::is_regular_file(auth_file, error)) {
                throw bad_input("REGISTRY_AUTH_FILE={} does not exist or is not a file", auth_file);
            }
            files.emplace_back(auth_file);
        } else if (const char* runtime = std::getenv("XDG_RUNTIME_DIR");
                   runtime != nullptr && *runtime != '\0') {
            files.push_back(fs::path(runtime) / "containers" / "auth.json");
        }
        if (const char* docker_config = std::getenv("DOCKER_CONFIG");
            docker_config != nullptr && *docker_config != '\0') {
            files.push_back(fs::path(docker_config) / "config.json");
        } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
            files.push_back(fs::path(home) / ".docker" / "config.json");
        }
    }
    for (const auto& file : files) {
        std::error_code error;
        if (!fs::is_regular_file(file, error)) {
            continue;
        }
        std::string text;
        try {
            text = util::read_file(file);
        } catch (const std::system_error& failure) {
            throw bad_input("cannot read {}: {}", file.string(), failure.code().message());
        }
        const auto config = json::parse(text, nullptr, false);
        if (config.is_discarded()) {
            // The parser's message could quote the file, which holds secrets: name it only.
            throw bad_input("{} is not valid JSON; fix or remove it (credentials for registries "
                            "are read from it)",
                            file.string());
        }
        if (auto found = credentials_from_auth_config(config, registry, file.string())) {
            return found;
        }
    }
    return std::nullopt;
}

// --- certs.d ----------------------------------------------------------------------------------

std::vector<fs::path> default_certs_d_roots() {
    std::vector<fs::path> roots;
    if (const char* config = std::getenv("XDG_CONFIG_HOME"); config != nullptr && *config != '\0') {
        roots.push_back(fs::path(config) / "containers" / "certs.d");
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
        roots.push_back(fs::path(home) / ".config" / "containers" / "certs.d");
    }
    roots.emplace_back("/etc/containers/certs.d");
    roots.emplace_back("/etc/docker/certs.d");
    return roots;
}

namespace {

// The names of the regular files (or links to them) in a certs.d directory, sorted.
std::vector<std::string> certs_d_file_names(const fs::path& directory, std::string_view registry) {
    std::vector<std::string> names;
    std::error_code error;
    for (fs::directory_iterator it(directory, error), end; !error && it != end;
         it.increment(error)) {
        std::error_code type_error;
        if (it->is_regular_file(type_error)) {
            names.push_back(it->path().filename().string());
        }
    }
    if (error) {
        throw bad_input("registry {}: cannot read the certs.d directory {}: {}", registry,
                        directory.string(), error.message());
    }
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace

RegistryCertificates find_registry_certificates(std::string_view registry,
                                                const RegistryOptions& options) {
    RegistryCertificates found;
    const auto roots =
        options.certs_d_roots.empty() ? default_certs_d_roots() : options.certs_d_roots;
    for (const auto& root : roots) {
        std::error_code error; // an unreadable root is passed over, as containers/image does
        if (fs::is_directory(root / std::string(registry), error)) {
            found.directory = root / std::string(registry);
            break;
        }
    }
    if (found.directory.empty()) {
        return found;
    }
    const auto names = certs_d_file_names(found.directory, registry);
    const auto has = [&](const std::string& name) {
        return std::binary_search(names.begin(), names.end(), name);
    };
    std::vector<std::string> pairs;
    for (const auto& name : names) {
        const fs::path file = found.directory / name;
        const std::string stem = file.stem().string();
        if (file.extension() == ".crt") {
            found.ca_files.push_back(file);
        } else if (file.extension() == ".cert" && !has(stem + ".key")) {
            throw bad_input("registry {}: the client certificate {} has no key: {} is missing "
                            "(CA certificates take the extension .crt)",
                            registry, file.string(), (found.directory / (stem + ".key")).string());
        } else if (file.extension() == ".key" && !has(stem + ".cert")) {
            throw bad_input("registry {}: the client key {} has no certificate: {} is missing",
                            registry, file.string(), (found.directory / (stem + ".cert")).string());
        } else if (file.extension() == ".cert") {
            pairs.push_back(name);
            found.client_cert = file;
            found.client_key = found.directory / (stem + ".key");
        }
    }
    // containers/image offers every pair and lets Go's TLS choose; libcurl sends one.
    if (pairs.size() > 1) {
        throw bad_input("registry {}: the certs.d directory {} holds {} client certificates ({}); "
                        "edgeforge sends one: keep a single NAME.cert with its NAME.key",
                        registry, found.directory.string(), pairs.size(), util::join(pairs, ", "));
    }
    return found;
}

// --- the client -------------------------------------------------------------------------------

struct RegistryClient::State {
    std::string registry; // as in references: "docker.io"
    std::string api_host; // what we connect to: "registry-1.docker.io"
    RegistryOptions options;
    RegistryCertificates certificates; // from certs.d
    std::string ca_bundle;
    std::string client_cert; // PEM, read once: a broken pair fails before any request
    std::string client_key;

    std::mutex mutex; // guards everything below
    bool resolved = false;
    std::string base_url; // "https://host:port"
    TlsSettings tls;
    std::string auth_scheme; // "", "basic" or "bearer"
    std::string realm;
    std::string service;
    struct Token {
        std::string value;
        Clock::time_point expires;
    };
    std::map<std::string, Token> tokens;                // by the scope we asked for
    std::map<std::string, std::string> scope_overrides; // scopes a challenge asked for instead
    bool credentials_loaded = false;
    std::optional<Credentials> credentials;
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

    const std::optional<Credentials>& credentials_locked() {
        if (!credentials_loaded) {
            credentials = find_credentials(registry, options);
            credentials_loaded = true;
        }
        return credentials;
    }

    void load_certificates() {
        certificates = find_registry_certificates(registry, options);
        ca_bundle = build_ca_bundle(options.ca_cert, certificates, registry);
        if (!certificates.client_cert.empty()) {
            const std::string what = fmt::format("registry {}: certs.d", registry);
            client_cert = read_pem_file(certificates.client_cert, "CERTIFICATE", what);
            client_key = read_pem_file(certificates.client_key, "PRIVATE KEY", what);
        }
    }

    // Where a client certificate for this registry goes: ROOT/HOST[:PORT]/ of each root.
    std::string certs_d_hint() const {
        const auto roots =
            options.certs_d_roots.empty() ? default_certs_d_roots() : options.certs_d_roots;
        std::vector<std::string> directories;
        for (const auto& root : roots) {
            directories.push_back((root / registry).string() + "/");
        }
        return fmt::format("put the client certificate and its key (PEM) as client.cert and "
                           "client.key in {}, or pass --certs-dir DIR with them in DIR/{}/",
                           util::join(directories, " or "), registry);
    }

    // The server refused our client certificate, or wanted one and got none.
    Error client_certificate_error(std::string_view what, const Response& response) const {
        const std::string said = clean_message(response.curl_error);
        if (certificates.client_cert.empty()) {
            const std::string where =
                certificates.directory.empty()
                    ? certs_d_hint()
                    : fmt::format("the certs.d directory {} has no NAME.cert with its NAME.key: "
                                  "put them there",
                                  certificates.directory.string());
            return bad_input("registry {}: {}: the registry requires a TLS client certificate "
                             "and none is configured for {} ({}); {}",
                             registry, what, registry, said, where);
        }
        return bad_input("registry {}: {}: the registry refused the client certificate {} ({}); "
                         "check that it is signed by a CA the registry trusts for clients, has "
                         "not expired, and allows client authentication",
                         registry, what, certificates.client_cert.string(), said);
    }

    std::string login_hint() const {
        return fmt::format("log in with 'docker login {}' (or podman login), set "
                           "REGISTRY_AUTH_FILE to an auth.json, or pass --creds USER:PASSWORD",
                           registry);
    }

    Error unauthorized(std::string_view what, const Response& response) {
        std::lock_guard lock(mutex);
        const auto& found = credentials_locked();
        const std::string said = parse_registry_error(response.body).text;
        const std::string status = fmt::format("{} {}", response.status,
                                               response.status == 401 ? "unauthorized" : "denied") +
                                   (said.empty() ? std::string() : " (" + said + ")");
        if (found && response.status == 403) {
            return bad_input("registry {}: {}: {}: the credentials from {} do not give access to "
                             "this; check the repository name and your permissions",
                             registry, what, status, found->source);
        }
        if (found) {
            return bad_input("registry {}: {}: {}: the credentials from {} were not accepted; "
                             "check them, or {}",
                             registry, what, status, found->source, login_hint());
        }
        return bad_input("registry {}: {}: {}: no credentials for {} were found; {}", registry,
                         what, status, registry, login_hint());
    }

    Error connection_error(std::string_view what, const std::string& url, const Response& response,
                           bool insecure_allowed) {
        const std::string attempts =
            response.attempts > 1 ? fmt::format(" (after {} attempts)", response.attempts) : "";
        if (client_certificate_refused(response)) {
            return client_certificate_error(what, response);
        }
        if (response.code == CURLE_SSL_CERTPROBLEM && !certificates.client_cert.empty()) {
            return bad_input("registry {}: {}: the client certificate {} with the key {} cannot "
                             "be used: {}; check that the key belongs to the certificate and "
                             "has no passphrase",
                             registry, what, certificates.client_cert.string(),
                             certificates.client_key.string(), clean_message(response.curl_error));
        }
        if (response.code == CURLE_PEER_FAILED_VERIFICATION ||
            response.code == CURLE_SSL_CACERT_BADFILE) {
            return bad_input("registry {}: {}: the TLS certificate of {} is not trusted: {}; pass "
                             "--ca-cert FILE with the CA that signed it, or put the CA in a "
                             "certs.d directory as {}/ca.crt (--certs-dir){}",
                             registry, what, api_host, clean_message(response.curl_error), registry,
                             insecure_allowed ? ""
                                              : fmt::format(" (or --insecure-registry {} to "
                                                            "skip verification)",
                                                            registry));
        }
        if (is_tls_error(response.code)) {
            return bad_input("registry {}: {}: TLS with {} failed: {}; if the registry serves "
                             "plain HTTP, pass --insecure-registry {}",
                             registry, what, url, clean_message(response.curl_error), registry);
        }
        return build_failed("registry {} is unreachable: {}: {}{}; check the host name and port, "
                            "the network, and HTTPS_PROXY/NO_PROXY",
                            registry, what, clean_message(response.curl_error), attempts);
    }

    Error status_error(std::string_view what, const Response& response,
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

    // Learns how to talk to the registry: https (or, for insecure hosts, http when https does
    // not work) and which authentication /v2/ asks for.
    void resolve(Connection& connection) {
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
            TlsSettings settings;
            settings.ca_bundle = ca_bundle;
            settings.client_cert = client_cert;
            settings.client_key = client_key;
            settings.verify = candidate.verify;
            const std::string base = candidate.scheme + "://" + api_host;
            Request request;
            request.url = base + "/v2/";
            last_url = request.url;
            last = perform_retrying(connection, request, settings, options, candidate.attempts);
            if (last.code == CURLE_OK) {
                base_url = base;
                tls = settings;
                if (last.status == 401) {
                    learn_challenge_locked(last);
                }
                resolved = true;
                return;
            }
        }
        throw connection_error("GET /v2/", last_url, last, insecure);
    }

    // Takes the scheme (and bearer realm) from a 401 response; false when there is nothing to
    // try (no challenge, or Basic without credentials).
    bool learn_challenge_locked(const Response& response) {
        std::optional<AuthChallenge> chosen;
        for (const auto& header : response.headers) {
            if (!util::iequals(header.name, "WWW-Authenticate")) {
                continue;
            }
            for (auto& challenge : parse_www_authenticate(header.value)) {
                if (challenge.scheme == "bearer" && challenge.parameters.contains("realm")) {
                    chosen = challenge;
                } else if (challenge.scheme == "basic" && !chosen) {
                    chosen = challenge;
                }
            }
        }
        if (!chosen) {
            return false;
        }
        auth_scheme = chosen->scheme;
        if (auth_scheme == "bearer") {
            realm = chosen->parameters["realm"];
            service = chosen->parameters.contains("service") ? chosen->parameters["service"] : "";
        }
        return true;
    }

    // After a 401: whether asking again with fresh authorization can help.
    bool reauthorize(const Response& response, const std::string& scope) {
        std::lock_guard lock(mutex);
        const std::string previous = auth_scheme;
        if (!learn_challenge_locked(response)) {
            return false;
        }
        if (auth_scheme == "basic") {
            // Basic credentials were sent already (or there are none): nothing new to try.
            return previous != "basic" && credentials_locked().has_value();
        }
        tokens.erase(scope);
        for (const auto& header : response.headers) {
            if (util::iequals(header.name, "WWW-Authenticate")) {
                for (auto& challenge : parse_www_authenticate(header.value)) {
                    if (challenge.scheme == "bearer" && challenge.parameters.contains("scope")) {
                        scope_overrides[scope] = challenge.parameters["scope"];
                    }
                }
            }
        }
        return true;
    }

    std::optional<std::string> authorization(Connection& connection, const std::string& scope) {
        std::lock_guard lock(mutex);
        if (auth_scheme == "basic") {
            const auto& found = credentials_locked();
            if (found) {
                return "Basic " + base64_credentials(*found);
            }
            return std::nullopt;
        }
        if (auth_scheme != "bearer") {
            return std::nullopt;
        }
        if (const auto token = tokens.find(scope);
            token != tokens.end() && Clock::now() < token->second.expires) {
            return "Bearer " + token->second.value;
        }
        auto token = fetch_token_locked(connection, scope);
        const std::string header = "Bearer " + token.value;
        tokens[scope] = std::move(token);
        return header;
    }

    // The token request of the distribution spec: GET realm?service=..&scope=.., with
    // `basic` (base64 USER:PASSWORD) when it is not empty.
    Request get_token_request(CURL* handle, const std::string& scopes,
                              const std::string& basic) const {
        Request request;
        request.url = realm;
        if (!service.empty()) {
            request.url = with_query(request.url, "service=" + url_escape(handle, service));
        }
        for (const auto& one : util::split_list(scopes, ' ')) {
            request.url = with_query(request.url, "scope=" + url_escape(handle, one));
        }
        if (!basic.empty()) {
            request.headers.push_back("Authorization: Basic " + basic);
        }
        return request;
    }

    // The OAuth2 token request: POST realm with grant_type=refresh_token and the scopes
    // space-separated in `form`, which holds the refresh token and so is never shown.
    Request oauth_token_request(CURL* handle, const std::string& scopes,
                                const std::string& refresh_token, std::string& form) const {
        form = "grant_type=refresh_token&refresh_token=" + url_escape(handle, refresh_token) +
               "&client_id=edgeforge";
        if (!service.empty()) {
            form += "&service=" + url_escape(handle, service);
        }
        if (const auto list = util::split_list(scopes, ' '); !list.empty()) {
            form += "&scope=" + url_escape(handle, util::join(list, " "));
        }
        Request request;
        request.method = "POST";
        request.url = realm;
        request.has_body = true;
        request.body = form;
        request.headers.emplace_back("Content-Type: application/x-www-form-urlencoded");
        return request;
    }

    // A token for `scope`: with an identity token the OAuth2 POST, else the GET flow with
    // Basic credentials when there are any.
    Token fetch_token_locked(Connection& connection, const std::string& scope) {
        const auto override_scope = scope_overrides.find(scope);
        const std::string wanted =
            override_scope != scope_overrides.end() ? override_scope->second : scope;
        const auto& found = credentials_locked();
        CURL* handle = connection.handle.get();
        const std::string what = fmt::format("token for {}", wanted);
        if (!found || found->identity_token.empty()) {
            const Request request =
                get_token_request(handle, wanted, found ? base64_credentials(*found) : "");
            const Response response =
                perform_retrying(connection, request, tls, options, options.max_attempts);
            check_token_response(what, request, response, found ? &*found : nullptr);
            return parse_token(response);
        }
        std::string form;
        const Request post = oauth_token_request(handle, wanted, found->identity_token, form);
        const Response response =
            perform_retrying(connection, post, tls, options, options.max_attempts);
        check_connected(what, post, response);
        if (response.status == 404 || response.status == 405) {
            return identity_token_by_get(connection, wanted, *found, response.status);
        }
        check_oauth_response(response, *found);
        return parse_token(response);
    }

    // A token service without OAuth2 (GCR answered the POST with 404): the GET flow, with the
    // identity token as the Basic password, as containerd and buildkit fall back too; the POST
    // would have sent it to the same realm.
    Token identity_token_by_get(Connection& connection, const std::string& wanted,
                                const Credentials& found, long post_status) {
        const std::string what = fmt::format("token for {}", wanted);
        const std::string user =
            found.username.empty() ? std::string(k_identity_token_user) : found.username;
        const Request get =
            get_token_request(connection.handle.get(), wanted,
                              util::base64_encode(user + ":" + found.identity_token));
        const Response response =
            perform_retrying(connection, get, tls, options, options.max_attempts);
        check_connected(what, get, response);
        if (response.status == 401 || response.status == 403) {
            throw bad_input("registry {}: the token service {} does not take OAuth2 POST "
                            "requests (HTTP {}), and the GET token request refused the identity "
                            "token from {} as a password ({} {}): this token service cannot log "
                            "in with an identity token alone; pass --creds USER:PASSWORD, or log "
                            "in again with a password (docker login {})",
                            registry, realm, post_status, found.source, response.status,
                            parse_registry_error(response.body).text, registry);
        }
        check_token_status(response);
        return parse_token(response);
    }

    void check_connected(std::string_view what, const Request& request, const Response& response) {
        if (response.code != CURLE_OK) {
            throw connection_error(what, request.url, response, false);
        }
    }

    // OAuth2 answers an unknown or expired refresh token with 400 invalid_grant.
    void check_oauth_response(const Response& response, const Credentials& found) const {
        if (response.status == 400 || response.status == 401 || response.status == 403) {
            throw bad_input("registry {}: the token service {} refused the identity token from "
                            "{} ({} {}); it may have expired or been revoked: log in again with "
                            "'docker login {}', or pass --creds USER:PASSWORD",
                            registry, realm, found.source, response.status,
                            parse_registry_error(response.body).text, registry);
        }
        check_token_status(response);
    }

    // unauthorized() takes the mutex, which the caller holds: messages are built here.
    void check_token_response(std::string_view what, const Request& request,
                              const Response& response, const Credentials* found) {
        check_connected(what, request, response);
        const std::string said = parse_registry_error(response.body).text;
        if (response.status == 401 || response.status == 403) {
            if (found) {
                throw bad_input("registry {}: the token service {} refused the credentials from "
                                "{} ({} {}); check them, or {}",
                                registry, realm, found->source, response.status, said,
                                login_hint());
            }
            throw bad_input("registry {}: the token service {} requires credentials ({} {}); {}",
                            registry, realm, response.status, said, login_hint());
        }
        check_token_status(response);
    }

    void check_token_status(const Response& response) const {
        if (response.status != 200) {
            throw build_failed("registry {}: the token service {} answered HTTP {}: {}", registry,
                               realm, response.status, parse_registry_error(response.body).text);
        }
    }

    // {"token": ..} or {"access_token": ..}, with "expires_in" seconds.
    Token parse_token(const Response& response) const {
        const auto document = json::parse(response.body, nullptr, false);
        std::string value;
        if (document.is_object()) {
            for (const char* key : {"token", "access_token"}) {
                if (document.contains(key) && document[key].is_string() &&
                    !document[key].get<std::string>().empty()) {
                    value = document[key].get<std::string>();
                    break;
                }
            }
        }
        if (value.empty()) {
            throw build_failed("registry {}: the token service {} answered without a token",
                               registry, realm);
        }
        std::chrono::seconds lifetime = k_default_token_lifetime;
        if (document.contains("expires_in") && document["expires_in"].is_number_integer()) {
            lifetime = std::chrono::seconds(
                std::max<std::int64_t>(document["expires_in"].get<std::int64_t>(), 1));
        }
        const auto margin =
            lifetime > 2 * k_token_margin ? k_token_margin : std::chrono::seconds(0);
        return Token{value, Clock::now() + lifetime - margin};
    }

    // Sends a request with authorization, retrying connection errors, 429 and 5xx with backoff
    // and a 401 once with fresh authorization. Returns whatever response came last; throws only
    // when no response arrived at all.
    Response send(Connection& connection, Request request, const std::string& scope,
                  std::string_view what) {
        resolve(connection);
        if (!request.url.starts_with("http://") && !request.url.starts_with("https://")) {
            request.url = base_url + request.url;
        }
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
                if (is_retryable_failure(response) && attempt < options.max_attempts) {
                    std::this_thread::sleep_for(util::backoff_delay(
                        options.retry_base_delay, options.retry_max_delay, attempt - 1));
                    continue;
                }
                throw connection_error(what, request.url, response, !tls.verify);
            }
            if (response.status == 401 && !reauthorized) {
                reauthorized = true;
                if (reauthorize(response, scope)) {
                    --attempt; // a new token is not a retry
                    continue;
                }
            }
            if ((response.status == 429 || response.status >= 500) &&
                attempt < options.max_attempts) {
                std::this_thread::sleep_for(util::backoff_delay(
                    options.retry_base_delay, options.retry_max_delay, attempt - 1));
                continue;
            }
            return response;
        }
    }

    std::string absolute(const std::string& location) const {
        if (location.starts_with("http://") || location.starts_with("https://")) {
            return location;
        }
        return base_url + (location.starts_with('/') ? "" : "/") + location;
    }

    fs::path fetch_blob(Connection& connection, std::string_view repository,
                        const BlobRequest& blob, const BlobCache& cache,
                        const std::function<void(std::uint64_t)>* on_bytes = nullptr) {
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

    // Starts an upload session; returns its Location.
    std::string start_upload(Connection& connection, std::string_view repository,
                             const std::string& scope, std::string_view what) {
        Request request;
        request.method = "POST";
        request.has_body = true;
        request.url = fmt::format("/v2/{}/blobs/uploads/", repository);
        const Response response = send(connection, request, scope, what);
        const auto location = response.header("Location");
        if (response.status != 202 || !location) {
            throw status_error(what, response, "");
        }
        return absolute(*location);
    }
};

RegistryClient::RegistryClient(std::string registry, RegistryOptions options)
    : state_(std::make_unique<State>()) {
    state_->registry = std::move(registry);
    state_->api_host = state_->registry == k_docker_hub ? "registry-1.docker.io" : state_->registry;
    state_->options = std::move(options);
    if (state_->options.max_attempts < 1) {
        state_->options.max_attempts = 1;
    }
    state_->load_certificates();
}

RegistryClient::~RegistryClient() = default;

const std::string& RegistryClient::registry() const {
    return state_->registry;
}

ManifestResponse RegistryClient::get_manifest(std::string_view repository,
                                              std::string_view reference) {
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
    const auto document = json::parse(manifest.body, nullptr, false);
    if (document.is_object() && document.contains("mediaType") &&
        document["mediaType"].is_string()) {
        manifest.media_type = document["mediaType"].get<std::string>();
    } else if (const auto type = response.header("Content-Type")) {
        manifest.media_type = std::string(util::trim(type->substr(0, type->find(';'))));
    }
    return manifest;
}

fs::path RegistryClient::fetch_blob(std::string_view repository, const BlobRequest& blob,
                                    const BlobCache& cache) {
    State::Lease connection(*state_);
    return state_->fetch_blob(*connection, repository, blob, cache);
}

namespace {

// Runs task(0), ..., task(count - 1) on up to `threads` threads, each taking the next index.
// After the first exception no new index is handed out; it is rethrown once every thread is
// done.
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

} // namespace

std::vector<fs::path>
RegistryClient::fetch_blobs(std::string_view repository, const std::vector<BlobRequest>& blobs,
                            const BlobCache& cache,
                            const std::function<void(std::uint64_t)>& on_bytes) {
    std::vector<fs::path> paths(blobs.size());
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

bool RegistryClient::blob_exists(std::string_view repository, std::string_view digest) {
    State::Lease connection(*state_);
    Request request;
    request.method = "HEAD";
    request.url = fmt::format("/v2/{}/blobs/{}", repository, digest);
    const std::string what = fmt::format("blob {} of {}", digest, repository);
    const Response response = state_->send(
        *connection, request, fmt::format("repository:{}:pull,push", repository), what);
    if (response.status == 200) {
        return true;
    }
    if (response.status == 404) {
        return false;
    }
    throw state_->status_error(what, response, "");
}

bool RegistryClient::mount_blob(std::string_view repository, std::string_view digest,
                                std::string_view from_repository) {
    State::Lease connection(*state_);
    Request request;
    request.method = "POST";
    request.has_body = true;
    request.url = fmt::format("/v2/{}/blobs/uploads/?mount={}&from={}", repository,
                              url_escape((*connection).handle.get(), digest),
                              url_escape((*connection).handle.get(), from_repository));
    const std::string what =
        fmt::format("mount of blob {} from {} into {}", digest, from_repository, repository);
    const Response response = state_->send(
        *connection, request,
        fmt::format("repository:{}:pull,push repository:{}:pull", repository, from_repository),
        what);
    if (response.status == 201) {
        return true;
    }
    if (response.status == 202) {
        return false; // an upload session was opened instead; it expires unused
    }
    throw state_->status_error(what, response, "");
}

void RegistryClient::upload_blob(std::string_view repository, const fs::path& file,
                                 std::string_view digest, std::uint64_t size) {
    State::Lease connection(*state_);
    const std::string what = fmt::format("upload of blob {} to {}", digest, repository);
    const std::string scope = fmt::format("repository:{}:pull,push", repository);
    const util::FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        throw build_failed("cannot read {} to push it: {}", file.string(),
                           std::generic_category().message(errno));
    }
    std::string location = state_->start_upload(*connection, repository, scope, what);
    const std::string digest_parameter = "digest=" + url_escape((*connection).handle.get(), digest);
    const std::uint64_t chunk = state_->options.upload_chunk_size;
    Request put;
    put.method = "PUT";
    put.has_body = true;
    put.small = false;
    put.headers.emplace_back("Content-Type: application/octet-stream");
    if (chunk == 0 || size <= chunk) {
        put.file_fd = fd.get();
        put.file_length = size;
    } else {
        // Chunked: PATCH each range, following the Location every response gives.
        for (std::uint64_t offset = 0; offset < size; offset += chunk) {
            const std::uint64_t length = std::min(chunk, size - offset);
            Request patch;
            patch.method = "PATCH";
            patch.has_body = true;
            patch.small = false;
            patch.url = location;
            patch.file_fd = fd.get();
            patch.file_offset = offset;
            patch.file_length = length;
            patch.headers.emplace_back("Content-Type: application/octet-stream");
            patch.headers.push_back(
                fmt::format("Content-Range: {}-{}", offset, offset + length - 1));
            const Response response = state_->send(*connection, patch, scope, what);
            const auto next = response.header("Location");
            if (response.status != 202 || !next) {
                throw state_->status_error(fmt::format("{} (chunk at byte {})", what, offset),
                                           response, "");
            }
            location = state_->absolute(*next);
        }
    }
    put.url = with_query(location, digest_parameter);
    const Response response = state_->send(*connection, put, scope, what);
    if (response.status != 201) {
        throw state_->status_error(what, response, "");
    }
}

std::string RegistryClient::put_manifest(std::string_view repository, std::string_view reference,
                                         std::string_view media_type, std::string_view body) {
    State::Lease connection(*state_);
    const std::string what = fmt::format("manifest {}{}{}", repository,
                                         reference.starts_with("sha256:") ? "@" : ":", reference);
    Request request;
    request.method = "PUT";
    request.has_body = true;
    request.body = body;
    request.url = fmt::format("/v2/{}/manifests/{}", repository, reference);
    request.headers.push_back(fmt::format("Content-Type: {}", media_type));
    const Response response = state_->send(
        *connection, request, fmt::format("repository:{}:pull,push", repository), what);
    if (response.status != 201 && response.status != 200) {
        throw state_->status_error(what, response, "");
    }
    return "sha256:" + util::sha256_hex(body);
}

// --- push -------------------------------------------------------------------------------------

namespace {

struct LayoutBlob {
    std::string media_type;
    std::string digest;
    std::uint64_t size = 0;
};

LayoutBlob layout_descriptor(const json& value, const fs::path& layout, std::string_view what) {
    if (!value.is_object() || !value.contains("digest") || !value["digest"].is_string() ||
        !value.contains("size") || !value["size"].is_number_unsigned()) {
        throw bad_input("layout {}: {} is not a valid descriptor", layout.string(), what);
    }
    LayoutBlob blob;
    blob.media_type = value.value("mediaType", "");
    blob.digest = value["digest"].get<std::string>();
    blob.size = value["size"].get<std::uint64_t>();
    if (!blob.digest.starts_with("sha256:") || blob.digest.size() != 71) {
        throw bad_input("layout {}: {} has the digest '{}'; only sha256 is supported",
                        layout.string(), what, blob.digest);
    }
    return blob;
}

class Pusher {
  public:
    Pusher(fs::path layout, const ImageReference& destination, const RegistryOptions& options,
           const PushOptions& push)
        : layout_(std::move(layout)), destination_(destination), push_(push),
          client_(destination.registry, options), parallel_(options.parallel_downloads) {}

    PushResult run(const LayoutBlob& top, const std::string& reference) {
        PushResult result;
        result.digest = push_manifest(top, reference);
        result.media_type = top.media_type;
        result.uploaded = uploaded_;
        result.skipped = skipped_;
        result.mounted = mounted_;
        return result;
    }

  private:
    fs::path blob_file(const LayoutBlob& blob) const {
        const fs::path file = layout_ / "blobs" / "sha256" / blob.digest.substr(7);
        std::error_code error;
        const auto size = fs::file_size(file, error);
        if (error) {
            throw bad_input("layout {}: blob {} is missing ({}); the layout is incomplete",
                            layout_.string(), blob.digest, file.string());
        }
        if (size != blob.size) {
            throw bad_input("layout {}: blob {} is {} bytes, but its descriptor says {}",
                            layout_.string(), blob.digest, size, blob.size);
        }
        return file;
    }

    void progress(const std::string& line) {
        if (push_.on_progress) {
            const std::lock_guard lock(progress_mutex_); // blobs go up on several threads
            push_.on_progress(line);
        }
    }

    void push_blob(const LayoutBlob& blob, std::string_view what) {
        const std::string& repository = destination_.repository;
        const fs::path file = blob_file(blob);
        if (client_.blob_exists(repository, blob.digest)) {
            ++skipped_;
            progress(fmt::format("{} {}: already in {}", what, blob.digest, repository));
            return;
        }
        for (const auto& from : push_.mount_from) {
            if (from != repository && client_.mount_blob(repository, blob.digest, from)) {
                ++mounted_;
                progress(fmt::format("{} {}: mounted from {}", what, blob.digest, from));
                return;
            }
        }
        // The bytes leave as they are in the layout, so check them first: a corrupt layout
        // must not become a corrupt registry image.
        verify_blob(file, blob.digest, "oci:" + layout_.string(), what);
        client_.upload_blob(repository, file, blob.digest, blob.size);
        ++uploaded_;
        progress(
            fmt::format("{} {}: uploaded ({})", what, blob.digest, util::format_bytes(blob.size)));
    }

    std::string push_manifest(const LayoutBlob& descriptor, const std::string& reference) {
        const fs::path file = blob_file(descriptor);
        const std::string body = util::read_file(file);
        if ("sha256:" + util::sha256_hex(body) != descriptor.digest) {
            throw build_failed("layout {}: manifest {} is corrupt (its content does not match "
                               "its digest)",
                               layout_.string(), descriptor.digest);
        }
        const auto document = json::parse(body, nullptr, false);
        if (!document.is_object()) {
            throw bad_input("layout {}: {} is not a JSON object", layout_.string(),
                            descriptor.digest);
        }
        std::string media_type = document.value("mediaType", descriptor.media_type);
        if (media_type.empty()) {
            media_type = document.contains("manifests") ? std::string(media_type::oci_index)
                                                        : std::string(media_type::oci_manifest);
        }
        if (is_index_media_type(media_type)) {
            const auto& manifests = document.at("manifests");
            for (std::size_t i = 0; i < manifests.size(); ++i) {
                const auto child =
                    layout_descriptor(manifests[i], layout_, fmt::format("manifests[{}]", i));
                push_manifest(child, child.digest);
            }
        } else {
            // The config and the layers go up at once, as many at a time as blobs come down.
            std::vector<std::pair<LayoutBlob, std::string>> blobs{
                {layout_descriptor(document.at("config"), layout_, "config"), "config"}};
            const auto& layers = document.at("layers");
            for (std::size_t i = 0; i < layers.size(); ++i) {
                blobs.emplace_back(
                    layout_descriptor(layers[i], layout_, fmt::format("layers[{}]", i)), "layer");
            }
            run_parallel(blobs.size(), parallel_, [&](std::size_t i) {
                push_blob(blobs[i].first, blobs[i].second);
            });
        }
        const std::string digest =
            client_.put_manifest(destination_.repository, reference, media_type, body);
        progress(fmt::format("{} {}: pushed as {}",
                             is_index_media_type(media_type) ? "index" : "manifest", digest,
                             reference));
        return digest;
    }

    fs::path layout_;
    const ImageReference& destination_;
    const PushOptions& push_;
    RegistryClient client_;
    unsigned parallel_;
    std::atomic<std::size_t> uploaded_{0};
    std::atomic<std::size_t> skipped_{0};
    std::atomic<std::size_t> mounted_{0};
    std::mutex progress_mutex_;
};

} // namespace

PushResult push_layout(const fs::path& layout, std::string_view tag,
                       const ImageReference& destination, const RegistryOptions& options,
                       const PushOptions& push) {
    if (!destination.is_registry()) {
        throw bad_input("cannot push to {}: not a registry reference", destination.str());
    }
    const fs::path index_file = layout / "index.json";
    std::string text;
    try {
        text = util::read_file(index_file);
    } catch (const std::system_error&) {
        throw bad_input("layout {}: {} not found; it is not an OCI image layout", layout.string(),
                        index_file.string());
    }
    const auto index = json::parse(text, nullptr, false);
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
        throw bad_input("layout {}: index.json has no 'manifests' list", layout.string());
    }
    std::vector<std::pair<LayoutBlob, std::string>> entries; // descriptor, tag
    for (std::size_t i = 0; i < index["manifests"].size(); ++i) {
        const auto& entry = index["manifests"][i];
        std::string entry_tag;
        if (entry.contains("annotations") && entry["annotations"].is_object()) {
            entry_tag = entry["annotations"].value("org.opencontainers.image.ref.name", "");
        }
        entries.emplace_back(layout_descriptor(entry, layout, fmt::format("manifests[{}]", i)),
                             entry_tag);
    }
    const LayoutBlob* chosen = nullptr;
    std::vector<std::string> tags;
    for (const auto& [descriptor, entry_tag] : entries) {
        if (!entry_tag.empty()) {
            tags.push_back(entry_tag);
        }
        if (!tag.empty() && (entry_tag == tag || entry_tag.ends_with(":" + std::string(tag)))) {
            chosen = &descriptor;
        }
    }
    if (tag.empty() && entries.size() == 1) {
        chosen = &entries.front().first;
    }
    if (chosen == nullptr) {
        throw bad_input("layout {} has no {} (tags: {})", layout.string(),
                        tag.empty() ? std::string("single image; name a tag")
                                    : fmt::format("tag '{}'", tag),
                        tags.empty() ? "none" : util::join(tags, ", "));
    }
    if (!destination.digest.empty() && destination.digest != chosen->digest) {
        throw bad_input("cannot push {} as {}: its digest is {}", layout.string(),
                        destination.str(), chosen->digest);
    }
    const std::string reference = destination.digest.empty() ? destination.tag : destination.digest;
    Pusher pusher(layout, destination, options, push);
    return pusher.run(*chosen, reference);
}

} // namespace edgeforge::oci
