// Unit tests for formats/raw_disk: Kairos-style disks judged by sgdisk, fsck.ext4, debugfs,
// fsck.fat and mtools; sparse copying, placement, determinism and bad input.
#include <doctest/doctest.h>

#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "boot/esp.h"
#include "base/error.h"
#include "formats/raw_disk.h"
#include "fs/ext4.h"
#include "support/data.h"
#include "support/disk_images.h"
#include "support/errors.h"
#include "support/partition_tools.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::RawDisk;
namespace stdfs = std::filesystem;

namespace {

constexpr std::uint64_t k_kib = 1024;
constexpr std::uint64_t k_mib = 1024 * k_kib;
constexpr std::int64_t k_epoch = 1700000000;

const std::string k_user_data = "#cloud-config\nhostname: edge-{{ trunc 4 .MachineID }}\n";
const std::string k_grub_cfg = "set timeout=5\nsearch --no-floppy --label --set=root COS_STATE\n";

std::string upper(std::string text) {
    for (auto& c : text) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return text;
}

std::size_t entries_in(const stdfs::path& directory) {
    return static_cast<std::size_t>(
        std::distance(stdfs::directory_iterator(directory), stdfs::directory_iterator()));
}

// "disk.img?offset=N": e2fsprogs tools read the filesystem at that offset of the whole disk.
std::string at_offset(const stdfs::path& disk, std::uint64_t offset) {
    return disk.string() + "?offset=" + std::to_string(offset);
}

// The partition images of a Kairos disk: an ESP (FAT), COS_OEM with the user-data and a mostly
// empty COS_RECOVERY, all reproducible.
struct KairosImages {
    util::TempDir dir;
    stdfs::path esp = dir.path() / "esp.img";
    stdfs::path oem = dir.path() / "oem.img";
    stdfs::path recovery = dir.path() / "recovery.img";

    KairosImages() {
        std::vector<boot::EspFile> files;
        files.push_back(
            {"/EFI/BOOT/BOOTX64.EFI", {}, testing::pseudo_random_bytes(300 * k_kib, 3)});
        files.push_back({"/EFI/BOOT/grub.cfg", {}, k_grub_cfg});
        boot::EspOptions options;
        options.label = "COS_GRUB";
        options.source_date_epoch = k_epoch;
        boot::build_esp_image(files, esp, options);

        const auto oem_tree = dir.path() / "oem-tree";
        stdfs::create_directories(oem_tree / "oem");
        util::write_file_atomically(oem_tree / "oem/90_custom.yaml", k_user_data);
        fs::make_ext4_image(oem_tree, 64 * k_mib, "COS_OEM", oem, k_epoch);

        const auto recovery_tree = dir.path() / "recovery-tree";
        stdfs::create_directories(recovery_tree / "cOS");
        util::write_file_atomically(recovery_tree / "cOS/recovery.squashfs",
                                    testing::pseudo_random_bytes(2 * k_mib, 4));
        fs::make_ext4_image(recovery_tree, 256 * k_mib, "COS_RECOVERY", recovery, k_epoch);
    }

    formats::RawDiskLayout layout() const {
        formats::RawDiskLayout layout;
        formats::RawDiskPartition bios;
        bios.name = "BIOS";
        bios.type = fs::k_bios_boot_partition_type;
        bios.size = k_mib;
        bios.attributes = fs::k_gpt_attribute_legacy_bios_bootable;
        layout.partitions.push_back(bios);
        layout.partitions.push_back({"COS_GRUB", fs::k_efi_system_partition_type, 0, esp, 0, {}});
        layout.partitions.push_back(
            {"COS_OEM", fs::k_linux_filesystem_partition_type, 0, oem, 0, {}});
        layout.partitions.push_back(
            {"COS_RECOVERY", fs::k_linux_filesystem_partition_type, 0, recovery, 0, {}});
        layout.boot_code = testing::pseudo_random_bytes(440, 6);
        layout.seed = "kairos test disk";
        return layout;
    }
};

bool have_tools() {
    return testing::have_programs({"sgdisk", "mke2fs", "debugfs", "fsck.ext4", "mkfs.fat", "mcopy",
                                   "mmd", "mdir", "mtype", "fsck.fat"});
}

} // namespace

