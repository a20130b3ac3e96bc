// Kairos Trusted Boot facts: the UKI's initrd, command lines, stub and boot loader paths.
#include "boot/uki.h"

#include <fmt/format.h>

#include "base/error.h"

namespace edgeforge::boot {

void prepare_uki_rootfs(fs::Tree& rootfs, std::int64_t mtime) {
    if (!rootfs.lookup("/init")) {
        const auto program = rootfs.resolve(k_uki_init_program);
        if (!program || !program->is_regular()) {
            throw bad_input("the base image cannot boot from a UKI: it has neither /init nor {} "
                            "(Kairos's initramfs program, which a UKI starts as /init). Use a "
                            "Kairos base image built for Trusted Boot (its tag ends in -uki), or "
                            "add {} to the image",
                            k_uki_init_program, k_uki_init_program);
        }
        auto link = std::make_shared<fs::Inode>();
        link->type = fs::FileType::symlink;
        link->mode = 0777;
        link->mtime = mtime;
        link->symlink_target = std::string(k_uki_init_program);
        rootfs.root().children["init"] = link;
    }
    const std::vector<std::string> directories = {"/oem", "/efi", "/usr/local/cloud-config"};
    rootfs.ensure_directories(directories, mtime);
}

std::string uki_stub_path(Arch arch) {
    return fmt::format("/usr/lib/systemd/boot/efi/linux{}.efi.stub", arch.traits().efi_suffix);
}

std::string systemd_boot_path(Arch arch) {
    return fmt::format("/usr/lib/systemd/boot/efi/systemd-boot{}.efi", arch.traits().efi_suffix);
}

} // namespace edgeforge::boot
