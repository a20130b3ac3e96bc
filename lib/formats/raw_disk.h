// Assembles raw GPT disk images from partition images: sparse, streaming, atomic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fs/gpt.h"
#include "util/file_extent.h"
#include "util/fs.h"

namespace edgeforge::formats {

struct RawDiskPartition {
    // The GPT partition name, which Kairos finds partitions by: "COS_OEM".
    std::string name;
    fs::Guid type = fs::k_linux_filesystem_partition_type;
    // Bytes, a whole number of sectors; 0 takes the size of `source` rounded up to 1 MiB.
    std::uint64_t size = 0;
    // A filesystem image copied in at the partition's start (only its data: holes stay holes);
    // empty leaves the partition zero.
    std::filesystem::path source;
    std::uint64_t attributes = 0; // fs::k_gpt_attribute_* bits
    // Also list the partition in a hybrid MBR with this type byte (see fs::GptPartition).
    std::optional<std::uint8_t> hybrid_mbr_type;
    // Bytes of the partition taken from host files instead of `source` (offsets from the
    // partition's start, inside it, not overlapping): the big files' data that
    // fs::make_ext4_image left out of the image (fs::PlacedData::returned), copied once, straight
    // into the disk.
    std::vector<util::FileExtent> extents;
};

struct RawDiskLayout {
    // Bytes, a whole number of sectors; 0 gives the smallest disk that holds the partitions and
    // the backup GPT, rounded up to 1 MiB. A bigger disk keeps the partitions where they are and
    // puts the backup GPT at its real end.
    std::uint64_t disk_size = 0;
    // Placed in this order, each on the first 1 MiB boundary after the one before, the first at
    // 1 MiB.
    std::vector<RawDiskPartition> partitions;
    // MBR boot code for BIOS boot (at most 440 bytes); empty leaves it zero.
    std::string boot_code;
    // The disk and partition GUIDs are derived from this (fs::guid_from_seed), so the same seed
    // and inputs give a byte-identical disk; empty draws them at random.
    std::string seed;
};

struct RawDiskPartitionResult {
    std::string name;
    fs::Guid unique;
    std::uint64_t offset = 0; // bytes from the start of the disk
    std::uint64_t size = 0;   // bytes
};

struct RawDiskResult {
    std::uint64_t disk_size = 0;
    fs::Guid disk_guid;
    std::vector<RawDiskPartitionResult> partitions;
    // Bytes of partition data written; everything else (zeros, holes of the images) is a hole.
    std::uint64_t data_bytes = 0;
    std::string sha256; // of the whole disk, holes as zeros, taken as it was written
};

// The partition table `layout` gives, every input checked: sizes taken from the images, places
// and GUIDs assigned, the disk size settled, the table validated. Reads nothing but the images'
// metadata. Error (bad input) naming the partition for an image that cannot be opened, is not a
// regular file, is empty or is bigger than its partition, a partition with neither size nor
// image, a disk too small for the partitions and the backup GPT, an extent outside its partition,
// overlapping another or beyond the end of its file (or whose file cannot be opened), and
// everything fs::make_gpt_tables rejects.
fs::GptLayout plan_raw_disk(const RawDiskLayout& layout);

// Writes the disk `layout` describes to `output`: a sparse file of the disk's size, each image
// copied in at its partition's offset (only the data regions of the image, found with
// SEEK_DATA/SEEK_HOLE, and of those only the 4 KiB blocks that are not zero, so a mostly empty
// filesystem image stays mostly holes), each partition's extents over it the same way, then the
// MBR and both GPTs. Memory stays at one 1 MiB
// buffer whatever the sizes. Atomic: nothing appears under `output` unless the disk is complete.
// Errors as plan_raw_disk (before anything is written), plus Error (bad input) when `output` is
// one of the images, and Error (build failed) when reading an image or writing fails.
// `durability` scratch leaves the flush to the caller (util::flush_file), who may run it while
// it reads the disk to convert it.
RawDiskResult write_raw_disk(const RawDiskLayout& layout, const std::filesystem::path& output,
                             util::Durability durability = util::Durability::durable);

} // namespace edgeforge::formats
