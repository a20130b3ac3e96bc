// KEY=value files read the way the tools that own them read them: Earthly's `.arg` (CanvOS
// projects) and the legacy installer's `.installer.env`. Syntax only: which names are known and
// what their values mean is the caller's business (build/config.cpp, build/canvos.cpp).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace edgeforge {

enum class AssignmentDialect {
    // Earthly's .arg: `$NAME`, `${NAME}` and `${NAME:-default}` expand from earlier keys of the
    // file, then the environment (an undefined name expands to empty, with a warning); "..."
    // values expand too, '...' values are literal; `#` after a value starts a comment.
    earthly_arg,
    // .installer.env: the same quoting and comments, no expansion (values are literal).
    installer_env,
};

struct Assignment {
    std::string name;
    std::string value; // unquoted and, for .arg, expanded
    SourceLocation location;       // of the name
    SourceLocation value_location; // of the value as written
};

struct ParsedAssignments {
    std::vector<Assignment> assignments; // in file order; a name set twice appears twice
    std::vector<std::string> warnings;   // "FILE:LINE:COL: ..." (undefined references)
};

using VariableLookup = std::function<std::optional<std::string>(const std::string&)>;

// Parses `text` (the contents of `label`). Problems (a line that is not KEY=value, a missing
// closing quote, control characters, over-long lines, runaway expansion) go to `diagnostics`
// with their line:column; the line is then skipped. Linear in the input; expansion nests at
// most 16 levels and no value grows past k_max_setting_value_length.
ParsedAssignments parse_assignments(std::string_view text, const std::string& label,
                                    AssignmentDialect dialect, const VariableLookup& environment,
                                    Diagnostics& diagnostics);

} // namespace edgeforge
