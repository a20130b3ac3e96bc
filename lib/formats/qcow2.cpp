// Converts raw disk images to QCOW2 version 3 images in-process, streaming.
#include "formats/qcow2.h"

#include <algorithm>
#include <array>
#include <bit>
#include <map>
#include <span>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "base/error.h"
#include "formats/image_output.h"
#include "formats/raw_reader.h"
#include "util/units.h"
#include "util/deflate.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge::formats {
namespace {

using util::divide_round_up;

// The layout follows qemu's docs/interop/qcow2.txt; every number in it is big-endian.
constexpr std::uint32_t k_magic = 0x514649fb; // "QFI\xfb"
constexpr std::uint32_t k_version = 3;
// The version 3 header with the compression type byte (0: zlib), padded to 8 bytes as qemu
// writes it. The zero bytes after it in cluster 0 read as the end of the header extensions.
constexpr std::uint32_t k_header_length = 112;
constexpr std::uint32_t k_refcount_order = 4; // 16-bit refcounts
constexpr std::uint16_t k_refcount_max = 0xffff;
// Set on L1 and L2 entries whose cluster has refcount 1 (written in place, never copied);
// qemu-img check reports an error where it is missing. Never set on compressed clusters.
constexpr std::uint64_t k_flag_copied = 1ULL << 63;
constexpr std::uint64_t k_flag_compressed = 1ULL << 62;
constexpr std::uint32_t k_min_cluster_size = 512;
constexpr std::uint32_t k_max_cluster_size = 2 << 20;
// qemu refuses images whose tables are larger (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE).
constexpr std::uint64_t k_max_l1_bytes = 32 << 20;
constexpr std::uint64_t k_max_refcount_table_bytes = 8 << 20;
// qemu inflates compressed clusters with a 4 KiB window, so they must be deflated with one.
constexpr int k_deflate_window_bits = 12;

void put_be16(std::uint8_t* out, std::uint16_t value) {
    out[0] = static_cast<std::uint8_t>(value >> 8);
    out[1] = static_cast<std::uint8_t>(value);
}

void put_be32(std::uint8_t* out, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
    }
}

void put_be64(std::uint8_t* out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (56 - 8 * i));
    }
}

// The image file as it grows, front to back. Whole clusters are appended at cluster boundaries;
// compressed clusters are packed byte by byte after one another, so several may share a host
// cluster and one may continue into the next. Every host cluster's refcount is the number of
// those pieces (header, tables, data) that touch it. A refcount block is written as soon as the
// file has grown past the 2 GiB (with 64 KiB clusters) of host clusters it covers, so memory
// holds only the one or two blocks still open, whatever the size of the image.
//
// Without an output it is a dry run that only finds where everything goes: the image is laid out
// twice, first to learn the header (which comes first in the file but points at the tables at
// the end), then for real, so the file is written once, in order, and hashed as it is written.
// Data clusters copied from the raw image are gathered into runs and read straight into the
// output's buffers, a run at a time.
class Qcow2File {
  public:
    Qcow2File(std::uint64_t cluster_size, const RawImageReader& raw, ImageOutput* out)
        : raw_(raw), out_(out), cluster_size_(cluster_size), block_entries_(cluster_size / 2),
          zeros_(cluster_size) {}

    std::uint64_t size() const { return position_; }
    bool dry_run() const { return out_ == nullptr; }

    // Appends `bytes` at the next cluster boundary, zero-padded to whole clusters; returns the
    // offset.
    std::uint64_t append_clusters(std::span<const std::uint8_t> bytes) {
        pad_to_cluster();
        const std::uint64_t offset = position_;
        write(bytes);
        pad_to_cluster();
        count(offset, position_ - offset);
        write_completed_refcount_blocks();
        return offset;
    }

    // Appends guest cluster `index` of the raw image (zero-padded past its end) at the next
    // cluster boundary; returns the offset.
    std::uint64_t append_raw_cluster(std::uint64_t index) {
        pad_to_cluster();
        const std::uint64_t offset = position_;
        const std::uint64_t from = index * cluster_size_;
        if (out_ != nullptr) {
            // Nothing else has been written since the run began, so the run continues here
            // when the guest clusters are consecutive.
            if (run_size_ == 0 || run_from_ + run_size_ != from) {
                flush_run();
                run_from_ = from;
            }
            run_size_ += cluster_size_;
        }
        position_ += cluster_size_;
        count(offset, cluster_size_);
        write_completed_refcount_blocks();
        return offset;
    }

