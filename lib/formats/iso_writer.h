// Writes bootable hybrid ISO 9660 images with libisofs, and lays out Kairos live installer ISOs.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "boot/efi.h"
#include "boot/grub.h"
#include "base/arch.h"
#include "fs/tree.h"
#include "util/fs.h"

namespace edgeforge::formats {

// Where the bytes of a file on the ISO come from. All of them are read while the image is
// written, never copied beforehand.
struct IsoHostFile {
    std::filesystem::path path; // must keep its size until the write ends
};
struct IsoBytes {
    std::string bytes;
};
struct IsoTreeFile {
    std::shared_ptr<const fs::Inode> inode; // a regular file of a merged tree
    const fs::SpillFile* spill = nullptr;   // needed for DataRef::Kind::spill data
};
using IsoFileData = std::variant<IsoHostFile, IsoBytes, IsoTreeFile>;

struct IsoFileEntry {
    std::string iso_path; // absolute: "/boot/kernel"; missing parent directories are created 0755
    IsoFileData source;
    std::uint32_t mode = 0644;
};

// A host directory whose contents are copied (recursively, modes and symbolic links kept, owner
// root) below `iso_path` ("/" for the root).
struct IsoDirectoryEntry {
    std::string iso_path = "/";
    std::filesystem::path host_directory;
};

// BIOS El Torito boot (no emulation, 4 load sectors, boot info table + grub2 boot info) and the
// grub2 hybrid MBR in the system area, as xorriso's `-boot_image grub` recipe does.
struct IsoBiosBoot {
    std::filesystem::path eltorito_image; // added to the ISO at image_iso_path
    std::filesystem::path hybrid_mbr;     // boot_hybrid.img, at most 32 KiB
    std::string image_iso_path = "/boot/eltorito.img";
};

struct IsoDescription {
    std::string volume_id = std::string(boot::k_live_volume_id);
    Arch arch;
    // Files first, then directories in order; a later entry replaces a file at the same path,
    // directories merge, and a file where a directory is (or the reverse) is an error.
    std::vector<IsoFileEntry> files;
    std::vector<IsoDirectoryEntry> directories;
    // Added after the directories: a file here replaces what a directory put at its path (a
    // user's menu rendered from the overlay's own grub.cfg).
    std::vector<IsoFileEntry> overrides;
    std::optional<IsoBiosBoot> bios_boot; // only for architectures with BIOS boot
    // The FAT ESP image: appended as GPT partition 2 (type 0xEF) and booted through an El Torito
    // entry with platform 0xEF pointing at that partition.
    std::optional<std::filesystem::path> efi_system_partition;
    std::string boot_catalog_path = "/boot/boot.catalog"; // hidden from the directory trees
    // With a value the image is byte-for-byte reproducible: every timestamp is this time and
    // the GPT GUIDs derive from the inputs.
    std::optional<std::int64_t> source_date_epoch;
    // Identifies the inputs for the GPT disk GUID when reproducible (a cache key, say). Empty:
    // derived from the description and the SHA-256 of every file's content.
    std::string content_digest;
};

// Bytes written so far and the image size, called every few MiB and at the end.
using IsoProgress = std::function<void(std::uint64_t written, std::uint64_t total)>;

// Who makes the written image durable and gives it its final name.
enum class IsoCommit {
    now,       // write_iso fsyncs and renames before it returns
    by_caller, // the result holds the uncommitted file; the caller commits it (on another
               // thread, say, while it writes the next image) or drops it to discard it
};

struct IsoWriteResult {
    std::uint64_t size = 0;
    std::string sha256;                // of the image, hashed as it is written (no second read)
    std::vector<std::string> warnings; // libisofs warnings (nothing that makes the image wrong)
    std::unique_ptr<util::AtomicFile> uncommitted; // IsoCommit::by_caller only
};

// Writes the image to `output` atomically (temporary name in the same directory, fsync,
// rename): Rock Ridge, Joliet, ISO level 3 (files over 4 GiB), partition offset 16, and the
// boot setup of the description. Checks the free space first: Error (build failed) "not enough
// space in DIR: need X, have Y". Other Error (build failed) cases name the file or the libisofs
// message; Error (bad input) for descriptions that cannot be laid out (bad paths, a file where a
// directory must be, BIOS boot on an architecture without it).
IsoWriteResult write_iso(const IsoDescription& description, const std::filesystem::path& output,
                         const IsoProgress& progress = {}, IsoCommit commit = IsoCommit::now);

// ---------------------------------------------------------------------------- live installer

// What a Kairos live installer ISO is made of.
struct LiveIsoInputs {
    Arch arch;
    const fs::Tree* rootfs = nullptr;     // the merged rootfs: kernel, initrd, boot loaders
    const fs::SpillFile* spill = nullptr; // its file data
    std::filesystem::path squashfs;       // rootfs.squashfs of that tree, on the host
    std::optional<std::string> user_data; // becomes /config.yaml when set
    std::vector<std::filesystem::path> overlay_directories; // copied to the ISO root, in order
    // More files for the ISO (content bundles under /opt/spectrocloud/content, a cluster
    // config, ...), added after the generated ones and before the overlays.
    std::vector<IsoFileEntry> extra_files;
    boot::LiveMenuOptions menu; // title, extra cmdline, timeout (its arch is set from `arch`)
    std::optional<std::int64_t> source_date_epoch;
    // Boot loaders extracted from the rootfs, grub images and uefi.img are made here; it must
    // outlive the description (until write_iso returns).
    std::filesystem::path work_directory;
    std::filesystem::path templates;                 // empty: templates_directory()
    std::string disk_info = "Kairos live installer"; // /.disk/info, which Debian's signed CD grub
                                                     // searches for to find its medium
};

struct LiveIsoPlan {
    IsoDescription description;
    boot::KernelAndInitrd kernel;
    boot::EfiBootFiles efi;
    std::optional<boot::BiosBootFiles> bios;
    std::filesystem::path esp_image; // work_directory/uefi.img
};

// The boot files a live ISO carries besides the kernel and initrd: what prepare_live_boot()
// makes in the work directory (a build may keep them and give them back to describe_live_iso()).
struct LiveBootAssets {
    boot::EfiBootFiles efi;
    std::optional<boot::BiosBootFiles> bios;
    std::filesystem::path esp_image; // uefi.img
};

// The boot loaders from the rootfs (grub images built where needed) and uefi.img (with the
// grub stub), in inputs.work_directory.
LiveBootAssets prepare_live_boot(const LiveIsoInputs& inputs);

// The live ISO's description around `assets` (see prepare_live_iso()).
LiveIsoPlan describe_live_iso(const LiveIsoInputs& inputs, LiveBootAssets assets);

// Finds the kernel, initrd and boot loaders in the rootfs (building grub images where needed),
// renders the grub menu and stubs, builds uefi.img in the work directory and returns the
// description of the live ISO:
//   /boot/kernel, /boot/initrd, /rootfs.squashfs, /config.yaml, /.disk/info,
//   /boot/grub2/grub.cfg (menu), /boot/grub/grub.cfg, /EFI/BOOT/grub.cfg (stubs, also on the ESP),
//   /boot/uefi.img, /boot/eltorito.img (BIOS), the overlay directories at the root.
LiveIsoPlan prepare_live_iso(const LiveIsoInputs& inputs);

} // namespace edgeforge::formats
