// `edgeforge build iso-disk-image`: the installer ISO as a KubeVirt containerDisk, the OCI
// image CanvOS's +iso-disk-image pushes (FROM scratch, one layer holding /disk/<name>.iso).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/console.h"
#include "build/config.h"
#include "build/plan.h"

namespace edgeforge {

// KubeVirt runs QEMU as uid/gid 107 and needs the disk readable by it; its docs build
// containerDisks with `ADD --chown=107:107 disk.img /disk/`. The disk is only ever read.
constexpr std::uint32_t k_container_disk_owner = 107;
constexpr std::uint32_t k_container_disk_file_mode = 0444;
constexpr std::uint32_t k_container_disk_dir_mode = 0755;

// The image tag, CanvOS's IMAGE_TAG: PE_VERSION, or PE_VERSION-CUSTOM_TAG (agent.version and
// provider.custom_tag here; agent.version defaults to "latest"). Characters a tag cannot hold
// ('+' of versions such as 1.0+build) become '_'. Empty when the result is no valid OCI tag
// (longer than 128 characters, or empty).
std::string iso_disk_image_tag(std::string_view agent_version, std::string_view custom_tag);

// Where the image is pushed, CanvOS's IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG, with the
// registry and repository rule of the provider images: both set gives REGISTRY/REPO/NAME:TAG,
// only the repository REPO/NAME:TAG; otherwise empty (nowhere to push). Trailing '/' of the
// registry are dropped.
std::string iso_disk_image_reference(std::string_view registry, std::string_view repository,
                                     std::string_view name, std::string_view tag);

// The ISO's path inside the image layer: "disk/<name>.iso".
std::string iso_disk_image_member(std::string_view name);

struct IsoDiskImagePlan {
    IsoPlan iso;                  // the ISO it wraps (built first, or reused from `build all`)
    std::string tag;              // agent.version[-custom_tag]
    std::string reference;        // REGISTRY/REPO/NAME:TAG, or empty
    std::filesystem::path layout; // build/<name>-disk-image: an OCI layout, one tag
    bool push = false;            // push to `reference` after writing the layout

    nlohmann::json to_json() const;
};

// Checks every input before any work and reports every problem together (Error, bad input):
// the ISO's plan (plan_iso), no per-site build (sites: there is no single ISO to wrap), the
// tag, the reference (parsed as a registry name), the layout path (not a file), and with
// `push` that there is a reference. `push_required`: `build iso-disk-image --push` without a
// registry name is bad input; `build all --push` then only writes the layout.
IsoDiskImagePlan plan_iso_disk_image(const Config& config, bool push, bool push_required);

std::string render_iso_disk_image_plan(const IsoDiskImagePlan& plan);

struct IsoDiskImageResult {
    std::filesystem::path layout;
    std::string tag;
    std::string manifest_digest;
    std::string layer_digest;
    std::uint64_t layer_size = 0;
    std::string pushed; // the registry reference it was pushed to, if it was

    nlohmann::json to_json() const;
};

// Writes the image of `iso` (streamed into one reproducible tar+gzip layer, never read whole
// into memory) into plan.layout, replacing what was there, tags it plan.tag and with plan.push
// pushes it to plan.reference. Config: architecture/os of the ISO's arch, created =
// SOURCE_DATE_EPOCH (or now); entries disk/ (0755) and disk/<name>.iso (0444), both 107:107,
// mtime = the same time.
IsoDiskImageResult build_iso_disk_image(const IsoDiskImagePlan& plan,
                                        const std::filesystem::path& iso, const Console& console);

} // namespace edgeforge