    // Appends `size` bytes right after the previous ones (no alignment); returns the offset.
    // `bytes` holds them, or is null in a dry run.
    std::uint64_t append_packed(const std::uint8_t* bytes, std::size_t size) {
        const std::uint64_t offset = position_;
        write(std::span<const std::uint8_t>(bytes, bytes == nullptr ? 0 : size), size);
        count(offset, size);
        write_completed_refcount_blocks();
        return offset;
    }

    struct RefcountTable {
        std::uint64_t offset = 0;
        std::uint64_t clusters = 0;
    };

    // Appends the refcount blocks still open and the refcount table, which must count
    // themselves too: their number is found by growing the estimate until it covers the file
    // they make.
    RefcountTable finish() {
        pad_to_cluster();
        const std::uint64_t tail_start = position_ / cluster_size_;
        const std::uint64_t written = block_offsets_.size();
        std::uint64_t blocks = written;
        if (!open_blocks_.empty()) {
            blocks = std::max(blocks, open_blocks_.rbegin()->first + 1);
        }
        std::uint64_t table_clusters = 0;
        for (;;) {
            table_clusters = divide_round_up(std::max<std::uint64_t>(blocks, 1) * 8, cluster_size_);
            const std::uint64_t end = tail_start + (blocks - written) + table_clusters;
            const std::uint64_t needed = divide_round_up(end, block_entries_);
            if (needed <= blocks) {
                break;
            }
            blocks = needed;
        }
        if (table_clusters * cluster_size_ > k_max_refcount_table_bytes) {
            throw build_failed("the qcow2 image would need a refcount table of {}, more than qemu "
                               "accepts; use larger clusters",
                               util::format_bytes(table_clusters * cluster_size_));
        }
        count(position_, (blocks - written + table_clusters) * cluster_size_);
        for (std::uint64_t index = written; index < blocks; ++index) {
            block_offsets_.push_back(position_);
            const auto block = open_blocks_.find(index);
            write(block == open_blocks_.end() ? std::span<const std::uint8_t>(zeros_)
                                              : encode_block(block->second));
        }
        open_blocks_.clear();
        cached_block_ = nullptr;
        RefcountTable table{position_, table_clusters};
        std::vector<std::uint8_t> entries(table_clusters * cluster_size_);
        for (std::size_t i = 0; i < block_offsets_.size(); ++i) {
            put_be64(&entries[i * 8], block_offsets_[i]);
        }
        write(entries);
        flush_run();
        return table;
    }

  private:
    void write(std::span<const std::uint8_t> bytes) { write(bytes, bytes.size()); }

    // Appends `bytes` (empty in a dry run) of `size` bytes.
    void write(std::span<const std::uint8_t> bytes, std::size_t size) {
        if (out_ != nullptr) {
            flush_run();
            out_->put(bytes.data(), bytes.size());
        }
        position_ += size;
    }

    // Reads the pending run of raw clusters into the output.
    void flush_run() {
        while (run_size_ > 0) {
            const std::size_t piece =
                static_cast<std::size_t>(std::min<std::uint64_t>(run_size_, out_->room()));
            raw_.read(run_from_, std::span<std::uint8_t>(out_->space(), piece));
            out_->produced(piece);
            run_from_ += piece;
            run_size_ -= piece;
        }
    }

    void pad_to_cluster() {
        const std::uint64_t used = position_ % cluster_size_;
        if (used != 0) {
            write(std::span<const std::uint8_t>(zeros_).first(cluster_size_ - used));
        }
    }

    // One more reference to every host cluster that [offset, offset + size) touches.
    void count(std::uint64_t offset, std::uint64_t size) {
        const std::uint64_t last = (offset + size - 1) / cluster_size_;
        for (std::uint64_t cluster = offset / cluster_size_; cluster <= last; ++cluster) {
            const std::uint64_t block_index = cluster / block_entries_;
            if (block_index != cached_block_index_ || cached_block_ == nullptr) {
                auto& block = open_blocks_[block_index];
                block.resize(block_entries_);
                cached_block_ = &block;
                cached_block_index_ = block_index;
            }
            auto& refcount = (*cached_block_)[cluster % block_entries_];
            if (refcount == k_refcount_max) {
                throw build_failed("qcow2 host cluster {} has too many references", cluster);
            }
            ++refcount;
        }
    }

