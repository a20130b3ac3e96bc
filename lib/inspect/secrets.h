// Hides credentials (tokens, passwords, keys) in the user-data that inspect reports.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace YAML {
class Node;
}

namespace edgeforge::inspect {

// Keys whose values are credentials (edgeHostToken, passwd, ...): never printed.
bool looks_secret(std::string_view key);

// Hides the value of a `key: value` line whose key looks like a secret ("passwd: <hidden>").
std::string mask_secret(const std::string& line);

// The scalars under a YAML map as dotted keys ("network.hostname"), secret values hidden and
// sequences as "[N items]".
nlohmann::json masked_settings(const YAML::Node& node);

} // namespace edgeforge::inspect
