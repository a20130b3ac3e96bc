// A build step cache shared through an OCI repository (a registry, or an OCI layout directory
// on a shared filesystem), as BuildKit's --cache-to type=registry: finished steps are pushed as
// OCI artifacts and pulled, verified, by builds on other machines.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/console.h"
#include "oci/descriptor.h"
#include "oci/reference.h"
#include "oci/registry.h"

namespace edgeforge {

// The artifact of one step: an OCI image manifest with this artifactType, a config blob
// {"step", "key", "inputs", "files"} and one layer per file or directory of the step's entry.
inline constexpr std::string_view k_step_artifact_type = "application/vnd.edgeforge.step.v1";
inline constexpr std::string_view k_step_config_type =
    "application/vnd.edgeforge.step.config.v1+json";
inline constexpr std::string_view k_step_file_type = "application/vnd.edgeforge.step.file.v1";
inline constexpr std::string_view k_step_tree_type = "application/vnd.edgeforge.step.tree.v1.tar";

// Where steps are looked up (from) and pushed (to); either may be absent.
struct RemoteCacheSettings {
    std::optional<oci::ImageReference> from;
    std::optional<oci::ImageReference> to;
    // Steps holding user-data, keys or credentials are pushed only with this set
    // (cache.push_private, --cache-push-private).
    bool push_private = false;
    // Also push a step found in the local cache (it was pushed when it was computed, unless the
    // repository is new): build rootfs, the first stage of a sharded build, sets it.
    bool push_cached = false;
    oci::RegistryOptions registry; // how the registry is reached: CAs, insecure hosts, creds

    bool enabled() const { return from || to; }
    nlohmann::json to_json() const;
};

// A cache repository: "docker://HOST/REPO", "HOST/REPO" or "oci:DIR", without tag or digest
// (each step is its own tag). Throws Error (bad input) saying what is accepted; the caller
// names where the text came from.
oci::ImageReference parse_cache_reference(std::string_view text);

// The tag of a step's artifact: "<step>-<key>".
std::string step_artifact_tag(std::string_view step, std::string_view key);

// The parts of a step artifact's manifest a pull uses, checked: OCI manifest with the step
// artifactType, a step config of bounded size, at most 64 layers of the two step media types,
// each titled with one safe file name (no "/", no leading ".", not inputs.json), titles unique,
// sizes bounded. Throws Error (bad input) saying what is wrong.
struct StepManifest {
    oci::Descriptor config;
    std::vector<oci::Descriptor> layers;
};
StepManifest parse_step_manifest(std::string_view body);
// The inputs a step config records, once it is checked to name `step` and `key` and its inputs
// hash to `key` (StepCache::key_of). Throws Error (bad input) saying what is wrong.
nlohmann::json parse_step_config(std::string_view body, std::string_view step,
                                 std::string_view key);

// What a step's entry holds, by name: its files and directories. A pulled artifact must hold
// exactly these, each of its kind.
struct StepItem {
    std::string name;
    bool directory = false;
};
using StepLayout = std::vector<StepItem>;

// Whether a step's files may leave the machine without the user's say-so.
enum class StepSharing {
    shareable,    // built from images and project files the published images carry anyway
    private_data, // user-data, keys or credentials: pushed only with push_private
};

struct PullResult {
    std::optional<nlohmann::json> inputs; // a verified hit: the inputs the artifact records
    std::string problem; // why an artifact that was there is not used (empty: a miss or a hit)
};

enum class PushOutcome {
    pushed,     // uploaded now
    present,    // the repository holds this very artifact already
    not_shared, // a private step without push_private
    failed,     // a warning said why
    no_target,  // no cache.to
};

class RemoteStepCache {
  public:
    RemoteStepCache(RemoteCacheSettings settings, std::filesystem::path cache_dir,
                    const Console& console);

    const RemoteCacheSettings& settings() const { return settings_; }

    // Looks the step up in `from`. On a hit whose artifact checks out (digests of every blob,
    // exactly the files and directories of `expected`, the step name, its key, and the recorded
    // inputs hashing to that key) fills `staging`, an empty directory, with the entry's files
    // and returns the recorded inputs. A miss returns
    // nullopt quietly; a corrupt or foreign artifact, or a registry that cannot be reached, with
    // a warning: the step is then computed, never taken from a doubtful artifact.
    PullResult pull(std::string_view step, std::string_view key, const StepLayout& expected,
                    const std::filesystem::path& staging) const;

    // Pushes the complete entry directory `entry` to `to`, unless the repository holds the very
    // same artifact (same manifest, every blob there); another one under the tag is replaced. A
    // private step without push_private is not pushed (an info line says so). A failure is a
    // warning: the build has its output either way.
    // Exactly the items of `layout` are pushed; an entry lacking one is not (failed).
    PushOutcome push(std::string_view step, std::string_view key,
                     const std::filesystem::path& entry, const StepLayout& layout,
                     StepSharing sharing) const;

  private:
    RemoteCacheSettings settings_;
    std::filesystem::path cache_dir_;
    const Console& console_;
};

} // namespace edgeforge
