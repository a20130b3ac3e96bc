// AWS Signature Version 4: canonical request, string to sign, signing key and Authorization header.
#include "cloud/sigv4.h"

#include <algorithm>
#include <ctime>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/digest.h"
#include "util/strings.h"

namespace edgeforge::cloud {
namespace {

constexpr std::string_view k_algorithm = "AWS4-HMAC-SHA256";

bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// Decodes %XX escapes; anything else (including a stray '%') stays as it is, so a query that was
// never encoded comes out unchanged.
std::string percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
            hex_value(text[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
            i += 2;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

HttpHeader* find_header(std::vector<HttpHeader>& headers, std::string_view name) {
    const auto it = std::find_if(headers.begin(), headers.end(), [&](const HttpHeader& header) {
        return util::iequals(util::trim(header.name), name);
    });
    return it == headers.end() ? nullptr : &*it;
}

// Sets the first header called `name` (any case) to `value`, or appends it.
void set_header(std::vector<HttpHeader>& headers, std::string_view name, std::string value) {
    if (HttpHeader* header = find_header(headers, name)) {
        header->value = std::move(value);
    } else {
        headers.push_back(HttpHeader{std::string(name), std::move(value)});
    }
}

} // namespace

std::string uri_encode(std::string_view text, SlashEncoding slash) {
    static constexpr char k_digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (is_unreserved(byte) || (c == '/' && slash == SlashEncoding::keep)) {
            out.push_back(c);
        } else {
            out.push_back('%');
            out.push_back(k_digits[byte >> 4]);
            out.push_back(k_digits[byte & 0x0f]);
        }
    }
    return out;
}

std::string canonical_uri(std::string_view path, PathCanonicalization mode) {
    if (path.empty()) {
        return "/";
    }
    if (mode == PathCanonicalization::as_sent) {
        return std::string(path);
    }
    // RFC 3986 remove_dot_segments, with empty segments ("//") dropped as well.
    std::vector<std::string_view> segments;
    std::size_t start = 0;
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        const auto segment = path.substr(start, end - start);
        if (segment == "..") {
            if (!segments.empty()) {
                segments.pop_back();
            }
        } else if (!segment.empty() && segment != ".") {
            segments.push_back(segment);
        }
        start = end + 1;
    }
    const bool directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..") ||
                           path == "." || path == "..";
    std::string out;
    for (const auto segment : segments) {
        out += '/';
        out += uri_encode(segment, SlashEncoding::encode);
    }
    if (out.empty() || directory) {
        out += '/';
    }
    return out;
}

std::string canonical_query_string(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& piece : util::split(query, '&')) {
        if (piece.empty()) {
            continue;
        }
        const auto equals = piece.find('=');
        const std::string_view name = std::string_view(piece).substr(0, equals);
        const std::string_view value = equals == std::string::npos
                                           ? std::string_view()
                                           : std::string_view(piece).substr(equals + 1);
        pairs.emplace_back(uri_encode(percent_decode(name), SlashEncoding::encode),
                           uri_encode(percent_decode(value), SlashEncoding::encode));
    }
    std::sort(pairs.begin(), pairs.end());
    std::string out;
    for (const auto& [name, value] : pairs) {
        if (!out.empty()) {
            out += '&';
        }
        out += name;
        out += '=';
        out += value;
    }
    return out;
}

std::string canonical_header_value(std::string_view value) {
    value = util::trim(value);
    std::string out;
    out.reserve(value.size());
    for (const char c : value) {
        if (c == ' ' && !out.empty() && out.back() == ' ') {
            continue;
        }
        out.push_back(c);
    }
    return out;
}

std::string format_amz_date(std::chrono::system_clock::time_point time) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(time);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char buffer[32];
    const std::size_t length = std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &utc);
    return std::string(buffer, length);
}

std::array<std::uint8_t, 32> hmac_sha256(std::string_view key, std::string_view data) {
    std::array<std::uint8_t, 32> out{};
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(),
             &length) == nullptr ||
        length != out.size()) {
        throw std::runtime_error("OpenSSL: HMAC-SHA256 failed");
    }
    return out;
}

