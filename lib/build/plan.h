// The build plan: every input of a build resolved and checked before any work starts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/arch.h"
#include "build/config.h"
#include "build/remote_cache.h"
#include "fs/squashfs.h"
#include "oci/reference.h"
#include "oci/registry.h"

namespace edgeforge {

struct SquashfsSettings {
    fs::SquashfsCompressor compressor = fs::SquashfsCompressor::zstd;
    int level = 0; // 0: the compressor's default (checked against the compressor at config time)
    std::uint32_t block_size = 1u << 20;
};

// One site of a per-site build (`build iso --sites DIR`): its file merged over the org user-data.
struct SitePlan {
    std::string name;           // from the file name: sites/store-042.yaml -> store-042
    std::filesystem::path file;
    std::string user_data;      // the merged #cloud-config; empty when `error` is set
    std::string error;          // why this site cannot be built (it does not stop the others)
    std::vector<std::string> warnings;
};

// What `build iso` (and the disk formats that reuse its root filesystem) will do. Built by
// plan_iso() from a validated Config; holding one means every input was found and readable.
struct IsoPlan {
    Arch arch;
    std::string name;
    std::filesystem::path output_dir;
    std::filesystem::path cache_dir;
    bool unpacked_layer_cache = true; // keep gzip layers uncompressed in the cache
    std::uint64_t block_cache_bytes = 8ULL << 30; // <cache_dir>/blocks; 0: no block cache
    std::filesystem::path project_dir; // where edgeforge.yaml (or the working directory) is
    oci::ImageReference base;
    std::vector<oci::ImageReference> agents;
    // How registry images are pulled (and IMAGE_NAME pushed): CA certificates, insecure hosts,
    // and --creds, which the CLI sets (it is never part of the configuration or the plan JSON).
    oci::RegistryOptions registry;
    // A build cache shared through an OCI repository (cache.from, cache.to, cache.remote).
    RemoteCacheSettings remote_cache;
    std::filesystem::path user_data;
    std::optional<std::filesystem::path> rootfs_overlay; // absent when the directory is absent
    std::optional<std::filesystem::path> iso_overlay;
    std::vector<std::filesystem::path> content_bundles; // configured ones, then content-*/*.zst
    // The build/content-NAME/ directories of bundles `build all` packs before the ISO (content
    // in outputs) that are not there yet: its checks plan the ISO and disks before packing.
    std::vector<std::filesystem::path> pending_content_bundles;
    std::optional<std::filesystem::path> cluster_config;
    std::optional<std::filesystem::path> edge_custom_config; // -> /.edge_custom_config.yaml
    // A tar unpacked into /opt/spectrocloud/ of the installer root filesystem (CanvOS's
    // local-ui.tar): the local_ui setting, else local-ui.tar in the project directory.
    std::optional<std::filesystem::path> local_ui;
    SquashfsSettings squashfs;
    std::string extra_cmdline;
    bool interactive_default = false; // FORCE_INTERACTIVE_INSTALL
    bool debug = false;               // DEBUG
    std::optional<std::int64_t> source_date_epoch;
    std::uint64_t split_size = 0; // 0: do not split
    // IMAGE_NAME: also write the installer root filesystem as an OCI image, into
    // installer_layout (the oci: directory itself, or build/<name>-image for a registry name).
    std::optional<oci::ImageReference> installer_image;
    std::optional<std::filesystem::path> installer_layout;
    bool push_installer_image = false; // --push: a registry IMAGE_NAME is pushed after the build
    // Per-site installers instead of one: every NAME.yaml/.yml file of the directory, sorted.
    std::optional<std::filesystem::path> sites_dir;
    std::vector<SitePlan> sites;
    // Findings that do not stop the build (likely typos, plain-text passwords), for display.
    std::vector<std::string> warnings;

    std::filesystem::path iso_path() const { return output_dir / (name + ".iso"); }
    std::filesystem::path checksum_path() const { return output_dir / (name + ".iso.sha256"); }
    std::filesystem::path site_iso_path(const SitePlan& site) const {
        return output_dir / (name + "-" + site.name + ".iso");
    }
    std::filesystem::path sites_index_path() const { return output_dir / "sites.json"; }
    nlohmann::json to_json() const;
};

// Checks every input an ISO build needs and reports all problems together (Error, bad input):
// the base image is set, image references parse, user-data exists and passes validation, the
// overlays are directories, bundles and cluster config are readable files, and the output
// directory can be created and written.
IsoPlan plan_iso(const Config& config);
// plan_iso for a caller that checks more of its own: bad input goes into `diagnostics` (to be
// reported with the caller's problems) and the plan as far as it got is returned; other errors
// are thrown.
IsoPlan plan_iso(const Config& config, Diagnostics& diagnostics);

// Where a setting's value came from, for messages: its file:line:col, flag or variable, or
// "KEY (default)".
SourceLocation setting_location(const Config& config, std::string_view key);

// Reports (into `diagnostics`) an output directory that cannot be created or written.
void check_output_dir(const std::filesystem::path& directory, const SourceLocation& where,
                      Diagnostics& diagnostics);

// Replaces {arch} (and, for provider images, {distribution} and {version}) in an image
// reference, so one setting serves every arch and Kubernetes version.
std::string expand_image_placeholders(std::string text, std::string_view distribution,
                                      std::string_view version, Arch arch);

// Where an image reference is used: an input must exist (a local source's path is checked at
// plan time, so a missing image stops the build before anything is composed); an output (the
// installer image's oci: layout) is created by the build.
enum class ImageUse { input, output };
// The reference of an image setting, or nullopt with the problem reported at `where`. The one
// parser of image settings for every plan (ISO, disk, provider).
std::optional<oci::ImageReference> parse_image(const std::string& text, const SourceLocation& where,
                                               Diagnostics& diagnostics,
                                               ImageUse use = ImageUse::input);

// CanvOS's local UI archive, found in the project directory (IsoPlan::local_ui).
inline constexpr std::string_view k_local_ui_file = "local-ui.tar";
// The content bundles a project holds without naming them: content-*/*.zst as CanvOS copies
// them (edgeforge's own NAME.tar.zst, Palette's exported bundles), or NAME.tar.zst.parts.json
// where the bundle was split; sorted.
std::vector<std::filesystem::path> discover_bundles(const std::filesystem::path& project_dir);

// The project directory: where edgeforge.yaml is, else the working directory.
std::filesystem::path project_directory(const Config& config);
// `path` as image history and other recorded text show it: relative to the project directory
// when inside it, so two checkouts of one project record the same text.
std::string project_relative(const std::filesystem::path& path,
                             const std::filesystem::path& project_dir);

// An image reference as recorded text shows it: local sources relative to the project.
std::string project_relative(const oci::ImageReference& reference,
                             const std::filesystem::path& project_dir);

// The registry settings of a configuration: registry.ca_cert, registry.certs_dir,
// registry.insecure, registry.timeout and registry.stall_timeout.
oci::RegistryOptions registry_options(const Config& config);

// The remote build cache of a configuration: cache.remote (both ways), or cache.from and
// cache.to, and cache.push_private; `registry` says how registries are reached. Problems (a tag
// on the repository, another transport) go into `diagnostics`.
RemoteCacheSettings remote_cache_settings(const Config& config,
                                          const oci::RegistryOptions& registry,
                                          Diagnostics& diagnostics);

// The plan for people (`build iso --dry-run`).
std::string render_iso_plan(const IsoPlan& plan);

} // namespace edgeforge
