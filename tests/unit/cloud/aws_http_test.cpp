// Unit tests for cloud/aws_http: endpoints, AWS error bodies, and what a failed call says.
#include <doctest/doctest.h>

#include <string>

#include "cloud/aws_http.h"
#include "support/errors.h"

using namespace edgeforge;
using namespace edgeforge::cloud;

namespace {

AwsClientOptions local_options(std::string endpoint) {
    AwsClientOptions options;
    options.credentials.access_key_id = "AKIDEXAMPLE";
    options.credentials.secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    options.region = "us-east-1";
    options.endpoint_url = std::move(endpoint);
    options.max_attempts = 2;
    options.retry_base_delay = std::chrono::milliseconds(1);
    options.connect_timeout = std::chrono::milliseconds(2000);
    return options;
}

} // namespace

TEST_CASE("aws service endpoints default to SERVICE.REGION.amazonaws.com over https") {
    AwsClientOptions options;
    options.region = "eu-west-1";
    CHECK(service_endpoint(options, "ebs") == "https://ebs.eu-west-1.amazonaws.com");
    CHECK(service_endpoint(options, "ec2") == "https://ec2.eu-west-1.amazonaws.com");
    options.endpoint_url = "http://127.0.0.1:8080//";
    CHECK(service_endpoint(options, "ebs") == "http://127.0.0.1:8080");
}

TEST_CASE("aws endpoints that are not http(s) URLs are bad input") {
    CHECK(testing::error_of([] { AwsServiceClient client(local_options("ftp://host"), "ebs"); },
                            ExitCode::bad_input) ==
          "AWS endpoint 'ftp://host' is not an http:// or https:// URL");
    CHECK(testing::error_of([] { AwsServiceClient client(local_options("127.0.0.1:80"), "ebs"); },
                            ExitCode::bad_input) ==
          "AWS endpoint '127.0.0.1:80' is not an http:// or https:// URL");
    CHECK(testing::error_of([] { AwsServiceClient client(local_options("https:///x"), "ebs"); },
                            ExitCode::bad_input) == "AWS endpoint 'https:///x' has no usable host");
}

TEST_CASE("aws error bodies: JSON with X-Amzn-ErrorType, __type, EC2 XML, anything else") {
    AwsResponse response;
    response.status = 400;
    response.body = R"({"message":"Checksum mismatch","Reason":"INVALID_CHECKSUM"})";
    response.headers = {
        {"X-Amzn-ErrorType", "ValidationException:http://internal.amazon.com/coral/com.amazon/"}};
    auto details = parse_aws_error(response);
    CHECK(details.code == "ValidationException");
    CHECK(details.message == "Checksum mismatch");

    response.headers.clear();
    response.body = R"({"__type":"com.amazonaws.ebs#AccessDeniedException","Message":"no"})";
    details = parse_aws_error(response);
    CHECK(details.code == "AccessDeniedException");
    CHECK(details.message == "no");

    response.body = "<?xml version=\"1.0\"?>\n<Response><Errors><Error><Code>AuthFailure</Code>"
                    "<Message>AWS was not able to validate the provided access credentials &amp; "
                    "&lt;more&gt;</Message></Error></Errors><RequestID>x</RequestID></Response>";
    details = parse_aws_error(response);
    CHECK(details.code == "AuthFailure");
    CHECK(details.message ==
          "AWS was not able to validate the provided access credentials & <more>");

    response.body = "Bad Gateway\r\n\tfrom a proxy";
    details = parse_aws_error(response);
    CHECK(details.code.empty());
    CHECK(details.message == "Bad Gateway from a proxy");
}

TEST_CASE("aws xml_element_text reads the first element, trimmed and unescaped") {
    const std::string xml = "<a><imageId> ami-1 </imageId><imageId>ami-2</imageId><m>x&quot;"
                            "</m></a>";
    CHECK(xml_element_text(xml, "imageId") == "ami-1");
    CHECK(xml_element_text(xml, "m") == "x\"");
    CHECK_FALSE(xml_element_text(xml, "missing").has_value());
}

TEST_CASE("aws calls that cannot connect are retried, then fail naming the call") {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    AwsServiceClient client(local_options("http://127.0.0.1:1"), "ebs");
    AwsRequest request;
    request.operation = "EBS StartSnapshot";
    request.method = "POST";
    request.path = "/snapshots";
    try {
        client.send(request);
        FAIL("expected an AwsError");
    } catch (const AwsError& error) {
        const std::string message = error.what();
        CHECK(message.starts_with("EBS StartSnapshot failed after 2 attempts: "));
        CHECK(message.find("onnect") != std::string::npos);
        CHECK(error.status() == 0);
        CHECK(error.code() == ExitCode::build_failed);
        CHECK(message.find("wJalrXUtnFEMI") == std::string::npos);
    }
}
