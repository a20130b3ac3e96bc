// Finds the kernel, initrd and EFI/BIOS boot loaders of a merged rootfs, or builds grub images.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/arch.h"
#include "fs/tree.h"

namespace edgeforge::boot {

// The kernel and initrd a live medium boots, as found in the rootfs.
struct KernelAndInitrd {
    std::string kernel_path;                 // the name found, e.g. "/boot/vmlinuz-6.1.0-56-amd64"
    std::shared_ptr<const fs::Inode> kernel; // the regular file it resolves to in the tree
    std::string initrd_path;
    std::shared_ptr<const fs::Inode> initrd;
};

// A file of the rootfs's /boot: the name found and the regular file it resolves to.
struct BootFile {
    std::string path; // e.g. "/boot/vmlinuz-6.1.0-56-amd64"
    std::shared_ptr<const fs::Inode> inode;
};

// The kernel alone (a UKI carries its own initrd): the first of find_kernel_and_initrd's kernel
// patterns, with its error when there is none.
BootFile find_kernel(const fs::Tree& rootfs);

// The first of /boot/{vmlinuz*,Image*,zImage*,uImage*} and of /boot/{initrd*,initramfs*}, names
// sorted bytewise within each pattern, that resolves (symbolic links followed inside the tree)
// to a regular file. Throws Error (bad input):
//   "no kernel in the image: none of /boot/vmlinuz*, /boot/Image*, /boot/zImage*, /boot/uImage*
//    is a regular file"
//   "no initrd in the image: none of /boot/initrd*, /boot/initramfs* is a regular file"
KernelAndInitrd find_kernel_and_initrd(const fs::Tree& rootfs);

// One file for the ESP's /EFI/BOOT directory, as a host file under the work directory.
struct EfiBootFile {
    std::string name;                // "BOOTX64.EFI", "grubx64.efi", "mmx64.efi"
    std::filesystem::path host_path; // the bytes to copy
    std::string origin; // "rootfs:/usr/lib/shim/shimx64.efi.signed" or "grub-mkimage ..."
};

struct EfiBootFiles {
    // BOOT<X>.EFI first; with shim also grub<x>.efi (what shim chainloads) and, when the rootfs
    // has it, mm<x>.efi (MokManager, which shim starts when verification fails).
    std::vector<EfiBootFile> files;
    // Shim and grub both came from the rootfs, where distributions ship them signed, so the
    // chain can pass Secure Boot (with a kernel signed by the same distribution).
    bool signed_chain = false;
    // grub was made with grub-mkimage here (no grub EFI binary in the rootfs).
    bool built_grub = false;
};

// The BIOS El Torito boot files for architectures with BIOS boot (amd64).
struct BiosBootFiles {
    std::filesystem::path eltorito_image; // grub-mkimage -O i386-pc-eltorito (cdboot.img + core)
    std::filesystem::path hybrid_mbr;     // boot_hybrid.img, the system area of the hybrid ISO
    std::string origin; // "rootfs:/usr/lib/grub/i386-pc" or "host:/usr/lib/grub/i386-pc"
};

struct BootAssetOptions {
    // Where files extracted from the rootfs and images built by grub-mkimage go. It must outlive
    // the returned paths (usually a util::TempDir of the build).
    std::filesystem::path work_directory;
    // The host's grub module root, used when the rootfs has no /usr/lib/grub/<target>.
    std::filesystem::path host_grub_directory = "/usr/lib/grub";
};

// The EFI files for /EFI/BOOT, taken from the rootfs when it has them:
//   shim: /usr/lib/shim/shim<x>.efi.signed, /usr/share/efi/<uname>/shim.efi
//   grub: /usr/lib/grub/<target>-signed/gcd<x>.efi.signed, .../grub<x>.efi.signed,
//         /usr/share/efi/<uname>/grub.efi
// (".signed" dropped, gcd* renamed grub<x>.efi so that shim finds it; BOOT<X>.EFI is shim when
// present, else grub). Without a grub binary, grub is built with grub-mkimage -O <target>
// -p /EFI/BOOT from the rootfs's /usr/lib/grub/<target>, else the host's. Throws Error (build
// failed) naming the Debian package to install and the paths searched when neither exists.
EfiBootFiles prepare_efi_boot_files(const fs::Tree& rootfs, const fs::SpillFile& spill, Arch arch,
                                    const BootAssetOptions& options);

// The BIOS boot files, or nullopt for architectures without BIOS boot: grub-mkimage -O
// i386-pc-eltorito -p /boot/grub with the modules a live menu needs built in (nothing is loaded
// from the medium), from the rootfs's /usr/lib/grub/i386-pc, else the host's; boot_hybrid.img
// from the same directory. Throws Error (build failed) naming grub-pc-bin and the paths searched.
std::optional<BiosBootFiles> prepare_bios_boot_files(const fs::Tree& rootfs,
                                                     const fs::SpillFile& spill, Arch arch,
                                                     const BootAssetOptions& options);

// The BIOS boot code of GPT disks (amd64): GRUB's boot.img for the MBR and a core.img for the
// BIOS boot partition (see boot/bios_disk.h for how both are patched).
struct BiosDiskBootFiles {
    std::filesystem::path core_image; // grub-mkimage -O i386-pc, the modules built in
    std::filesystem::path boot_image; // boot.img from the same module directory
    std::string origin;               // as BiosBootFiles::origin
};

// The BIOS disk boot files, or nullopt for architectures without BIOS boot: grub-mkimage -O
// i386-pc with the live menu's modules plus ext2 built in and an embedded config that searches
// for the partition holding /boot/kernel and sets prefix=($root)/boot/grub2, so that normal mode
// reads the same menu the EFI path reads; modules from the rootfs's /usr/lib/grub/i386-pc, else
// the host's. Throws Error (build failed) naming grub-pc-bin and the paths searched.
std::optional<BiosDiskBootFiles> prepare_bios_disk_boot_files(const fs::Tree& rootfs,
                                                              const fs::SpillFile& spill, Arch arch,
                                                              const BootAssetOptions& options);

// Copies the regular file an Inode holds to `destination` (mode 0644), for tools that need host
// files. Throws Error (build failed) on I/O errors.
void extract_file(const fs::Inode& inode, const fs::SpillFile& spill,
                  const std::filesystem::path& destination);

} // namespace edgeforge::boot