TEST_CASE("raw disk: a Kairos disk passes sgdisk -v, fsck of every partition, and reads back") {
    if (!have_tools()) {
        return;
    }
    KairosImages images;
    const auto disk = images.dir.path() / "disk.raw";
    const auto layout = images.layout();
    const auto result = formats::write_raw_disk(layout, disk);

    // 1 MiB gap, BIOS 1 MiB, ESP, OEM 64 MiB, RECOVERY 256 MiB, 1 MiB for the backup GPT.
    const std::uint64_t esp_size = stdfs::file_size(images.esp);
    REQUIRE(esp_size % k_mib == 0);
    const std::uint64_t expected_size = (1 + 1 + 64 + 256 + 1) * k_mib + esp_size;
    CHECK(result.disk_size == expected_size);
    CHECK(stdfs::file_size(disk) == expected_size);
    // The digest taken while writing is the file's (GPTs, partitions, holes as zeros).
    CHECK(result.sha256 == util::sha256_file_hex(disk));
    REQUIRE(result.partitions.size() == 4);
    const std::vector<std::uint64_t> offsets{k_mib, 2 * k_mib, 2 * k_mib + esp_size,
                                             66 * k_mib + esp_size};
    const std::vector<std::uint64_t> sizes{k_mib, esp_size, 64 * k_mib, 256 * k_mib};
    for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);
        CHECK(result.partitions[i].name == layout.partitions[i].name);
        CHECK(result.partitions[i].offset == offsets[i]);
        CHECK(result.partitions[i].size == sizes[i]);
    }

    // sgdisk reads the table as written.
    testing::check_sgdisk_verify(disk);
    const std::string print = testing::tool_output({"sgdisk", "-p", disk.string()});
    CHECK(print.find("Disk identifier (GUID): " + upper(result.disk_guid.str())) !=
          std::string::npos);
    const std::vector<std::string> codes{"EF02", "EF00", "8300", "8300"};
    for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);
        const auto info = testing::sgdisk_info(disk, static_cast<int>(i + 1));
        CHECK(info.at("Partition name") == "'" + layout.partitions[i].name + "'");
        CHECK(info.at("Partition unique GUID") == upper(result.partitions[i].unique.str()));
        CHECK(testing::first_word(info.at("Partition GUID code")) ==
              upper(layout.partitions[i].type.str()));
        CHECK(testing::first_word(info.at("First sector")) == std::to_string(offsets[i] / 512));
        CHECK(testing::first_word(info.at("Last sector")) ==
              std::to_string((offsets[i] + sizes[i]) / 512 - 1));
        CHECK(print.find(codes[i] + "  " + layout.partitions[i].name) != std::string::npos);
    }
    CHECK(testing::sgdisk_info(disk, 1).at("Attribute flags") == "0000000000000004");
    CHECK(testing::read_range(disk, 0, 440) == layout.boot_code);

    // Each image is in its partition byte for byte, and the rest of the partition is zero.
    const std::vector<stdfs::path> sources{{}, images.esp, images.oem, images.recovery};
    for (std::size_t i = 1; i < 4; ++i) {
        CAPTURE(i);
        const auto extracted = images.dir.path() / ("partition" + std::to_string(i));
        testing::extract_range(disk, offsets[i], sizes[i], extracted);
        CHECK(util::sha256_file_hex(extracted) == util::sha256_file_hex(sources[i]));
    }

    // The filesystems, read where they are on the disk.
    const auto esp_part = images.dir.path() / "partition1";
    const auto fsck_fat = util::run_process({"fsck.fat", "-n", esp_part.string()});
    CHECK_MESSAGE(fsck_fat.exit_code == 0, fsck_fat.standard_output, fsck_fat.standard_error);
    const std::string esp_at = disk.string() + "@@" + std::to_string(offsets[1]);
    util::ProcessOptions mtools;
    mtools.extra_environment = {"MTOOLS_SKIP_CHECK=1"};
    const std::string listing =
        testing::tool_output({"mdir", "-i", esp_at, "-b", "::/EFI/BOOT"}, mtools);
    CHECK(listing.find("::/EFI/BOOT/BOOTX64.EFI") != std::string::npos);
    CHECK(testing::tool_output({"mtype", "-i", esp_at, "::/EFI/BOOT/grub.cfg"}, mtools) ==
          k_grub_cfg);

    testing::check_fsck_ext4(at_offset(disk, offsets[2]));
    testing::check_fsck_ext4(at_offset(disk, offsets[3]));
    CHECK(testing::debugfs_cat(at_offset(disk, offsets[2]), "/oem/90_custom.yaml") == k_user_data);
    CHECK(testing::debugfs_cat(at_offset(disk, offsets[3]), "/cOS/recovery.squashfs") ==
          testing::pseudo_random_bytes(2 * k_mib, 4));
    CHECK(testing::dumpe2fs_field(at_offset(disk, offsets[3]), "Filesystem volume name") ==
          "COS_RECOVERY");

    // Sparse: the disk takes no more space than the images' data plus the two GPTs.
    const std::uint64_t images_allocated = testing::allocated_bytes(images.esp) +
                                           testing::allocated_bytes(images.oem) +
                                           testing::allocated_bytes(images.recovery);
    CHECK(result.data_bytes <= images_allocated);
    CHECK(testing::allocated_bytes(disk) <= result.data_bytes + 64 * k_kib);
    CHECK(testing::allocated_bytes(disk) < result.disk_size / 10);
}

