// Unit tests for oci/reference: every transport, docker.io normalisation, every error.
#include <doctest/doctest.h>

#include "base/error.h"
#include "oci/reference.h"
#include "support/errors.h"

#include <string>

using namespace edgeforge;
using namespace edgeforge::oci;

TEST_CASE("local transports") {
    auto ref = parse_reference("oci:/images/base:v1");
    CHECK(ref.transport == Transport::oci_layout);
    CHECK(ref.path == "/images/base");
    CHECK(ref.tag == "v1");
    CHECK(ref.str() == "oci:/images/base:v1");

    ref = parse_reference("oci:./relative/dir");
    CHECK(ref.path == "./relative/dir");
    CHECK(ref.tag.empty());

    ref = parse_reference("oci:/a:b/c"); // a colon inside the path is not a tag
    CHECK(ref.path == "/a:b/c");
    CHECK(ref.tag.empty());

    ref = parse_reference("oci-archive:/tmp/img.tar:latest");
    CHECK(ref.transport == Transport::oci_archive);
    CHECK(ref.path == "/tmp/img.tar");
    CHECK(ref.tag == "latest");

    ref = parse_reference("docker-archive:/tmp/saved.tar");
    CHECK(ref.transport == Transport::docker_archive);
    CHECK(ref.path == "/tmp/saved.tar");

    ref = parse_reference("dir:/srv/rootfs");
    CHECK(ref.transport == Transport::directory);
    CHECK(ref.path == "/srv/rootfs");

    ref = parse_reference("tar:rootfs.tar.zst");
    CHECK(ref.transport == Transport::tarball);
    CHECK(ref.path == "rootfs.tar.zst");
    CHECK_FALSE(ref.is_registry());
}

TEST_CASE("registry references and docker.io normalisation") {
    auto ref = parse_reference("alpine");
    CHECK(ref.registry == "docker.io");
    CHECK(ref.repository == "library/alpine");
    CHECK(ref.tag == "latest");
    CHECK(ref.api_host() == "registry-1.docker.io");
    CHECK(ref.str() == "docker://docker.io/library/alpine:latest");

    ref = parse_reference("docker://index.docker.io/library/ubuntu:22.04");
    CHECK(ref.registry == "docker.io");
    CHECK(ref.repository == "library/ubuntu");
    CHECK(ref.tag == "22.04");

    ref = parse_reference("spectrocloud/stylus:v4.5.0");
    CHECK(ref.registry == "docker.io");
    CHECK(ref.repository == "spectrocloud/stylus");

    ref = parse_reference("localhost:5000/edge/base:v1");
    CHECK(ref.registry == "localhost:5000");
    CHECK(ref.repository == "edge/base");
    CHECK(ref.tag == "v1");
    CHECK(ref.api_host() == "localhost:5000");

    ref = parse_reference("127.0.0.1:5000/base");
    CHECK(ref.registry == "127.0.0.1:5000");
    CHECK(ref.tag == "latest");

    ref = parse_reference("localhost/base");
    CHECK(ref.registry == "localhost");

    const std::string digest = "sha256:" + std::string(64, 'a');
    ref = parse_reference("quay.io/kairos/core@" + digest);
    CHECK(ref.registry == "quay.io");
    CHECK(ref.repository == "kairos/core");
    CHECK(ref.digest == digest);
    CHECK(ref.tag.empty());
    CHECK(ref.str() == "docker://quay.io/kairos/core@" + digest);

    ref = parse_reference("docker://quay.io/kairos/core:v3.1@" + digest);
    CHECK(ref.tag == "v3.1");
    CHECK(ref.digest == digest);
}

namespace {
std::string first_line_of_error(const std::string& text) {
    try {
        parse_reference(text);
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::bad_input);
        const std::string message = error.what();
        CHECK(message.find("accepted forms:") != std::string::npos);
        return message.substr(0, message.find('\n'));
    }
    FAIL("expected an error for " << text);
    return {};
}
} // namespace

