// Test support: hostile YAML documents.
#pragma once

#include <string>

namespace edgeforge::testing {

// The billion laughs: ten levels, each ten aliases of the one below (10^10 nodes expanded), as
// mapping entries each indented by `indent`.
inline std::string alias_bomb(const std::string& indent = "") {
    std::string text = indent + "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    for (int level = 1; level <= 10; ++level) {
        const std::string below = "*a" + std::to_string(level - 1);
        text += indent + "a" + std::to_string(level) + ": &a" + std::to_string(level) + " [";
        for (int i = 0; i < 10; ++i) {
            text += (i ? ", " : "") + below;
        }
        text += "]\n";
    }
    return text;
}

} // namespace edgeforge::testing