TEST_CASE("raw disk: the same seed and images give a byte-identical disk") {
    if (!testing::have_programs({"sgdisk"})) {
        return;
    }
    util::TempDir dir;
    RawDisk image(dir.path() / "part.img", 3 * k_mib);
    image.write(12345, testing::pseudo_random_bytes(70000, 1));
    formats::RawDiskLayout layout;
    layout.partitions.push_back(
        {"COS_OEM", fs::k_linux_filesystem_partition_type, 0, image.path(), 0, {}});
    layout.partitions.push_back(
        {"COS_PERSISTENT", fs::k_linux_filesystem_partition_type, 5 * k_mib, {}, 0, {}});
    layout.seed = "seed";

    const auto first = formats::write_raw_disk(layout, dir.path() / "a.raw");
    const auto second = formats::write_raw_disk(layout, dir.path() / "b.raw");
    CHECK(util::sha256_file_hex(dir.path() / "a.raw") ==
          util::sha256_file_hex(dir.path() / "b.raw"));
    CHECK(first.disk_guid == second.disk_guid);
    CHECK(first.partitions[0].unique == second.partitions[0].unique);
    CHECK(first.partitions[0].unique != first.partitions[1].unique);
    CHECK(first.partitions[0].unique != first.disk_guid);
    CHECK(formats::plan_raw_disk(layout).disk_guid == first.disk_guid);

    // Another seed, other GUIDs; no seed, random ones.
    layout.seed = "another seed";
    const auto other = formats::write_raw_disk(layout, dir.path() / "c.raw");
    CHECK(other.disk_guid != first.disk_guid);
    CHECK(other.partitions[0].unique != first.partitions[0].unique);
    layout.seed.clear();
    const auto random1 = formats::write_raw_disk(layout, dir.path() / "d.raw");
    const auto random2 = formats::write_raw_disk(layout, dir.path() / "e.raw");
    CHECK(random1.disk_guid != random2.disk_guid);
    CHECK(random1.partitions[1].unique != random2.partitions[1].unique);
    for (const char* name : {"a.raw", "c.raw", "d.raw"}) {
        testing::check_sgdisk_verify(dir.path() / name);
    }
}

TEST_CASE("raw disk: a disk bigger than needed keeps its backup GPT at the real end") {
    if (!testing::have_programs({"sgdisk"})) {
        return;
    }
    util::TempDir dir;
    formats::RawDiskLayout layout;
    layout.partitions.push_back(
        {"COS_STATE", fs::k_linux_filesystem_partition_type, 3 * k_mib, {}, 0, {}});
    layout.seed = "big";
    layout.disk_size = 100 * k_mib + 5 * 512; // not even whole MiB
    const auto disk = dir.path() / "disk.raw";
    const auto result = formats::write_raw_disk(layout, disk);
    CHECK(result.disk_size == layout.disk_size);
    CHECK(stdfs::file_size(disk) == layout.disk_size);
    CHECK(result.sha256 == util::sha256_file_hex(disk)); // no image: only the GPTs and zeros
    testing::check_sgdisk_verify(disk);
    const std::uint64_t sectors = layout.disk_size / 512;
    CHECK(testing::tool_output({"sgdisk", "-p", disk.string()})
              .find(fmt::format("First usable sector is 34, last usable sector is {}",
                                sectors - 34)) != std::string::npos);
    // The backup header is the last sector.
    CHECK(testing::read_range(disk, layout.disk_size - 512, 8) == "EFI PART");
    CHECK(testing::read_range(disk, layout.disk_size - 1024, 512) == std::string(512, '\0'));
    // The smallest disk for the same layout: the partition, then 1 MiB for the backup GPT.
    layout.disk_size = 0;
    CHECK(formats::plan_raw_disk(layout).disk_size == 5 * k_mib);
}

