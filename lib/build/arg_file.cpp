// KEY=value lines: Earthly's .arg and the legacy .installer.env (see arg_file.h).
#include "build/arg_file.h"

#include "build/setting_values.h"
#include "util/strings.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace edgeforge {
namespace {

constexpr std::size_t k_max_nesting = 16;  // ${A:-${B:-...}} levels, as in edgeforge.yaml
constexpr std::size_t k_max_name_length = 256;

bool name_start(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

bool name_char(char c) {
    return name_start(c) || (c >= '0' && c <= '9');
}

// Thrown inside one line's expansion; the caller reports it at the line's position.
struct LineProblem {
    int column;
    std::string message;
};

// Expands one value of a .arg line. Columns are those of the line as written.
class Expander {
  public:
    Expander(const std::map<std::string, std::string>& earlier, const VariableLookup& environment,
             const std::string& label, int line, std::vector<std::string>& warnings)
        : earlier_(earlier), environment_(environment), label_(label), line_(line),
          warnings_(warnings) {}

    // `text` starts at `column`; `double_quoted`: \" \\ \$ are escapes (unquoted: only \$).
    std::string expand(std::string_view text, int column, bool double_quoted) {
        std::string out;
        expand_into(text, column, double_quoted, 0, out);
        return out;
    }

  private:
    std::optional<std::string> lookup(const std::string& name) const {
        if (const auto found = earlier_.find(name); found != earlier_.end()) {
            return found->second;
        }
        return environment_ ? environment_(name) : std::nullopt;
    }

    void append(std::string& out, std::string_view text, int column) const {
        if (out.size() + text.size() > k_max_setting_value_length) {
            throw LineProblem{column, fmt::format("the value grows past {} characters once its "
                                                  "$VARIABLES are expanded",
                                                  k_max_setting_value_length)};
        }
        out += text;
    }

    void undefined(const std::string& name, int column) {
        warnings_.push_back(fmt::format(
            "{}:{}:{}: ${} is not set earlier in this file nor in the environment; it expands "
            "to empty, as Earthly does (set it, or write ${{{}:-default}})",
            label_, line_, column, name, name));
    }

    void expand_into(std::string_view text, int column, bool double_quoted, std::size_t level,
                     std::string& out) {
        std::size_t i = 0;
        while (i < text.size()) {
            const char c = text[i];
            const int here = column + static_cast<int>(i);
            if (c == '\\' && i + 1 < text.size() &&
                (text[i + 1] == '$' ||
                 (double_quoted && (text[i + 1] == '"' || text[i + 1] == '\\')))) {
                append(out, text.substr(i + 1, 1), here);
                i += 2;
                continue;
            }
            if (c != '$' || i + 1 >= text.size()) {
                append(out, text.substr(i, 1), here);
                ++i;
                continue;
            }
            if (name_start(text[i + 1])) {
                std::size_t end = i + 1;
                while (end < text.size() && name_char(text[end])) {
                    ++end;
                }
                const std::string name(text.substr(i + 1, end - i - 1));
                if (const auto value = lookup(name)) {
                    append(out, *value, here);
                } else {
                    undefined(name, here);
                }
                i = end;
                continue;
            }
            if (text[i + 1] != '{') {
                append(out, text.substr(i, 1), here); // a lone '$' is itself
                ++i;
                continue;
            }
            // ${...}: find the matching brace, nested at most k_max_nesting deep overall.
            std::size_t depth = 0;
            std::size_t close = std::string_view::npos;
            for (std::size_t j = i + 1; j < text.size(); ++j) {
                if (text[j] == '{') {
                    if (++depth + level > k_max_nesting) {
                        throw LineProblem{here, fmt::format("'${{' is nested more than {} deep",
                                                            k_max_nesting)};
                    }
                } else if (text[j] == '}' && --depth == 0) {
                    close = j;
                    break;
                }
            }
            if (close == std::string_view::npos) {
                throw LineProblem{here, "unterminated '${' (write \\$ for a literal $)"};
            }
            const std::string_view body = text.substr(i + 2, close - i - 2);
            const auto separator = body.find(":-");
            const std::string name(body.substr(0, separator));
            if (!valid_variable_name(name) || name.size() > k_max_name_length) {
                throw LineProblem{here, fmt::format("'${{{}}}' is not a variable reference "
                                                    "(${{NAME}} or ${{NAME:-default}})",
                                                    util::printable_line(body, 60))};
            }
            const auto value = lookup(name);
            if (value && !value->empty()) {
                append(out, *value, here);
            } else if (separator != std::string_view::npos) {
                const std::size_t offset = i + 2 + separator + 2;
                expand_into(body.substr(separator + 2), column + static_cast<int>(offset),
                            double_quoted, level + 1, out);
            } else if (!value) {
                undefined(name, here);
            }
            i = close + 1;
        }
    }

    const std::map<std::string, std::string>& earlier_;
    const VariableLookup& environment_;
    const std::string& label_;
    int line_;
    std::vector<std::string>& warnings_;
};

// The rest of a line after a value: blank, or a comment.
bool only_comment(std::string_view rest) {
    const std::string_view trimmed = util::trim(rest);
    return trimmed.empty() || trimmed.front() == '#';
}

// Where an unquoted value ends: before " #" / "\t#" (a comment), trailing blanks trimmed.
std::string_view unquoted_value(std::string_view text) {
    for (std::size_t i = 1; i < text.size(); ++i) {
        if (text[i] == '#' && (text[i - 1] == ' ' || text[i - 1] == '\t')) {
            text = text.substr(0, i);
            break;
        }
    }
    if (!text.empty() && text.front() == '#') {
        return {}; // KEY=#comment: an empty value
    }
    return util::trim(text);
}

} // namespace

ParsedAssignments parse_assignments(std::string_view text, const std::string& label,
                                    AssignmentDialect dialect, const VariableLookup& environment,
                                    Diagnostics& diagnostics) {
    ParsedAssignments parsed;
    std::map<std::string, std::string> earlier;
    int line_number = 0;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        std::string_view line = text.substr(start, end - start);
        start = end + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1); // CRLF, as editors on Windows write it
        }
        const auto column_of = [&](std::string_view part) {
            return static_cast<int>(part.data() - line.data()) + 1;
        };
        const auto report = [&](int column, const std::string& message) {
            diagnostics.error(SourceLocation{label, line_number, column}, message);
        };
        if (const auto bad = std::find_if(line.begin(), line.end(),
                                          [](char c) {
                                              const auto u = static_cast<unsigned char>(c);
                                              return (u < 0x20 && c != '\t') || u == 0x7f;
                                          });
            bad != line.end()) {
            report(static_cast<int>(bad - line.begin()) + 1,
                   fmt::format("the control character 0x{:02X} is not allowed; this file is "
                               "text: remove it",
                               static_cast<unsigned char>(*bad)));
            continue;
        }
        std::string_view statement = util::trim(line);
        if (statement.empty() || statement.front() == '#') {
            continue;
        }
        if (statement.starts_with("export ") || statement.starts_with("export\t")) {
            statement = util::trim(statement.substr(7));
        }
        const auto equals = statement.find('=');
        if (equals == std::string_view::npos) {
            report(column_of(statement),
                   "expected KEY=value (one setting per line, '#' starts a comment)");
            continue;
        }
        const std::string_view name = util::trim(statement.substr(0, equals));
        if (name.size() > k_max_name_length || !valid_variable_name(name)) {
            report(column_of(statement),
                   fmt::format("'{}' is not a variable name (letters, digits and '_', at most {} "
                               "characters)",
                               util::printable_line(name, 40), k_max_name_length));
            continue;
        }
        std::string_view value_text = statement.substr(equals + 1);
        const auto first = value_text.find_first_not_of(" \t");
        value_text.remove_prefix(first == std::string_view::npos ? value_text.size() : first);
        const int value_column = column_of(value_text);
        if (value_text.size() > k_max_setting_value_length) {
            report(value_column, fmt::format("the value is longer than edgeforge allows (at most "
                                             "{} characters)",
                                             k_max_setting_value_length));
            continue;
        }
        const bool expand = dialect == AssignmentDialect::earthly_arg;
        std::vector<std::string> line_warnings;
        Expander expander(earlier, environment, label, line_number, line_warnings);
        std::string value;
        try {
            if (!value_text.empty() && value_text.front() == '\'') {
                const auto close = value_text.find('\'', 1);
                if (close == std::string_view::npos) {
                    report(value_column, "missing closing ' quote");
                    continue;
                }
                if (!only_comment(value_text.substr(close + 1))) {
                    report(column_of(value_text.substr(close + 1)),
                           "unexpected text after the closing ' quote (a comment starts with #)");
                    continue;
                }
                value = std::string(value_text.substr(1, close - 1));
            } else if (!value_text.empty() && value_text.front() == '"') {
                std::size_t close = std::string_view::npos;
                for (std::size_t i = 1; i < value_text.size(); ++i) {
                    if (value_text[i] == '\\') {
                        ++i;
                    } else if (value_text[i] == '"') {
                        close = i;
                        break;
                    }
                }
                if (close == std::string_view::npos) {
                    report(value_column, "missing closing \" quote");
                    continue;
                }
                if (!only_comment(value_text.substr(close + 1))) {
                    report(column_of(value_text.substr(close + 1)),
                           "unexpected text after the closing \" quote (a comment starts with #)");
                    continue;
                }
                const std::string_view inner = value_text.substr(1, close - 1);
                value = expand ? expander.expand(inner, value_column + 1, true)
                               : std::string(inner);
            } else {
                const std::string_view plain = unquoted_value(value_text);
                value = expand ? expander.expand(plain, value_column, false) : std::string(plain);
            }
        } catch (const LineProblem& problem) {
            report(problem.column, problem.message);
            continue;
        }
        for (auto& warning : line_warnings) {
            parsed.warnings.push_back(std::move(warning));
        }
        earlier[std::string(name)] = value;
        parsed.assignments.push_back(
            Assignment{.name = std::string(name),
                       .value = std::move(value),
                       .location = SourceLocation{label, line_number, column_of(statement)},
                       .value_location = SourceLocation{label, line_number, value_column}});
    }
    return parsed;
}

} // namespace edgeforge
