// Legacy BIOS boot of GPT disks with GRUB: boot.img in the MBR, core.img in a BIOS boot
// partition, patched the way grub-bios-setup patches them.
#include "boot/bios_disk.h"

#include "base/error.h"

namespace edgeforge::boot {
namespace {

void put_le(std::string& bytes, std::size_t offset, std::uint64_t value, int size) {
    for (int i = 0; i < size; ++i) {
        bytes[offset + static_cast<std::size_t>(i)] = static_cast<char>(value & 0xff);
        value >>= 8;
    }
}

std::uint64_t get_le(std::string_view bytes, std::size_t offset, int size) {
    std::uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i) {
        value = value << 8 | static_cast<std::uint8_t>(bytes[offset + static_cast<std::size_t>(i)]);
    }
    return value;
}

} // namespace

BiosDiskBoot patch_bios_disk_boot(std::string_view boot_img, std::string_view core_img,
                                  std::uint64_t core_lba, std::uint64_t max_core_size) {
    if (boot_img.size() != 512) {
        throw build_failed("GRUB's boot.img is {} bytes, not 512; is the grub i386-pc module "
                           "directory intact?",
                           boot_img.size());
    }
    if (core_img.size() < 1024 ||
        get_le(core_img, k_first_blocklist + 10, 2) != k_core_load_segment) {
        throw build_failed("the GRUB core image ({} bytes) does not start with diskboot.img; it "
                           "must be made with grub-mkimage -O i386-pc",
                           core_img.size());
    }
    if (core_img.size() > max_core_size) {
        throw build_failed("the GRUB core image is {} bytes, more than the {} bytes of the BIOS "
                           "boot partition",
                           core_img.size(), max_core_size);
    }
    const std::uint64_t sectors = (core_img.size() + 511) / 512;
    if (sectors - 1 > 0xffff) {
        throw build_failed("the GRUB core image has {} sectors, more than one blocklist holds",
                           sectors);
    }
    BiosDiskBoot result;
    std::string boot(boot_img);
    put_le(boot, k_boot_img_kernel_sector, core_lba, 8);
    boot[k_boot_img_boot_drive] = static_cast<char>(0xff);
    boot[k_boot_img_drive_check] = static_cast<char>(0x90);
    boot[k_boot_img_drive_check + 1] = static_cast<char>(0x90);
    result.mbr_boot_code = boot.substr(0, 440);

    std::string core(core_img);
    core.resize(sectors * 512, '\0');
    put_le(core, k_first_blocklist, core_lba + 1, 8);
    put_le(core, k_first_blocklist + 8, sectors - 1, 2);
    put_le(core, k_first_blocklist + 10, k_core_load_segment, 2);
    put_le(core, k_first_blocklist - k_blocklist_entry_size, 0, 8);
    put_le(core, k_first_blocklist - k_blocklist_entry_size + 8, 0, 2);
    put_le(core, k_first_blocklist - k_blocklist_entry_size + 10, 0, 2);
    result.core_image = std::move(core);
    return result;
}

} // namespace edgeforge::boot