    // Writes the blocks whose host clusters all lie before the end of the file: nothing will
    // touch those clusters again. A block lands in a later block's range, which counts it.
    void write_completed_refcount_blocks() {
        const std::uint64_t range_bytes = block_entries_ * cluster_size_;
        while (!open_blocks_.empty() &&
               (open_blocks_.begin()->first + 1) * range_bytes <= position_) {
            const auto first = open_blocks_.begin();
            const std::uint64_t index = first->first;
            const std::vector<std::uint16_t> refcounts = std::move(first->second);
            open_blocks_.erase(first);
            cached_block_ = nullptr;
            // A range with nothing in it would have refcount table entry 0 (all refcounts zero);
            // the file is contiguous, so that does not happen, but the table stays right anyway.
            block_offsets_.resize(index, 0);
            pad_to_cluster();
            const std::uint64_t offset = position_;
            write(encode_block(refcounts));
            count(offset, cluster_size_);
            block_offsets_.push_back(offset);
        }
    }

    std::span<const std::uint8_t> encode_block(const std::vector<std::uint16_t>& refcounts) {
        block_bytes_.assign(cluster_size_, 0);
        for (std::size_t i = 0; i < refcounts.size(); ++i) {
            put_be16(&block_bytes_[i * 2], refcounts[i]);
        }
        return block_bytes_;
    }

    const RawImageReader& raw_;
    ImageOutput* out_; // null in a dry run
    std::uint64_t cluster_size_;
    std::uint64_t block_entries_; // refcounts in one refcount block
    std::uint64_t position_ = 0;
    std::uint64_t run_from_ = 0; // the raw clusters still to copy: offset in the raw image
    std::uint64_t run_size_ = 0; // and bytes
    std::map<std::uint64_t, std::vector<std::uint16_t>> open_blocks_; // by refcount block index
    std::vector<std::uint16_t>* cached_block_ = nullptr; // the open block count() used last
    std::uint64_t cached_block_index_ = 0;
    std::vector<std::uint64_t> block_offsets_; // the refcount table: written blocks, by index
    std::vector<std::uint8_t> zeros_;          // one cluster
    std::vector<std::uint8_t> block_bytes_;    // one encoded refcount block
};

// A compressed cluster's L2 entry: the host offset in the low bits and, above it, the number of
// 512-byte sectors the data reaches into after the one holding its first byte.
std::uint64_t compressed_l2_entry(std::uint64_t offset, std::uint64_t size,
                                  std::uint32_t cluster_bits) {
    const std::uint32_t offset_bits = 62 - (cluster_bits - 8);
    const std::uint64_t extra_sectors =
        (offset + size - 1) / k_sector_size - offset / k_sector_size;
    return k_flag_compressed | (extra_sectors << offset_bits) | offset;
}

struct HeaderFields {
    std::uint32_t cluster_bits = 0;
    std::uint64_t virtual_size = 0;
    std::uint64_t l1_entries = 0;
    std::uint64_t l1_offset = 0;
    std::uint64_t refcount_table_offset = 0;
    std::uint64_t refcount_table_clusters = 0;
};

std::array<std::uint8_t, k_header_length> encode_header(const HeaderFields& fields) {
    // Unset fields stay zero: no backing file, no encryption, no snapshots, no feature bits,
    // compression type zlib.
    std::array<std::uint8_t, k_header_length> header{};
    put_be32(&header[0], k_magic);
    put_be32(&header[4], k_version);
    put_be32(&header[20], fields.cluster_bits);
    put_be64(&header[24], fields.virtual_size);
    put_be32(&header[36], static_cast<std::uint32_t>(fields.l1_entries));
    put_be64(&header[40], fields.l1_offset);
    put_be64(&header[48], fields.refcount_table_offset);
    put_be32(&header[56], static_cast<std::uint32_t>(fields.refcount_table_clusters));
    put_be32(&header[96], k_refcount_order);
    put_be32(&header[100], k_header_length);
    return header;
}

