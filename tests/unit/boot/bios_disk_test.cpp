// Unit tests for boot/bios_disk: boot.img and core.img patched as grub-bios-setup patches them.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "boot/bios_disk.h"
#include "base/error.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;

namespace {

std::uint64_t le(const std::string& bytes, std::size_t offset, int size) {
    std::uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i) {
        value = value << 8 | static_cast<std::uint8_t>(bytes[offset + static_cast<std::size_t>(i)]);
    }
    return value;
}

// A stand-in for grub-mkimage's output: diskboot's default blocklist (start 2, segment 0x820)
// at the end of the first sector, then `sectors - 1` more sectors of payload.
std::string fake_core(std::size_t size) {
    std::string core(size, 'c');
    core.replace(0x1e8, 12, std::string(12, '\0'));
    core.replace(0x1f4, 12, std::string("\x02\0\0\0\0\0\0\0\0\0\x20\x08", 12));
    return core;
}

std::string fake_boot() {
    std::string boot(512, 'b');
    boot[0x66] = static_cast<char>(0xeb); // the drive check's jmp
    boot[0x67] = 0x05;
    return boot;
}

} // namespace

TEST_CASE("bios disk boot: boot.img points at core.img, diskboot's blocklist at the rest") {
    const std::uint64_t lba = 123456789012ULL;
    const auto patched =
        boot::patch_bios_disk_boot(fake_boot(), fake_core(3 * 512 + 100), lba, 1 << 20);
    REQUIRE(patched.mbr_boot_code.size() == 440);
    CHECK(le(patched.mbr_boot_code, 0x5c, 8) == lba);
    CHECK(static_cast<std::uint8_t>(patched.mbr_boot_code[0x64]) == 0xff);
    CHECK(static_cast<std::uint8_t>(patched.mbr_boot_code[0x66]) == 0x90);
    CHECK(static_cast<std::uint8_t>(patched.mbr_boot_code[0x67]) == 0x90);
    CHECK(patched.mbr_boot_code[0] == 'b'); // the rest of boot.img as it was

    // Padded to whole sectors: 4 sectors, the first loaded by boot.img, 3 by the blocklist.
    REQUIRE(patched.core_image.size() == 4 * 512);
    CHECK(le(patched.core_image, 0x1f4, 8) == lba + 1);
    CHECK(le(patched.core_image, 0x1fc, 2) == 3);
    CHECK(le(patched.core_image, 0x1fe, 2) == 0x820);
    CHECK(le(patched.core_image, 0x1e8, 8) == 0); // the terminator entry
    CHECK(le(patched.core_image, 0x1f0, 4) == 0);
    CHECK(patched.core_image.substr(512, 3 * 512 + 100 - 512) ==
          std::string(3 * 512 + 100 - 512, 'c'));
}

TEST_CASE("bios disk boot: the host's grub images, when installed") {
    const std::filesystem::path directory = "/usr/lib/grub/i386-pc";
    if (!std::filesystem::exists(directory / "boot.img") ||
        !std::filesystem::exists(directory / "diskboot.img")) {
        return;
    }
    // diskboot.img alone is a core.img's first sector; one more sector stands for the kernel.
    const std::string core = util::read_file(directory / "diskboot.img") + std::string(512, 'k');
    const auto patched =
        boot::patch_bios_disk_boot(util::read_file(directory / "boot.img"), core, 2048, 1 << 20);
    CHECK(le(patched.mbr_boot_code, 0x5c, 8) == 2048);
    CHECK(le(patched.core_image, 0x1f4, 8) == 2049);
    CHECK(le(patched.core_image, 0x1fc, 2) == 1);
}

TEST_CASE("bios disk boot: wrong inputs are refused") {
    const auto wrong_boot = testing::error_of(
        [] { boot::patch_bios_disk_boot(std::string(100, 'b'), fake_core(2048), 1, 1 << 20); },
        ExitCode::build_failed);
    CHECK(wrong_boot.find("boot.img is 100 bytes, not 512") != std::string::npos);
    const auto not_core = testing::error_of(
        [] { boot::patch_bios_disk_boot(fake_boot(), std::string(2048, 'x'), 1, 1 << 20); },
        ExitCode::build_failed);
    CHECK(not_core.find("does not start with diskboot.img") != std::string::npos);
    const auto too_big =
        testing::error_of([] { boot::patch_bios_disk_boot(fake_boot(), fake_core(4096), 1, 2048); },
                          ExitCode::build_failed);
    CHECK(too_big.find("more than the 2048 bytes of the BIOS boot partition") != std::string::npos);
}
