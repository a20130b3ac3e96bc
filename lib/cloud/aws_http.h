// Signed requests to AWS service endpoints over libcurl: retries with backoff, timeouts, and
// errors that name the API call, the HTTP status and AWS's error code and message.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/aws_credentials.h"
#include "cloud/sigv4.h"
#include "base/error.h"

namespace edgeforge::cloud {

struct AwsClientOptions {
    AwsCredentials credentials;
    std::string region;
    // One endpoint for every service, such as "http://127.0.0.1:8080" for a local test server;
    // empty means https://SERVICE.REGION.amazonaws.com.
    std::string endpoint_url;
    std::chrono::milliseconds connect_timeout{15'000};
    std::chrono::milliseconds request_timeout{120'000}; // per attempt
    // Attempts per request, the first included. Connection errors, 429, 5xx and throttling
    // errors are retried after base * 2^retry (capped at max_delay), with full jitter.
    int max_attempts = 8;
    std::chrono::milliseconds retry_base_delay{250};
    std::chrono::milliseconds retry_max_delay{20'000};
};

// The base URL requests to `service` go to.
std::string service_endpoint(const AwsClientOptions& options, std::string_view service);

// One call of one API operation.
struct AwsRequest {
    std::string operation; // for messages: "StartSnapshot", "PutSnapshotBlock (block 7)"
    std::string method = "GET";
    std::string path = "/";          // below the endpoint, as sent
    std::string query;               // as sent, without '?'
    std::vector<HttpHeader> headers; // besides Host and the ones signing adds
    std::string_view body;
    std::optional<std::string> payload_hash; // hex SHA-256 of the body when already known
};

struct AwsResponse {
    long status = 0;
    std::string body;
    std::vector<HttpHeader> headers;
    int attempts = 0;

    // The first header called `name`, any case.
    std::optional<std::string> header(std::string_view name) const;
};

// What an AWS error response says: JSON {"__type"|"code", "message"} plus X-Amzn-ErrorType
// (REST/JSON services such as EBS), or XML <Code>/<Message> (Query services such as EC2).
struct AwsErrorDetails {
    std::string code;
    std::string message;
};
AwsErrorDetails parse_aws_error(const AwsResponse& response);

// The text of the first <tag>...</tag> in an AWS XML response, entities decoded. AWS Query
// responses are flat and regular enough that this is all the XML reading they need.
std::optional<std::string> xml_element_text(std::string_view xml, std::string_view tag);

// A failed call: the message reads "OPERATION failed: HTTP 403 CODE: MESSAGE"; status is 0 when
// no HTTP response arrived at all.
class AwsError : public Error {
  public:
    AwsError(const std::string& message, long status, std::string code)
        : Error(ExitCode::build_failed, message), status_(status), code_(std::move(code)) {}
    long status() const { return status_; }
    const std::string& aws_code() const { return code_; }

  private:
    long status_;
    std::string code_;
};

// One keep-alive connection (a curl easy handle) to one service. Not thread-safe: each thread
// makes its own.
class AwsServiceClient {
  public:
    // Throws a bad_input Error when the endpoint is not an http:// or https:// URL.
    AwsServiceClient(AwsClientOptions options, std::string service);
    ~AwsServiceClient();
    AwsServiceClient(const AwsServiceClient&) = delete;
    AwsServiceClient& operator=(const AwsServiceClient&) = delete;

    const std::string& endpoint() const { return endpoint_; }

    // Signs and sends `request`, retrying what is worth retrying. Returns a 2xx response; throws
    // AwsError otherwise.
    AwsResponse send(const AwsRequest& request);

  private:
    struct Curl;
    AwsClientOptions options_;
    std::string service_;
    std::string endpoint_;    // without a trailing '/'
    std::string host_;        // the Host header: the endpoint's authority
    std::string path_prefix_; // the endpoint's own path, if any
    std::unique_ptr<Curl> curl_;
};

} // namespace edgeforge::cloud