TEST_CASE("raw disk: partitions take their images' sizes rounded to 1 MiB and start on 1 MiB") {
    util::TempDir dir;
    RawDisk odd(dir.path() / "odd.img", k_mib + 512);
    odd.write(0, "data");
    formats::RawDiskLayout layout;
    layout.partitions.push_back({"A", fs::k_linux_filesystem_partition_type, 0, odd.path(), 0, {}});
    layout.partitions.push_back(
        {"B", fs::k_linux_filesystem_partition_type, 3 * k_mib + 512, {}, 0, {}});
    layout.partitions.push_back({"C", fs::k_linux_filesystem_partition_type, 512, {}, 0, {}});
    const auto gpt = formats::plan_raw_disk(layout);
    REQUIRE(gpt.partitions.size() == 3);
    CHECK(gpt.partitions[0].first_lba == 2048);
    CHECK(gpt.partitions[0].size == 2 * k_mib);
    CHECK(gpt.partitions[1].first_lba == 3 * 2048);
    CHECK(gpt.partitions[1].size == 3 * k_mib + 512);
    CHECK(gpt.partitions[2].first_lba == 7 * 2048);
    CHECK(gpt.partitions[2].size == 512);
    // Partition C ends in the eighth MiB; the backup GPT fits in the rest of it, then whole MiB.
    CHECK(gpt.disk_size == 8 * k_mib);
    CHECK(gpt.disk_guid != fs::Guid{});
    CHECK(gpt.partitions[0].unique != gpt.partitions[1].unique);
}

TEST_CASE("raw disk: only the data of a sparse image is copied, byte for byte") {
    util::TempDir dir;
    // Data at unaligned places, zeros written as data, a last byte that is not zero.
    const std::uint64_t size = 6 * k_mib + 3 * 4096;
    RawDisk image(dir.path() / "part.img", size);
    image.write(100, testing::pseudo_random_bytes(5000, 1))
        .write_zeros(k_mib, 2 * k_mib)
        .write(2 * k_mib + 4095, "xy")
        .write(4 * k_mib, testing::compressible_bytes(700 * k_kib))
        .write(size - 1, "Z");
    formats::RawDiskLayout layout;
    layout.partitions.push_back(
        {"DATA", fs::k_linux_filesystem_partition_type, 0, image.path(), 0, {}});
    layout.seed = "sparse";
    const auto disk = dir.path() / "disk.raw";
    const auto result = formats::write_raw_disk(layout, disk);
    CHECK(result.sha256 == util::sha256_file_hex(disk)); // zero blocks and holes hash as zeros
    CHECK(result.partitions[0].size == 7 * k_mib);
    const auto extracted = dir.path() / "extracted.img";
    testing::extract_range(disk, k_mib, size, extracted);
    CHECK(util::read_file(extracted) == util::read_file(image.path()));
    // Only non-zero 4 KiB blocks were written, and nothing else is allocated but the GPTs.
    const std::uint64_t data_blocks = testing::count_data_chunks(image.path(), 4096);
    CHECK(result.data_bytes == data_blocks * 4096);
    CHECK(testing::allocated_bytes(disk) <= result.data_bytes + 64 * k_kib);
}