// What the first pass over the raw image learns: which guest clusters hold data and, for a
// compressed image, the deflated size of each of those (in order; 0 where it is stored as it
// is). Enough to lay the whole image out before writing a byte of it. Memory: one bit per guest
// cluster (2 MiB for a 1 TiB disk with 64 KiB clusters), plus 4 bytes per stored cluster when
// compressing.
struct Allocation {
    std::vector<std::uint64_t> bitmap;
    std::vector<std::uint32_t> packed_sizes;
    std::uint64_t clusters = 0;

    bool holds(std::uint64_t index) const { return (bitmap[index / 64] >> (index % 64)) & 1U; }
};

Allocation find_data_clusters(RawImageReader& raw, util::Deflater* deflater,
                              std::vector<std::uint8_t>& compressed) {
    Allocation allocation;
    allocation.bitmap.resize(divide_round_up(raw.chunk_count(), 64));
    while (const auto chunk = raw.next_data_chunk()) {
        allocation.bitmap[chunk->index / 64] |= 1ULL << (chunk->index % 64);
        ++allocation.clusters;
        if (deflater != nullptr) {
            const auto packed = deflater->compress(chunk->bytes, compressed);
            allocation.packed_sizes.push_back(packed ? static_cast<std::uint32_t>(*packed) : 0);
        }
    }
    return allocation;
}

struct LayoutCounts {
    std::uint64_t allocated_clusters = 0;
    std::uint64_t compressed_clusters = 0;
};

// Lays the image out into `image` (a dry run or the file): the header cluster, the data clusters
// in guest order with each L2 table after the data it maps, the L1 table, then the refcount
// blocks still open and the refcount table. `header` is the encoded header (zeros in the dry
// run that finds its fields). `compress_cluster` deflates guest cluster `index` into `compressed`
// (real run only) and returns its size.
template <typename CompressCluster>
HeaderFields lay_out(Qcow2File& image, const RawImageReader& raw, const Allocation& allocation,
                     std::uint64_t cluster_size, std::span<const std::uint8_t> header,
                     bool compress, CompressCluster&& compress_cluster,
                     const std::vector<std::uint8_t>& compressed, LayoutCounts& counts) {
    const std::uint64_t l2_entries = cluster_size / 8;
    const std::uint64_t l1_entries = divide_round_up(raw.chunk_count(), l2_entries);
    const auto cluster_bits = static_cast<std::uint32_t>(std::countr_zero(cluster_size));
    image.append_clusters(header); // zero-padded to a whole cluster

    // An L2 table is written as the data passes the guest range it maps (512 MiB with 64 KiB
    // clusters), so only the one being filled is in memory; the L1 table is small.
    std::vector<std::uint64_t> l1(l1_entries);
    std::vector<std::uint8_t> l2(cluster_size);
    std::optional<std::uint64_t> l2_index;
    const auto write_l2 = [&] {
        if (l2_index) {
            l1[*l2_index] = image.append_clusters(l2) | k_flag_copied;
            std::fill(l2.begin(), l2.end(), 0);
        }
    };
    const bool dry_run = image.dry_run();
    std::size_t stored = 0; // data clusters so far
    for (std::size_t word = 0; word < allocation.bitmap.size(); ++word) {
        for (std::uint64_t bits = allocation.bitmap[word]; bits != 0; bits &= bits - 1) {
            const std::uint64_t index =
                word * 64 + static_cast<std::uint64_t>(std::countr_zero(bits));
            const std::uint64_t table = index / l2_entries;
            if (l2_index != table) {
                write_l2();
                l2_index = table;
            }
            const std::uint32_t packed = compress ? allocation.packed_sizes[stored] : 0;
            ++stored;
            std::uint64_t entry = 0;
            if (packed != 0) {
                if (!dry_run && compress_cluster(index) != packed) {
                    throw build_failed("the raw disk image {} changed while it was being "
                                       "converted; make sure nothing writes to it during the build",
                                       raw.path().string());
                }
                const std::uint64_t offset =
                    image.append_packed(dry_run ? nullptr : compressed.data(), packed);
                entry = compressed_l2_entry(offset, packed, cluster_bits);
                ++counts.compressed_clusters;
            } else {
                entry = image.append_raw_cluster(index) | k_flag_copied;
            }
            put_be64(&l2[(index % l2_entries) * 8], entry);
            ++counts.allocated_clusters;
        }
    }
    write_l2();

    std::vector<std::uint8_t> l1_bytes(l1_entries * 8);
    for (std::size_t i = 0; i < l1.size(); ++i) {
        put_be64(&l1_bytes[i * 8], l1[i]);
    }
    HeaderFields fields;
    fields.cluster_bits = cluster_bits;
    fields.virtual_size = raw.size();
    fields.l1_entries = l1_entries;
    fields.l1_offset = image.append_clusters(l1_bytes);
    const auto refcount_table = image.finish();
    fields.refcount_table_offset = refcount_table.offset;
    fields.refcount_table_clusters = refcount_table.clusters;
    return fields;
}

} // namespace

