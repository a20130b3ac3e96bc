// `edgeforge inspect ARTIFACT`: what a built ISO, raw disk, QCOW2, VMDK or OVA holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgeforge {
class Console;
}

namespace edgeforge::inspect {

// The artifact kinds edgeforge builds, told apart by their content, never by their name.
enum class ArtifactFormat { unknown, iso, raw, qcow2, vmdk, ova };

std::string_view format_name(ArtifactFormat format);

// How many leading bytes detect_format needs to see: the ISO 9660 primary volume descriptor
// sits at 0x8000 and a GPT header of 4096-byte sectors at 4096.
inline constexpr std::size_t k_detect_bytes = 0x8800;

// The format of an artifact from its first bytes (fewer than k_detect_bytes when the file is
// shorter): QCOW2 ("QFI\xfb"), sparse VMDK ("KDMV"), ustar tar (an OVA), ISO 9660 ("CD001" at
// 0x8001; checked before the partition tables because hybrid ISOs carry an MBR and a GPT too),
// then a raw disk with a GPT ("EFI PART" at 512 or 4096) or an MBR with a partition.
ArtifactFormat detect_format(std::span<const std::uint8_t> head);

// The format of the file at `path`. Error (bad input, "inspect: FILE: ...") when the file cannot
// be read, is not a regular file, or is none of the supported formats.
ArtifactFormat detect_file_format(const std::filesystem::path& path);

// The fields of a squashfs 4.0 superblock (the first 96 bytes of the filesystem, little-endian)
// that say what the filesystem is.
struct SquashfsSuperblock {
    std::uint32_t inode_count = 0;
    std::uint32_t modification_time = 0;
    std::uint32_t block_size = 0;
    std::uint32_t fragment_count = 0;
    std::uint16_t compression_id = 0;
    std::uint16_t flags = 0;
    std::uint16_t id_count = 0;
    std::uint16_t version_major = 0;
    std::uint16_t version_minor = 0;
    std::uint64_t bytes_used = 0;
    // From the compressor options that follow the superblock (flag 0x400), when present and
    // given: the level of gzip, lzo and zstd, the dictionary size of xz.
    std::optional<std::uint32_t> compression_level;
    std::optional<std::uint32_t> xz_dictionary_size;

    // "gzip", "lzma", "lzo", "xz", "lz4", "zstd".
    std::string_view compression() const;
};

struct SquashfsParse {
    std::optional<SquashfsSuperblock> superblock;
    std::string problem; // why there is no superblock: "too short", "bad magic", ...
};

// Parses the 96-byte superblock; checks the magic, the version (4.0), the compressor id and that
// the block size is a power of two between 4 KiB and 1 MiB matching its log field. Given the
// k_squashfs_head_bytes, it also reads the compressor options stored right after it.
inline constexpr std::size_t k_squashfs_head_bytes = 96 + 2 + 8;
SquashfsParse parse_squashfs_superblock(std::span<const std::uint8_t> bytes);

// One El Torito boot catalog entry (the initial entry and each section entry).
struct ElToritoEntry {
    std::string platform;  // "bios", "efi", "powerpc", "mac", or "0xNN"
    bool bootable = false; // boot indicator 0x88
    std::string emulation; // "none", "1.2M floppy", "1.44M floppy", "2.88M floppy", "hard disk"
    std::uint32_t load_rba = 0;     // 2048-byte block of the boot image
    std::uint16_t sector_count = 0; // 512-byte virtual sectors loaded
};

// The identity of an ISO 9660 image: its primary volume descriptor and boot catalog.
struct IsoVolume {
    std::string volume_id;
    std::uint64_t volume_bytes = 0; // volume space size x logical block size
    std::optional<std::uint32_t> boot_catalog_block;
    std::vector<ElToritoEntry> boot_entries;
};

// Reads the primary volume descriptor (block 16), the El Torito boot record (block 17) and the
// boot catalog it points to from an ISO 9660 image read by `read_block` (2048 bytes of block
// N, or an empty vector past the end). nullopt when block 16 is no primary volume descriptor.
std::optional<IsoVolume>
read_iso_volume(const std::function<std::vector<std::uint8_t>(std::uint32_t)>& read_block);

// One partition of a GPT or MBR partition table.
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

// "EFI system partition" and sgdisk's "EF00" for a known GPT type GUID; empty when unknown.
std::string gpt_type_name(std::string_view guid, std::string& code);

// Everything `inspect` reports about the artifact at `path`, as JSON (the --json result).
// Disk formats are opened read-only with libguestfs (one appliance launch per artifact; the
// OVA's VMDK is extracted to a temporary file first). Errors name the file: bad input (exit 2)
// when it is not an artifact, build failed (exit 1) when libguestfs cannot open it.
nlohmann::json inspect_artifact(const std::filesystem::path& path, const Console& console);

// The report for people.
std::string render_artifact_report(const nlohmann::json& report);

} // namespace edgeforge::inspect
