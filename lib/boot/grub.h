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
// What CanvOS's DEBUG=true adds to the installer's command line (immucore and dracut debug
// output, the console on the screen).
inline constexpr std::string_view k_debug_cmdline = "rd.immucore.debug console=tty0 rd.debug";
// The placeholder of a user-supplied menu (CanvOS's overlay/files-iso/boot/grub2/grub.cfg) for
// the default entry's index.
inline constexpr std::string_view k_default_entry_placeholder = "{{DEFAULT_ENTRY}}";

struct LiveMenuOptions {
    Arch arch;
    std::string title = "Kairos"; // menu entries read "Install <title>", ...
    std::string extra_cmdline;    // appended to the live command line of every entry
    int timeout_seconds = 5;      // grub's menu timeout; 0 boots the default at once
    bool interactive_default = false; // the interactive install is the default entry
    bool debug = false;               // every entry gets k_debug_cmdline
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

// A user-supplied live menu (the ISO overlay's boot/grub2/grub.cfg) rendered as CanvOS renders
// it: {{DEFAULT_ENTRY}} becomes 2 (CanvOS's menu has the interactive install third) when
// `interactive_default`, else 0; with `debug`, k_debug_cmdline is appended to every line that
// holds rd.immucore.sysrootwait (the installer's kernel lines).
std::string render_user_menu(std::string_view text, bool interactive_default, bool debug);

// templates/grub/grub-stub.cfg rendered: the stub for /boot/grub/grub.cfg and the ESP's
// /EFI/BOOT/grub.cfg that searches for /boot/kernel and loads /boot/grub2/grub.cfg from there.
std::string render_grub_stub(const std::filesystem::path& templates = templates_directory());

} // namespace edgeforge::boot
