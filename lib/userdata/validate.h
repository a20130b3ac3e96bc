// Checks #cloud-config user-data against the settings edge hosts rely on, with positions.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace edgeforge::userdata {

enum class Severity { error, warning };

struct Finding {
    Severity severity = Severity::error;
    SourceLocation location;
    std::string key;     // dotted key path: "stylus.site.network.gateway"
    std::string message; // what is wrong and what was expected
    std::string hint;    // what to do about it; may be empty
};

// How the edge host will register with the management endpoint.
enum class RegistrationMode {
    manual, // an operator registers the host id in the console
    token,  // automatic: edgeHostToken is in the user-data
    qr,     // QR code shown on the console pointing at registrationURL
};

std::string_view registration_mode_name(RegistrationMode mode);

struct Report {
    std::string file; // how messages name the file
    std::vector<Finding> findings;
    RegistrationMode registration = RegistrationMode::manual;

    std::size_t errors() const;
    std::size_t warnings() const;
    // No errors, and with `strict` no warnings either.
    bool passes(bool strict) const;
};

// Validates user-data text; `label` names it in locations (a file path, "site.yaml").
Report validate_text(std::string_view text, std::string label);
// Reads and validates a file; an unreadable file is an error finding, not an exception.
Report validate_file(const std::filesystem::path& file);

// "user-data:4:5: error: stylus.site.paletteEndpoint: ...\n    hint: ..." lines and a summary.
std::string render_report(const Report& report);
nlohmann::json report_to_json(const Report& report);

} // namespace edgeforge::userdata