TEST_CASE("raw disk: a partition's extents go over its image, byte for byte") {
    util::TempDir dir;
    const std::uint64_t size = 4 * k_mib;
    RawDisk image(dir.path() / "part.img", size);
    image.write(0, testing::pseudo_random_bytes(3 * 4096 + 7, 1))
        .write(k_mib - 4096, testing::pseudo_random_bytes(3 * 4096, 2))
        .write(3 * k_mib, testing::pseudo_random_bytes(8192, 3));
    const std::string a = testing::pseudo_random_bytes(2 * k_mib + 5, 4);
    std::string b = testing::pseudo_random_bytes(64 * k_kib, 5);
    b.replace(4096, 8192, std::string(8192, '\0')); // zero blocks stay holes here too
    util::write_file_atomically(dir.path() / "a.bin", a);
    util::write_file_atomically(dir.path() / "b.bin", b);
    formats::RawDiskLayout layout;
    layout.partitions.push_back(
        {"DATA", fs::k_linux_filesystem_partition_type, 0, image.path(), 0, {}});
    // Listed out of order: over data, across data regions (ending inside a block), in a hole.
    layout.partitions[0].extents = {
        {3 * k_mib + 12288, dir.path() / "b.bin", 0, b.size()},
        {4096, dir.path() / "a.bin", 100, k_mib},
        {k_mib + 4096, dir.path() / "a.bin", 0, a.size()},
    };
    layout.seed = "extents";
    std::string expected = util::read_file(image.path());
    expected.replace(4096, k_mib, a.substr(100, k_mib));
    expected.replace(k_mib + 4096, a.size(), a);
    expected.replace(3 * k_mib + 12288, b.size(), b);
    const auto disk = dir.path() / "disk.raw";
    const auto result = formats::write_raw_disk(layout, disk);
    CHECK(result.sha256 == util::sha256_file_hex(disk));
    const auto extracted = dir.path() / "extracted.img";
    testing::extract_range(disk, k_mib, size, extracted);
    CHECK(util::read_file(extracted) == expected);
    CHECK(testing::allocated_bytes(disk) <= result.data_bytes + 64 * k_kib);

    // A partition of extents alone, no image.
    layout.partitions[0].source.clear();
    layout.partitions[0].size = size;
    const auto only = dir.path() / "only.raw";
    const auto alone = formats::write_raw_disk(layout, only);
    CHECK(alone.sha256 == util::sha256_file_hex(only));
    testing::extract_range(only, k_mib, size, extracted);
    std::string from_extents(size, '\0');
    from_extents.replace(4096, k_mib, a.substr(100, k_mib));
    from_extents.replace(k_mib + 4096, a.size(), a);
    from_extents.replace(3 * k_mib + 12288, b.size(), b);
    CHECK(util::read_file(extracted) == from_extents);
}