TEST_CASE("every malformed reference gets a clear message") {
    CHECK(first_line_of_error("") == "invalid image reference '': it is empty");
    CHECK(first_line_of_error("oci:") ==
          "invalid image reference 'oci:': 'oci:' needs a path after the colon");
    CHECK(first_line_of_error("dir:") ==
          "invalid image reference 'dir:': 'dir:' needs a path after the colon");
    CHECK(first_line_of_error("ocii:/x") ==
          "invalid image reference 'ocii:/x': unknown transport 'ocii:'");
    CHECK(first_line_of_error("docker://") ==
          "invalid image reference 'docker://': the image name is empty");
    CHECK(first_line_of_error("Quay.io/Org/Image") ==
          "invalid image reference 'Quay.io/Org/Image': repository names must be lowercase");
    CHECK(first_line_of_error("quay.io/org/image:bad tag") ==
          "invalid image reference 'quay.io/org/image:bad tag': 'bad tag' is not a valid tag "
          "(letters, digits, '_', '.', '-'; at most 128 characters)");
    CHECK(first_line_of_error("quay.io/org/image@sha256:abc") ==
          "invalid image reference 'quay.io/org/image@sha256:abc': the digest must be sha256: "
          "followed by 64 lowercase hex digits");
    CHECK(first_line_of_error("quay.io/") ==
          "invalid image reference 'quay.io/': the repository name is empty");
    CHECK(first_line_of_error("quay.io/org//image") ==
          "invalid image reference 'quay.io/org//image': '' is not a valid repository path "
          "component");
    CHECK(first_line_of_error("bad_host!:5000/x") ==
          "invalid image reference 'bad_host!:5000/x': 'bad_host!:5000' is not a valid registry "
          "host");
    CHECK(first_line_of_error("oci:/x:bad tag") ==
          "invalid image reference 'oci:/x:bad tag': 'bad tag' is not a valid tag");
}

TEST_CASE("hostile references: long values fail in linear time with a bounded message") {
    const std::string long_component(200'000, 'a');
    const std::string long_tag(200'000, 'b');
    for (const std::string& text :
         {"docker://registry.example.com/" + long_component + ":v1",
          "docker://registry.example.com/edge/os:" + long_tag,
          "docker://" + std::string(100'000, 'h') + ".example.com/edge/os:v1",
          "registry.example.com/" + std::string(100'000, '-') + ":v1",
          "oci:/images/base:" + long_tag, "docker://r.example.com/a/b@sha256:" + long_tag}) {
        try {
            (void)parse_reference(text);
            FAIL("accepted a hostile reference");
        } catch (const Error& error) {
            CHECK(error.code() == ExitCode::bad_input);
            CHECK(std::string(error.what()).size() < 2'000);
        }
    }
    // Within the limits, long but valid names still parse.
    const std::string component(100, 'a');
    CHECK(parse_reference("docker://r.example.com/" + component + "/x__y.z-w:v1").repository ==
          component + "/x__y.z-w");
    CHECK(parse_reference("docker://[::1]:5000/edge/os:v1").registry == "[::1]:5000");
    CHECK_THROWS(parse_reference("docker://r.example.com/a--/b:v1"));
    CHECK_THROWS(parse_reference("docker://r.example.com/a___b:v1"));
    CHECK_THROWS(parse_reference("docker://-r.example.com/a:v1"));
    CHECK_THROWS(parse_reference("docker://r.example.com:123456/a:v1"));
}

TEST_CASE("an OCI reference ending in an empty tag is refused (it would print as another path)") {
    for (const std::string text : {"oci:/images/base:", "oci-archive:base.tar:", "oci:/iM-|::"}) {
        CAPTURE(text);
        CHECK(edgeforge::testing::error_of([&] { oci::parse_reference(text); },
                                           ExitCode::bad_input)
                  .find("the tag after the last ':' is empty") != std::string::npos);
    }
}
