// Unit tests for formats/vhd: the footer's fields and checksum, the CHS geometry of the
// specification's algorithm, and qemu-img reading a fixed VHD as the same disk as its raw part.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "base/error.h"
#include "formats/vhd.h"
#include "support/disk_images.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

constexpr std::uint64_t k_mib = 1ULL << 20;

std::uint64_t be(const std::array<std::uint8_t, 512>& footer, std::size_t offset, int bytes) {
    std::uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) {
        value = value << 8 | footer[offset + static_cast<std::size_t>(i)];
    }
    return value;
}

} // namespace

TEST_CASE("vhd: geometry follows the specification's CHS algorithm") {
    // 64 MiB: 131072 sectors, 17 per track, 7710 cylinders x heads -> 8 heads, 963 cylinders.
    CHECK(formats::vhd_geometry(64 * k_mib) == formats::VhdGeometry{963, 8, 17});
    // 1 GiB: 17 and 31 sectors per track overflow 1024 cylinders x 16 heads; 63 does not.
    CHECK(formats::vhd_geometry(1024 * k_mib) == formats::VhdGeometry{2080, 16, 63});
    // 40 GiB: over 65535 x 16 x 63 sectors, so 255 sectors per track.
    CHECK(formats::vhd_geometry(40ULL * 1024 * k_mib) == formats::VhdGeometry{20560, 16, 255});
    // Beyond the largest geometry the maximum is taken.
    CHECK(formats::vhd_geometry(4ULL << 40) == formats::VhdGeometry{65535, 16, 255});
    // Small disks keep at least 4 heads.
    CHECK(formats::vhd_geometry(k_mib) == formats::VhdGeometry{30, 4, 17});
}

TEST_CASE("vhd: footer fields, big-endian, and a checksum that verifies") {
    formats::VhdFooterOptions options;
    options.disk_size = 3 * k_mib;
    options.timestamp = 1700000000;
    options.unique_id = fs::guid_literal("01234567-89ab-4def-8123-456789abcdef");
    const auto footer = formats::make_vhd_footer(options);
    CHECK(std::string(footer.begin(), footer.begin() + 8) == "conectix");
    CHECK(be(footer, 8, 4) == 2);
    CHECK(be(footer, 12, 4) == 0x00010000);
    CHECK(be(footer, 16, 8) == 0xffffffffffffffffULL);
    CHECK(be(footer, 24, 4) == 1700000000 - 946684800);
    CHECK(std::string(footer.begin() + 28, footer.begin() + 32) == "win ");
    CHECK(be(footer, 32, 4) == 0x000a0000);
    CHECK(std::string(footer.begin() + 36, footer.begin() + 40) == "Wi2k");
    CHECK(be(footer, 40, 8) == 3 * k_mib);
    CHECK(be(footer, 48, 8) == 3 * k_mib);
    const auto geometry = formats::vhd_geometry(3 * k_mib);
    CHECK(be(footer, 56, 2) == geometry.cylinders);
    CHECK(footer[58] == geometry.heads);
    CHECK(footer[59] == geometry.sectors_per_track);
    CHECK(be(footer, 60, 4) == 2);
    CHECK(std::equal(options.unique_id.bytes.begin(), options.unique_id.bytes.end(),
                     footer.begin() + 68));
    CHECK(footer[84] == 0);
    for (std::size_t i = 85; i < footer.size(); ++i) {
        REQUIRE(footer[i] == 0);
    }
    // Checksum: the one's complement of the byte sum without the checksum field.
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < footer.size(); ++i) {
        sum += (i >= 64 && i < 68) ? 0U : footer[i];
    }
    CHECK(be(footer, 64, 4) == static_cast<std::uint32_t>(~sum));
    CHECK(formats::vhd_footer_checksum(footer) == be(footer, 64, 4));
    // Any change to a field changes the checksum.
    options.timestamp += 1;
    CHECK(be(formats::make_vhd_footer(options), 64, 4) != be(footer, 64, 4));
    // Times before 2000 are stored as 0; the same inputs give the same footer.
    options.timestamp = 0;
    CHECK(be(formats::make_vhd_footer(options), 24, 4) == 0);
    CHECK(formats::make_vhd_footer(options) == formats::make_vhd_footer(options));
}

TEST_CASE("vhd: qemu-img reads the fixed VHD as the raw disk, virtual size = the data part") {
    if (!testing::have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    const auto raw = dir.path() / "disk.raw";
    testing::RawDisk(raw, 5 * k_mib)
        .write(0, testing::compressible_bytes(4096))
        .write(5 * k_mib - 512, std::string(512, 'x'));
    const auto vhd = dir.path() / "disk.vhd";
    stdfs::copy_file(raw, vhd);
    formats::VhdFooterOptions options;
    options.disk_size = 5 * k_mib;
    options.timestamp = 1700000000;
    options.unique_id = fs::guid_from_seed("test");
    formats::append_vhd_footer(vhd, options);
    CHECK(stdfs::file_size(vhd) == 5 * k_mib + 512);
    const auto info = testing::qemu_img_info(vhd, "vpc");
    CHECK(info["format"] == "vpc");
    CHECK(info["virtual-size"] == 5 * k_mib);
    testing::check_same_disk(raw, vhd, "vpc");
}

TEST_CASE("vhd: a data part that is not whole MiB is refused") {
    util::TempDir dir;
    const auto raw = dir.path() / "disk.raw";
    testing::RawDisk(raw, k_mib + 512);
    formats::VhdFooterOptions options;
    options.disk_size = k_mib + 512;
    const auto message =
        testing::error_of([&] { formats::append_vhd_footer(raw, options); }, ExitCode::bad_input);
    CHECK(message.find("not a whole number of MiB as Azure requires") != std::string::npos);
    CHECK(stdfs::file_size(raw) == k_mib + 512);
}
