// Assembles raw GPT disk images from partition images: sparse, streaming, atomic.
#include "formats/raw_disk.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "util/background_hash.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/units.h"

namespace edgeforge::formats {
namespace {

using util::round_up;

constexpr std::uint64_t k_sector = fs::k_gpt_sector_size;
constexpr std::uint64_t k_mib = fs::k_gpt_partition_alignment;
// 64 PiB: beyond any disk, and 128 such partitions still add up without overflowing.
constexpr std::uint64_t k_max_size = std::uint64_t{1} << 56;
constexpr std::size_t k_copy_buffer = std::size_t{1} << 20;
// Zero blocks inside an image's data regions are skipped at this granularity: the block size of
// the filesystems that hold the output, so every skipped block stays a hole.
constexpr std::size_t k_zero_block = 4096;

// A host file an extent of a partition is taken from, open from planning to copying.
struct OpenExtent {
    util::FileDescriptor fd;
    const util::FileExtent* extent = nullptr;
    std::string name; // the file, for messages
};

// A partition's source image and extents, open from planning to copying so that what was checked
// is what gets copied.
struct Source {
    util::FileDescriptor fd;
    std::uint64_t size = 0;
    std::vector<OpenExtent> extents; // in offset order
};

std::string display_name(const RawDiskPartition& partition, std::size_t index) {
    return partition.name.empty() ? fmt::format("#{}", index + 1) : partition.name;
}

Source open_source(const RawDiskPartition& partition, const std::string& name) {
    Source source;
    source.fd.reset(::open(partition.source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!source.fd.valid()) {
        throw bad_input("cannot open the image {} of partition {}: {}", partition.source.string(),
                        name, std::strerror(errno));
    }
    struct stat info {};
    if (::fstat(source.fd.get(), &info) != 0) {
        throw bad_input("cannot read the image {} of partition {}: {}", partition.source.string(),
                        name, std::strerror(errno));
    }
    if (!S_ISREG(info.st_mode)) {
        throw bad_input("the image {} of partition {} is not a regular file",
                        partition.source.string(), name);
    }
    source.size = static_cast<std::uint64_t>(info.st_size);
    if (source.size == 0) {
        throw bad_input("the image {} of partition {} is empty", partition.source.string(), name);
    }
    return source;
}

// Opens the extents of `partition` (of `size` bytes) and checks them: inside the partition, not
// overlapping, each inside its file. In offset order.
std::vector<OpenExtent> open_extents(const RawDiskPartition& partition, const std::string& name,
                                     std::uint64_t size) {
    std::vector<OpenExtent> opened;
    for (const util::FileExtent& extent : partition.extents) {
        opened.push_back({util::FileDescriptor(), &extent, extent.file.string()});
    }
    std::sort(opened.begin(), opened.end(), [](const OpenExtent& a, const OpenExtent& b) {
        return a.extent->offset < b.extent->offset;
    });
    std::uint64_t end = 0;
    for (OpenExtent& open : opened) {
        const util::FileExtent& extent = *open.extent;
        const std::string& file = open.name;
        if (extent.offset < end) {
            throw bad_input("partition {} takes the bytes at {} both from {} and from another "
                            "file; its extents overlap",
                            name, extent.offset, file);
        }
        if (extent.length > size || extent.offset > size - extent.length) {
            throw bad_input("partition {} ({} bytes) cannot hold the {} bytes of {} at {}", name,
                            size, extent.length, file, extent.offset);
        }
        end = extent.offset + extent.length;
        open.fd.reset(::open(extent.file.c_str(), O_RDONLY | O_CLOEXEC));
        struct stat info {};
        if (!open.fd.valid() || ::fstat(open.fd.get(), &info) != 0) {
            throw bad_input("cannot open {} for partition {}: {}", file, name,
                            std::strerror(errno));
        }
        if (!S_ISREG(info.st_mode)) {
            throw bad_input("{} (for partition {}) is not a regular file", file, name);
        }
        const auto file_size = static_cast<std::uint64_t>(info.st_size);
        if (extent.length > file_size || extent.file_offset > file_size - extent.length) {
            throw bad_input("{} ({} bytes) has no {} bytes at {} for partition {}", file, file_size,
                            extent.length, extent.file_offset, name);
        }
    }
    return opened;
}

fs::GptLayout plan(const RawDiskLayout& layout, std::vector<Source>& sources) {
    fs::GptLayout gpt;
    gpt.boot_code = layout.boot_code;
    gpt.disk_guid = layout.seed.empty() ? fs::random_guid()
                                        : fs::guid_from_seed("edgeforge-gpt-disk\n" + layout.seed);
    std::uint64_t next = k_mib; // the first partition starts at 1 MiB, as partitioners put it
    std::uint64_t end = next;   // where the last partition ends
    for (std::size_t i = 0; i < layout.partitions.size(); ++i) {
        const RawDiskPartition& partition = layout.partitions[i];
        const std::string name = display_name(partition, i);
        Source source;
        if (!partition.source.empty()) {
            source = open_source(partition, name);
        }
        std::uint64_t size = partition.size;
        if (size == 0) {
            if (partition.source.empty()) {
                throw bad_input("partition {} has neither a size nor an image to take it from",
                                name);
            }
            size = round_up(source.size, k_mib);
        }
        if (size > k_max_size) {
            throw bad_input("partition {} is {} bytes, more than any disk holds", name, size);
        }
        if (source.size > size) {
            throw bad_input("the image {} of partition {} is {} bytes, bigger than the partition "
                            "({} bytes); make the partition bigger or leave its size to the image",
                            partition.source.string(), name, source.size, size);
        }
        source.extents = open_extents(partition, name, size);
        fs::GptPartition entry;
        entry.name = partition.name;
        entry.type = partition.type;
        // The index in the seed gives each partition its own GUID, whatever the names.
        entry.unique = layout.seed.empty()
                           ? fs::random_guid()
                           : fs::guid_from_seed(
                                 fmt::format("edgeforge-gpt-partition-{}\n{}", i + 1, layout.seed));
        entry.first_lba = next / k_sector;
        entry.size = size;
        entry.attributes = partition.attributes;
        entry.hybrid_mbr_type = partition.hybrid_mbr_type;
        gpt.partitions.push_back(entry);
        sources.push_back(std::move(source));
        end = next + size;
        next = round_up(end, k_mib);
    }

    // The backup GPT needs its 33 sectors after the last partition.
    const std::uint64_t needed = end + (fs::k_gpt_entry_array_sectors + 1) * k_sector;
    if (layout.disk_size == 0) {
        gpt.disk_size = round_up(needed, k_mib);
    } else {
        if (layout.disk_size % k_sector != 0) {
            throw bad_input("the disk size {} bytes is not a whole number of 512-byte sectors",
                            layout.disk_size);
        }
        if (layout.disk_size < needed) {
            throw bad_input("a disk of {} bytes ({}) is too small: its partitions and the backup "
                            "GPT need {} bytes ({}); make it bigger or give 0 for the smallest "
                            "that fits",
                            layout.disk_size, util::format_bytes(layout.disk_size), needed,
                            util::format_bytes(needed));
        }
        gpt.disk_size = layout.disk_size;
    }
    fs::make_gpt_tables(gpt); // every check of the table itself, before any work
    return gpt;
}

// The SHA-256 of the disk, taken in offset order as it is written (on a thread of its own, while
// the copy goes on): the holes and the zero blocks left out as zeros, so no second read of the
// disk is needed for its digest.
class DiskHash {
  public:
    // `size` bytes at `offset`, which is at or after everything hashed so far.
    void add(std::uint64_t offset, const std::uint8_t* bytes, std::size_t size) {
        zeros_to(offset);
        hash_.update(bytes, size);
        position_ += size;
    }

    std::string finish(std::uint64_t disk_size) {
        zeros_to(disk_size);
        return hash_.finish_hex();
    }

  private:
    void zeros_to(std::uint64_t offset) {
        if (offset < position_) {
            throw std::logic_error("raw disk bytes hashed out of order");
        }
        hash_.update_zeros(offset - position_);
        position_ = offset;
    }

    util::BackgroundSha256 hash_;
    std::uint64_t position_ = 0;
};

bool all_zero(const std::uint8_t* bytes, std::size_t size) {
    // Comparing the block with itself shifted by one byte is a fast, allocation-free zero test.
    return size == 0 || (bytes[0] == 0 && std::memcmp(bytes, bytes + 1, size - 1) == 0);
}

// Copies `length` bytes at `from` of `in` to `out` at `at`, hashing them: only the 4 KiB blocks
// that are not zero are written. Returns the bytes written.
std::uint64_t copy_piece(int in, const std::string& in_name, std::uint64_t from,
                         std::uint64_t length, int out, std::uint64_t at,
                         std::vector<std::uint8_t>& buffer, DiskHash& hash) {
    std::uint64_t written = 0;
    for (std::uint64_t done = 0; done < length;) {
        const auto size =
            static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - done));
        bool complete = false;
        try {
            complete = util::pread_exact(in, buffer.data(), size, from + done);
        } catch (const std::system_error& error) {
            throw build_failed("cannot read {}: {}", in_name, error.code().message());
        }
        if (!complete) {
            throw build_failed("{} shrank while it was being copied; make sure nothing writes to "
                               "it during the build",
                               in_name);
        }
        hash.add(at + done, buffer.data(), size);
        // Runs of non-zero blocks, each written with one call.
        std::size_t run_start = 0;
        std::size_t run_end = 0;
        const auto flush = [&] {
            if (run_end > run_start) {
                util::pwrite_exact(out, buffer.data() + run_start, run_end - run_start,
                                   at + done + run_start);
                written += run_end - run_start;
            }
        };
        for (std::size_t block = 0; block < size; block += k_zero_block) {
            const std::size_t block_length = std::min(k_zero_block, size - block);
            if (all_zero(buffer.data() + block, block_length)) {
                continue;
            }
            if (block != run_end) {
                flush();
                run_start = block;
            }
            run_end = block + block_length;
        }
        flush();
        done += size;
    }
    return written;
}

// The data regions of the image (SEEK_DATA/SEEK_HOLE; all of it where the filesystem has no
// holes), in offset order.
std::vector<std::pair<std::uint64_t, std::uint64_t>> data_regions(const Source& source,
                                                                  const std::string& name) {
    const int in = source.fd.get();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> regions;
    for (std::uint64_t position = 0; position < source.size;) {
        std::uint64_t data = position;
        std::uint64_t hole = source.size;
        const off_t found = ::lseek(in, static_cast<off_t>(position), SEEK_DATA);
        if (found < 0) {
            if (errno == ENXIO) {
                break; // only a hole is left
            }
            if (errno != EINVAL && errno != EOPNOTSUPP) {
                throw build_failed("cannot read the image {}: {}", name, std::strerror(errno));
            }
            // No hole support: the rest is data.
        } else {
            data = static_cast<std::uint64_t>(found);
            const off_t hole_at = ::lseek(in, found, SEEK_HOLE);
            if (hole_at >= 0) {
                hole = std::min(source.size, static_cast<std::uint64_t>(hole_at));
            }
        }
        if (data >= hole) {
            break;
        }
        regions.emplace_back(data, hole);
        position = hole;
    }
    return regions;
}

// Copies a partition to `out` at `offset`, in offset order: the data of its image where no extent
// covers it, and its extents. Returns the bytes written.
std::uint64_t copy_partition(const Source& source, const std::string& source_name, int out,
                             std::uint64_t offset, std::vector<std::uint8_t>& buffer,
                             DiskHash& hash) {
    struct Piece {
        int fd = -1;
        const std::string* name = nullptr;
        std::uint64_t from = 0; // in its file
        std::uint64_t at = 0;   // in the partition
        std::uint64_t length = 0;
    };
    std::vector<Piece> pieces;
    if (source.fd.valid()) {
        ::posix_fadvise(source.fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL); // only costs speed if not
        std::size_t next = 0; // the first extent that may still overlap
        for (auto [begin, end] : data_regions(source, source_name)) {
            while (next < source.extents.size() &&
                   source.extents[next].extent->offset + source.extents[next].extent->length <=
                       begin) {
                ++next;
            }
            for (std::size_t e = next; begin < end && e < source.extents.size(); ++e) {
                const util::FileExtent& extent = *source.extents[e].extent;
                if (extent.offset >= end) {
                    break;
                }
                if (extent.offset > begin) {
                    pieces.push_back(
                        {source.fd.get(), &source_name, begin, begin, extent.offset - begin});
                }
                begin = std::max(begin, extent.offset + extent.length);
            }
            if (begin < end) {
                pieces.push_back({source.fd.get(), &source_name, begin, begin, end - begin});
            }
        }
    }
    for (std::size_t e = 0; e < source.extents.size(); ++e) {
        const util::FileExtent& extent = *source.extents[e].extent;
        pieces.push_back({source.extents[e].fd.get(), &source.extents[e].name, extent.file_offset,
                          extent.offset, extent.length});
    }
    std::sort(pieces.begin(), pieces.end(),
              [](const Piece& a, const Piece& b) { return a.at < b.at; });
    std::uint64_t written = 0;
    for (const Piece& piece : pieces) {
        written += copy_piece(piece.fd, *piece.name, piece.from, piece.length, out,
                              offset + piece.at, buffer, hash);
    }
    return written;
}

} // namespace