Qcow2Result write_qcow2(const std::filesystem::path& raw_image, const std::filesystem::path& output,
                        const Qcow2Options& options) {
    const std::uint64_t cluster_size = options.cluster_size;
    if (!std::has_single_bit(options.cluster_size) || cluster_size < k_min_cluster_size ||
        cluster_size > k_max_cluster_size) {
        throw bad_input("qcow2 cluster size {} is not a power of two from 512 bytes to 2 MiB",
                        options.cluster_size);
    }
    RawImageReader raw(raw_image, options.cluster_size);
    std::error_code ignored;
    if (std::filesystem::equivalent(raw_image, output, ignored)) {
        throw bad_input("the qcow2 output {} is the raw disk image itself; choose another path",
                        output.string());
    }
    const std::uint64_t l2_entries = cluster_size / 8;
    const std::uint64_t l1_entries = divide_round_up(raw.chunk_count(), l2_entries);
    if (l1_entries * 8 > k_max_l1_bytes) {
        throw bad_input("the raw disk image {} ({}) is too large for qcow2 with {}-byte clusters; "
                        "use larger clusters",
                        raw_image.string(), util::format_bytes(raw.size()), cluster_size);
    }

    util::Deflater deflater(util::DeflateFormat::raw, k_deflate_window_bits);
    // As qemu does: a cluster is stored compressed only when it shrinks.
    std::vector<std::uint8_t> compressed(cluster_size - 1);
    const Allocation allocation =
        find_data_clusters(raw, options.compress ? &deflater : nullptr, compressed);

    Qcow2Result result;
    result.virtual_size = raw.size();
    std::vector<std::uint8_t> chunk(cluster_size);
    const auto compress_cluster = [&](std::uint64_t index) -> std::uint32_t {
        raw.read(index * cluster_size, chunk);
        const auto packed = deflater.compress(chunk, compressed);
        return packed ? static_cast<std::uint32_t>(*packed) : 0;
    };
    LayoutCounts counts;
    Qcow2File plan(cluster_size, raw, nullptr);
    const HeaderFields fields =
        lay_out(plan, raw, allocation, cluster_size, std::array<std::uint8_t, k_header_length>{},
                options.compress, compress_cluster, compressed, counts);
    const auto header = encode_header(fields);
    try {
        util::AtomicFile file(output);
        // Reading the raw image, hashing and writing overlap: one thread each, and two direct
        // writes of 4 MiB in flight (one at a time leaves the disk idle between them).
        ImageOutputOptions output_options;
        output_options.hash = options.compute_sha256 ? ImageHash::thread : ImageHash::none;
        output_options.buffer_size = 4 << 20;
        output_options.buffers = 6;
        output_options.writers = 2;
        ImageOutput out(file, output_options);
        Qcow2File image(cluster_size, raw, &out);
        counts = {};
        const HeaderFields written =
            lay_out(image, raw, allocation, cluster_size, header, options.compress,
                    compress_cluster, compressed, counts);
        if (written.l1_offset != fields.l1_offset ||
            written.refcount_table_offset != fields.refcount_table_offset ||
            image.size() != plan.size()) {
            throw std::logic_error("qcow2: the image was not laid out as planned");
        }
        out.finish(image.size());
        result.file_size = image.size();
        result.allocated_clusters = counts.allocated_clusters;
        result.compressed_clusters = counts.compressed_clusters;
        if (options.compute_sha256) {
            result.sha256 = out.sha256();
        }
        file.commit();
    } catch (const std::system_error& error) {
        throw build_failed("cannot write the qcow2 image {}: {}; check that its directory "
                           "exists, is writable and has space",
                           output.string(), error.code().message());
    }
    return result;
}

} // namespace edgeforge::formats
