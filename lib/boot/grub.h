// Renders the grub.cfg templates of live installer media: the menu and the stubs that chain to it.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "base/arch.h"
#include "base/templates.h"

namespace edgeforge::boot {

// Paths on the live ISO that the menu, the stubs and the ISO layout must agree on.
inline constexpr std::string_view k_live_kernel_path = "/boot/kernel";
inline constexpr std::string_view k_live_initrd_path = "/boot/initrd";
inline constexpr std::string_view k_live_menu_dir = "/boot/grub2";
inline constexpr std::string_view k_live_volume_id = "COS_LIVE";
inline constexpr std::string_view k_live_squashfs_name = "rootfs.squashfs";

struct LiveMenuOptions {
    Arch arch;
    std::string title = "Kairos"; // menu entries read "Install <title>", ...
    std::string extra_cmdline;    // appended to the live command line of every entry
    int timeout_seconds = 5;      // grub's menu timeout; 0 boots the default at once
    std::string volume_id = std::string(k_live_volume_id);
    std::string squashfs_name = std::string(k_live_squashfs_name);
};

// The Kairos live kernel command line every entry starts with: "root=live:CDLABEL=COS_LIVE
// rd.live.dir=/ rd.live.squashimg=rootfs.squashfs rd.live.overlay.overlayfs console=tty1
// console=<the arch's serial console>" followed by the extra options, if any.
std::string live_kernel_cmdline(const LiveMenuOptions& options);

// The placeholder values for the live menu and the stub.
TemplateValues live_menu_values(const LiveMenuOptions& options);

// templates/grub/grub.cfg rendered: the live menu for /boot/grub2/grub.cfg with entries for
// install, interactive install, recovery and a debug shell.
std::string render_live_menu(const LiveMenuOptions& options,
                             const std::filesystem::path& templates = templates_directory());

// templates/grub/grub-stub.cfg rendered: the stub for /boot/grub/grub.cfg and the ESP's
// /EFI/BOOT/grub.cfg that searches for /boot/kernel and loads /boot/grub2/grub.cfg from there.
std::string render_grub_stub(const std::filesystem::path& templates = templates_directory());

} // namespace edgeforge::boot
