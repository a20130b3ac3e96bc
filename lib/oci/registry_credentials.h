// Where registry credentials come from: --creds, docker config.json and credential helpers.
#pragma once

// Internal to lib/oci/registry*.cpp: the public API is oci/registry.h.

#include <string>
#include <string_view>

namespace edgeforge::oci {

inline constexpr std::string_view k_docker_hub = "docker.io";

// The registry an auth file key (or an --insecure-registry entry) names, as references write
// it: "https://index.docker.io/v1/" is "docker.io", "HOST:5000/path" is "host:5000".
std::string normalise_registry_key(std::string_view key);

} // namespace edgeforge::oci
