// Signed requests to AWS service endpoints over libcurl: retries with backoff, timeouts, and
// errors that name the API call, the HTTP status and AWS's error code and message.
#include "cloud/aws_http.h"

#include <algorithm>
#include <thread>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/version.h"
#include "util/curl.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::cloud {
namespace {

// Error bodies are short; anything bigger than this is not an AWS API response worth keeping.
constexpr std::size_t k_max_response_bytes = 4 << 20;
constexpr std::size_t k_max_message_chars = 600;

using util::CurlEasy;
using util::CurlList;

std::size_t append_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* body = static_cast<std::string*>(user);
    const std::size_t bytes = size * count;
    if (body->size() + bytes > k_max_response_bytes) {
        return 0; // makes curl fail with CURLE_WRITE_ERROR
    }
    body->append(data, bytes);
    return bytes;
}

std::size_t append_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto* headers = static_cast<std::vector<HttpHeader>*>(user);
    const std::size_t bytes = size * count;
    const std::string_view line = util::trim(std::string_view(data, bytes));
    if (line.starts_with("HTTP/")) {
        headers->clear(); // a new response (after 100 Continue): forget the previous one's
    } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
        headers->push_back(HttpHeader{std::string(util::trim(line.substr(0, colon))),
                                      std::string(util::trim(line.substr(colon + 1)))});
    }
    return bytes;
}

bool is_retryable_response(long status, std::string_view code) {
    if (util::is_transient_http_status(status)) {
        return true;
    }
    static constexpr std::string_view k_throttling_codes[] = {"Throttling",
                                                              "ThrottlingException",
                                                              "ThrottledException",
                                                              "RequestThrottled",
                                                              "RequestThrottledException",
                                                              "RequestLimitExceeded",
                                                              "SlowDown",
                                                              "TooManyRequestsException",
                                                              "RequestTimeout",
                                                              "RequestTimeoutException"};
    return std::find(std::begin(k_throttling_codes), std::end(k_throttling_codes), code) !=
           std::end(k_throttling_codes);
}

std::string xml_unescape(std::string_view text) {
    static constexpr std::pair<std::string_view, char> k_entities[] = {
        {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        bool replaced = false;
        if (text[i] == '&') {
            for (const auto& [entity, c] : k_entities) {
                if (text.substr(i).starts_with(entity)) {
                    out.push_back(c);
                    i += entity.size() - 1;
                    replaced = true;
                    break;
                }
            }
        }
        if (!replaced) {
            out.push_back(text[i]);
        }
    }
    return out;
}

// Printable, one line, bounded: server text goes into our error messages.
std::string clean_message(std::string_view text) {
    return util::printable_line(text, k_max_message_chars);
}

std::string describe_response(const AwsResponse& response) {
    const AwsErrorDetails details = parse_aws_error(response);
    std::string text = fmt::format("HTTP {}", response.status);
    if (!details.code.empty()) {
        text += ' ' + details.code;
    }
    if (!details.message.empty()) {
        text += ": " + details.message;
    }
    return text;
}

std::chrono::milliseconds backoff_delay(const AwsClientOptions& options, int retry) {
    return util::backoff_delay(options.retry_base_delay, options.retry_max_delay, retry);
}

} // namespace

std::string service_endpoint(const AwsClientOptions& options, std::string_view service) {
    if (!options.endpoint_url.empty()) {
        std::string url = options.endpoint_url;
        while (url.ends_with('/')) {
            url.pop_back();
        }
        return url;
    }
    return fmt::format("https://{}.{}.amazonaws.com", service, options.region);
}

std::optional<std::string> xml_element_text(std::string_view xml, std::string_view tag) {
    const std::string open = fmt::format("<{}>", tag);
    const std::string close = fmt::format("</{}>", tag);
    const auto start = xml.find(open);
    if (start == std::string_view::npos) {
        return std::nullopt;
    }
    const auto end = xml.find(close, start + open.size());
    if (end == std::string_view::npos) {
        return std::nullopt;
    }
    return xml_unescape(util::trim(xml.substr(start + open.size(), end - start - open.size())));
}

std::optional<std::string> AwsResponse::header(std::string_view name) const {
    for (const auto& header : headers) {
        if (util::iequals(header.name, name)) {
            return header.value;
        }
    }
    return std::nullopt;
}

AwsErrorDetails parse_aws_error(const AwsResponse& response) {
    AwsErrorDetails details;
    const std::string_view body = util::trim(response.body);
    if (body.starts_with('{')) {
        const auto json = util::parse_json(body, false);
        if (json.is_object()) {
            for (const char* key : {"__type", "code", "Code"}) {
                if (json.contains(key) && json[key].is_string()) {
                    details.code = json[key].get<std::string>();
                    break;
                }
            }
            for (const char* key : {"message", "Message"}) {
                if (json.contains(key) && json[key].is_string()) {
                    details.message = json[key].get<std::string>();
                    break;
                }
            }
        }
    } else if (body.starts_with('<')) {
        details.code = xml_element_text(body, "Code").value_or("");
        details.message = xml_element_text(body, "Message").value_or("");
    }
    // REST/JSON services put the authoritative code in a header: "Code:http://internal...".
    if (const auto type = response.header("x-amzn-ErrorType")) {
        details.code = type->substr(0, type->find(':'));
    }
    // "com.amazonaws.ebs#ValidationException" -> "ValidationException"
    if (const auto hash = details.code.rfind('#'); hash != std::string::npos) {
        details.code.erase(0, hash + 1);
    }
    details.code = clean_message(details.code);
    details.message = clean_message(details.message);
    if (details.code.empty() && details.message.empty()) {
        details.message = clean_message(body.substr(0, 200));
    }
    return details;
}

