#include "util/yaml_check.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include "util/strings.h"

#include <map>
#include <sstream>
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

// Walks the document stream without building nodes, to find what YAML::LoadAll cannot be trusted
// with: a second document with content (refused, not ignored) and a parser stuck in place
// (yaml-cpp 0.7 restarts a document forever at a stray ',' at the top level, and LoadAll
// allocates until memory runs out; YAML::Load returns an empty document for the same text).
class DocumentScan : public YAML::EventHandler {
  public:
    void OnDocumentStart(const YAML::Mark& mark) override {
        start_ = mark;
        content_ = YAML::Mark::null_mark();
        ++documents_;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  const std::string&) override {
        note(mark);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        note(mark);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
        note(mark);
    }
    void OnMapEnd() override {}

    const YAML::Mark& start() const { return start_; }
    const YAML::Mark& content() const { return content_; } // null: the document is empty
    std::size_t documents() const { return documents_; }

  private:
    void note(const YAML::Mark& mark) {
        if (content_.is_null()) {
            content_ = mark;
        }
    }
    YAML::Mark start_ = YAML::Mark::null_mark();
    YAML::Mark content_ = YAML::Mark::null_mark();
    std::size_t documents_ = 0;
};

// The first problem of the document stream, or nullopt. Throws what the parser throws.
std::optional<YamlIssue> scan_documents(std::string_view text) {
    // Empty documents ("---" lines) cost nothing but time; far more than any real file has.
    constexpr std::size_t k_max_documents = 1000;
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    DocumentScan scan;
    int previous_start = -1;
    while (parser.HandleNextDocument(scan)) {
        const YAML::Mark start = scan.start();
        if (start.pos == previous_start) {
            return YamlIssue{start.line + 1, start.column + 1,
                             "YAML syntax error: the parser cannot read past this point (a ',' "
                             "or other flow indicator outside [...] or {...}?)",
                             true};
        }
        previous_start = start.pos;
        if (scan.documents() > 1 && !scan.content().is_null()) {
            const YAML::Mark mark = scan.content();
            return YamlIssue{mark.line + 1, mark.column + 1,
                             "a second YAML document ('---'): edgeforge reads one document per "
                             "file, so the rest would be ignored; merge them or remove the '---'"};
        }
        if (scan.documents() >= k_max_documents) {
            return YamlIssue{start.line + 1, start.column + 1,
                             fmt::format("more than {} YAML documents ('---'); edgeforge reads "
                                         "one document per file",
                                         k_max_documents)};
        }
    }
    return std::nullopt;
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
        // The stream first, so that a second document is refused rather than silently ignored
        // and a stuck parser is caught; then the first document's nodes.
        if ((loaded.issue = scan_documents(text))) {
            return loaded;
        }
        root = YAML::Load(std::string(text));
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
