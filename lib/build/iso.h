// `edgeforge build iso`: the live installer ISO from a plan, end to end.
#pragma once

#include <nlohmann/json.hpp>

#include "base/artifact.h"
#include "base/console.h"
#include "build/plan.h"

namespace edgeforge {

struct IsoBuildResult {
    Artifact iso;
    Artifact checksum; // <name>.iso.sha256 in sha256sum format
    nlohmann::json summary;
};

// Composes (or reuses) the root filesystem, builds the ESP and boot images, and writes
// build/<name>.iso atomically with its .sha256 next to it. Prints step progress on `console`.
IsoBuildResult build_iso(const IsoPlan& plan, const Console& console);

struct SiteResult {
    std::string site;
    std::filesystem::path file;
    std::optional<Artifact> iso;      // set when the site was built
    std::optional<Artifact> checksum; // <name>-<site>.iso.sha256
    std::string user_data_sha256;     // of the merged /config.yaml on that ISO
    std::string error;                // why it failed; empty when built
    double seconds = 0;
};

struct SitesBuildResult {
    std::vector<SiteResult> sites;
    Artifact index; // build/sites.json
    nlohmann::json summary;
    std::size_t failed() const;
};

enum class FailurePolicy { continue_with_others, fail_fast };

// `build iso --sites DIR`: composes the root filesystem and the boot images once, then writes
// build/<name>-<site>.iso (+ .sha256) for every site of the plan with its merged user-data, and
// build/sites.json listing every site and its outcome. A failed site does not stop the others;
// with fail_fast the first failure is thrown instead (Error naming the site file).
SitesBuildResult build_iso_sites(const IsoPlan& plan, FailurePolicy policy,
                                 const Console& console);

// The --json document for built artifacts: {"artifacts": [{path, size, sha256}], ...}.
nlohmann::json artifacts_to_json(const std::vector<Artifact>& artifacts,
                                 const nlohmann::json& summary);

} // namespace edgeforge
