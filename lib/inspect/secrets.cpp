// Hides credentials (tokens, passwords, keys) in the user-data that inspect reports.
#include "inspect/secrets.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "util/strings.h"

namespace edgeforge::inspect {

bool looks_secret(std::string_view key) {
    const std::string lower = util::to_lower(key);
    for (const char* word : {"token", "password", "passwd", "secret", "key"}) {
        if (lower.find(word) != std::string::npos) {
            return true;
        }
    }
    return false;
}

std::string mask_secret(const std::string& line) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) {
        return line;
    }
    const std::string_view value = util::trim(std::string_view(line).substr(colon + 1));
    if (!value.empty() && looks_secret(line.substr(0, colon))) {
        return line.substr(0, colon + 1) + " <hidden>";
    }
    return line;
}

namespace {

void flatten_site(const YAML::Node& node, const std::string& prefix, nlohmann::json& out) {
    if (node.IsMap()) {
        for (const auto& item : node) {
            const std::string key = item.first.as<std::string>("");
            flatten_site(item.second, prefix.empty() ? key : prefix + "." + key, out);
        }
        return;
    }
    if (node.IsSequence()) {
        out[prefix] = fmt::format("[{} items]", node.size());
        return;
    }
    const std::string value = node.IsScalar() ? node.Scalar() : "";
    const auto dot = prefix.rfind('.');
    const bool secret = looks_secret(dot == std::string::npos ? prefix : prefix.substr(dot + 1));
    out[prefix] = secret && !value.empty() ? "<hidden>" : value;
}

} // namespace

nlohmann::json masked_settings(const YAML::Node& node) {
    nlohmann::json out = nlohmann::json::object();
    flatten_site(node, "", out);
    return out;
}

} // namespace edgeforge::inspect
