// Renders the inspect report (the JSON of report.h) as the text people read.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace edgeforge::inspect {

// The report for people: one "key value" line per finding, the partitions as a table.
std::string render_artifact_report(const nlohmann::json& report);

} // namespace edgeforge::inspect
