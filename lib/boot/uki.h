// Kairos Trusted Boot facts: how the root filesystem becomes a UKI's initrd, the command lines
// of its boot entries, and where the systemd EFI stub and boot loader are.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/arch.h"
#include "fs/tree.h"

namespace edgeforge::boot {

// The command line of every Kairos UKI (AuroraBoot's UkiCmdline): the OS is the initrd
// (rd.immucore.uki), the OEM partition is found by label, no shell, reboot on a crash.
inline constexpr std::string_view k_uki_cmdline =
    "console=ttyS0 console=tty1 net.ifnames=1 rd.immucore.oemlabel=COS_OEM "
    "rd.immucore.oemtimeout=2 rd.immucore.uki selinux=0 panic=5 rd.shell=0 "
    "systemd.crash_reboot=yes";
// Added for the installer's entries: immucore starts the installer instead of the OS.
inline constexpr std::string_view k_uki_install_flag = "install-mode";

// The program Kairos boots as /init of a UKI: immucore, which sets up the OS from the initrd.
inline constexpr std::string_view k_uki_init_program = "/usr/bin/immucore";

// Directories left empty in the initrd: /boot (the kernel is the UKI's .linux section, and the
// base's own initrd has no use in it).
inline const std::vector<std::string> k_uki_emptied_directories = {"/boot"};

// Turns the merged root filesystem into what a Kairos UKI carries as its initrd: /init links to
// /usr/bin/immucore unless the image has an /init of its own, and /oem, /efi and
// /usr/local/cloud-config exist (mode 0755, `mtime`). Throws Error (bad input) when the image
// has neither /init nor /usr/bin/immucore: "the base image cannot boot from a UKI: ...".
void prepare_uki_rootfs(fs::Tree& rootfs, std::int64_t mtime);

// The systemd EFI stub and systemd-boot for `arch`, as the systemd-boot-efi package installs
// them (/usr/lib/systemd/boot/efi/linuxx64.efi.stub, systemd-bootx64.efi; aa64 on arm64).
std::string uki_stub_path(Arch arch);
std::string systemd_boot_path(Arch arch);

} // namespace edgeforge::boot