fs::GptLayout plan_raw_disk(const RawDiskLayout& layout) {
    std::vector<Source> sources;
    return plan(layout, sources);
}

RawDiskResult write_raw_disk(const RawDiskLayout& layout, const std::filesystem::path& output,
                             util::Durability durability) {
    std::vector<Source> sources;
    const fs::GptLayout gpt = plan(layout, sources);
    std::error_code ignored;
    for (std::size_t i = 0; i < layout.partitions.size(); ++i) {
        const auto& source = layout.partitions[i].source;
        if (!source.empty() && std::filesystem::equivalent(source, output, ignored)) {
            throw bad_input("the raw disk output {} is the image of partition {}; choose another "
                            "path",
                            output.string(), display_name(layout.partitions[i], i));
        }
        for (const util::FileExtent& extent : layout.partitions[i].extents) {
            if (std::filesystem::equivalent(extent.file, output, ignored)) {
                throw bad_input("the raw disk output {} is a file partition {} is copied from; "
                                "choose another path",
                                output.string(), display_name(layout.partitions[i], i));
            }
        }
    }

    RawDiskResult result;
    result.disk_size = gpt.disk_size;
    result.disk_guid = gpt.disk_guid;
    try {
        util::AtomicFile file(output, durability);
        // All holes to start with: only data is ever written.
        if (::ftruncate(file.fd(), static_cast<off_t>(gpt.disk_size)) != 0) {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot size " + file.temp_path().string());
        }
        std::vector<std::uint8_t> buffer(k_copy_buffer);
        const fs::GptTables tables = fs::make_gpt_tables(gpt);
        DiskHash hash;
        hash.add(0, tables.primary.data(), tables.primary.size());
        for (std::size_t i = 0; i < gpt.partitions.size(); ++i) {
            const fs::GptPartition& partition = gpt.partitions[i];
            const std::uint64_t offset = partition.first_lba * k_sector;
            result.data_bytes += copy_partition(sources[i], layout.partitions[i].source.string(),
                                                file.fd(), offset, buffer, hash);
            result.partitions.push_back({partition.name, partition.unique, offset, partition.size});
        }
        hash.add(tables.backup_offset, tables.backup.data(), tables.backup.size());
        result.sha256 = hash.finish(gpt.disk_size);
        fs::write_gpt(file.fd(), gpt);
        file.commit();
    } catch (const std::system_error& error) {
        throw build_failed("cannot write the raw disk image {}: {}; check that its directory "
                           "exists, is writable and has space",
                           output.string(), error.code().message());
    }
    return result;
}

} // namespace edgeforge::formats
