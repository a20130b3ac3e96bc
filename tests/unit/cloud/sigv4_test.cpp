// Unit tests for cloud/sigv4: every committed vector of the AWS SigV4 test suite, and the pieces.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "cloud/sigv4.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge::cloud;
namespace stdfs = std::filesystem;

namespace {

// The suite's fixed inputs (see tests/unit/data/aws-sig-v4-test-suite/README.md).
const std::string k_suite_token =
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPf"
    "IeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7"
    "WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8"
    "FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

SigningParams suite_params() {
    using namespace std::chrono;
    SigningParams params;
    params.credentials.access_key_id = "AKIDEXAMPLE";
    params.credentials.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    params.region = "us-east-1";
    params.service = "service";
    params.time = sys_days{year{2015} / August / 30} + hours{12} + minutes{36};
    return params;
}

stdfs::path suite_dir() {
    return stdfs::path(EDGEFORGE_TEST_DATA) / "aws-sig-v4-test-suite";
}

// A .req file: "METHOD TARGET HTTP/1.1", "Name:value" lines (an indented line continues the
// previous header with one more value), an empty line, the body.
struct SuiteRequest {
    HttpRequest request;
    std::string head; // the request line and header lines as written
    std::string body;
};

SuiteRequest parse_suite_request(const std::string& text) {
    SuiteRequest out;
    const auto blank = text.find("\n\n");
    out.head = text.substr(0, blank);
    out.body = blank == std::string::npos ? std::string() : text.substr(blank + 2);
    std::vector<std::string> lines;
    for (std::size_t start = 0; start <= out.head.size();) {
        const auto end = std::min(out.head.find('\n', start), out.head.size());
        lines.push_back(out.head.substr(start, end - start));
        start = end + 1;
    }
    REQUIRE_FALSE(lines.empty());
    // The target may contain spaces ("/example space/"): it runs from the first to the last space.
    const std::string& request_line = lines.front();
    const auto first_space = request_line.find(' ');
    const auto last_space = request_line.rfind(' ');
    REQUIRE(first_space < last_space);
    out.request.method = request_line.substr(0, first_space);
    const std::string target = request_line.substr(first_space + 1, last_space - first_space - 1);
    const auto question = target.find('?');
    out.request.path = target.substr(0, question);
    out.request.query = question == std::string::npos ? "" : target.substr(question + 1);
    for (std::size_t i = 1; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
            REQUIRE_FALSE(out.request.headers.empty());
            out.request.headers.push_back(HttpHeader{out.request.headers.back().name, line});
            continue;
        }
        const auto colon = line.find(':');
        REQUIRE(colon != std::string::npos);
        out.request.headers.push_back(HttpHeader{line.substr(0, colon), line.substr(colon + 1)});
    }
    return out;
}

// The signed request in the suite's .sreq layout: the original lines, the headers signing added,
// "Authorization: ..." and the body.
std::string render_signed_request(const SuiteRequest& original,
                                  const SignedRequest& signed_request) {
    std::string out = original.head;
    for (std::size_t i = original.request.headers.size(); i < signed_request.headers.size(); ++i) {
        const auto& header = signed_request.headers[i];
        out += '\n' + header.name + (header.name == "Authorization" ? ": " : ":") + header.value;
    }
    if (!original.body.empty()) {
        out += "\n\n" + original.body;
    }
    return out;
}

} // namespace

TEST_CASE("sigv4 reproduces every committed vector of the AWS SigV4 test suite exactly") {
    std::vector<stdfs::path> requests;
    for (const auto& entry : stdfs::recursive_directory_iterator(suite_dir())) {
        if (entry.path().extension() == ".req") {
            requests.push_back(entry.path());
        }
    }
    std::sort(requests.begin(), requests.end());
    // All 31 cases of the 2015-08-30 suite are committed; a lost file must fail, not shrink the
    // test.
    CHECK(requests.size() == 31);

    for (const auto& req_file : requests) {
        const std::string name = req_file.stem().string();
        CAPTURE(name);
        const auto expected = [&](const char* extension) {
            auto file = req_file;
            return util::read_file(file.replace_extension(extension));
        };
        const SuiteRequest suite = parse_suite_request(util::read_file(req_file));
        HttpRequest request = suite.request;
        request.body = suite.body;
        SigningParams params = suite_params();
        if (req_file.parent_path().parent_path().filename() == "post-sts-token") {
            params.credentials.session_token = k_suite_token;
            params.session_token = name == "post-sts-header-after"
                                       ? SessionTokenPlacement::after_signing
                                       : SessionTokenPlacement::signed_header;
        }
        const SignedRequest signed_request = sign_request(request, params);
        CHECK(signed_request.canonical_request == expected(".creq"));
        CHECK(signed_request.string_to_sign == expected(".sts"));
        CHECK(signed_request.authorization == expected(".authz"));
        CHECK(render_signed_request(suite, signed_request) == expected(".sreq"));
    }
}

