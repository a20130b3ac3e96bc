// Pipelines for the CI engines users already run (`edgeforge plan --emit ENGINE`): a first stage
// computes the shared steps into the remote build cache, then N parallel jobs each build one
// shard of the work plan and hand over their outputs. No scheduler of our own.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "build/work_plan.h"

namespace edgeforge {

enum class CiEngine { gitlab_ci, github_actions, k8s_job };

// "gitlab-ci", "github-actions", "k8s-job"; nullopt for anything else.
std::optional<CiEngine> parse_ci_engine(std::string_view name);
inline constexpr std::string_view k_ci_engines_text = "gitlab-ci, github-actions, k8s-job";

struct CiEmitOptions {
    unsigned shards = 4;
    // The shared build cache (docker://HOST/REPO or oci:DIR): cache.remote, else cache.to; empty
    // leaves a placeholder variable to fill in (the pipeline then says so).
    std::string cache;
    // The edgeforge command the jobs run ("edgeforge", or a path), and the configuration file
    // relative to the project (empty: edgeforge.yaml found as usual).
    std::string command = "edgeforge";
    std::string config_file;
    // The output directory relative to the project ("build"): what jobs upload.
    std::string output_dir = "build";
    // Container image holding edgeforge, for engines that need one (k8s-job, and GitLab runners
    // with a Docker executor); empty: GitLab jobs run on the runner's shell, and the Job names a
    // placeholder.
    std::string image;
};

// The pipeline as YAML text. Deterministic for the same plan and options.
std::string emit_ci(const WorkPlan& plan, CiEngine engine, const CiEmitOptions& options);

} // namespace edgeforge