TEST_CASE("raw disk: bad layouts name the partition and leave nothing under the output name") {
    util::TempDir dir;
    const auto out = dir.path() / "disk.raw";
    RawDisk image(dir.path() / "oem.img", 3 * k_mib);
    image.write(0, "oem");
    const auto missing = dir.path() / "missing.img";
    formats::RawDiskLayout layout;
    layout.partitions.push_back(
        {"COS_GRUB", fs::k_efi_system_partition_type, 2 * k_mib, {}, 0, {}});
    layout.partitions.push_back(
        {"COS_OEM", fs::k_linux_filesystem_partition_type, 0, image.path(), 0, {}});
    const auto error_of = [&](const formats::RawDiskLayout& bad,
                              ExitCode code = ExitCode::bad_input) {
        return testing::error_of([&] { formats::write_raw_disk(bad, out); }, code);
    };

    SUBCASE("missing image") {
        layout.partitions[1].source = missing;
        CHECK(error_of(layout) == "cannot open the image " + missing.string() +
                                      " of partition COS_OEM: No such file or directory");
    }
    SUBCASE("image that is a directory") {
        layout.partitions[1].source = dir.path();
        CHECK(error_of(layout) ==
              "the image " + dir.path().string() + " of partition COS_OEM is not a regular file");
    }
    SUBCASE("empty image") {
        RawDisk empty(dir.path() / "empty.img", 0);
        layout.partitions[1].source = empty.path();
        CHECK(error_of(layout) ==
              "the image " + empty.path().string() + " of partition COS_OEM is empty");
        stdfs::remove(empty.path());
    }
    SUBCASE("image bigger than its partition") {
        layout.partitions[1].size = 2 * k_mib;
        CHECK(error_of(layout) == "the image " + image.path().string() +
                                      " of partition COS_OEM is 3145728 bytes, bigger than the "
                                      "partition (2097152 bytes); make the partition bigger or "
                                      "leave its size to the image");
    }
    SUBCASE("neither size nor image") {
        layout.partitions[0].size = 0;
        CHECK(error_of(layout) ==
              "partition COS_GRUB has neither a size nor an image to take it from");
    }
    SUBCASE("disk too small") {
        // COS_OEM ends at 6 MiB; the backup GPT needs 33 sectors more.
        layout.disk_size = 6 * k_mib;
        CHECK(error_of(layout) == "a disk of 6291456 bytes (6.0 MiB) is too small: its "
                                  "partitions and the backup GPT need 6308352 bytes (6.0 MiB); "
                                  "make it bigger or give 0 for the smallest that fits");
        layout.disk_size = 6308352;
        CHECK_NOTHROW(formats::write_raw_disk(layout, out));
        if (testing::have_programs({"sgdisk"})) {
            testing::check_sgdisk_verify(out);
        }
        stdfs::remove(out);
    }
    SUBCASE("absurd size") {
        layout.partitions[0].size = std::uint64_t{1} << 60;
        CHECK(error_of(layout) ==
              "partition COS_GRUB is 1152921504606846976 bytes, more than any disk holds");
    }
    SUBCASE("disk size in partial sectors") {
        layout.disk_size = 10 * k_mib + 1;
        CHECK(error_of(layout) ==
              "the disk size 10485761 bytes is not a whole number of 512-byte sectors");
    }
    SUBCASE("a partial sector partition") {
        layout.partitions[0].size = 1000;
        CHECK(error_of(layout) == "partition COS_GRUB is 1000 bytes; a partition is a whole, "
                                  "non-zero number of 512-byte sectors");
    }
    SUBCASE("bad names and hybrid MBR requests reach the GPT checks") {
        layout.partitions[0].name = std::string(37, 'x');
        CHECK(error_of(layout) == "partition name '" + std::string(37, 'x') +
                                      "' is 37 UTF-16 code units long; a GPT partition name "
                                      "holds at most 36");
    }
    SUBCASE("the output is an input") {
        CHECK(testing::error_of([&] { formats::write_raw_disk(layout, image.path()); },
                                ExitCode::bad_input) ==
              "the raw disk output " + image.path().string() +
                  " is the image of partition COS_OEM; choose another path");
    }
    SUBCASE("extents that overlap, leave the partition or their file, or have no file") {
        util::TempDir files;
        const auto bytes = files.path() / "bytes.bin";
        util::write_file_atomically(bytes, std::string(8192, 'x'));
        auto& extents = layout.partitions[1].extents;
        extents = {{4096, bytes, 0, 8192}, {8192, bytes, 0, 4096}};
        CHECK(error_of(layout) == "partition COS_OEM takes the bytes at 8192 both from " +
                                      bytes.string() +
                                      " and from another file; its extents "
                                      "overlap");
        extents = {{3 * k_mib, bytes, 0, 4096}};
        CHECK(error_of(layout) == "partition COS_OEM (3145728 bytes) cannot hold the 4096 bytes "
                                  "of " +
                                      bytes.string() + " at 3145728");
        extents = {{0, bytes, 4096, 8192}};
        CHECK(error_of(layout) == bytes.string() +
                                      " (8192 bytes) has no 8192 bytes at 4096 for partition "
                                      "COS_OEM");
        extents = {{0, missing, 0, 1}};
        CHECK(error_of(layout) == "cannot open " + missing.string() +
                                      " for partition COS_OEM: No such file or directory");
        extents = {{0, bytes, 0, 4096}};
        CHECK(testing::error_of([&] { formats::write_raw_disk(layout, bytes); },
                                ExitCode::bad_input) ==
              "the raw disk output " + bytes.string() +
                  " is a file partition COS_OEM is copied from; choose another path");
        CHECK(util::read_file(bytes) == std::string(8192, 'x'));
    }
    SUBCASE("no such output directory") {
        const auto nowhere = dir.path() / "no-such-dir" / "disk.raw";
        CHECK(testing::error_of([&] { formats::write_raw_disk(layout, nowhere); },
                                ExitCode::build_failed) ==
              "cannot write the raw disk image " + nowhere.string() +
                  ": No such file or directory; check that its directory exists, is writable "
                  "and has space");
    }
    // Only the input image is there: no disk, no temporary.
    CHECK_FALSE(stdfs::exists(out));
    CHECK(entries_in(dir.path()) == 1);
    CHECK(util::read_file(image.path()).substr(0, 3) == "oem");
}
