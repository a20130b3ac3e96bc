// `edgeforge inspect ARTIFACT`: what a built ISO, raw disk, QCOW2, VMDK or OVA holds.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "inspect/detect.h"      // ArtifactFormat, detect_format, detect_file_format
#include "inspect/report_text.h" // render_artifact_report

namespace edgeforge {
class Console;
}

namespace edgeforge::inspect {

// Everything `inspect` reports about the artifact at `path`, as JSON (the --json result; the
// keys are described in inspect/report.h). Disk formats are opened read-only with libguestfs
// (one appliance launch per artifact; the OVA's VMDK is extracted to a temporary file first).
// Errors name the file: bad input (exit 2) when it is not an artifact, build failed (exit 1)
// when libguestfs cannot open it.
nlohmann::json inspect_artifact(const std::filesystem::path& path, const Console& console);

} // namespace edgeforge::inspect
