// Builds the FAT EFI system partition image of live media (uefi.img) with mkfs.fat and mtools.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "boot/efi.h"

namespace edgeforge::boot {

inline constexpr std::string_view k_live_esp_label = "EFI_LIVE";

// One file of the image: from a host file, or from `content` when it is set.
struct EspFile {
    std::string path; // absolute, '/'-separated: "/EFI/BOOT/BOOTX64.EFI"
    std::filesystem::path host_path;
    std::optional<std::string> content;
};

struct EspOptions {
    std::string label = std::string(k_live_esp_label); // at most 11 characters
    // With a value, every timestamp in the image is this time and the image is byte-for-byte
    // reproducible; without, files carry the build time.
    std::optional<std::int64_t> source_date_epoch;
};

struct EspImage {
    std::uint64_t size = 0;      // bytes
    std::uint32_t volume_id = 0; // the FAT serial number, derived from the label, the files'
                                 // paths and contents and source_date_epoch
};

// The image size for files of these sizes in `directories` directories: every file and
// directory rounded up to 4 KiB clusters, plus room for the FATs and the root directory, rounded
// up to whole MiB. Small images are FAT12/16, which UEFI firmware reads.
std::uint64_t esp_image_size(std::span<const std::uint64_t> file_sizes, std::size_t directories);

// Writes a FAT image holding `files` (and their parent directories) to `output`, atomically
// (temporary name, fsync, rename), without root: mkfs.fat on a plain file, then mmd/mcopy from
// mtools in sorted path order. With options.source_date_epoch the result is identical for
// identical inputs (mkfs.fat --invariant, a derived volume id, mtools honouring
// SOURCE_DATE_EPOCH, TZ=UTC). Throws Error (bad input) for bad paths or labels, Error (build
// failed) naming the tool and its message when mkfs.fat or mtools is missing or fails.
EspImage build_esp_image(std::span<const EspFile> files, const std::filesystem::path& output,
                         const EspOptions& options = {});

// The ESP of a live ISO: the EFI boot files in /EFI/BOOT and `grub_stub` as /EFI/BOOT/grub.cfg
// (grub started from the ESP of a USB stick looks there first).
std::vector<EspFile> live_esp_files(const EfiBootFiles& efi, const std::string& grub_stub);

} // namespace edgeforge::boot
