// AWS Signature Version 4: canonical request, string to sign, signing key and Authorization header.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloud/aws_credentials.h"

namespace edgeforge::cloud {

struct HttpHeader {
    std::string name;
    std::string value;
};

// A request as it will go on the wire, before signing.
struct HttpRequest {
    std::string method = "GET";
    std::string path = "/";          // the request path as sent, without the query
    std::string query;               // the query string as sent, without '?'
    std::vector<HttpHeader> headers; // every header to sign; must include Host
    std::string_view body;           // hashed unless SigningParams::payload_hash is given
};

// Every service but S3 normalises the path (RFC 3986 dot segments, repeated slashes) and
// URI-encodes the path as sent once more ("double encoding"); S3 signs the path as sent.
enum class PathCanonicalization { normalize_and_encode, as_sent };

// Most services sign X-Amz-Security-Token; a few want it added after signing.
enum class SessionTokenPlacement { signed_header, after_signing };

// S3 requires an X-Amz-Content-Sha256 header carrying the payload hash; other services accept it.
enum class ContentSha256Header { omit, include };

struct SigningParams {
    AwsCredentials credentials;
    std::string region;  // "us-east-1"
    std::string service; // "ebs", "ec2"
    std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
    // Hex SHA-256 of the body, or a marker such as "UNSIGNED-PAYLOAD"; computed when not given.
    std::optional<std::string> payload_hash;
    PathCanonicalization path = PathCanonicalization::normalize_and_encode;
    SessionTokenPlacement session_token = SessionTokenPlacement::signed_header;
    ContentSha256Header content_sha256 = ContentSha256Header::omit;
};

struct SignedRequest {
    // The request's headers in their order (X-Amz-Date updated in place), then the headers signing
    // added (X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256 when missing), Authorization
    // last. Send exactly these.
    std::vector<HttpHeader> headers;
    std::string canonical_request;
    std::string string_to_sign;
    std::string signature;     // lower-case hex
    std::string authorization; // the value of the Authorization header
};

// Signs `request`. Throws std::invalid_argument when it has no Host header or the credentials or
// scope are empty (programming errors, not user input).
SignedRequest sign_request(const HttpRequest& request, const SigningParams& params);

// The pieces, public for tests and for servers that verify signatures.

enum class SlashEncoding { keep, encode };
// RFC 3986 percent-encoding of everything but A-Z a-z 0-9 - . _ ~ (and '/' when kept), upper-case
// hex, UTF-8 bytes as they are.
std::string uri_encode(std::string_view text, SlashEncoding slash);
std::string canonical_uri(std::string_view path, PathCanonicalization mode);
// Pairs decoded and re-encoded once, sorted by name then value: "a=1&b=&c=3".
std::string canonical_query_string(std::string_view query);
// Trimmed, runs of spaces collapsed to one.
std::string canonical_header_value(std::string_view value);
// "20150830T123600Z"
std::string format_amz_date(std::chrono::system_clock::time_point time);
std::array<std::uint8_t, 32> hmac_sha256(std::string_view key, std::string_view data);
// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
std::array<std::uint8_t, 32> derive_signing_key(std::string_view secret_access_key,
                                                std::string_view date, std::string_view region,
                                                std::string_view service);

} // namespace edgeforge::cloud
