// Image references in the containers-transports syntax users know from skopeo.
#include "oci/reference.h"

#include <algorithm>
#include <cctype>

#include <array>
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
// Longer than any path (PATH_MAX 4096) plus a transport and a tag.
constexpr std::size_t k_max_reference_length = 4096 + 256;

// Hand-written, linear-time checks of the distribution reference grammar (std::regex recurses
// per character and overflows the stack on long input).

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
using util::is_alnum;
bool is_hex_lower(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// A path component: lowercase alphanumerics joined by '.', '_', '__' or runs of '-'.
bool valid_component(std::string_view text) {
    std::size_t i = 0;
    const auto run = [&] {
        const std::size_t start = i;
        while (i < text.size() && is_lower_alnum(text[i])) {
            ++i;
        }
        return i > start;
    };
    if (!run()) {
        return false;
    }
    while (i < text.size()) {
        if (text[i] == '.') {
            ++i;
        } else if (text[i] == '_') {
            ++i;
            if (i < text.size() && text[i] == '_') {
                ++i;
            }
        } else if (text[i] == '-') {
            while (i < text.size() && text[i] == '-') {
                ++i;
            }
        } else {
            return false;
        }
        if (!run()) {
            return false;
        }
    }
    return true;
}

// Letters, digits, '_', '.', '-', not starting with '.' or '-', at most 128 characters.
bool valid_tag(std::string_view text) {
    if (text.empty() || text.size() > 128 || !(is_alnum(text[0]) || text[0] == '_')) {
        return false;
    }
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool valid_digest(std::string_view text) {
    const auto hex = [](std::string_view digits, std::size_t length) {
        return digits.size() == length && std::all_of(digits.begin(), digits.end(), is_hex_lower);
    };
    if (text.starts_with("sha256:")) {
        return hex(text.substr(7), 64);
    }
    if (text.starts_with("sha512:")) {
        return hex(text.substr(7), 128);
    }
    return false;
}

bool valid_port(std::string_view text) {
    return !text.empty() && text.size() <= 5 &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// HOST[:PORT]: dot-separated labels of alphanumerics and inner '-', or [IPv6].
bool valid_host(std::string_view text) {
    if (text.empty() || text.size() > 255 + 6) {
        return false;
    }
    std::string_view host = text;
    if (host.front() == '[') {
        const auto close = host.find(']');
        if (close == std::string_view::npos || close == 1) {
            return false;
        }
        const auto inside = host.substr(1, close - 1);
        if (!std::all_of(inside.begin(), inside.end(), [](char c) {
                return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
            })) {
            return false;
        }
        const auto rest = host.substr(close + 1);
        return rest.empty() || (rest.front() == ':' && valid_port(rest.substr(1)));
    }
    if (const auto colon = host.find(':'); colon != std::string_view::npos) {
        if (!valid_port(host.substr(colon + 1))) {
            return false;
        }
        host = host.substr(0, colon);
    }
    for (const auto& label : util::split(host, '.')) {
        if (label.empty() || !is_alnum(label.front()) || !is_alnum(label.back()) ||
            !std::all_of(label.begin(), label.end(),
                         [](char c) { return is_alnum(c) || c == '-'; })) {
            return false;
        }
    }
    return true;
}

[[noreturn]] void fail(std::string_view text, std::string_view why) {
    throw bad_input("invalid image reference '{}': {}\n  accepted forms:\n{}",
                    util::printable_line(text, 200), why, reference_forms_help());
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
        if (!valid_digest(ref.digest)) {
            fail(original, "the digest must be sha256: followed by 64 lowercase hex digits");
        }
    }

    const auto last_slash = text.rfind('/');
    const auto last_colon = text.rfind(':');
    if (last_colon != std::string_view::npos &&
        (last_slash == std::string_view::npos || last_colon > last_slash)) {
        ref.tag = std::string(text.substr(last_colon + 1));
        text = text.substr(0, last_colon);
        if (!valid_tag(ref.tag)) {
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
            if (!valid_host(ref.registry)) {
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
        if (!valid_component(component)) {
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
    if (text.size() > k_max_reference_length) {
        fail(original, fmt::format("it is {} characters long; references are at most {}",
                                   text.size(), k_max_reference_length));
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
            if (ref.tag.empty() && rest.ends_with(':')) {
                // "oci:DIR:" would print as "oci:DIR" and then mean another directory.
                fail(original, "the tag after the last ':' is empty; leave out the ':' or name a "
                               "tag");
            }
            if (!ref.tag.empty() && !valid_tag(ref.tag)) {
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
