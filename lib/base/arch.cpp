// Target architectures as data: every per-architecture fact lives here and nowhere else.
#include "base/arch.h"

#include <array>

#include <sys/utsname.h>

#include "util/strings.h"

namespace edgeforge {
namespace {

constexpr ArchTraits k_amd64{
    .name = "amd64",
    .uname = "x86_64",
    .efi_suffix = "x64",
    .efi_boot_file = "BOOTX64.EFI",
    .grub_efi_target = "x86_64-efi",
    .grub_bios_target = "i386-pc",
    .debian_arch = "amd64",
    .qemu_system = "qemu-system-x86_64",
    .serial_console = "ttyS0",
    .aws_architecture = "x86_64",
    .vmware_os_type = "other5xLinux64Guest",
};

constexpr ArchTraits k_arm64{
    .name = "arm64",
    .uname = "aarch64",
    .efi_suffix = "aa64",
    .efi_boot_file = "BOOTAA64.EFI",
    .grub_efi_target = "arm64-efi",
    .grub_bios_target = "",
    .debian_arch = "arm64",
    .qemu_system = "qemu-system-aarch64",
    .serial_console = "ttyAMA0",
    .aws_architecture = "arm64",
    .vmware_os_type = "arm-other5xlinux-64",
};

constexpr std::array<Arch, 2> k_all{Arch(Arch::Id::amd64), Arch(Arch::Id::arm64)};

} // namespace

std::optional<Arch> Arch::parse(std::string_view text) {
    const std::string lowered = util::to_lower(util::trim(text));
    if (lowered == "amd64" || lowered == "x86_64" || lowered == "x86-64") {
        return Arch(Id::amd64);
    }
    if (lowered == "arm64" || lowered == "aarch64") {
        return Arch(Id::arm64);
    }
    return std::nullopt;
}

Arch Arch::host() {
    utsname info{};
    ::uname(&info);
    return parse(info.machine).value_or(Arch(Id::amd64));
}

std::span<const Arch> Arch::all() {
    return k_all;
}

std::string Arch::allowed_values_text() {
    return "amd64 (alias x86_64), arm64 (alias aarch64)";
}

const ArchTraits& Arch::traits() const {
    return id_ == Id::amd64 ? k_amd64 : k_arm64;
}

} // namespace edgeforge
