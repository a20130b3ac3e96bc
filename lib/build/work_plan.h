// The units of work the configured outputs need, as a DAG others can schedule (`edgeforge plan`),
// and their split into shards (`build all --shard I/N`).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/arch.h"
#include "base/console.h"
#include "build/compose.h"
#include "build/config.h"
#include "build/plan.h"

namespace edgeforge {

// Shared units (the root filesystem) are computed once, in a first stage, and reach the others
// through the build cache; fan-out units are split among the shards; assemble units join what
// several shards built (the platforms of a provider image) in a last stage.
enum class UnitStage { shared, fan_out, assemble };

struct WorkUnit {
    std::string
        id; // "rootfs/amd64", "iso", "iso/store-042", "disk/qcow2", "provider/k3s-1.30.5-v4.6.0"
    // "rootfs", "iso", "site-iso", "iso-disk-image", "disk", "provider-platform", "provider",
    // "content"
    std::string kind;
    UnitStage stage = UnitStage::fan_out;
    std::string step_key;             // the step cache key, for units that are a step
    nlohmann::json inputs;            // what the unit reads (digests, names, settings)
    std::vector<std::string> outputs; // files and directories it writes
    std::vector<std::string> needs;   // ids of the units it depends on
    std::optional<unsigned> shard;    // 1..N of its fan-out shard, when split
};

struct WorkPlan {
    std::vector<WorkUnit> units; // dependencies first; deterministic for the same inputs
    unsigned shards = 0;         // 0: not split

    nlohmann::json to_json() const;
    std::string render() const;
    // The ids of the fan-out units assigned to shard `index` (1-based).
    std::set<std::string> shard_units(unsigned index) const;
    // The ids of the units of one stage.
    std::set<std::string> stage_units(UnitStage stage) const;
    bool has_stage(UnitStage stage) const;
};

// A --shard value "I/N" with 1 <= I <= N <= 1000; Error (bad input) naming the option.
struct Shard {
    unsigned index = 1;
    unsigned count = 1;
};
Shard parse_shard(std::string_view text);

// The units `build all` runs for this configuration, with the rootfs step keys computed from the
// images' manifests (registry layers are not pulled). With `shards` > 0 the fan-out units are
// dealt round-robin, in plan order, to shards 1..N: the same plan always splits the same way.
WorkPlan plan_work(const Config& config, const std::filesystem::path& keys_directory,
                   unsigned shards, const Console& console);

// The root filesystems `build all` needs, which the first stage of a sharded build computes:
// the UKI initrd of a Trusted Boot ISO, and the squashfs of the grub ISO and of the disks.
struct SharedRootfs {
    IsoPlan plan;
    RootfsForm form;
};
std::vector<SharedRootfs> shared_rootfs_steps(const Config& config,
                                              const std::filesystem::path& keys_directory);

// Unit ids, in one place for the planner and the builders that filter by them.
std::string site_unit_id(std::string_view site);
std::string disk_unit_id(std::string_view format);
std::string provider_unit_id(std::string_view tag); // the image (assemble stage)
std::string provider_platform_unit_id(std::string_view tag, Arch arch);
std::string content_unit_id(std::string_view bundle);
// "<arch>/" when `arches` is set: the ids of an arch's installer and content units start with it.
std::string arch_unit_prefix(const Config& config);
inline constexpr std::string_view k_iso_unit_id = "iso";
inline constexpr std::string_view k_iso_disk_image_unit_id = "iso-disk-image";

} // namespace edgeforge