std::array<std::uint8_t, 32> derive_signing_key(std::string_view secret_access_key,
                                                std::string_view date, std::string_view region,
                                                std::string_view service) {
    const auto as_key = [](const std::array<std::uint8_t, 32>& bytes) {
        return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    };
    const std::string secret = "AWS4" + std::string(secret_access_key);
    const auto date_key = hmac_sha256(secret, date);
    const auto region_key = hmac_sha256(as_key(date_key), region);
    const auto service_key = hmac_sha256(as_key(region_key), service);
    return hmac_sha256(as_key(service_key), "aws4_request");
}

SignedRequest sign_request(const HttpRequest& request, const SigningParams& params) {
    const AwsCredentials& credentials = params.credentials;
    if (credentials.access_key_id.empty() || credentials.secret_access_key.empty()) {
        throw std::invalid_argument("sign_request: empty credentials");
    }
    if (params.region.empty() || params.service.empty()) {
        throw std::invalid_argument("sign_request: empty region or service");
    }

    SignedRequest signed_request;
    auto& headers = signed_request.headers;
    for (const auto& header : request.headers) {
        if (!util::iequals(util::trim(header.name), "authorization")) {
            headers.push_back(header);
        }
    }
    if (find_header(headers, "host") == nullptr) {
        throw std::invalid_argument("sign_request: the request has no Host header");
    }

    const std::string amz_date = format_amz_date(params.time);
    set_header(headers, "X-Amz-Date", amz_date);
    const bool token_signed = !credentials.session_token.empty() &&
                              params.session_token == SessionTokenPlacement::signed_header;
    if (token_signed) {
        set_header(headers, "X-Amz-Security-Token", credentials.session_token);
    }
    const std::string payload_hash =
        params.payload_hash ? *params.payload_hash : util::sha256_hex(request.body);
    if (params.content_sha256 == ContentSha256Header::include) {
        set_header(headers, "X-Amz-Content-Sha256", payload_hash);
    }

    // Lower-case names sorted, values of repeated headers joined with commas in their order.
    std::vector<std::pair<std::string, std::string>> canonical;
    canonical.reserve(headers.size());
    for (const auto& header : headers) {
        canonical.emplace_back(util::to_lower(util::trim(header.name)),
                               canonical_header_value(header.value));
    }
    std::stable_sort(canonical.begin(), canonical.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::string canonical_headers;
    std::string signed_headers;
    for (std::size_t i = 0; i < canonical.size(); ++i) {
        if (i != 0 && canonical[i].first == canonical[i - 1].first) {
            canonical_headers.back() = ','; // replaces the previous line's '\n'
        } else {
            if (!signed_headers.empty()) {
                signed_headers += ';';
            }
            signed_headers += canonical[i].first;
            canonical_headers += canonical[i].first;
            canonical_headers += ':';
        }
        canonical_headers += canonical[i].second;
        canonical_headers += '\n';
    }

    signed_request.canonical_request =
        request.method + '\n' + canonical_uri(request.path, params.path) + '\n' +
        canonical_query_string(request.query) + '\n' + canonical_headers + '\n' + signed_headers +
        '\n' + payload_hash;
    const std::string date = amz_date.substr(0, 8);
    const std::string scope = date + '/' + params.region + '/' + params.service + "/aws4_request";
    signed_request.string_to_sign = std::string(k_algorithm) + '\n' + amz_date + '\n' + scope +
                                    '\n' + util::sha256_hex(signed_request.canonical_request);
    const auto key =
        derive_signing_key(credentials.secret_access_key, date, params.region, params.service);
    const auto signature =
        hmac_sha256(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()),
                    signed_request.string_to_sign);
    signed_request.signature = util::to_hex(signature.data(), signature.size());
    signed_request.authorization =
        std::string(k_algorithm) + " Credential=" + credentials.access_key_id + '/' + scope +
        ", SignedHeaders=" + signed_headers + ", Signature=" + signed_request.signature;

    if (!credentials.session_token.empty() && !token_signed) {
        set_header(headers, "X-Amz-Security-Token", credentials.session_token);
    }
    headers.push_back(HttpHeader{"Authorization", signed_request.authorization});
    return signed_request;
}

} // namespace edgeforge::cloud
