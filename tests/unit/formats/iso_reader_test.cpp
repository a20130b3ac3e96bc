// Unit tests for formats/iso_reader: the primary volume descriptor and the El Torito catalog.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "formats/iso_reader.h"
#include "support/bytes.h"

using namespace edgeforge;
using namespace edgeforge::formats;

namespace {

using edgeforge::testing::put;
using edgeforge::testing::put16;
using edgeforge::testing::put32;

} // namespace

TEST_CASE("read_iso_volume reads the volume descriptor and the El Torito catalog") {
    std::vector<std::uint8_t> image(24 * 2048, 0);
    const std::size_t pvd = 16 * 2048;
    image[pvd] = 1;
    put(image, pvd + 1, "CD001");
    put(image, pvd + 40, "COS_LIVE                        ");
    put32(image, pvd + 80, 24);
    put16(image, pvd + 128, 2048);
    const std::size_t record = 17 * 2048;
    put(image, record + 1, "CD001");
    put(image, record + 7, "EL TORITO SPECIFICATION");
    put32(image, record + 0x47, 20);
    const std::size_t catalog = 20 * 2048;
    image[catalog] = 1;
    image[catalog + 30] = 0x55;
    image[catalog + 31] = 0xAA;
    image[catalog + 32] = 0x88; // initial entry: BIOS, no emulation, 4 sectors at block 21
    put16(image, catalog + 32 + 6, 4);
    put32(image, catalog + 32 + 8, 21);
    image[catalog + 64] = 0x91; // last section header: EFI, one entry
    image[catalog + 65] = 0xEF;
    put16(image, catalog + 66, 1);
    image[catalog + 96] = 0x88;
    put16(image, catalog + 96 + 6, 2880);
    put32(image, catalog + 96 + 8, 22);

    const auto read_block = [&](std::uint32_t block) {
        const std::size_t at = std::size_t{block} * 2048;
        if (at + 2048 > image.size()) {
            return std::vector<std::uint8_t>();
        }
        return std::vector<std::uint8_t>(image.begin() + static_cast<std::ptrdiff_t>(at),
                                         image.begin() + static_cast<std::ptrdiff_t>(at + 2048));
    };
    const auto volume = read_iso_volume(read_block);
    REQUIRE(volume);
    CHECK(volume->volume_id == "COS_LIVE");
    CHECK(volume->volume_bytes == 24 * 2048);
    CHECK(volume->boot_catalog_block == 20u);
    REQUIRE(volume->boot_entries.size() == 2);
    CHECK(volume->boot_entries[0].platform == "bios");
    CHECK(volume->boot_entries[0].bootable);
    CHECK(volume->boot_entries[0].emulation == "none");
    CHECK(volume->boot_entries[0].load_rba == 21);
    CHECK(volume->boot_entries[0].sector_count == 4);
    CHECK(volume->boot_entries[1].platform == "efi");
    CHECK(volume->boot_entries[1].load_rba == 22);
    CHECK(volume->boot_entries[1].sector_count == 2880);

    // Without the boot record the volume is still read; without the PVD there is no ISO.
    image[record + 7] = 'X';
    const auto plain = read_iso_volume(read_block);
    REQUIRE(plain);
    CHECK(plain->boot_entries.empty());
    CHECK_FALSE(plain->boot_catalog_block);
    image[pvd] = 2;
    CHECK_FALSE(read_iso_volume(read_block));
}
