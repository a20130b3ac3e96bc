#include "oci/descriptor.h"

#include <algorithm>

#include <fmt/format.h>

namespace edgeforge::oci {

bool is_sha256_digest(std::string_view digest) {
    return digest.size() == 71 && digest.starts_with("sha256:") &&
           std::all_of(digest.begin() + 7, digest.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string Platform::str() const {
    std::string text = (os.empty() ? std::string("linux") : os) + "/" + architecture;
    if (!variant.empty()) {
        text += "/" + variant;
    }
    return text;
}

std::string Descriptor::ref_name() const {
    const auto found = annotations.find(std::string(k_ref_name_annotation));
    return found == annotations.end() ? std::string() : found->second;
}

namespace {

// A string member: absent or null gives "", anything but a string is a problem.
bool string_member(const nlohmann::json& object, std::string_view key, std::string& out,
                   std::string& problem) {
    const auto found = object.find(key);
    if (found == object.end() || found->is_null()) {
        out.clear();
        return true;
    }
    if (!found->is_string()) {
        problem = fmt::format("'{}' is not a string", key);
        return false;
    }
    out = found->get<std::string>();
    return true;
}

} // namespace

DescriptorRead read_descriptor(const nlohmann::json& value, std::string_view what) {
    DescriptorRead read;
    if (!value.is_object()) {
        read.problem = fmt::format("{} is not an object", what);
        return read;
    }
    Descriptor descriptor;
    if (!string_member(value, "mediaType", descriptor.media_type, read.problem)) {
        return read;
    }
    const auto digest = value.find("digest");
    if (digest == value.end() || digest->is_null()) {
        read.problem = "'digest' is missing";
        return read;
    }
    if (!string_member(value, "digest", descriptor.digest, read.problem)) {
        return read;
    }
    if (!is_sha256_digest(descriptor.digest)) {
        read.problem = descriptor.digest.find(':') != std::string::npos &&
                               !descriptor.digest.starts_with("sha256:")
                           ? fmt::format("{} has the digest '{}'; edgeforge supports sha256 "
                                         "digests only",
                                         what, descriptor.digest)
                           : fmt::format("{} has an invalid digest '{}'", what, descriptor.digest);
        return read;
    }
    const auto size = value.find("size");
    if (size == value.end() || !size->is_number_integer() || size->get<std::int64_t>() < 0) {
        read.problem = fmt::format("{} has no valid 'size'", what);
        return read;
    }
    descriptor.size = size->get<std::uint64_t>();
    if (const auto platform = value.find("platform");
        platform != value.end() && platform->is_object()) {
        if (!string_member(*platform, "os", descriptor.platform.os, read.problem) ||
            !string_member(*platform, "architecture", descriptor.platform.architecture,
                           read.problem) ||
            !string_member(*platform, "variant", descriptor.platform.variant, read.problem)) {
            return read;
        }
        descriptor.platform_json = *platform;
    }
    if (const auto annotations = value.find("annotations");
        annotations != value.end() && annotations->is_object()) {
        for (const auto& [key, annotation] : annotations->items()) {
            if (annotation.is_string()) {
                descriptor.annotations[key] = annotation.get<std::string>();
            }
        }
    }
    read.descriptor = std::move(descriptor);
    return read;
}

nlohmann::json descriptor_json(const Descriptor& descriptor) {
    nlohmann::json value = {{"mediaType", descriptor.media_type},
                            {"digest", descriptor.digest},
                            {"size", descriptor.size}};
    if (!descriptor.platform_json.is_null()) {
        value["platform"] = descriptor.platform_json;
    }
    return value;
}

} // namespace edgeforge::oci
