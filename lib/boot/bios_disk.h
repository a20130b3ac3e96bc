// Legacy BIOS boot of GPT disks with GRUB: boot.img in the MBR, core.img in a BIOS boot
// partition, patched the way grub-bios-setup patches them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgeforge::boot {

// Offsets in GRUB's i386-pc boot.img and diskboot.img (grub's include/grub/i386/pc/boot.h).
inline constexpr std::size_t k_boot_img_kernel_sector = 0x5c; // LBA of core.img, 8 bytes LE
inline constexpr std::size_t k_boot_img_boot_drive = 0x64;    // 0xff: the drive the BIOS gave
inline constexpr std::size_t k_boot_img_drive_check = 0x66;   // a jmp; two NOPs on hard disks
// diskboot.img (core.img's first sector) ends with its blocklist: entries of start LBA (8 bytes),
// sector count (2) and load segment (2), read downwards from the sector's end, ended by an
// all-zero entry.
inline constexpr std::size_t k_blocklist_entry_size = 12;
inline constexpr std::size_t k_first_blocklist = 512 - k_blocklist_entry_size;
// The rest of core.img is loaded at 0x8200 (segment 0x820), after its first sector at 0x8000.
inline constexpr std::uint16_t k_core_load_segment = 0x820;

struct BiosDiskBoot {
    std::string mbr_boot_code; // the first 440 bytes of the MBR
    std::string core_image;    // core.img with its blocklist pointing at itself
};

// Patches GRUB's boot.img (512 bytes) and core.img (from grub-mkimage -O i386-pc) for core.img
// stored contiguously from sector `core_lba` of the disk (the start of the BIOS boot partition):
// boot.img gets core.img's first sector at 0x5c, boot drive 0xff (whatever the BIOS booted) and
// the drive check disabled, as grub-bios-setup does for hard disks; diskboot's first blocklist
// entry gets the rest of core.img (core_lba + 1, its sector count, segment 0x820) and the entry
// below it is zeroed as the terminator. Error (build failed) for a boot.img that is not 512
// bytes or a core.img that does not start with diskboot (its default blocklist segment), is over
// `max_core_size` bytes, or more sectors than one blocklist entry counts.
BiosDiskBoot patch_bios_disk_boot(std::string_view boot_img, std::string_view core_img,
                                  std::uint64_t core_lba, std::uint64_t max_core_size);

} // namespace edgeforge::boot
