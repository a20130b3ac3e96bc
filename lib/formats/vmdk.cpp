// Converts raw disk images to VMDK streamOptimized sparse extents, the disk format of OVA packages.
#include "formats/vmdk.h"

#include <algorithm>
#include <array>
#include <exception>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "formats/raw_reader.h"
#include "util/deflate.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/units.h"

namespace edgeforge::formats {
namespace {

using util::divide_round_up;

// The layout follows VMware's Virtual Disk Format 5.0 ("Stream-Optimized Compressed Sparse
// Extents"); every number in it is little-endian.
constexpr std::uint32_t k_magic = 0x564d444b; // the bytes "KDMV"
constexpr std::uint32_t k_version = 3;        // ESXi rejects streamOptimized extents below 3
constexpr std::uint32_t k_flag_valid_newline_test = 1U << 0;
constexpr std::uint32_t k_flag_compressed_grains = 1U << 16;
constexpr std::uint32_t k_flag_markers = 1U << 17;
constexpr std::uint16_t k_compress_deflate = 1;
constexpr std::uint64_t k_grain_sectors = 128; // 64 KiB grains, as VMware writes them
constexpr std::uint64_t k_grain_size = k_grain_sectors * k_sector_size;
constexpr std::uint32_t k_grain_table_entries = 512; // the only value VMware's disk library reads
constexpr std::uint64_t k_descriptor_offset = 1;     // sectors
// Room for the descriptor as qemu reserves it; ours takes one sector.
constexpr std::uint64_t k_descriptor_sectors = 20;
// The header's gdOffset in a stream: the grain directory's place is known only at the end, and
// readers take it from the footer.
constexpr std::uint64_t k_gd_at_end = 0xffffffffffffffff;
constexpr std::size_t k_grain_marker_size = 12; // LBA (8 bytes) and compressed size (4), then data

enum class MarkerType : std::uint32_t {
    end_of_stream = 0,
    grain_table = 1,
    grain_directory = 2,
    footer = 3,
};

void put_le16(std::uint8_t* out, std::uint16_t value) {
    out[0] = static_cast<std::uint8_t>(value);
    out[1] = static_cast<std::uint8_t>(value >> 8);
}

void put_le32(std::uint8_t* out, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

void put_le64(std::uint8_t* out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

std::string_view adapter_name(VmdkAdapterType adapter) {
    switch (adapter) {
    case VmdkAdapterType::ide:
        return "ide";
    case VmdkAdapterType::buslogic:
        return "buslogic";
    case VmdkAdapterType::lsilogic:
        return "lsilogic";
    }
    return "lsilogic";
}

struct HeaderFields {
    std::uint64_t capacity_sectors = 0;
    std::uint64_t overhead_sectors = 0;
    std::uint64_t gd_offset = k_gd_at_end; // sectors
};

// The SparseExtentHeader, one sector; the footer is the same with the real gdOffset.
std::array<std::uint8_t, k_sector_size> encode_header(const HeaderFields& fields) {
    std::array<std::uint8_t, k_sector_size> header{};
    put_le32(&header[0], k_magic);
    put_le32(&header[4], k_version);
    put_le32(&header[8], k_flag_valid_newline_test | k_flag_compressed_grains | k_flag_markers);
    put_le64(&header[12], fields.capacity_sectors);
    put_le64(&header[20], k_grain_sectors);
    put_le64(&header[28], k_descriptor_offset);
    put_le64(&header[36], k_descriptor_sectors);
    put_le32(&header[44], k_grain_table_entries);
    put_le64(&header[48], 0); // no redundant grain directory
    put_le64(&header[56], fields.gd_offset);
    put_le64(&header[64], fields.overhead_sectors);
    header[72] = 0; // cleanly closed
    // Line-end characters a reader checks to detect a file mangled by a text-mode transfer.
    header[73] = '\n';
    header[74] = ' ';
    header[75] = '\r';
    header[76] = '\n';
    put_le16(&header[77], k_compress_deflate);
    return header;
}

// CID and ddb.longContentID, both derived from the content so the same disk gives the same
// descriptor. The CID repeats the last 32 bits of the long id, as VMware's writers do.
struct ContentId {
    std::uint32_t cid = 0;
    std::string long_id;
};

ContentId content_id_from(std::string_view content_digest) {
    util::Sha256 hash;
    hash.update("edgeforge vmdk content id\n");
    hash.update(content_digest);
    auto bytes = hash.finish();
    // 0xffffffff and 0xfffffffe mean "no CID" to VMware's disk library.
    if (bytes[12] == 0xff && bytes[13] == 0xff && bytes[14] == 0xff && bytes[15] >= 0xfe) {
        bytes[12] = 0x7f;
    }
    ContentId id;
    id.cid = static_cast<std::uint32_t>(bytes[12]) << 24 |
             static_cast<std::uint32_t>(bytes[13]) << 16 |
             static_cast<std::uint32_t>(bytes[14]) << 8 | static_cast<std::uint32_t>(bytes[15]);
    id.long_id = util::to_hex(bytes.data(), 16);
    return id;
}

// The SHA-256 of what the raw image holds: its size and every chunk with data, with its index,
// so holes and written zeros hash alike.
std::string hash_raw_content(const std::filesystem::path& raw_image) {
    RawImageReader raw(raw_image, k_grain_size);
    util::Sha256 hash;
    std::array<std::uint8_t, 8> number{};
    put_le64(number.data(), raw.size());
    hash.update(number.data(), number.size());
    while (const auto chunk = raw.next_data_chunk()) {
        put_le64(number.data(), chunk->index);
        hash.update(number.data(), number.size());
        hash.update(chunk->bytes.data(), chunk->bytes.size());
    }
    return hash.finish_hex();
}

std::string render_descriptor(const ContentId& id, std::uint64_t capacity_sectors,
                              std::string_view extent_name, const VmdkOptions& options) {
    // Geometry only matters to BIOSes of old guests. VMware's tools use these heads and sectors,
    // round the cylinders down (CHS must not reach past the disk) and cap them at the IDE and
    // SCSI limits.
    const bool ide = options.adapter_type == VmdkAdapterType::ide;
    const std::uint64_t heads = ide ? 16 : 255;
    const std::uint64_t sectors = 63;
    const std::uint64_t cylinders =
        std::clamp<std::uint64_t>(capacity_sectors / (heads * sectors), 1, ide ? 16383 : 65535);
    // qemu finds the CID with strstr("CID"): it must come before parentCID.
    return fmt::format("# Disk DescriptorFile\n"
                       "version=1\n"
                       "encoding=\"UTF-8\"\n"
                       "CID={:08x}\n"
                       "parentCID=ffffffff\n"
                       "createType=\"streamOptimized\"\n"
                       "\n"
                       "# Extent description\n"
                       "RW {} SPARSE \"{}\"\n"
                       "\n"
                       "# The Disk Data Base\n"
                       "#DDB\n"
                       "\n"
                       "ddb.adapterType = \"{}\"\n"
                       "ddb.geometry.cylinders = \"{}\"\n"
                       "ddb.geometry.heads = \"{}\"\n"
                       "ddb.geometry.sectors = \"{}\"\n"
                       "ddb.longContentID = \"{}\"\n"
                       "ddb.virtualHWVersion = \"{}\"\n",
                       id.cid, capacity_sectors, extent_name, adapter_name(options.adapter_type),
                       cylinders, heads, sectors, id.long_id, options.hardware_version);
}

// The output as a stream: appended in order and hashed on the way, never rewritten, gathered
// into 1 MiB writes at `offset` and on in the file.
class VmdkStream {
  public:
    VmdkStream(int fd, std::uint64_t offset) : fd_(fd), offset_(offset) {
        pending_.reserve(k_flush_size + k_grain_size);
    }

    std::uint64_t position() const { return position_; }
    std::uint64_t sector() const { return position_ / k_sector_size; }

    void write(std::span<const std::uint8_t> bytes) {
        pending_.insert(pending_.end(), bytes.begin(), bytes.end());
        hash_.update(bytes.data(), bytes.size());
        position_ += bytes.size();
        if (pending_.size() >= k_flush_size) {
            flush();
        }
    }

    // Writes what is gathered (std::system_error when the write fails).
    void flush() {
        util::pwrite_exact(fd_, pending_.data(), pending_.size(),
                           offset_ + position_ - pending_.size());
        pending_.clear();
    }

    void write_zeros(std::uint64_t count) {
        static constexpr std::array<std::uint8_t, k_sector_size> k_zeros{};
        while (count > 0) {
            const auto piece = std::min<std::uint64_t>(count, k_zeros.size());
            write(std::span<const std::uint8_t>(k_zeros).first(piece));
            count -= piece;
        }
    }

    void pad_to_sector() {
        if (position_ % k_sector_size != 0) {
            write_zeros(k_sector_size - position_ % k_sector_size);
        }
    }

    // A metadata marker: one sector saying what follows and how many sectors it takes.
    void write_marker(MarkerType type, std::uint64_t sectors) {
        std::array<std::uint8_t, k_sector_size> marker{};
        put_le64(&marker[0], sectors);
        put_le32(&marker[12], static_cast<std::uint32_t>(type)); // after a zero size field
        write(marker);
    }

    std::string finish_hash() { return hash_.finish_hex(); }

  private:
    static constexpr std::size_t k_flush_size = std::size_t{1} << 20;
    int fd_;
    std::uint64_t offset_;
    std::vector<std::uint8_t> pending_;
    util::Sha256 hash_;
    std::uint64_t position_ = 0;
};

// Grain tables and the grain directory hold 32-bit sector numbers.
std::uint32_t table_sector(std::uint64_t sector, const std::filesystem::path& output) {
    if (sector > std::numeric_limits<std::uint32_t>::max()) {
        throw build_failed("the VMDK image {} would grow past 2 TiB, more than its grain tables "
                           "can address",
                           output.string());
    }
    return static_cast<std::uint32_t>(sector);
}

void write_table(VmdkStream& out, MarkerType type, std::span<const std::uint32_t> entries) {
    const std::uint64_t sectors = divide_round_up(entries.size() * 4, k_sector_size);
    out.write_marker(type, sectors);
    std::vector<std::uint8_t> bytes(sectors * k_sector_size);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        put_le32(&bytes[i * 4], entries[i]);
    }
    out.write(bytes);
}

} // namespace

VmdkResult write_vmdk_stream_optimized(const std::filesystem::path& raw_image,
                                       const std::filesystem::path& output,
                                       const VmdkOptions& options) {
    std::error_code ignored;
    if (std::filesystem::equivalent(raw_image, output, ignored)) {
        throw bad_input("the VMDK output {} is the raw disk image itself; choose another path",
                        output.string());
    }
    VmdkOptions named = options;
    if (named.extent_file_name.empty()) {
        named.extent_file_name = output.filename().string();
    }
    try {
        util::AtomicFile file(output);
        const VmdkResult result =
            write_vmdk_stream_optimized_into(raw_image, file.fd(), 0, output, named);
        file.commit();
        return result;
    } catch (const std::system_error& error) {
        throw build_failed("cannot write the VMDK image {}: {}; check that its directory "
                           "exists, is writable and has space",
                           output.string(), error.code().message());
    }
}

VmdkResult write_vmdk_stream_optimized_into(const std::filesystem::path& raw_image, int out_fd,
                                            std::uint64_t offset,
                                            const std::filesystem::path& output,
                                            const VmdkOptions& options) {
    const std::string& extent_name = options.extent_file_name;
    const bool name_usable =
        !extent_name.empty() && std::none_of(extent_name.begin(), extent_name.end(), [](char c) {
            return c == '"' || static_cast<unsigned char>(c) < 0x20;
        });
    if (!name_usable) {
        throw bad_input("VMDK extent file name '{}' cannot go into a descriptor: it must be "
                        "non-empty, without quotes or control characters",
                        extent_name);
    }
    if (options.hardware_version < 1) {
        throw bad_input("VMDK virtual hardware version {} is not a positive number",
                        options.hardware_version);
    }
    RawImageReader raw(raw_image, k_grain_size);
    const ContentId id = content_id_from(
        options.content_digest.empty() ? hash_raw_content(raw_image) : options.content_digest);
    const std::uint64_t capacity_sectors = raw.size() / k_sector_size;
    const std::string descriptor = render_descriptor(id, capacity_sectors, extent_name, options);
    if (descriptor.size() > k_descriptor_sectors * k_sector_size) {
        throw bad_input("VMDK extent file name '{}' is too long for the descriptor", extent_name);
    }
    HeaderFields header;
    header.capacity_sectors = capacity_sectors;
    // The first grain starts at a grain boundary after the header and the descriptor.
    header.overhead_sectors =
        divide_round_up(k_descriptor_offset + k_descriptor_sectors, k_grain_sectors) *
        k_grain_sectors;

    VmdkResult result;
    result.capacity = raw.size();
    result.content_id = id.cid;
    try {
        VmdkStream out(out_fd, offset);
        out.write(encode_header(header));
        out.write(
            std::span(reinterpret_cast<const std::uint8_t*>(descriptor.data()), descriptor.size()));
        out.write_zeros(header.overhead_sectors * k_sector_size - out.position());

        // A grain table is written once the data has passed the 512 grains (32 MiB) it maps, so
        // only that table is in memory; ranges without data get none (directory entry 0), as
        // VMware's own streams do. The directory has 4 bytes per table.
        std::vector<std::uint32_t> directory(
            divide_round_up(raw.chunk_count(), k_grain_table_entries));
        std::vector<std::uint32_t> table(k_grain_table_entries);
        std::optional<std::uint64_t> table_index;
        const auto flush_table = [&] {
            if (table_index) {
                // The directory points at the table itself, the sector after its marker.
                directory[*table_index] = table_sector(out.sector() + 1, output);
                write_table(out, MarkerType::grain_table, table);
                std::fill(table.begin(), table.end(), 0);
            }
        };

        // Grains are independent deflate streams: a batch is read in order, compressed on every
        // core, then written in order, so the file is the same whatever the thread count. Writing
        // (and hashing) a batch runs on a thread of its own while the next one is read and
        // compressed, in the other of two batches.
        struct Grain {
            std::uint64_t index = 0;
            std::vector<std::uint8_t> data;   // the raw grain
            std::vector<std::uint8_t> stream; // the compressed grain (room for the bound)
            std::size_t size = 0;             // compressed bytes
        };
        struct Batch {
            std::vector<Grain> grains;
            std::size_t count = 0;
        };
        const unsigned workers = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
        constexpr std::size_t k_batch = 256; // 16 MiB of grains
        std::array<Batch, 2> batches;
        for (auto& batch : batches) {
            batch.grains.resize(k_batch);
        }
        std::vector<std::unique_ptr<util::Deflater>> deflaters;
        for (unsigned w = 0; w < workers; ++w) {
            deflaters.push_back(std::make_unique<util::Deflater>(util::DeflateFormat::zlib, 15,
                                                                 util::DeflateEngine::isal));
        }
        const std::size_t stream_capacity = deflaters[0]->bound(k_grain_size);
        const auto compress_range = [&](Batch& batch, unsigned worker) {
            for (std::size_t i = worker; i < batch.count; i += workers) {
                Grain& grain = batch.grains[i];
                grain.stream.resize(stream_capacity);
                const auto size = deflaters[worker]->compress(grain.data, grain.stream);
                if (!size) {
                    throw std::logic_error("deflate exceeded its own bound");
                }
                grain.size = *size;
            }
        };
        const auto compress = [&](Batch& batch) {
            if (workers == 1 || batch.count < 2) {
                compress_range(batch, 0);
                return;
            }
            std::vector<std::thread> threads;
            std::vector<std::exception_ptr> errors(workers);
            for (unsigned w = 1; w < workers; ++w) {
                threads.emplace_back([&, w] {
                    try {
                        compress_range(batch, w);
                    } catch (...) {
                        errors[w] = std::current_exception();
                    }
                });
            }
            try {
                compress_range(batch, 0);
            } catch (...) {
                errors[0] = std::current_exception();
            }
            for (auto& thread : threads) {
                thread.join();
            }
            for (const auto& error : errors) {
                if (error) {
                    std::rethrow_exception(error);
                }
            }
        };
        // Only ever one write at a time, in batch order: the tables, the directory and the
        // stream are the writer's alone while it runs.
        const auto write_batch = [&](const Batch& batch) {
            for (std::size_t i = 0; i < batch.count; ++i) {
                const Grain& grain = batch.grains[i];
                const std::uint64_t index = grain.index / k_grain_table_entries;
                if (table_index != index) {
                    flush_table();
                    table_index = index;
                }
                table[grain.index % k_grain_table_entries] = table_sector(out.sector(), output);
                std::array<std::uint8_t, k_grain_marker_size> marker{};
                put_le64(&marker[0], grain.index * k_grain_sectors);
                put_le32(&marker[8], static_cast<std::uint32_t>(grain.size));
                out.write(marker);
                out.write(std::span(grain.stream).first(grain.size));
                out.pad_to_sector();
                ++result.grains;
            }
        };
        std::future<void> writing; // after the batches: finished (or abandoned) before they go
        for (std::size_t current = 0;; current ^= 1) {
            Batch& batch = batches[current];
            batch.count = 0;
            while (batch.count < k_batch) {
                const auto chunk = raw.next_data_chunk();
                if (!chunk) {
                    break;
                }
                batch.grains[batch.count].index = chunk->index;
                batch.grains[batch.count].data.assign(chunk->bytes.begin(), chunk->bytes.end());
                ++batch.count;
            }
            if (batch.count == 0) {
                break;
            }
            compress(batch);
            if (writing.valid()) {
                writing.get(); // the other batch is written: it can be filled again next
            }
            writing = std::async(std::launch::async, write_batch, std::cref(batch));
        }
        if (writing.valid()) {
            writing.get();
        }
        flush_table();

        header.gd_offset = out.sector() + 1;
        write_table(out, MarkerType::grain_directory, directory);
        out.write_marker(MarkerType::footer, 1);
        out.write(encode_header(header));
        out.write_marker(MarkerType::end_of_stream, 0);
        out.flush();
        result.file_size = out.position();
        result.sha256 = out.finish_hash();
    } catch (const std::system_error& error) {
        throw build_failed("cannot write the VMDK image {}: {}; check that its directory "
                           "exists, is writable and has space",
                           output.string(), error.code().message());
    }
    return result;
}

} // namespace edgeforge::formats
