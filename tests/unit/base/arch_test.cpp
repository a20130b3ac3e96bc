// Unit tests for core/arch.
#include <doctest/doctest.h>

#include "base/arch.h"

using edgeforge::Arch;

TEST_CASE("Arch normalises the spellings users type") {
    CHECK(Arch::parse("amd64")->name() == "amd64");
    CHECK(Arch::parse("x86_64")->name() == "amd64");
    CHECK(Arch::parse("X86-64")->name() == "amd64");
    CHECK(Arch::parse("aarch64")->name() == "arm64");
    CHECK(Arch::parse("ARM64")->name() == "arm64");
    CHECK_FALSE(Arch::parse("x86").has_value());
    CHECK_FALSE(Arch::parse("").has_value());
}

TEST_CASE("Arch answers the per-architecture facts") {
    const Arch amd64(Arch::Id::amd64);
    const Arch arm64(Arch::Id::arm64);
    CHECK(amd64.traits().efi_boot_file == "BOOTX64.EFI");
    CHECK(arm64.traits().efi_boot_file == "BOOTAA64.EFI");
    CHECK(amd64.traits().grub_efi_target == "x86_64-efi");
    CHECK(arm64.traits().grub_efi_target == "arm64-efi");
    CHECK(amd64.has_bios_boot());
    CHECK_FALSE(arm64.has_bios_boot());
    CHECK(arm64.traits().qemu_system == "qemu-system-aarch64");
    CHECK(amd64.traits().aws_architecture == "x86_64");
    CHECK(Arch::all().size() == 2);
}
