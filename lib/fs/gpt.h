// Writes GUID partition tables (protective or hybrid MBR, primary and backup GPT) and reads them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace edgeforge::fs {

// A GUID in its canonical text order (the bytes of "C12A7328-F81F-..." as written, RFC 4122);
// the GPT stores the first three fields little-endian, which write_gpt takes care of.
struct Guid {
    std::array<std::uint8_t, 16> bytes{};

    bool is_zero() const;
    // "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
    std::string str() const;
    friend bool operator==(const Guid&, const Guid&) = default;
};

namespace detail {
constexpr std::uint8_t hex_digit(char c) {
    if (c >= '0' && c <= '9') {
        return static_cast<std::uint8_t>(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return static_cast<std::uint8_t>(c - 'a' + 10);
    }
    if (c >= 'A' && c <= 'F') {
        return static_cast<std::uint8_t>(c - 'A' + 10);
    }
    throw std::invalid_argument("not a hexadecimal digit");
}
} // namespace detail

// A GUID from its 36-character text form. Meant for constants, where a typo then fails to
// compile; use parse_guid for input.
constexpr Guid guid_literal(std::string_view text) {
    if (text.size() != 36) {
        throw std::invalid_argument("a GUID is 36 characters");
    }
    Guid guid;
    std::size_t out = 0;
    for (std::size_t i = 0; i < text.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-') {
                throw std::invalid_argument("GUID groups are separated by '-'");
            }
            ++i;
            continue;
        }
        guid.bytes[out++] = static_cast<std::uint8_t>(detail::hex_digit(text[i]) << 4 |
                                                      detail::hex_digit(text[i + 1]));
        i += 2;
    }
    return guid;
}

// A GUID from "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (either case); nullopt when malformed.
std::optional<Guid> parse_guid(std::string_view text);

// A GUID in RFC 4122 version 4 format whose bits come from SHA-256 of `seed`, so the same seed
// always gives the same GUID: reproducible disks get their disk and partition GUIDs this way.
Guid guid_from_seed(std::string_view seed);
// A random version 4 GUID (from the operating system's random source).
Guid random_guid();

