// `edgeforge build disk`: the Kairos raw disk and the formats that wrap it (qcow2, ova, ...).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/console.h"
#include "build/plan.h"
#include "build/iso.h"

namespace edgeforge {

// One file of the COS_CONTENT partition.
struct ContentFile {
    std::filesystem::path source; // the file, or a split bundle's parts index
    std::string path;             // on COS_CONTENT: bundle-content/NAME, spc-config/NAME, ...
    std::uint64_t size = 0;       // its bytes there (a split bundle: the whole archive's)
    bool split = false;           // `source` is a parts index: the parts are put back together
};

struct DiskPlan {
    // The installer's plan the disk shares: base, agents, overlay, user-data, squashfs options,
    // name, output dir (the disk boots the same cached rootfs.squashfs as the ISO).
    IsoPlan installer;
    std::vector<std::string> formats; // in production order, "raw" first when any wraps it
    std::uint64_t disk_size = 0;      // 0: the smallest that fits
    bool bios = false;
    std::uint64_t state_size = 0;      // an empty ext4 COS_STATE of this size; 0: none
    std::uint64_t persistent_size = 0; // an empty ext4 COS_PERSISTENT of this size; 0: none
    // COS_CONTENT, as CanvOS's cloud images have it (disk.content_partition): an ext4 partition
    // after COS_RECOVERY (and BIOS boot), before COS_STATE, holding these files. Empty, and
    // content_size 0, when the disk has none; else content_size is its size (whole MiB).
    std::vector<ContentFile> content_files;
    std::uint64_t content_size = 0;
    int ova_cpus = 2;
    std::uint64_t ova_memory = 8ULL << 30;
    int ova_hardware_version = 14;
    std::string ami_name;        // default: the artifact name
    std::string ami_description;
    bool upload = false;         // ami: upload the snapshot and register the AMI (--upload)
    std::string aws_region;      // resolved at plan time when uploading

    // The main output file of a format: <name><file suffix of its row in the outputs table>.
    std::filesystem::path artifact(std::string_view format) const;
    nlohmann::json to_json() const;
};

// disk.content_partition's rule: "auto" (CanvOS's: a COS_CONTENT when there is anything to put
// on it), "true" (always) or "false" (never). nullopt for "true" with nothing to hold, which
// plan_disk refuses (bad input): an empty COS_CONTENT is not something CanvOS makes.
std::optional<bool> wants_content_partition(std::string_view setting, bool has_content);

// A COS_CONTENT partition's size for files of these sizes: each rounded up to ext4 blocks, a
// tenth more and 32 MiB for ext4's metadata and journal (as COS_RECOVERY is sized), whole MiB.
std::uint64_t content_partition_size(const std::vector<std::uint64_t>& file_sizes);

// Checks everything a disk build needs (what plan_iso checks, plus the formats: known, landed,
// supported on the arch) and reports every problem together: Error (bad input). `formats` are
// the names asked for (--format, else `outputs` minus iso and provider).
// With `upload`, the AWS credentials, region and AMI name are checked too.
DiskPlan plan_disk(const Config& config, const std::vector<std::string>& formats,
                   bool upload = false);

std::string render_disk_plan(const DiskPlan& plan);

// Builds the raw disk once (the cached rootfs.squashfs in COS_RECOVERY, the user-data in
// COS_OEM, shim/grub on COS_GRUB), then each format from it. Artifacts are written atomically
// with a .sha256 file each.
struct DiskBuildResult {
    std::vector<Artifact> artifacts;
    nlohmann::json summary; // {"rootfs": the rootfs step's summary}
};
DiskBuildResult build_disk(const DiskPlan& plan, const Console& console);

} // namespace edgeforge