// The handle and what it points to between calls: curl may report into the error buffer while
// closing a connection, long after the request that set it. The handle is declared last so it
// is cleaned up first, while what it points to still exists.
struct AwsServiceClient::Curl {
    char error_buffer[CURL_ERROR_SIZE] = {};
    CurlList header_list;
    CurlEasy handle;
};

AwsServiceClient::AwsServiceClient(AwsClientOptions options, std::string service)
    : options_(std::move(options)), service_(std::move(service)),
      endpoint_(service_endpoint(options_, service_)), curl_(std::make_unique<Curl>()) {
    const auto scheme_end = endpoint_.find("://");
    const std::string scheme = util::to_lower(endpoint_.substr(0, scheme_end));
    if (scheme_end == std::string::npos || (scheme != "http" && scheme != "https")) {
        throw bad_input("AWS endpoint '{}' is not an http:// or https:// URL", endpoint_);
    }
    const auto authority_start = scheme_end + 3;
    const auto path_start = endpoint_.find('/', authority_start);
    host_ = endpoint_.substr(authority_start, path_start - authority_start);
    if (path_start != std::string::npos) {
        path_prefix_ = endpoint_.substr(path_start);
    }
    if (host_.empty() || host_.find_first_of("@?# ") != std::string::npos) {
        throw bad_input("AWS endpoint '{}' has no usable host", endpoint_);
    }
    curl_->handle = util::new_curl_easy();
}

AwsServiceClient::~AwsServiceClient() = default;

AwsResponse AwsServiceClient::send(const AwsRequest& request) {
    CURL* handle = curl_->handle.get();
    const std::string user_agent = fmt::format("edgeforge/{}", k_version);
    const std::string path = path_prefix_ + request.path;
    const std::string url = endpoint_ + path + (request.query.empty() ? "" : "?" + request.query);
    const bool has_content_type =
        std::any_of(request.headers.begin(), request.headers.end(), [](const HttpHeader& header) {
            return util::iequals(header.name, "content-type");
        });

    std::string last_failure;
    for (int attempt = 1;; ++attempt) {
        HttpRequest http;
        http.method = request.method;
        http.path = path;
        http.query = request.query;
        http.headers.push_back(HttpHeader{"Host", host_});
        http.headers.insert(http.headers.end(), request.headers.begin(), request.headers.end());
        http.body = request.body;
        SigningParams params;
        params.credentials = options_.credentials;
        params.region = options_.region;
        params.service = service_;
        params.payload_hash = request.payload_hash;
        // Signed afresh for every attempt: the signature covers the time.
        const SignedRequest signed_request = sign_request(http, params);

        curl_easy_reset(handle); // forgets the previous options but keeps the live connection
        CurlList& header_list = curl_->header_list;
        header_list.reset();
        const auto add_line = [&](const std::string& line) {
            util::append_curl_header(header_list, line);
        };
        for (const auto& header : signed_request.headers) {
            // "Name;" is curl's spelling of a header with an empty value.
            add_line(header.value.empty() ? header.name + ";" : header.name + ": " + header.value);
        }
        add_line("Expect:"); // no 100-continue round trip before each block
        if (!has_content_type) {
            add_line("Content-Type:"); // curl would add a form type to every POST
        }

        AwsResponse response;
        response.attempts = attempt;
        char* error_buffer = curl_->error_buffer;
        error_buffer[0] = '\0';
        curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
        curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(handle, CURLOPT_USERAGENT, user_agent.c_str());
        curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(options_.connect_timeout.count()));
        curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS,
                         static_cast<long>(options_.request_timeout.count()));
        curl_easy_setopt(handle, CURLOPT_HTTPHEADER, header_list.get());
        curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, append_body);
        curl_easy_setopt(handle, CURLOPT_WRITEDATA, &response.body);
        curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, append_header);
        curl_easy_setopt(handle, CURLOPT_HEADERDATA, &response.headers);
        if (request.method == "GET") {
            curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
        } else {
            curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
            curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
                             static_cast<curl_off_t>(request.body.size()));
            curl_easy_setopt(handle, CURLOPT_POSTFIELDS,
                             request.body.empty() ? "" : request.body.data());
        }

        const CURLcode result = curl_easy_perform(handle);
        bool retryable = false;
        long status = 0;
        std::string code;
        if (result != CURLE_OK) {
            last_failure = fmt::format("{} ({})", curl_easy_strerror(result),
                                       error_buffer[0] != '\0' ? error_buffer : url.c_str());
            retryable = util::is_transient_curl_error(result);
        } else {
            curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
            response.status = status;
            if (status >= 200 && status < 300) {
                return response;
            }
            code = parse_aws_error(response).code;
            last_failure = describe_response(response);
            retryable = is_retryable_response(status, code);
        }
        if (!retryable || attempt >= options_.max_attempts) {
            const std::string attempts =
                attempt > 1 ? fmt::format(" after {} attempts", attempt) : std::string();
            throw AwsError(
                fmt::format("{} failed{}: {}", request.operation, attempts, last_failure), status,
                code);
        }
        std::this_thread::sleep_for(backoff_delay(options_, attempt - 1));
    }
}

} // namespace edgeforge::cloud
