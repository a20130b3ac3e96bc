// The commands of the CLI as library entry points: each runs on a resolved configuration and
// returns its exit code, the text for the terminal and the --json document. `build all` runs
// the outputs table's groups in order.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/console.h"
#include "build/config.h"

namespace edgeforge {

// The per-command flags that are not settings (what to do rather than how to build).
struct BuildRequest {
    bool dry_run = false;            // print the plan, build nothing
    bool push = false;               // push what is built (installer image, provider images)
    bool push_needs_installer = false; // `build iso --push`: without a registry IMAGE_NAME it is bad input
    bool push_needs_disk_image = false; // `build iso-disk-image --push`: without IMAGE_REGISTRY/IMAGE_REPO it is bad input
    bool iso_built = false;          // `build all`: the iso group built build/<name>.iso already
    bool upload = false;             // ami: upload and register
    bool fail_fast = false;          // --sites: stop at the first failed site
    std::vector<std::string> disk_formats; // --format; empty: the disk formats of `outputs`
    std::filesystem::path keys_directory;  // build uki --keys; empty: <project>/secureboot-keys
    // `build all --shard I/N`: the ids of the work units (see work_plan.h) this shard builds;
    // every other output is left to the other shards. Absent: everything.
    std::optional<std::set<std::string>> units;
    bool sharded = false; // --shard was given (an empty value is an error, not "all")
    std::string shard;    // "I/N"
    // `build all --assemble`: run the assemble-stage units (joining the provider platforms the
    // shards composed); `units` holds their ids.
    bool assemble = false;
    bool runs(std::string_view unit) const { return !units || units->contains(std::string(unit)); }
};

struct CommandOutcome {
    int code = 0;              // process exit code
    std::string text;          // for stdout
    nlohmann::json document;   // for --json
};

CommandOutcome run_build_iso(const Config& config, const BuildRequest& request,
                             const Console& console);
// The ISO (reused when `build all` built it already), then its KubeVirt containerDisk image
// (build/<name>-disk-image, pushed to IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG with --push).
CommandOutcome run_build_iso_disk_image(const Config& config, const BuildRequest& request,
                                        const Console& console);
CommandOutcome run_build_disk(const Config& config, const BuildRequest& request,
                              const Console& console);
// Signed Unified Kernel Images and the systemd-boot ESP tree (build/<name>-uki), with the keys
// of `request.keys_directory` (empty: secureboot-keys/ of the project).
CommandOutcome run_build_uki(const Config& config, const BuildRequest& request,
                             const Console& console);
CommandOutcome run_build_provider(const Config& config, const BuildRequest& request,
                                  const Console& console);
// Every output of `outputs`, planned first (all inputs checked before any work; every problem
// reported together), then built group by group in table order: the ISO, its containerDisk
// image, the disk formats from the same cached root filesystem, the provider images.
CommandOutcome run_build_all(const Config& config, const BuildRequest& request,
                             const Console& console);
// The groups `build all` would run for this configuration, in order ("iso", "disk", ...).
std::vector<std::string> build_all_groups(const Config& config);

// `build rootfs`: the root filesystem step alone (the shared stage of a sharded build),
// computed or found in the local or remote cache, and pushed to cache.to.
CommandOutcome run_build_rootfs(const Config& config, const BuildRequest& request,
                                const Console& console);

// `plan`: the work units `build all` runs (see work_plan.h), split into `shards` when > 0;
// with `emit` ("gitlab-ci", "github-actions", "k8s-job") the pipeline that runs them instead.
struct PlanRequest {
    unsigned shards = 0;
    bool shards_given = false;
    std::string emit;
    bool emit_given = false; // --emit was given (an empty value is an error, not "no pipeline")
    std::string ci_command = "edgeforge"; // what the generated jobs run
    std::string ci_image;                 // the container image they run in
    std::filesystem::path config_file;    // --config as given, for the jobs
};
CommandOutcome run_plan(const Config& config, const BuildRequest& request,
                        const PlanRequest& plan_request, const Console& console);

CommandOutcome run_site_media(const Config& config, const std::filesystem::path& user_data,
                              const Console& console);

// `content build`: what to bundle comes from the command line (images, an images file, a
// manifest); how (level, threads, split size, signing key, platforms) from the content.*
// settings.
struct ContentRequest {
    std::vector<std::string> images;   // --image
    std::filesystem::path images_file; // --images-file
    std::filesystem::path manifest;    // --manifest
    std::string name;                  // --name; default: the `name` setting
    std::filesystem::path existing_bundle;
    bool dry_run = false;
};
CommandOutcome run_content_build(const Config& config, const ContentRequest& request,
                                 const Console& console);

// `inspect TARGET`: a path (no transport prefix, or an existing file) is a built artifact; any
// other target is an image reference, shown for --arch or else for whichever platform it has.
bool is_artifact_target(const std::string& target);
CommandOutcome run_inspect_artifact(const std::string& target, const Console& console);
CommandOutcome run_inspect_image(const Config& config, const std::string& target,
                                 const Console& console);

// `cache ls` and `cache prune [--older-than D]`.
CommandOutcome run_cache_ls(const Config& config);
CommandOutcome run_cache_prune(const Config& config, const std::string& older_than,
                               const Console& console);

} // namespace edgeforge
