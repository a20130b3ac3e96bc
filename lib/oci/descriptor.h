// OCI content descriptors: the one reader of {mediaType, digest, size, platform, annotations},
// the sha256 digest rule and the annotation names every OCI writer and reader here shares.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace edgeforge::oci {

// The tag of a manifest in an OCI layout's index.json.
inline constexpr std::string_view k_ref_name_annotation = "org.opencontainers.image.ref.name";

// "sha256:" and 64 lowercase hex digits.
bool is_sha256_digest(std::string_view digest);

struct Platform {
    std::string os;
    std::string architecture;
    std::string variant;

    bool empty() const { return architecture.empty(); }
    // "linux/arm64/v8", "linux/amd64"
    std::string str() const;
};

struct Descriptor {
    std::string media_type;
    std::string digest; // "sha256:<hex>"
    std::uint64_t size = 0;
    Platform platform;
    nlohmann::json platform_json; // as written (null when absent): copied whole
    std::map<std::string, std::string> annotations;

    std::string ref_name() const;
};

// A descriptor read from `value`, or why it is not one ("manifests[2] has an invalid digest
// 'sha256:zz'"), naming it as `what`. Only sha256 digests are accepted.
struct DescriptorRead {
    std::optional<Descriptor> descriptor;
    std::string problem;
};
DescriptorRead read_descriptor(const nlohmann::json& value, std::string_view what);

// mediaType, digest, size and the platform as read (no annotations).
nlohmann::json descriptor_json(const Descriptor& descriptor);

} // namespace edgeforge::oci
