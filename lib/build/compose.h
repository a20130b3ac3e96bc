// Composes the OS root filesystem (base + agents + overlay) into a cached rootfs.squashfs.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "base/console.h"
#include "build/plan.h"
#include "oci/image.h"
#include "oci/pull_progress.h"

namespace edgeforge {

// The output of the rootfs step, shared by the ISO and the disk formats.
struct ComposedRootfs {
    std::filesystem::path entry; // the step cache entry holding the files below
    std::filesystem::path
        squashfs; // rootfs.squashfs: the merged tree with /proc /sys /dev /run /tmp
    // The boot-related part of the merged tree (/boot, /usr/lib/grub, /usr/lib/shim,
    // /usr/share/efi) as host files, so kernel, initrd and boot loaders are at hand on a cache
    // hit without merging the layers again.
    std::filesystem::path bootfs;
    // RootfsForm::uki_initrd: rootfs.initrd (the tree as a zstd-compressed newc cpio, Kairos's
    // Trusted Boot layout) instead of the squashfs, and the image's os-release.
    std::filesystem::path initrd;
    std::filesystem::path os_release;
    std::string key; // the cache key: a digest of every input of the step
    bool cache_hit = false;
    nlohmann::json summary; // images, layer counts, sizes, timings, for --json and -v
};

// The mount points live systems expect in the root filesystem.
inline const std::vector<std::string> k_rootfs_mount_points = {"/proc", "/sys", "/dev", "/run",
                                                               "/tmp"};

// What the step writes the merged tree as: a squashfs for the grub live ISO and the disks, or
// the initrd of a Unified Kernel Image (Trusted Boot), which carries the whole OS.
enum class RootfsForm { squashfs, uki_initrd };

// The zstd level of the UKI initrd: close to the size of level 19 at a fraction of its time.
inline constexpr int k_uki_initrd_zstd_level = 10;

// The rootfs step's recorded inputs and cache key, from the images' manifests and configs
// (registry layers are not pulled), with the images' identities and layer bytes for summaries.
struct RootfsStepInputs {
    nlohmann::json inputs;
    std::string key;
    nlohmann::json images;
    std::uint64_t layer_bytes = 0;
};
RootfsStepInputs rootfs_step_inputs(const IsoPlan& plan, const Console& console,
                                    RootfsForm form = RootfsForm::squashfs);

// Opens the base and agent images, and returns the cached step output when one exists for the
// same inputs (image manifests and layer digests, overlay content, squashfs options,
// SOURCE_DATE_EPOCH, edgeforge version). Otherwise merges every layer and the rootfs overlay
// into one tree (streaming, bounded memory), adds the mount points, writes rootfs.squashfs with
// progress (or, for RootfsForm::uki_initrd, prepares the tree as boot::prepare_uki_rootfs says
// and writes rootfs.initrd), exports the boot files, and stores it all in the step cache.
ComposedRootfs compose_rootfs(const IsoPlan& plan, const Console& console,
                              RootfsForm form = RootfsForm::squashfs);

// Fails up front (Error, build failed) when `directory` has less than `needed` bytes free:
// "not enough space in DIR for WHAT: need X, have Y; free some space or choose another OPTION".
void check_free_space(const std::filesystem::path& directory, std::uint64_t needed,
                      std::string_view what, std::string_view option);

} // namespace edgeforge