TEST_CASE("sigv4 signs the session token it adds itself like the suite's header-before case") {
    const auto dir = suite_dir() / "post-sts-token" / "post-sts-header-before";
    SuiteRequest suite = parse_suite_request(util::read_file(dir / "post-sts-header-before.req"));
    REQUIRE(suite.request.headers.back().name == "X-Amz-Security-Token");
    suite.request.headers.pop_back();
    SigningParams params = suite_params();
    params.credentials.session_token = k_suite_token;
    const SignedRequest signed_request = sign_request(suite.request, params);
    CHECK(signed_request.canonical_request == util::read_file(dir / "post-sts-header-before.creq"));
    CHECK(signed_request.authorization == util::read_file(dir / "post-sts-header-before.authz"));
    REQUIRE(signed_request.headers.size() == 4);
    CHECK(signed_request.headers[2].name == "X-Amz-Security-Token");
    CHECK(signed_request.headers[2].value == k_suite_token);
}

TEST_CASE("sigv4 signing key derivation matches the AWS documentation example") {
    const auto key = derive_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830",
                                        "us-east-1", "iam");
    CHECK(util::to_hex(key.data(), key.size()) ==
          "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
}

TEST_CASE("sigv4 explicit payload hash and X-Amz-Content-Sha256 header") {
    HttpRequest request;
    request.method = "PUT";
    request.path = "/snapshots/snap-1/blocks/7";
    request.headers = {{"Host", "ebs.eu-west-1.amazonaws.com"}};
    request.body = "ignored when a payload hash is given";
    SigningParams params = suite_params();
    params.payload_hash = "UNSIGNED-PAYLOAD";
    params.content_sha256 = ContentSha256Header::include;
    const auto signed_request = sign_request(request, params);
    CHECK(signed_request.canonical_request ==
          "PUT\n/snapshots/snap-1/blocks/7\n\n"
          "host:ebs.eu-west-1.amazonaws.com\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n"
          "x-amz-date:20150830T123600Z\n\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD");
    REQUIRE(signed_request.headers.size() == 4);
    CHECK(signed_request.headers[1].name == "X-Amz-Date");
    CHECK(signed_request.headers[2].name == "X-Amz-Content-Sha256");
    CHECK(signed_request.headers[3].name == "Authorization");

    // Without an explicit hash the body is hashed.
    params.payload_hash.reset();
    params.content_sha256 = ContentSha256Header::omit;
    CHECK(
        sign_request(request, params).canonical_request.ends_with(util::sha256_hex(request.body)));
}

TEST_CASE("sigv4 replaces a stale Authorization header and requires Host") {
    HttpRequest request;
    request.headers = {{"Host", "example.amazonaws.com"}, {"Authorization", "old"}};
    const auto signed_request = sign_request(request, suite_params());
    CHECK(std::count_if(signed_request.headers.begin(), signed_request.headers.end(),
                        [](const HttpHeader& header) { return header.name == "Authorization"; }) ==
          1);
    CHECK(signed_request.headers.back().value == signed_request.authorization);

    request.headers = {{"X-Amz-Date", "20150830T123600Z"}};
    CHECK_THROWS_AS(sign_request(request, suite_params()), std::invalid_argument);
    request.headers = {{"Host", "example.amazonaws.com"}};
    SigningParams no_secret = suite_params();
    no_secret.credentials.secret_access_key.clear();
    CHECK_THROWS_AS(sign_request(request, no_secret), std::invalid_argument);
}

TEST_CASE("sigv4 path canonicalisation: dot segments, repeated slashes, double encoding") {
    const auto normalized = [](std::string_view path) {
        return canonical_uri(path, PathCanonicalization::normalize_and_encode);
    };
    CHECK(normalized("") == "/");
    CHECK(normalized("/a/b/../c/./d") == "/a/c/d");
    CHECK(normalized("/a/b/..") == "/a/");
    CHECK(normalized("/../..") == "/");
    CHECK(normalized("/a//b//") == "/a/b/");
    // A path that is already encoded on the wire is encoded once more for every service but S3.
    CHECK(normalized("/a%20b") == "/a%2520b");
    CHECK(normalized("/a b+c=d") == "/a%20b%2Bc%3Dd");
    CHECK(canonical_uri("/a%20b//c", PathCanonicalization::as_sent) == "/a%20b//c");
}

TEST_CASE("sigv4 query canonicalisation: decoded once, encoded once, sorted") {
    CHECK(canonical_query_string("") == "");
    CHECK(canonical_query_string("b=2&a=1&a=0") == "a=0&a=1&b=2");
    CHECK(canonical_query_string("flag&x=") == "flag=&x=");
    CHECK(canonical_query_string("k=a%2fb&s=a b") == "k=a%2Fb&s=a%20b");
    CHECK(canonical_query_string("k=%zz&&") == "k=%25zz");
    CHECK(uri_encode("a/b ~", SlashEncoding::keep) == "a/b%20~");
    CHECK(uri_encode("a/b ~", SlashEncoding::encode) == "a%2Fb%20~");
}

TEST_CASE("sigv4 header values are trimmed and inner runs of spaces collapsed") {
    CHECK(canonical_header_value("  a   b  c ") == "a b c");
    CHECK(canonical_header_value("\t\"x  y\"\t") == "\"x y\"");
    CHECK(canonical_header_value("") == "");
}
