// Image references in the containers-transports syntax users know from skopeo.
#include "oci/reference.h"

#include <array>
#include <regex>
#include <utility>

#include "base/error.h"
#include "util/strings.h"

namespace edgeforge::oci {
namespace {

struct TransportSpelling {
    std::string_view prefix;
    Transport transport;
};

constexpr std::array<TransportSpelling, 6> k_transports{{
    {"docker://", Transport::registry},
    {"oci-archive:", Transport::oci_archive},
    {"docker-archive:", Transport::docker_archive},
    {"oci:", Transport::oci_layout},
    {"dir:", Transport::directory},
    {"tar:", Transport::tarball},
}};

constexpr std::string_view k_default_registry = "docker.io";

// The distribution reference grammar: lowercase path components separated by '/', each made of
// alphanumerics joined by '.', '_', '__' or runs of '-'.
const std::regex& component_pattern() {
    static const std::regex pattern("[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*");
    return pattern;
}

const std::regex& tag_pattern() {
    static const std::regex pattern("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    return pattern;
}

const std::regex& digest_pattern() {
    static const std::regex pattern("sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}");
    return pattern;
}

const std::regex& host_pattern() {
    static const std::regex pattern("(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\\.[A-Za-z0-9]("
                                    "?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                                    "(?::[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](?::[0-9]{1,5})?");
    return pattern;
}

[[noreturn]] void fail(std::string_view text, std::string_view why) {
    throw bad_input("invalid image reference '{}': {}\n  accepted forms:\n{}", text, why,
                    reference_forms_help());
}

// Splits "PATH[:TAG]" where a tag is whatever follows the last ':' unless it contains a '/'.
std::pair<std::string, std::string> split_path_and_tag(std::string_view rest) {
    const auto colon = rest.rfind(':');
    if (colon == std::string_view::npos ||
        rest.substr(colon + 1).find('/') != std::string_view::npos) {
        return {std::string(rest), ""};
    }
    return {std::string(rest.substr(0, colon)), std::string(rest.substr(colon + 1))};
}

ImageReference parse_registry(std::string_view original, std::string_view text) {
    ImageReference ref;
    ref.transport = Transport::registry;
    if (text.empty()) {
        fail(original, "the image name is empty");
    }

    const auto at = text.find('@');
    if (at != std::string_view::npos) {
        ref.digest = std::string(text.substr(at + 1));
        text = text.substr(0, at);
        if (!std::regex_match(ref.digest, digest_pattern())) {
            fail(original, "the digest must be sha256: followed by 64 lowercase hex digits");
        }
    }

    const auto last_slash = text.rfind('/');
    const auto last_colon = text.rfind(':');
    if (last_colon != std::string_view::npos &&
        (last_slash == std::string_view::npos || last_colon > last_slash)) {
        ref.tag = std::string(text.substr(last_colon + 1));
        text = text.substr(0, last_colon);
        if (!std::regex_match(ref.tag, tag_pattern())) {
            fail(original, fmt::format("'{}' is not a valid tag (letters, digits, '_', '.', '-'; "
                                       "at most 128 characters)",
                                       ref.tag));
        }
    }

    std::string_view path = text;
    const auto first_slash = text.find('/');
    if (first_slash != std::string_view::npos) {
        const auto first = text.substr(0, first_slash);
        if (first.find('.') != std::string_view::npos ||
            first.find(':') != std::string_view::npos || first == "localhost") {
            ref.registry = std::string(first);
            path = text.substr(first_slash + 1);
            if (!std::regex_match(ref.registry, host_pattern())) {
                fail(original, fmt::format("'{}' is not a valid registry host", ref.registry));
            }
        }
    }
    if (ref.registry.empty() || ref.registry == "index.docker.io" ||
        ref.registry == "registry-1.docker.io") {
        ref.registry = std::string(k_default_registry);
    }
    if (path.empty()) {
        fail(original, "the repository name is empty");
    }
    if (ref.registry == k_default_registry && path.find('/') == std::string_view::npos) {
        ref.repository = "library/" + std::string(path);
    } else {
        ref.repository = std::string(path);
    }
    for (const auto& component : util::split(ref.repository, '/')) {
        if (!std::regex_match(component, component_pattern())) {
            if (util::to_lower(component) != component) {
                fail(original, "repository names must be lowercase");
            }
            fail(original, fmt::format("'{}' is not a valid repository path component", component));
        }
    }
    if (ref.repository.size() > 255) {
        fail(original, "the repository name is longer than 255 characters");
    }
    if (ref.tag.empty() && ref.digest.empty()) {
        ref.tag = "latest";
        ref.tag_implied = true;
    }
    return ref;
}

} // namespace

std::string_view transport_prefix(Transport transport) {
    for (const auto& spelling : k_transports) {
        if (spelling.transport == transport) {
            return spelling.prefix;
        }
    }
    return "";
}

std::string_view reference_forms_help() {
    return "    oci:DIR[:TAG]                      OCI image layout directory\n"
           "    oci-archive:FILE[:TAG]             tar archive of an OCI image layout\n"
           "    docker-archive:FILE                output of `docker save`\n"
           "    dir:PATH                           root filesystem directory\n"
           "    tar:FILE                           root filesystem tarball (gzip/zstd/xz/plain)\n"
           "    docker://HOST/REPO[:TAG|@DIGEST]   registry image (docker:// may be omitted)";
}

std::string ImageReference::str() const {
    if (transport != Transport::registry) {
        std::string text = std::string(transport_prefix(transport)) + path;
        if (!tag.empty()) {
            text += ":" + tag;
        }
        return text;
    }
    std::string text = "docker://" + registry + "/" + repository;
    if (!tag.empty()) {
        text += ":" + tag;
    }
    if (!digest.empty()) {
        text += "@" + digest;
    }
    return text;
}

std::string ImageReference::api_host() const {
    return registry == k_default_registry ? "registry-1.docker.io" : registry;
}

ImageReference parse_reference(std::string_view text) {
    const std::string_view original = text;
    text = util::trim(text);
    if (text.empty()) {
        fail(original, "it is empty");
    }
    for (const auto& spelling : k_transports) {
        if (!text.starts_with(spelling.prefix)) {
            continue;
        }
        const auto rest = text.substr(spelling.prefix.size());
        if (spelling.transport == Transport::registry) {
            return parse_registry(original, rest);
        }
        ImageReference ref;
        ref.transport = spelling.transport;
        if (spelling.transport == Transport::oci_layout ||
            spelling.transport == Transport::oci_archive) {
            std::tie(ref.path, ref.tag) = split_path_and_tag(rest);
            if (!ref.tag.empty() && !std::regex_match(ref.tag, tag_pattern())) {
                fail(original, fmt::format("'{}' is not a valid tag", ref.tag));
            }
        } else {
            ref.path = std::string(rest);
        }
        if (ref.path.empty()) {
            fail(original, fmt::format("'{}' needs a path after the colon", spelling.prefix));
        }
        return ref;
    }
    // "foo:/path" or "foo:bar/baz": an unknown transport, unless it is a host:port/repo reference
    // or a name:tag reference.
    const auto colon = text.find(':');
    const auto slash = text.find('/');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon < slash)) {
        const auto scheme = text.substr(0, colon);
        const auto after = text.substr(colon + 1);
        const bool looks_like_port = !after.empty() &&
                                     std::isdigit(static_cast<unsigned char>(after[0])) &&
                                     after.find('/') != std::string_view::npos;
        const bool looks_like_tag = slash == std::string_view::npos;
        if (!looks_like_port && !looks_like_tag) {
            fail(original, fmt::format("unknown transport '{}:'", scheme));
        }
    }
    return parse_registry(original, text);
}

} // namespace edgeforge::oci
