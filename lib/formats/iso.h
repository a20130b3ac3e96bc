// `edgeforge build iso`: the live installer ISO from a plan, end to end.
#pragma once

#include <nlohmann/json.hpp>

#include "core/console.h"
#include "core/plan.h"

namespace edgeforge::formats {

struct Artifact {
    std::filesystem::path path;
    std::uint64_t size = 0;
    std::string sha256;
};

struct IsoBuildResult {
    Artifact iso;
    Artifact checksum; // <name>.iso.sha256 in sha256sum format
    nlohmann::json summary;
};

// Composes (or reuses) the root filesystem, builds the ESP and boot images, and writes
// build/<name>.iso atomically with its .sha256 next to it. Prints step progress on `console`.
IsoBuildResult build_iso(const IsoPlan& plan, const Console& console);

// The --json document for built artifacts: {"artifacts": [{path, size, sha256}], ...}.
nlohmann::json artifacts_to_json(const std::vector<Artifact>& artifacts,
                                 const nlohmann::json& summary);

} // namespace edgeforge::formats
