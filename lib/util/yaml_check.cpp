#include "util/yaml_check.h"

#include <fmt/format.h>

#include "util/strings.h"

#include <map>
#include <utility>
#include <vector>

namespace util {

namespace {

YamlIssue issue_at(const YAML::Node& node, std::string message) {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) {
        return YamlIssue{0, 0, std::move(message)};
    }
    return YamlIssue{mark.line + 1, mark.column + 1, std::move(message)};
}

} // namespace

std::optional<YamlIssue> check_yaml(const YAML::Node& root, const YamlLimits& limits) {
    std::vector<std::pair<YAML::Node, std::size_t>> stack; // node, depth
    stack.emplace_back(root, 0);
    std::size_t visited = 0;
    while (!stack.empty()) {
        auto [node, depth] = std::move(stack.back());
        stack.pop_back();
        if (++visited > limits.max_nodes) {
            return issue_at(node, "the document has more than " +
                                      std::to_string(limits.max_nodes) +
                                      " nodes once its aliases are expanded (an alias bomb?); "
                                      "write it out without so many aliases");
        }
        if (depth > limits.max_depth) {
            return issue_at(node, "the document nests deeper than " +
                                      std::to_string(limits.max_depth) + " levels");
        }
        if (node.IsMap()) {
            std::map<std::string, YAML::Mark> seen;
            for (const auto& item : node) {
                if (item.first.IsScalar()) {
                    const auto [it, inserted] = seen.emplace(item.first.Scalar(), item.first.Mark());
                    if (!inserted) {
                        std::string first = it->second.is_null()
                                                ? std::string()
                                                : " (first at line " +
                                                      std::to_string(it->second.line + 1) +
                                                      ", column " +
                                                      std::to_string(it->second.column + 1) + ")";
                        return issue_at(item.first, "the key '" + item.first.Scalar() +
                                                        "' is given twice" + first +
                                                        "; keep one");
                    }
                }
                stack.emplace_back(item.first, depth + 1);
                stack.emplace_back(item.second, depth + 1);
            }
        } else if (node.IsSequence()) {
            for (const auto& item : node) {
                stack.emplace_back(item, depth + 1);
            }
        }
    }
    return std::nullopt;
}

std::optional<YamlIssue> check_yaml_text(std::string_view text) {
    // The first byte that is not well-formed UTF-8, or a control character YAML does not allow
    // (everything below 0x20 but tab, line feed and carriage return, and DEL): yaml-cpp would cut
    // a value at a NUL or misread the line.
    std::optional<std::size_t> offset = invalid_utf8_offset(text);
    const std::size_t scan_end = offset.value_or(text.size());
    for (std::size_t i = 0; i < scan_end; ++i) {
        const auto byte = static_cast<unsigned char>(text[i]);
        if ((byte < 0x20 && byte != '\t' && byte != '\n' && byte != '\r') || byte == 0x7F) {
            offset = i;
            break;
        }
    }
    if (!offset) {
        return std::nullopt;
    }
    YamlIssue issue;
    issue.line = 1;
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < *offset; ++i) {
        if (text[i] == '\n') {
            ++issue.line;
            line_start = i + 1;
        }
    }
    issue.column = static_cast<int>(*offset - line_start + 1);
    const auto byte = static_cast<unsigned char>(text[*offset]);
    if (byte == 0) {
        issue.message = "the control character 0x00 (NUL) is not allowed in YAML; YAML files are "
                        "text: remove it";
    } else if (byte < 0x80) {
        issue.message = fmt::format("the control character 0x{:02x} is not allowed in YAML; "
                                    "remove it",
                                    byte);
    } else {
        issue.message = fmt::format("byte 0x{:02x} is not valid UTF-8; save the file as UTF-8",
                                    byte);
    }
    return issue;
}

LoadedYaml load_yaml(std::string_view text, const YamlLimits& limits) {
    LoadedYaml loaded;
    if ((loaded.issue = check_yaml_text(text))) {
        return loaded;
    }
    YAML::Node root;
    try {
        // All documents, so that a second one is refused rather than silently ignored.
        std::vector<YAML::Node> documents = YAML::LoadAll(std::string(text));
        for (std::size_t i = 1; i < documents.size(); ++i) {
            if (!documents[i].IsNull()) {
                const YAML::Mark mark = documents[i].Mark();
                loaded.issue = YamlIssue{mark.line + 1, mark.column + 1,
                                         "a second YAML document ('---'): edgeforge reads one "
                                         "document per file, so the rest would be ignored; "
                                         "merge them or remove the '---'"};
                return loaded;
            }
        }
        if (!documents.empty()) {
            root = documents.front();
        }
    } catch (const YAML::DeepRecursion& error) {
        const bool known = !error.mark.is_null();
        loaded.issue = YamlIssue{known ? error.mark.line + 1 : 0, known ? error.mark.column + 1 : 0,
                                 fmt::format("the document nests deeper than {} levels",
                                             limits.max_depth),
                                 true};
        return loaded;
    } catch (const YAML::Exception& error) {
        const bool known = !error.mark.is_null();
        loaded.issue = YamlIssue{known ? error.mark.line + 1 : 0, known ? error.mark.column + 1 : 0,
                                 error.msg, true};
        return loaded;
    }
    if ((loaded.issue = check_yaml(root, limits))) {
        return loaded;
    }
    loaded.root = root;
    return loaded;
}

} // namespace util
