// Header sanity of the artifacts `inspect` reads: ISO 9660 volumes, partition tables, QCOW2
// and sparse VMDK headers, all checked against the file's real size.
#include "inspect/structure.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/error.h"
#include "formats/iso_reader.h"
#include "util/bytes.h"
#include "util/fd.h"
#include "util/strings.h"

namespace edgeforge::inspect {
namespace {

using util::be32;
using util::be64;
using util::le32;
using util::le64;

constexpr std::uint64_t k_iso_block = 2048;
// The largest virtual disk a header may declare (qemu's own QCOW2 limit is 64 PiB; no edge
// device comes near 32 PiB, and the bound keeps every size product below 2^64).
constexpr std::uint64_t k_max_virtual_size = std::uint64_t{1} << 55;
constexpr std::uint64_t k_sector = 512;
constexpr std::uint64_t k_vmdk_gd_at_end = ~std::uint64_t{0};

std::string size_text(std::uint64_t bytes) {
    return fmt::format("{} ({} bytes)", util::format_bytes(bytes), bytes);
}

// Whether [offset, offset + length) lies within `size` bytes, without overflow.
bool within(std::uint64_t offset, std::uint64_t length, std::uint64_t size) {
    return offset <= size && length <= size - offset;
}

void iso_problems(std::uint64_t file_size, const ReadAt& read, std::vector<std::string>& out) {
    const auto volume = formats::read_iso_volume([&](std::uint32_t block) {
        auto bytes = read(block * k_iso_block, k_iso_block);
        if (bytes.size() < k_iso_block) {
            bytes.clear();
        }
        return bytes;
    });
    if (!volume) {
        out.push_back("no ISO 9660 primary volume descriptor at block 16");
        return;
    }
    // Values a damaged header gives are not repeated as facts: the messages say what is wrong.
    if (volume->block_size != k_iso_block) {
        out.push_back("the volume descriptor gives a logical block size other than 2048 bytes "
                      "(the size ISO 9660 images use)");
        return;
    }
    if (volume->volume_blocks == 0) {
        out.push_back("the volume descriptor gives a volume size of 0 blocks");
        return;
    }
    if (volume->volume_bytes > file_size) {
        out.push_back(fmt::format("the volume descriptor declares a volume larger than the file, "
                                  "which holds {}: it is cut short or its header is damaged",
                                  size_text(file_size)));
        return;
    }
    if (!within(std::uint64_t{volume->root_directory_block} * k_iso_block,
                volume->root_directory_bytes, volume->volume_bytes)) {
        out.push_back("the root directory record points outside the volume");
        return;
    }
    if (volume->boot_catalog_block && *volume->boot_catalog_block >= volume->volume_blocks) {
        out.push_back(fmt::format("the El Torito boot catalog is at block {}, past the end of "
                                  "the {}-block volume",
                                  *volume->boot_catalog_block, volume->volume_blocks));
    }
    for (const auto& entry : volume->boot_entries) {
        if (entry.load_rba >= volume->volume_blocks) {
            out.push_back(fmt::format("the {} boot image is at block {}, past the end of the "
                                      "{}-block volume",
                                      entry.platform, entry.load_rba, volume->volume_blocks));
        }
    }
}

void qcow2_problems(std::uint64_t file_size, const ReadAt& read, std::vector<std::string>& out) {
    const auto header = read(0, 104);
    if (header.size() < 72) {
        out.push_back(fmt::format("the QCOW2 header is cut short ({} of 72 bytes)", header.size()));
        return;
    }
    const std::uint32_t version = be32(header, 4);
    if (version != 2 && version != 3) {
        out.push_back(fmt::format("QCOW2 version {} (edgeforge reads versions 2 and 3)", version));
        return;
    }
    if (version == 3 && header.size() < 104) {
        out.push_back("the QCOW2 version 3 header is cut short");
        return;
    }
    if (be64(header, 8) != 0) {
        out.push_back("the image names a backing file; edgeforge's images are standalone, and "
                      "inspect does not open files an image points to");
    }
    const std::uint32_t cluster_bits = be32(header, 20);
    if (cluster_bits < 9 || cluster_bits > 21) {
        out.push_back(fmt::format("QCOW2 cluster bits {} (valid are 9 to 21)", cluster_bits));
        return;
    }
    const std::uint64_t cluster = std::uint64_t{1} << cluster_bits;
    const std::uint64_t virtual_size = be64(header, 24);
    if (virtual_size > k_max_virtual_size) {
        out.push_back("the header declares a virtual disk larger than 32 PiB, which no real "
                      "disk is");
        return;
    }
    if (be32(header, 32) != 0) {
        out.push_back("the image is encrypted; edgeforge never writes encrypted images");
    }
    const std::uint64_t l1_size = be32(header, 36);
    const std::uint64_t l1_offset = be64(header, 40);
    // Each L1 entry maps one L2 table of cluster / 8 entries of one cluster each.
    const std::uint64_t l1_span = cluster * (cluster / 8);
    const std::uint64_t l1_needed = (virtual_size + l1_span - 1) / l1_span;
    if (l1_size < l1_needed) {
        out.push_back(fmt::format("the L1 table has {} entries, too few for a {} disk ({} "
                                  "needed)",
                                  l1_size, size_text(virtual_size), l1_needed));
    }
    if (l1_size > 0 && (l1_offset % cluster != 0 || !within(l1_offset, l1_size * 8, file_size))) {
        out.push_back(fmt::format("the L1 table ({} entries at offset {}) lies outside the {} "
                                  "file or is not cluster-aligned",
                                  l1_size, l1_offset, size_text(file_size)));
    }
    const std::uint64_t refcount_offset = be64(header, 48);
    const std::uint64_t refcount_clusters = be32(header, 56);
    if (refcount_offset % cluster != 0 ||
        !within(refcount_offset, refcount_clusters * cluster, file_size)) {
        out.push_back(fmt::format("the refcount table ({} clusters at offset {}) lies outside "
                                  "the {} file or is not cluster-aligned",
                                  refcount_clusters, refcount_offset, size_text(file_size)));
    }
}

void vmdk_problems(std::uint64_t file_size, const ReadAt& read, std::vector<std::string>& out) {
    const auto header = read(0, k_sector);
    if (header.size() < 72) {
        out.push_back(fmt::format("the VMDK header is cut short ({} of 72 bytes)", header.size()));
        return;
    }
    const std::uint32_t version = le32(header, 4);
    if (version < 1 || version > 3) {
        out.push_back(fmt::format("sparse VMDK version {} (valid are 1 to 3)", version));
        return;
    }
    const std::uint64_t capacity = le64(header, 12);
    if (capacity == 0 || capacity > k_max_virtual_size / k_sector) {
        out.push_back(fmt::format("the header declares a capacity of {} sectors", capacity));
        return;
    }
    const std::uint64_t grain = le64(header, 20);
    if (grain < 8 || grain > 2048 || !std::has_single_bit(grain)) {
        out.push_back(fmt::format("grain size {} sectors (valid are powers of two from 8 to "
                                  "2048)",
                                  grain));
    }
    const std::uint64_t descriptor_offset = le64(header, 28);
    const std::uint64_t descriptor_size = le64(header, 36);
    if (descriptor_offset > file_size / k_sector || descriptor_size > file_size / k_sector ||
        !within(descriptor_offset * k_sector, descriptor_size * k_sector, file_size)) {
        out.push_back(fmt::format("the embedded descriptor ({} sectors at sector {}) lies outside "
                                  "the {} file",
                                  descriptor_size, descriptor_offset, size_text(file_size)));
    }
    const std::uint32_t entries_per_table = le32(header, 44);
    if (entries_per_table != 512) {
        out.push_back(fmt::format("{} grain table entries per table (sparse VMDKs use 512)",
                                  entries_per_table));
    }
    const std::uint64_t directory_offset = le64(header, 56);
    if (directory_offset != k_vmdk_gd_at_end && directory_offset >= file_size / k_sector) {
        out.push_back(fmt::format("the grain directory at sector {} lies past the end of the {} "
                                  "file",
                                  directory_offset, size_text(file_size)));
    }
}

} // namespace

std::vector<std::string> partition_table_problems(const fs::PartitionTable& table,
                                                  std::uint64_t disk_size) {
    std::vector<std::string> out;
    if (!table.problem.empty()) {
        out.push_back("partition table: " + table.problem);
    }
    for (const auto& partition : table.partitions) {
        if (!within(partition.start, partition.size, disk_size)) {
            out.push_back(fmt::format("partition {} ({} bytes at offset {}) ends past the end of "
                                      "the {} disk",
                                      partition.number, partition.size, partition.start,
                                      size_text(disk_size)));
        }
    }
    return out;
}

std::vector<std::string> structure_problems(ArtifactFormat format, std::uint64_t file_size,
                                            const ReadAt& read) {
    std::vector<std::string> out;
    switch (format) {
    case ArtifactFormat::iso:
        iso_problems(file_size, read, out);
        break;
    case ArtifactFormat::qcow2:
        qcow2_problems(file_size, read, out);
        return out;
    case ArtifactFormat::vmdk:
        vmdk_problems(file_size, read, out);
        return out;
    case ArtifactFormat::raw:
        break;
    case ArtifactFormat::ova: // a tar: its disk is checked once extracted
    case ArtifactFormat::unknown:
        return out;
    }
    if (!out.empty()) {
        return out;
    }
    // ISOs and raw disks are the disk itself: their partition tables must fit the file.
    const auto table = fs::read_partition_table(read);
    const auto table_problems = partition_table_problems(table, file_size);
    out.insert(out.end(), table_problems.begin(), table_problems.end());
    return out;
}

void check_structure(const std::filesystem::path& path, ArtifactFormat format) {
    util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) {
        throw bad_input("inspect: {}: cannot open it: {}", path.string(),
                        std::error_code(errno, std::generic_category()).message());
    }
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) {
        throw bad_input("inspect: {}: cannot read it: {}", path.string(),
                        std::error_code(errno, std::generic_category()).message());
    }
    const auto file_size = static_cast<std::uint64_t>(status.st_size);
    const auto problems = structure_problems(format, file_size, [&](std::uint64_t offset,
                                                                    std::size_t size) {
        std::vector<std::uint8_t> bytes;
        if (offset >= file_size) {
            return bytes;
        }
        bytes.resize(static_cast<std::size_t>(std::min<std::uint64_t>(size, file_size - offset)));
        if (!util::pread_exact(fd.get(), bytes.data(), bytes.size(), offset)) {
            bytes.clear();
        }
        return bytes;
    });
    if (problems.empty()) {
        return;
    }
    throw bad_input("inspect: {}: not a readable {}: {}. It is damaged or was cut short (an "
                    "interrupted copy or download?): build it or copy it again",
                    path.string(), format_name(format), fmt::join(problems, "; "));
}

} // namespace edgeforge::inspect
