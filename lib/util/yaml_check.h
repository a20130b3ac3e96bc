// Limits on YAML documents from other people: node count with aliases expanded (billion laughs),
// nesting depth, and repeated mapping keys. Checked iteratively after yaml-cpp has parsed.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

namespace util {

struct YamlLimits {
    // Nodes a walk of the document visits, an alias counting as often as it is used: far above
    // any real edgeforge.yaml, user-data or manifest, far below what an alias bomb expands to.
    std::size_t max_nodes = 100'000;
    std::size_t max_depth = 64;
};

// A problem at a position of the document (1-based line and column; 0 when unknown).
struct YamlIssue {
    int line = 0;
    int column = 0;
    std::string message;
    bool syntax_error = false; // yaml-cpp could not parse the text; `message` is its reason
};

// The first problem of `root`, or nullopt: more nodes than the limit once aliases are expanded,
// deeper nesting than the limit, or a mapping key given twice ("'name' is given twice (first at
// line 2, column 1)", at the second one). Iterative: no recursion the input can drive.
std::optional<YamlIssue> check_yaml(const YAML::Node& root, const YamlLimits& limits = {});

// The first problem of a YAML document's text before it is parsed: YAML is Unicode text, so a byte
// that is not well-formed UTF-8, a NUL byte or another control character (all below 0x20 but tab,
// line feed and carriage return, and DEL) is reported at its line and column (in bytes).
std::optional<YamlIssue> check_yaml_text(std::string_view text);

// A YAML document parsed from other people's text, or the first problem with it.
struct LoadedYaml {
    YAML::Node root; // null when there is an issue
    std::optional<YamlIssue> issue;
};
// The one way edgeforge reads YAML: check_yaml_text(), then yaml-cpp (a syntax error becomes an
// issue with syntax_error set, at yaml-cpp's position, 0:0 when it has none; nesting past yaml-cpp's
// recursion guard is reported as nesting), a second non-empty document refused (it would be
// silently ignored), then check_yaml().
LoadedYaml load_yaml(std::string_view text, const YamlLimits& limits = {});

} // namespace util
