// Target architectures as data: every per-architecture fact lives here and nowhere else.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace edgeforge {

struct ArchTraits {
    std::string_view name;             // canonical edgeforge/OCI name: "amd64"
    std::string_view uname;            // kernel name: "x86_64"
    std::string_view efi_suffix;       // "x64" -> BOOTX64.EFI, shimx64.efi, grubx64.efi
    std::string_view efi_boot_file;    // "BOOTX64.EFI"
    std::string_view grub_efi_target;  // grub-mkimage -O: "x86_64-efi"
    std::string_view grub_bios_target; // "i386-pc" or empty when the arch has no BIOS boot
    std::string_view debian_arch;      // dpkg architecture: "amd64"
    std::string_view qemu_system;      // "qemu-system-x86_64"
    std::string_view serial_console;   // "ttyS0"
    std::string_view aws_architecture; // RegisterImage Architecture: "x86_64"
    std::string_view vmware_os_type;   // OVF vmw:osType: "other5xLinux64Guest"
};

// One of the supported target architectures. Parse user input with Arch::parse at the boundary;
// everything downstream asks the Arch for facts instead of comparing strings.
class Arch {
  public:
    enum class Id { amd64, arm64 };

    constexpr Arch() : id_(Id::amd64) {}
    constexpr explicit Arch(Id id) : id_(id) {}
    // Accepts amd64/x86_64/x86-64 and arm64/aarch64 (any case).
    static std::optional<Arch> parse(std::string_view text);
    static Arch host();
    static std::span<const Arch> all();
    // "amd64 (alias x86_64), arm64 (alias aarch64)", for error messages.
    static std::string allowed_values_text();

    Id id() const { return id_; }
    const ArchTraits& traits() const;
    std::string_view name() const { return traits().name; }
    bool has_bios_boot() const { return !traits().grub_bios_target.empty(); }
    bool operator==(const Arch&) const = default;

  private:
    Id id_;
};

} // namespace edgeforge