// Partition type GUIDs (UEFI specification; Discoverable Partitions Specification for Linux).
inline constexpr Guid k_efi_system_partition_type =
    guid_literal("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
inline constexpr Guid k_linux_filesystem_partition_type =
    guid_literal("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
// Where GRUB's BIOS core.img lives on a GPT disk (sgdisk type code EF02).
inline constexpr Guid k_bios_boot_partition_type =
    guid_literal("21686148-6449-6E6F-744E-656564454649");

// A partition type GUID the reader names: its name and sgdisk's type code.
struct GptPartitionType {
    Guid guid;
    std::string_view name; // "EFI system partition"
    std::string_view code; // "EF00"
};
// The partition types known by name, the writer's among them (the one table of type GUIDs).
inline constexpr GptPartitionType k_gpt_partition_types[] = {
    {k_efi_system_partition_type, "EFI system partition", "EF00"},
    {k_linux_filesystem_partition_type, "Linux filesystem", "8300"},
    {guid_literal("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"), "Microsoft basic data", "0700"},
    {k_bios_boot_partition_type, "BIOS boot partition", "EF02"},
    {guid_literal("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"), "Linux swap", "8200"},
    {guid_literal("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"), "Linux x86-64 root", "8304"},
    {guid_literal("B921B045-1DF0-41C3-AF44-4C6F280D3FAE"), "Linux ARM64 root", "8305"},
    {guid_literal("E6D6D379-F507-44C2-A23C-238F2A3DF928"), "Linux LVM", "8E00"},
    {guid_literal("A19D880F-05FC-4D3B-A006-743F0F84911E"), "Linux RAID", "FD00"},
};

// "EFI system partition" and sgdisk's "EF00" for a known GPT type GUID (text, either case);
// empty (and `code` cleared) when unknown.
std::string gpt_type_name(std::string_view guid, std::string& code);

// GPT partition attribute bits (UEFI specification, table "Defined GPT Partition Entry -
// Attributes").
inline constexpr std::uint64_t k_gpt_attribute_required = std::uint64_t{1} << 0;
inline constexpr std::uint64_t k_gpt_attribute_no_block_io = std::uint64_t{1} << 1;
// Legacy BIOS bootable: some BIOS boot code (syslinux's gptmbr) boots the partition with this
// bit; in a hybrid MBR it also marks the mirrored entry active.
inline constexpr std::uint64_t k_gpt_attribute_legacy_bios_bootable = std::uint64_t{1} << 2;

inline constexpr std::uint64_t k_gpt_sector_size = 512;
// Partitions start on 1 MiB boundaries, as parted, sgdisk and every current partitioner align
// them: right for 4 KiB sectors, SSD erase blocks and RAID stripes alike.
inline constexpr std::uint64_t k_gpt_partition_alignment = std::uint64_t{1} << 20;
inline constexpr std::size_t k_gpt_entry_count = 128;
inline constexpr std::size_t k_gpt_entry_size = 128;
// The entry array takes 32 sectors, so the first usable sector is 34 and the backup GPT takes
// the last 33 sectors of the disk.
inline constexpr std::uint64_t k_gpt_entry_array_sectors =
    k_gpt_entry_count * k_gpt_entry_size / k_gpt_sector_size;
// A name holds at most 36 UTF-16 code units.
inline constexpr std::size_t k_gpt_name_units = 36;
// The MBR boot code area ends where the disk signature begins.
inline constexpr std::size_t k_mbr_boot_code_size = 440;

struct GptPartition {
    std::string name; // UTF-8 here, UTF-16LE on disk: "COS_OEM"
    Guid type;
    Guid unique;
    std::uint64_t first_lba = 0; // a multiple of k_gpt_partition_alignment / 512
    std::uint64_t size = 0;      // bytes, a whole number of sectors
    std::uint64_t attributes = 0;
    // With a value, the partition is also listed in a hybrid MBR with this MBR type byte (0x0c
    // FAT32 LBA, 0x83 Linux, 0xef EFI system). Without any such partition the MBR is the
    // protective one the UEFI specification asks for; hybrid MBRs serve old BIOSes and tools that
    // cannot read GPT, at most three partitions below 2 TiB.
    std::optional<std::uint8_t> hybrid_mbr_type;
};

struct GptLayout {
    std::uint64_t disk_size = 0; // bytes, a whole number of sectors
    Guid disk_guid;
    // Entries in this order: partition i is entry i + 1 ("sgdisk -i 1" is the first).
    std::vector<GptPartition> partitions;
    // The first bytes of the MBR (at most 440), for BIOS boot: GRUB's boot.img for example.
    // Empty leaves the boot code zero.
    std::string boot_code;
};

// The bytes of a partition table and where they go on the disk.
struct GptTables {
    // The MBR at LBA 0, the primary header at LBA 1 and the entry array at LBA 2-33.
    std::vector<std::uint8_t> primary;
    // The backup entry array followed by the backup header in the disk's last sector.
    std::vector<std::uint8_t> backup;
    std::uint64_t backup_offset = 0; // bytes from the start of the disk
};

// The first sector partitions may use: after the MBR, the header and the entry array.
inline constexpr std::uint64_t k_gpt_first_usable_lba = 2 + k_gpt_entry_array_sectors;
// The last sector partitions may use on a disk of `disk_size` bytes: before the backup entry
// array and header. Meaningless for disks too small for two GPTs (make_gpt_tables rejects them).
constexpr std::uint64_t gpt_last_usable_lba(std::uint64_t disk_size) {
    return disk_size / k_gpt_sector_size - 2 - k_gpt_entry_array_sectors;
}

// Checks the layout and builds the tables. Error (bad input) for a disk size that is not whole
// sectors or too small for two GPTs, and for partitions that overlap ("partition COS_OEM
// overlaps COS_GRUB: ..."), do not fit the usable sectors, are not aligned to 1 MiB, are empty,
// have zero or repeated GUIDs, names longer than 36 UTF-16 code units or not UTF-8, too many
// partitions, boot code over 440 bytes, or an unusable hybrid MBR request.
GptTables make_gpt_tables(const GptLayout& layout);

// make_gpt_tables, then writes both tables to the disk image open as `fd`, which must already
// be layout.disk_size bytes long. Nothing is written when the layout is rejected.
void write_gpt(int fd, const GptLayout& layout);

// One partition of a GPT or MBR partition table, as read back.
struct PartitionEntry {
    std::uint32_t number = 0; // 1-based entry index, as sgdisk and the kernel count
    std::uint64_t start = 0;  // bytes from the start of the disk
    std::uint64_t size = 0;   // bytes
    std::string gpt_type;     // upper-case GUID text; empty for MBR
    std::string name;         // GPT partition name (UTF-8)
    std::optional<std::uint8_t> mbr_type;
    bool bootable = false; // MBR active flag
};

struct PartitionTable {
    std::string type = "none"; // "gpt", "mbr" or "none"
    bool hybrid_mbr = false;   // a GPT whose MBR lists real partitions too (hybrid ISOs)
    std::vector<PartitionEntry> partitions;
    std::string problem; // a damaged header or entry array: what is wrong
};

// Reads the partition table of a disk through `read` (bytes at an offset; fewer at the end of
// the disk): the GPT at LBA 1 of 512-byte sectors (header and entry-array CRCs checked), else
// the four primary MBR entries. A protective MBR alone (type 0xEE) means GPT.
PartitionTable read_partition_table(
    const std::function<std::vector<std::uint8_t>(std::uint64_t, std::size_t)>& read);

} // namespace edgeforge::fs
