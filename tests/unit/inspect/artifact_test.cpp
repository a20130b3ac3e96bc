// Unit tests for inspect/artifact: format detection by content, the squashfs superblock, the
// partition table and ISO 9660 readers, the report text, and bad inputs (no libguestfs needed).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/console.h"
#include "base/error.h"
#include "fs/gpt.h"
#include "inspect/artifact.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using namespace edgeforge::inspect;
namespace stdfs = std::filesystem;

namespace {

std::vector<std::uint8_t> zeros(std::size_t size) {
    return std::vector<std::uint8_t>(size, 0);
}

void put(std::vector<std::uint8_t>& bytes, std::size_t at, std::string_view text) {
    std::memcpy(bytes.data() + at, text.data(), text.size());
}

void put16(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint16_t value) {
    bytes[at] = static_cast<std::uint8_t>(value);
    bytes[at + 1] = static_cast<std::uint8_t>(value >> 8);
}

void put32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t value) {
    for (std::size_t i = 0; i < 4; ++i) {
        bytes[at + i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

// An MBR with one partition entry of `type` (boot signature included).
std::vector<std::uint8_t> mbr_with(std::uint8_t type, std::size_t size = 512) {
    auto bytes = zeros(size);
    bytes[446] = 0x80;
    bytes[446 + 4] = type;
    put32(bytes, 446 + 8, 2048);
    put32(bytes, 446 + 12, 4096);
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    return bytes;
}

// A valid squashfs 4.0 superblock: zstd, 128 KiB blocks, 42 inodes.
std::vector<std::uint8_t> superblock() {
    auto bytes = zeros(96);
    put(bytes, 0, "hsqs");
    put32(bytes, 4, 42);
    put32(bytes, 8, 1700000000);
    put32(bytes, 12, 131072);
    put32(bytes, 16, 3);
    put16(bytes, 20, 6);
    put16(bytes, 22, 17);
    put16(bytes, 28, 4);
    put16(bytes, 30, 0);
    put32(bytes, 40, 123456);
    return bytes;
}

stdfs::path write_temp(const util::TempDir& dir, const std::string& name,
                       const std::vector<std::uint8_t>& bytes) {
    const stdfs::path path = dir.path() / name;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return path;
}

} // namespace

TEST_CASE("detect_format tells artifacts apart by their content") {
    auto qcow2 = zeros(k_detect_bytes);
    put(qcow2, 0, "QFI\xfb");
    CHECK(detect_format(qcow2) == ArtifactFormat::qcow2);

    auto vmdk = zeros(1024);
    put(vmdk, 0, "KDMV");
    CHECK(detect_format(vmdk) == ArtifactFormat::vmdk);

    auto tar = zeros(1024);
    put(tar, 0, "disk.ovf");
    put(tar, 257, "ustar");
    CHECK(detect_format(tar) == ArtifactFormat::ova);

    // A hybrid ISO carries an MBR and a GPT as well: the ISO 9660 volume wins.
    auto iso = mbr_with(0xEE, k_detect_bytes);
    put(iso, 512, "EFI PART");
    put(iso, 0x8001, "CD001");
    CHECK(detect_format(iso) == ArtifactFormat::iso);

    auto gpt = mbr_with(0xEE, 1024);
    put(gpt, 512, "EFI PART");
    CHECK(detect_format(gpt) == ArtifactFormat::raw);

    auto gpt_4k = zeros(8192);
    put(gpt_4k, 4096, "EFI PART");
    CHECK(detect_format(gpt_4k) == ArtifactFormat::raw);

    CHECK(detect_format(mbr_with(0x83)) == ArtifactFormat::raw);
}

TEST_CASE("detect_format rejects what is not an artifact") {
    CHECK(detect_format({}) == ArtifactFormat::unknown);
    const std::string text = "#cloud-config\nhostname: edge\n";
    CHECK(detect_format({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}) ==
          ArtifactFormat::unknown);
    // A boot signature without any partition entry (a bare boot sector) is no disk.
    auto boot_sector = zeros(512);
    boot_sector[510] = 0x55;
    boot_sector[511] = 0xAA;
    CHECK(detect_format(boot_sector) == ArtifactFormat::unknown);
    // Garbage in the status bytes means the 55 AA was a coincidence.
    auto garbage = mbr_with(0x83);
    garbage[446] = 0x42;
    CHECK(detect_format(garbage) == ArtifactFormat::unknown);
    // Magic bytes cut short by the end of the file.
    const std::vector<std::uint8_t> short_qcow2 = {'Q', 'F', 'I'};
    CHECK(detect_format(short_qcow2) == ArtifactFormat::unknown);
    auto short_iso = zeros(0x8003);
    put(short_iso, 0x8001, "CD");
    CHECK(detect_format(short_iso) == ArtifactFormat::unknown);
}

TEST_CASE("detect_file_format: bad inputs name the file and the supported formats") {
    util::TempDir dir;
    const auto missing = (dir.path() / "missing.iso").string();
    const std::string gone =
        testing::error_of([&] { detect_file_format(missing); }, ExitCode::bad_input);
    CHECK(gone.starts_with("inspect: " + missing + ": cannot open it: No such file or directory"));
    CHECK(gone.find("supported are ISO 9660 images, raw disks") != std::string::npos);

    const std::string directory =
        testing::error_of([&] { detect_file_format(dir.path()); }, ExitCode::bad_input);
    CHECK(directory == "inspect: " + dir.path().string() +
                           ": is a directory; give the path of a built artifact (supported are "
                           "ISO 9660 images, raw disks with a GPT or MBR partition table, QCOW2, "
                           "VMDK (sparse) and OVA (tar with a VMDK), recognised by their content "
                           "whatever the file is called)");

    const std::string text_bytes = "#cloud-config\nhostname: edge\n";
    const auto text = write_temp(dir, "user-data.iso",
                                 std::vector<std::uint8_t>(text_bytes.begin(), text_bytes.end()));
    const std::string not_artifact =
        testing::error_of([&] { detect_file_format(text); }, ExitCode::bad_input);
    CHECK(not_artifact.starts_with("inspect: " + text.string() +
                                   ": not a built artifact (no ISO 9660 volume, partition table, "
                                   "QCOW2, VMDK or tar header found); supported are"));

    const auto empty = write_temp(dir, "empty.raw", {});
    CHECK(testing::error_of([&] { detect_file_format(empty); }, ExitCode::bad_input)
              .starts_with("inspect: " + empty.string() + ": the file is empty"));

    // The name does not matter: a qcow2 called .iso is a qcow2.
    auto qcow2 = zeros(4096);
    put(qcow2, 0, "QFI\xfb");
    CHECK(detect_file_format(write_temp(dir, "disguised.iso", qcow2)) == ArtifactFormat::qcow2);
}

TEST_CASE("inspect_artifact stops at bad input before starting libguestfs") {
    util::TempDir dir;
    const std::string text = "not a disk\n";
    const auto file =
        write_temp(dir, "notes.txt", std::vector<std::uint8_t>(text.begin(), text.end()));
    const Console console(ConsoleOptions{Verbosity::quiet, false, false, false});
    CHECK(testing::error_of([&] { inspect_artifact(file, console); }, ExitCode::bad_input)
              .starts_with("inspect: " + file.string() + ": not a built artifact"));

    // A tar without a .vmdk is no OVA.
    auto tar = zeros(2048);
    put(tar, 0, "readme.txt");
    put(tar, 100, "0000644");
    put(tar, 124, "00000000000");
    put(tar, 136, "00000000000");
    put(tar, 156, "0");
    put(tar, 257, "ustar");
    put(tar, 263, "00");
    put(tar, 148, "        ");
    unsigned sum = 0;
    for (std::size_t i = 0; i < 512; ++i) {
        sum += tar[i];
    }
    const std::string checksum = fmt::format("{:06o}", sum);
    put(tar, 148, checksum);
    tar[154] = 0;
    const auto plain_tar = write_temp(dir, "plain.ova", tar);
    CHECK(testing::error_of([&] { inspect_artifact(plain_tar, console); }, ExitCode::bad_input) ==
          "inspect: " + plain_tar.string() +
              ": a tar archive without a .vmdk member, so not an OVA; supported are ISO 9660 "
              "images, raw disks with a GPT or MBR partition table, QCOW2, VMDK (sparse) and OVA "
              "(tar with a VMDK), recognised by their content whatever the file is called");
}

TEST_CASE("parse_squashfs_superblock reads the 96-byte superblock") {
    const auto parsed = parse_squashfs_superblock(superblock());
    REQUIRE(parsed.superblock);
    const SquashfsSuperblock& sb = *parsed.superblock;
    CHECK(sb.inode_count == 42);
    CHECK(sb.modification_time == 1700000000);
    CHECK(sb.block_size == 131072);
    CHECK(sb.fragment_count == 3);
    CHECK(sb.compression() == "zstd");
    CHECK(sb.version_major == 4);
    CHECK(sb.version_minor == 0);
    CHECK(sb.bytes_used == 123456);
    CHECK(parsed.problem.empty());

    const char* names[] = {"gzip", "lzma", "lzo", "xz", "lz4", "zstd"};
    for (std::uint16_t id = 1; id <= 6; ++id) {
        auto bytes = superblock();
        put16(bytes, 20, id);
        const auto with = parse_squashfs_superblock(bytes);
        REQUIRE(with.superblock);
        CHECK(with.superblock->compression() == names[id - 1]);
    }
}

TEST_CASE("parse_squashfs_superblock reads the compressor options after the superblock") {
    auto bytes = superblock();
    bytes.resize(k_squashfs_head_bytes, 0);
    put16(bytes, 24, 0x0400);     // compressor options present
    put16(bytes, 96, 0x8000 | 4); // uncompressed metadata block of 4 bytes
    put32(bytes, 98, 15);         // zstd level
    auto parsed = parse_squashfs_superblock(bytes);
    REQUIRE(parsed.superblock);
    CHECK(parsed.superblock->compression_level == 15u);

    put16(bytes, 20, 4); // xz: dictionary size, filters
    put16(bytes, 96, 0x8000 | 8);
    put32(bytes, 98, 1u << 20);
    parsed = parse_squashfs_superblock(bytes);
    REQUIRE(parsed.superblock);
    CHECK_FALSE(parsed.superblock->compression_level);
    CHECK(parsed.superblock->xz_dictionary_size == 1u << 20);

    // Without the flag, or with only the 96 bytes, there are no options to report.
    put16(bytes, 20, 6);
    put16(bytes, 24, 0);
    CHECK_FALSE(parse_squashfs_superblock(bytes).superblock->compression_level);
    put16(bytes, 24, 0x0400);
    CHECK_FALSE(
        parse_squashfs_superblock(std::span(bytes).first(96)).superblock->compression_level);
}

TEST_CASE("parse_squashfs_superblock says what is wrong with a bad superblock") {
    auto bytes = superblock();
    CHECK(parse_squashfs_superblock(std::span(bytes).first(95)).problem ==
          "too short for a squashfs superblock (95 of 96 bytes)");

    auto bad_magic = superblock();
    put(bad_magic, 0, "xxxx");
    CHECK(parse_squashfs_superblock(bad_magic).problem == "no squashfs magic (hsqs)");
    put(bad_magic, 0, "sqsh");
    CHECK(parse_squashfs_superblock(bad_magic).problem == "a big-endian squashfs (not supported)");

    auto old = superblock();
    put16(old, 28, 3);
    put16(old, 30, 1);
    CHECK(parse_squashfs_superblock(old).problem == "squashfs version 3.1 (only 4.0 is read)");

    auto compressor = superblock();
    put16(compressor, 20, 9);
    CHECK(parse_squashfs_superblock(compressor).problem == "unknown compressor id 9");

    auto block = superblock();
    put16(block, 22, 16);
    CHECK(parse_squashfs_superblock(block).problem == "inconsistent block size 131072 (log 16)");
    put16(block, 22, 21);
    put32(block, 12, 1u << 21);
    CHECK(parse_squashfs_superblock(block).problem == "inconsistent block size 2097152 (log 21)");
    CHECK_FALSE(parse_squashfs_superblock(block).superblock);
}

namespace {

// Reads `size` bytes at `offset` of an in-memory disk, fewer at its end.
auto reader_of(const std::vector<std::uint8_t>& disk) {
    return [&disk](std::uint64_t offset, std::size_t size) {
        if (offset >= disk.size()) {
            return std::vector<std::uint8_t>();
        }
        const auto end = std::min<std::uint64_t>(disk.size(), offset + size);
        return std::vector<std::uint8_t>(disk.begin() + static_cast<std::ptrdiff_t>(offset),
                                         disk.begin() + static_cast<std::ptrdiff_t>(end));
    };
}

} // namespace

TEST_CASE("read_partition_table reads the GPT the project's writer makes") {
    constexpr std::uint64_t k_mib = 1024 * 1024;
    fs::GptLayout layout;
    layout.disk_size = 16 * k_mib;
    layout.disk_guid = fs::guid_from_seed("disk");
    layout.partitions.push_back({"COS_GRUB", fs::k_efi_system_partition_type,
                                 fs::guid_from_seed("a"), 2048, 2 * k_mib, 0, std::nullopt});
    layout.partitions.push_back({"COS_ÖEM", fs::k_linux_filesystem_partition_type,
                                 fs::guid_from_seed("b"), 6144, 4 * k_mib, 0, std::nullopt});
    const fs::GptTables tables = fs::make_gpt_tables(layout);
    std::vector<std::uint8_t> disk(tables.primary.begin(), tables.primary.end());

    const PartitionTable table = read_partition_table(reader_of(disk));
    CHECK(table.type == "gpt");
    CHECK_FALSE(table.hybrid_mbr);
    CHECK(table.problem.empty());
    REQUIRE(table.partitions.size() == 2);
    CHECK(table.partitions[0].number == 1);
    CHECK(table.partitions[0].name == "COS_GRUB");
    CHECK(table.partitions[0].gpt_type == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    CHECK(table.partitions[0].start == 2048 * 512);
    CHECK(table.partitions[0].size == 2 * k_mib);
    CHECK(table.partitions[1].number == 2);
    CHECK(table.partitions[1].name == "COS_ÖEM");
    CHECK(table.partitions[1].gpt_type == "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    CHECK(table.partitions[1].start == 6144 * 512);

    std::string code;
    CHECK(gpt_type_name(table.partitions[0].gpt_type, code) == "EFI system partition");
    CHECK(code == "EF00");
    CHECK(gpt_type_name("0fc63daf-8483-4772-8e79-3d69d8477de4", code) == "Linux filesystem");
    CHECK(code == "8300");
    CHECK(gpt_type_name("00000000-1111-2222-3333-444444444444", code).empty());
    CHECK(code.empty());

    // A flipped bit in an entry is reported, and the entries are still listed.
    disk[1024 + 56] ^= 1;
    const PartitionTable damaged = read_partition_table(reader_of(disk));
    CHECK(damaged.problem == "GPT entry array CRC mismatch");
    CHECK(damaged.partitions.size() == 2);
    disk[512 + 24] ^= 1;
    CHECK(read_partition_table(reader_of(disk)).problem == "GPT header CRC mismatch");
}

TEST_CASE("read_partition_table reads an MBR and knows a protective one") {
    const PartitionTable mbr = read_partition_table(reader_of(mbr_with(0x83)));
    CHECK(mbr.type == "mbr");
    REQUIRE(mbr.partitions.size() == 1);
    CHECK(mbr.partitions[0].number == 1);
    CHECK(mbr.partitions[0].mbr_type == 0x83);
    CHECK(mbr.partitions[0].bootable);
    CHECK(mbr.partitions[0].start == 2048 * 512);
    CHECK(mbr.partitions[0].size == 4096 * 512);

    const PartitionTable protective = read_partition_table(reader_of(mbr_with(0xEE)));
    CHECK(protective.type == "gpt");
    CHECK(protective.problem == "protective MBR without a GPT header at LBA 1");

    CHECK(read_partition_table(reader_of(zeros(4096))).type == "none");
    CHECK(read_partition_table(reader_of({})).type == "none");
}

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

TEST_CASE("render_artifact_report: the text people read") {
    const nlohmann::json report = {
        {"artifact", "out/x.raw"},
        {"format", "raw"},
        {"file_size", 2097152},
        {"virtual_size", 2097152},
        {"partition_table", "gpt"},
        {"partitions",
         {{{"number", 1},
           {"start", 1048576},
           {"size", 1048576},
           {"gpt_type", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
           {"type_name", "EFI system partition"},
           {"type_code", "EF00"},
           {"name", "COS_GRUB"},
           {"filesystem", "vfat"},
           {"label", "COS_GRUB"}}}},
        {"esp",
         {{{"device", "/dev/sda1"},
           {"label", "COS_GRUB"},
           {"boot_files", {"EFI/BOOT/BOOTX64.EFI"}},
           {"grub_cfg", true}}}},
        {"squashfs",
         {{{"device", "/dev/sda3"},
           {"label", "COS_RECOVERY"},
           {"path", "/rootfs.squashfs"},
           {"problem", "no squashfs magic (hsqs)"}}}},
        {"user_data",
         {{{"device", "/dev/sda2"},
           {"label", "COS_OEM"},
           {"path", "/99_userdata.yaml"},
           {"size", 20},
           {"lines", 2},
           {"sha256", "ab"},
           {"first_lines", {"#cloud-config", "passwd: <hidden>"}}}}},
        {"libguestfs", {{"backend", "direct"}, {"tcg", true}, {"launch_seconds", 12.5}}}};
    const std::string text = render_artifact_report(report);
    CHECK(text.find("format      raw\n") != std::string::npos);
    CHECK(
        text.find("size        2.0 MiB file (2097152 bytes), 2.0 MiB virtual (2097152 bytes)\n") !=
        std::string::npos);
    CHECK(text.find("   1       1048576     1.0 MiB  EFI system partition (EF00)   COS_GRUB") !=
          std::string::npos);
    CHECK(text.find("esp         COS_GRUB: EFI/BOOT/BOOTX64.EFI; grub.cfg present\n") !=
          std::string::npos);
    CHECK(text.find("kernel      not found\n") != std::string::npos);
    CHECK(text.find("squashfs    /rootfs.squashfs on COS_RECOVERY: no squashfs magic (hsqs)\n") !=
          std::string::npos);
    CHECK(text.find("user-data   /99_userdata.yaml on COS_OEM: 20 B, 2 lines, sha256 ab\n"
                    "            | #cloud-config\n"
                    "            | passwd: <hidden>\n") != std::string::npos);
    CHECK(text.find("libguestfs  direct backend, TCG, appliance launched in 12.5 s\n") !=
          std::string::npos);
}
