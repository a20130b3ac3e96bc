// Writes an fs::Tree as a squashfs image with libsquashfs: parallel compression, atomic output.
#include "fs/squashfs.h"
#include "fs/squashfs_libsqfs.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <sqfs/block.h>
#include <sqfs/block_processor.h>
#include <sqfs/block_writer.h>
#include <sqfs/compressor.h>
#include <sqfs/dir.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/frag_table.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr.h>
#include <sqfs/xattr_writer.h>

#include "base/error.h"
#include "base/version.h"
#include "fs/squashfs_region.h"
#include "util/digest.h"
#include "util/fs.h"

namespace edgeforge::fs {
namespace {

using namespace libsqfs;

constexpr sqfs_u32 k_no_xattrs = 0xFFFFFFFF;
constexpr std::size_t k_max_name_length = 256; // SQUASHFS_NAME_LEN in the kernel
constexpr std::size_t k_dir_entry_size = 8;    // an on-disk directory entry without its name
constexpr unsigned k_max_threads = 1024;
constexpr std::size_t k_skipped_xattrs_kept = 16;
// Blocks in flight per worker: enough to keep every worker busy while the main thread reads
// the next file and while one slow block holds up the in-order write of those done after it
// (gensquashfs's 10 left the second of two cores idle for a sixth of a cold build), but with no
// more than about 256 MiB of blocks in memory whatever the thread count.
constexpr unsigned k_backlog_per_worker = 32;
constexpr std::size_t k_backlog_bytes = 256U << 20;

// ---------------------------------------------------------------------- the writer's inodes

using InodePtr = std::unique_ptr<sqfs_inode_generic_t, SqfsFreeDeleter>;

// An inode with `payload` bytes after it (symbolic link targets), zero-filled.
InodePtr allocate_inode(std::size_t payload) {
    void* memory = std::calloc(1, sizeof(sqfs_inode_generic_t) + payload);
    if (memory == nullptr) {
        throw std::bad_alloc();
    }
    return InodePtr(static_cast<sqfs_inode_generic_t*>(memory));
}

// The file inodes the block processor creates and keeps updating until it has finished: it
// holds the address of each pointer, so they live in a node-based map whose elements never
// move, and whatever is left in it is freed with it.

// A regular file's name and inode, as data_order() lists them.
struct DataEntry {
    std::string path;
    const Inode* inode;
};

// The extension of a path's last component (".py", ".ko"; empty for "vmlinuz" or ".bashrc"),
// which groups files whose bytes look alike.
std::string_view file_extension(std::string_view path) {
    const std::string_view name = path.substr(path.rfind('/') + 1);
    const auto dot = name.rfind('.');
    return dot == std::string_view::npos || dot == 0 ? std::string_view() : name.substr(dot);
}

// The order file data goes into the image: regular files grouped by extension, then by name,
// then in path order. The tail ends of small files are packed into shared fragment blocks in
// this order, and like files side by side compress better than a directory's mixture: on the
// 740 MiB Debian base of `make bench` the image is 0.5 MiB smaller at the same level, as small
// as mksquashfs's at level 15. Only where the data lies changes; inodes and directories keep
// mksquashfs's order, and the order depends on the tree alone, so images stay reproducible.
std::vector<DataEntry> data_order(const Tree& tree) {
    std::vector<DataEntry> files;
    tree.walk([&](const WalkEntry& entry) {
        if (entry.inode.is_regular()) {
            files.push_back({std::string(entry.path), &entry.inode});
        }
    });
    const auto key = [](const DataEntry& entry) {
        const std::string_view path = entry.path;
        return std::make_pair(file_extension(path), path.substr(path.rfind('/') + 1));
    };
    std::stable_sort(files.begin(), files.end(),
                     [&](const DataEntry& a, const DataEntry& b) { return key(a) < key(b); });
    return files;
}

class FileInodes {
  public:
    FileInodes() = default;
    ~FileInodes() {
        for (auto& [inode, generic] : slots_) {
            sqfs_free(generic);
        }
    }
    FileInodes(const FileInodes&) = delete;
    FileInodes& operator=(const FileInodes&) = delete;

    // The slot for `inode`, and whether it is new (false for the second name of a hard link).
    std::pair<sqfs_inode_generic_t**, bool> slot(const Inode* inode) {
        auto [it, inserted] = slots_.try_emplace(inode, nullptr);
        return {&it->second, inserted};
    }
    // Hands the finished inode over to the caller.
    InodePtr take(const Inode* inode) {
        const auto found = slots_.find(inode);
        if (found == slots_.end()) {
            return nullptr;
        }
        InodePtr owned(found->second);
        found->second = nullptr;
        return owned;
    }

  private:
    std::unordered_map<const Inode*, sqfs_inode_generic_t*> slots_;
};

unsigned available_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0) {
        const int count = CPU_COUNT(&set);
        if (count > 0) {
            return static_cast<unsigned>(count);
        }
    }
    return std::max(1U, std::thread::hardware_concurrency());
}

sqfs_u32 clamp_time(std::int64_t seconds) {
    return static_cast<sqfs_u32>(
        std::clamp<std::int64_t>(seconds, 0, std::numeric_limits<sqfs_u32>::max()));
}

// Type bits plus permission bits, as squashfs inodes and directory entries store them.
sqfs_u16 squashfs_mode(const Inode& inode) {
    sqfs_u16 type = SQFS_INODE_MODE_REG;
    switch (inode.type) {
    case FileType::regular:
        type = SQFS_INODE_MODE_REG;
        break;
    case FileType::directory:
        type = SQFS_INODE_MODE_DIR;
        break;
    case FileType::symlink:
        type = SQFS_INODE_MODE_LNK;
        break;
    case FileType::char_device:
        type = SQFS_INODE_MODE_CHR;
        break;
    case FileType::block_device:
        type = SQFS_INODE_MODE_BLK;
        break;
    case FileType::fifo:
        type = SQFS_INODE_MODE_FIFO;
        break;
    case FileType::socket:
        type = SQFS_INODE_MODE_SOCK;
        break;
    }
    return static_cast<sqfs_u16>(type | (inode.mode & 07777U));
}

// The device number as the kernel decodes it from squashfs (new_decode_dev): 12-bit major,
// 20-bit minor, the low minor byte at the bottom; nullopt when it does not fit.
std::optional<sqfs_u32> encode_device(DeviceNumber rdev) {
    if (rdev.major > 0xFFFU || rdev.minor > 0xFFFFFU) {
        return std::nullopt;
    }
    return (rdev.minor & 0xFFU) | (rdev.major << 8) | ((rdev.minor & ~0xFFU) << 12);
}

// ------------------------------------------------------------------------------------- writer

// Where an inode ended up: its number, and its position in the inode table once written.
struct InodeInfo {
    sqfs_u32 number = 0;
    sqfs_u64 reference = 0; // meta data block offset << 16 | offset inside the block
    sqfs_u16 mode = 0;
    bool written = false;
};

// One image being written. Members are declared in the order they are created and destroyed
// in reverse, so no libsquashfs object outlives one it points to (the block processor uses
// the compressors, block writer, fragment table and file; the directory writer uses its meta
// writer; the meta writers use the file and the compressor).
class SquashfsWriter {
  public:
    SquashfsWriter(const Tree& tree, const SpillFile& spill, const SquashfsOptions& options,
                   std::filesystem::path output, const SquashfsProgress& progress)
        : tree_(tree), spill_(spill), options_(options), output_(std::move(output)),
          progress_(progress) {}

    SquashfsStats write(const std::filesystem::path& temp_path) {
        const auto start = std::chrono::steady_clock::now();
        threads_ = options_.threads != 0 ? options_.threads : available_cores();
        link_counts_ = tree_.link_counts();
        open(temp_path);
        write_file_data();
        if (region_copy_.valid()) {
            if (const int error = region_copy_.get(); error != 0) {
                throw build_failed("squashfs: cannot copy the base region from the block cache "
                                   "into {}: {}",
                                   output_.string(), std::strerror(error));
            }
        }
        number_inodes();
        write_inodes();
        write_tables();
        if (region_kept_.valid()) {
            region_kept_.get(); // best effort: it never throws
        }
        return statistics(std::chrono::steady_clock::now() - start);
    }

  private:
    [[noreturn]] void fail(int code, std::string_view step) const {
        // A block written in the background failed: that, not what the caller was doing, is
        // the step to report.
        const auto* writer = block_writer_
                                 ? reinterpret_cast<const TrackingBlockWriter*>(block_writer_.get())
                                 : nullptr;
        std::string failed_step;
        if (writer != nullptr && writer->failed) {
            failed_step = writer->failed_path != nullptr
                              ? fmt::format("writing the data of {}", *writer->failed_path)
                              : std::string("writing a fragment block (tail ends of small files)");
            step = failed_step;
        }
        std::string reason(describe_sqfs_error(code));
        const OutputFile* state = file_ ? &output_file(file_.get()) : nullptr;
        if (code == SQFS_ERROR_IO && state != nullptr && state->error != 0) {
            reason = fmt::format("cannot {} {}: {}", state->failed_call, output_.string(),
                                 std::strerror(state->error));
        } else {
            reason += fmt::format(" (libsquashfs error {})", code);
        }
        throw build_failed("squashfs: {} failed: {}", step, reason);
    }
    void check(int code, std::string_view step) const {
        if (code != 0) {
            fail(code, step);
        }
    }
    template <typename T> SqfsPtr<T> created(T* object, std::string_view what) const {
        if (object == nullptr) {
            fail(SQFS_ERROR_ALLOC, fmt::format("creating the {}", what));
        }
        return SqfsPtr<T>(object);
    }

    void open(const std::filesystem::path& temp_path) {
        const auto name = squashfs_compressor_name(options_.compressor);
        file_ = open_output_file(temp_path, output_);

        sqfs_compressor_config_t config{};
        const sqfs_u16 flags =
            options_.compressor == SquashfsCompressor::xz ? xz_filter_flags(options_.arch) : 0;
        check(sqfs_compressor_config_init(&config, compressor_id(options_.compressor),
                                          options_.block_size, flags),
              fmt::format("configuring the {} compressor", name));
        if (options_.compressor != SquashfsCompressor::lz4) {
            config.level =
                static_cast<sqfs_u32>(effective_squashfs_level(options_.compressor, options_.level));
        }
        sqfs_compressor_t* raw = nullptr;
        check(sqfs_compressor_create(&config, &raw),
              fmt::format("creating the {} compressor", name));
        if (!options_.block_cache_dir.empty()) {
            block_cache_.emplace(options_.block_cache_dir,
                                 compression_context(options_.compressor, options_.level,
                                                     options_.block_size, options_.arch),
                                 options_.block_cache_max_bytes);
        }
        NeverLargerCompressor* wrapped =
            wrap_compressor(raw, block_cache_ ? &*block_cache_ : nullptr);
        if (wrapped == nullptr) {
            sqfs_destroy(raw);
            throw std::bad_alloc();
        }
        compressor_.reset(&wrapped->interface);
        // A decompressor lets the block processor verify candidate duplicate fragments byte
        // for byte instead of trusting a 32-bit hash.
        config.flags = static_cast<sqfs_u16>(config.flags | SQFS_COMP_FLAG_UNCOMPRESS);
        raw = nullptr;
        check(sqfs_compressor_create(&config, &raw),
              fmt::format("creating the {} decompressor", name));
        decompressor_.reset(raw);

        const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        check(sqfs_super_init(&super_, options_.block_size,
                              clamp_time(options_.modification_time.value_or(now)),
                              compressor_id(options_.compressor)),
              "initialising the superblock");
        check(sqfs_super_write(&super_, file_.get()), "writing the superblock");
        const int options_written = compressor_->write_options(compressor_.get(), file_.get());
        if (options_written < 0) {
            fail(options_written, "writing the compressor options");
        }
        if (options_written > 0) {
            super_.flags = static_cast<sqfs_u16>(super_.flags | SQFS_FLAG_COMPRESSOR_OPTIONS);
        }
        data_start_ = file_->get_size(file_.get());
        fragment_table_ = created(sqfs_frag_table_create(0), "fragment table");

        id_table_ = created(sqfs_id_table_create(0), "id table");
        xattr_writer_ = created(sqfs_xattr_writer_create(0), "xattr writer");
        inode_table_ = created(sqfs_meta_writer_create(file_.get(), compressor_.get(), 0),
                               "inode table writer");
        // Directories are listed in memory and written after the inode table, which has to
        // come first in the image but is only complete once every directory is listed.
        directory_table_ = created(sqfs_meta_writer_create(file_.get(), compressor_.get(),
                                                           SQFS_META_WRITER_KEEP_IN_MEMORY),
                                   "directory table writer");
        // The export table (inode number -> inode) lets the image be exported over NFS; mksquashfs
        // writes one by default, and it costs 8 bytes per inode.
        directory_writer_ = created(
            sqfs_dir_writer_create(directory_table_.get(), SQFS_DIR_WRITER_CREATE_EXPORT_TABLE),
            "directory writer");
    }

    // Starts a block processor (and its block writer) for a run of files: the base region, then
    // the rest. Each run deduplicates and packs tail ends within itself only.
    void start_data_phase() {
        block_writer_ = track_block_writer(
            created(sqfs_block_writer_create(file_.get(), SQFS_DEVBLK_SIZE, 0), "block writer")
                .release());
        sqfs_block_processor_desc_t description{};
        description.size = static_cast<sqfs_u32>(sizeof description);
        description.max_block_size = options_.block_size;
        description.num_workers = threads_;
        const auto memory_cap = static_cast<unsigned>(
            std::max<std::size_t>(k_backlog_bytes / options_.block_size, 2U * threads_));
        description.max_backlog =
            std::max(3U, std::min(threads_ * k_backlog_per_worker, memory_cap));
        description.cmp = compressor_.get();
        description.wr = block_writer_.get();
        description.tbl = fragment_table_.get();
        description.file = file_.get();
        description.uncmp = decompressor_.get();
        sqfs_block_processor_t* processor = nullptr;
        check(sqfs_block_processor_create_ex(&description, &processor),
              fmt::format("starting {} compression threads", threads_));
        processor_.reset(processor);
    }

    // Writes the run's last blocks (its partly filled fragment block included), adds up what
    // it produced and stops its threads: every inode of the run is complete.
    void finish_data_phase() {
        check(sqfs_block_processor_finish(processor_.get()), "compressing the last data blocks");
        const sqfs_block_processor_stats_t* processed =
            sqfs_block_processor_get_stats(processor_.get());
        const sqfs_u64 blocks_written = block_writer_->get_block_count(block_writer_.get());
        produced_.data_blocks += processed->data_block_count;
        produced_.fragment_blocks += processed->frag_block_count;
        const sqfs_u64 produced = processed->data_block_count + processed->frag_block_count;
        produced_.duplicate_blocks += produced > blocks_written ? produced - blocks_written : 0;
        produced_.sparse_blocks += processed->sparse_block_count;
        produced_.duplicate_fragments += processed->total_frag_count - processed->actual_frag_count;
        processor_.reset();
        block_writer_.reset();
    }

    // Streams every distinct regular file into block processors, in data_order(): the base
    // region's files first (or their blocks copied from a kept region), then the others. The
    // processors fill in each file's inode (block sizes, fragment) as blocks complete.
    void write_file_data() {
        data_total_ = tree_.stats().data_bytes;
        if (progress_) {
            progress_(0, data_total_);
        }
        std::vector<DataEntry> files = data_order(tree_);
        auto rest = files.begin();
        if (options_.base_region) {
            const auto& base = options_.base_region->base_paths;
            rest = std::stable_partition(files.begin(), files.end(), [&](const DataEntry& file) {
                return base.contains(file.inode);
            });
            write_base_region(std::span(files.begin(), rest));
        }
        start_data_phase();
        feed(std::span(rest, files.end()));
        finish_data_phase();
    }

    // The base region: taken from the block cache's kept regions when one matches, otherwise
    // compressed as a run of its own and kept for the next image.
    void write_base_region(std::span<DataEntry> files) {
        if (files.empty()) {
            return;
        }
        std::filesystem::path entry;
        if (block_cache_) {
            if (const auto key = region_key(files)) {
                entry = block_cache_->directory() / "regions" / *key;
                if (adopt_region(entry, files)) {
                    return;
                }
            }
        }
        start_data_phase();
        feed(files);
        finish_data_phase();
        if (!entry.empty()) {
            if (options_.before_keeping_region) {
                options_.before_keeping_region();
            }
            keep_region(entry, files);
        }
    }

    // Names a base region by what decides its bytes: the base's identity, where the data starts
    // (the compressor options before it) and each file's final path, path in the base and size,
    // in order. The compression settings are in the block cache's context directory already.
    // nullopt when the base has no identity.
    std::optional<std::string> region_key(std::span<const DataEntry> files) const {
        const SquashfsBaseRegion& region = *options_.base_region;
        if (region.identity.empty()) {
            return std::nullopt;
        }
        util::Sha256 hash;
        // Each field with its length first: paths may hold any byte but NUL.
        const auto field = [&](std::string_view value) {
            hash.update(fmt::format("{}:", value.size()));
            hash.update(value);
        };
        field(fmt::format("squashfs base region 1; edgeforge {}", k_version));
        field(std::to_string(data_start_));
        field(region.identity);
        for (const DataEntry& file : files) {
            field(file.path);
            field(region.base_paths.at(file.inode));
            field(std::to_string(file.inode->size()));
        }
        return hash.finish_hex();
    }

    // The distinct inodes of `files`, in order (a hard link's second name is left out).
    static std::vector<const Inode*> distinct_inodes(std::span<const DataEntry> files) {
        std::vector<const Inode*> inodes;
        std::unordered_set<const Inode*> seen;
        for (const DataEntry& file : files) {
            if (seen.insert(file.inode).second) {
                inodes.push_back(file.inode);
            }
        }
        return inodes;
    }

    // Keeps the region just written for later images: its bytes, the inodes of its files and
    // its fragment table entries. Best effort: a region that cannot be kept is compressed again
    // next time, never an error.
    void keep_region(const std::filesystem::path& entry, std::span<const DataEntry> files) {
        const auto& out = output_file(file_.get());
        SquashfsRegionIndex index;
        index.start = data_start_;
        index.size = out.size - data_start_;
        index.produced = produced_;
        index.data_bytes = bytes_in_;
        for (std::size_t i = 0; i < sqfs_frag_table_get_size(fragment_table_.get()); ++i) {
            sqfs_fragment_t fragment{};
            if (sqfs_frag_table_lookup(fragment_table_.get(), static_cast<sqfs_u32>(i),
                                       &fragment) != 0) {
                return;
            }
            index.fragments.emplace_back(fragment.start_offset, fragment.size);
        }
        for (const Inode* inode : distinct_inodes(files)) {
            const sqfs_inode_generic_t* generic = *file_inodes_.slot(inode).first;
            if (generic == nullptr) {
                return;
            }
            index.inodes.emplace_back(reinterpret_cast<const char*>(generic),
                                      sizeof(sqfs_inode_generic_t) + generic->payload_bytes_used);
        }
        // Hashed and copied on a thread of its own while the rest of the image is compressed.
        region_kept_ =
            std::async(std::launch::async, [entry, kept = std::move(index), fd = out.fd] {
                store_region(entry, kept, fd);
            });
    }

    // Takes a kept region whose index, bytes and inodes check out: its bytes are copied into the
    // image (in the kernel, a reflink where the filesystem has them) and its inodes and fragment
    // entries installed as the block processor left them. A bad region is removed.
    bool adopt_region(const std::filesystem::path& entry, std::span<const DataEntry> files) {
        const std::vector<const Inode*> inodes = distinct_inodes(files);
        auto region = open_region(entry, inodes.size(), data_start_);
        if (!region) {
            return false;
        }
        const SquashfsRegionIndex& index = region->index;
        // Each record must be a file inode of the right size whose blocks and fragment lie in
        // the region: anything else is not this region's.
        for (std::size_t i = 0; i < inodes.size(); ++i) {
            const std::string& record = index.inodes[i];
            sqfs_inode_generic_t header{};
            bool good = record.size() >= sizeof header;
            if (good) {
                std::memcpy(&header, record.data(), sizeof header);
                sqfs_u64 size = 0;
                good = (header.base.type == SQFS_INODE_FILE ||
                        header.base.type == SQFS_INODE_EXT_FILE) &&
                       record.size() - sizeof header == header.payload_bytes_used &&
                       header.payload_bytes_used % sizeof(sqfs_u32) == 0 &&
                       sqfs_inode_get_file_size(&header, &size) == 0 && size == inodes[i]->size();
                sqfs_u32 fragment = 0;
                sqfs_u32 offset = 0;
                sqfs_inode_get_frag_location(&header, &fragment, &offset);
                good = good && (fragment == 0xFFFFFFFF || fragment < index.fragments.size());
            }
            if (!good) {
                drop_region(entry);
                return false;
            }
        }
        // The region's bytes are copied in the background while the other files are compressed
        // after it (the two ranges of the image never meet); write() waits for the copy.
        auto& out = output_file(file_.get());
        out.size = data_start_ + index.size;
        region_copy_ = std::async(std::launch::async, [fd = std::move(region->fd), image = out.fd,
                                                       start = data_start_, size = index.size] {
            errno = 0;
            return copy_region(fd.get(), image, start, size) ? 0 : (errno != 0 ? errno : EIO);
        });
        for (std::size_t i = 0; i < inodes.size(); ++i) {
            const std::string& record = index.inodes[i];
            auto [slot, is_new] = file_inodes_.slot(inodes[i]);
            void* memory = std::malloc(record.size());
            if (memory == nullptr) {
                throw std::bad_alloc();
            }
            std::memcpy(memory, record.data(), record.size());
            *slot = static_cast<sqfs_inode_generic_t*>(memory);
            (*slot)->payload_bytes_available = (*slot)->payload_bytes_used;
        }
        for (const auto& [location, size] : index.fragments) {
            check(sqfs_frag_table_append(fragment_table_.get(), location, size, nullptr),
                  "taking the fragment table of the base region");
        }
        produced_ += index.produced;
        bytes_in_ += index.data_bytes;
        data_done_ += index.data_bytes;
        region_reused_bytes_ = index.data_bytes;
        if (progress_) {
            progress_(data_done_, data_total_);
        }
        return true;
    }

    // Streams each distinct file of a run into the block processor.
    void feed(std::span<DataEntry> files) {
        for (DataEntry& file : files) {
            const auto [slot, is_new] = file_inodes_.slot(file.inode);
            if (!is_new) {
                continue; // another name of a file already written
            }
            // The path travels with the file's blocks to the block writer, for its messages.
            const std::string& path = file_paths_.emplace_back(std::move(file.path));
            const auto step = [&] { return fmt::format("compressing {}", path); };
            int code =
                sqfs_block_processor_begin_file(processor_.get(), slot, &file_paths_.back(), 0);
            if (code != 0) {
                fail(code, step());
            }
            read_data(*file.inode, spill_, [&](const char* data, std::size_t size) {
                const int appended = sqfs_block_processor_append(processor_.get(), data, size);
                if (appended != 0) {
                    fail(appended, step());
                }
                data_done_ += size;
                bytes_in_ += size;
                if (progress_) {
                    progress_(data_done_, data_total_);
                }
            });
            code = sqfs_block_processor_end_file(processor_.get());
            if (code != 0) {
                fail(code, step());
            }
        }
    }

    // Numbers inodes the way mksquashfs (4.5) does: depth first, a directory before its
    // entries, names in bytewise order, the root last, and a hard-linked file once, at its first
    // name; images of the same tree then agree with mksquashfs down to the inode numbers
    // (sqfsdiff --inode-num). The inode table itself is written children first (see
    // write_inodes), independently of the numbers.
    void number_inodes() {
        sqfs_u32 next = 0;
        const auto assign = [&](const Inode& inode) {
            const auto [it, inserted] = inodes_.try_emplace(&inode);
            if (!inserted) {
                return;
            }
            if (next == std::numeric_limits<sqfs_u32>::max() - 1) {
                throw build_failed("squashfs: the tree has more inodes than squashfs can number");
            }
            it->second.number = ++next;
            it->second.mode = squashfs_mode(inode);
        };
        tree_.walk([&](const WalkEntry& entry) {
            if (entry.parent != nullptr) {
                assign(entry.inode);
            }
        });
        assign(tree_.root());
        inode_count_ = next;
    }

    // Writes the inode table children first, root last: a directory's listing needs the table
    // positions of its entries' inodes, so they must be written before it.
    void write_inodes() {
        super_.inode_table_start = file_->get_size(file_.get());
        tree_.walk(
            [&](const WalkEntry& entry) {
                InodeInfo& info = inodes_.at(&entry.inode);
                if (!info.written) {
                    write_inode(entry, info);
                    info.written = true;
                }
            },
            WalkOrder::children_first);
        check(sqfs_meta_writer_flush(inode_table_.get()), "writing the inode table");
        check(sqfs_meta_writer_flush(directory_table_.get()), "writing the directory table");
        super_.directory_table_start = file_->get_size(file_.get());
        check(sqfs_meta_write_write_to_file(directory_table_.get()), "writing the directory table");
    }

    void write_inode(const WalkEntry& entry, InodeInfo& info) {
        const Inode& inode = entry.inode;
        const sqfs_u32 links = link_counts_.at(&inode);
        const sqfs_u32 xattrs = record_xattrs(entry);
        const auto step = [&](std::string_view what) {
            return fmt::format("{} {}", what, entry.path);
        };
        InodePtr generic;
        switch (inode.type) {
        case FileType::directory:
            generic = list_directory(entry, xattrs);
            break;
        case FileType::regular:
            generic = file_inodes_.take(&inode);
            if (!generic) {
                fail(SQFS_ERROR_INTERNAL, step("writing the inode of"));
            }
            if (xattrs != k_no_xattrs) {
                check(sqfs_inode_set_xattr_index(generic.get(), xattrs),
                      step("recording xattrs of"));
            }
            // Only the extended file inode has a link count; it is needed for hard links. (The
            // block processor already made the inode extended if the file is sparse or huge.)
            if (links > 1) {
                check(sqfs_inode_make_extended(generic.get()), step("writing the inode of"));
            }
            if (generic->base.type == SQFS_INODE_EXT_FILE) {
                generic->data.file_ext.nlink = links;
            }
            break;
        case FileType::symlink: {
            const std::string& target = inode.symlink_target;
            generic = allocate_inode(target.size());
            generic->base.type = SQFS_INODE_SLINK;
            generic->payload_bytes_available = static_cast<sqfs_u32>(target.size());
            generic->payload_bytes_used = static_cast<sqfs_u32>(target.size());
            generic->data.slink.nlink = links;
            generic->data.slink.target_size = static_cast<sqfs_u32>(target.size());
            std::memcpy(generic->extra, target.data(), target.size());
            break;
        }
        case FileType::char_device:
        case FileType::block_device: {
            const auto devno = encode_device(inode.rdev);
            if (!devno) {
                throw build_failed("squashfs: {} has device number {}:{}, which squashfs cannot "
                                   "store (the major is at most 4095, the minor at most 1048575)",
                                   entry.path, inode.rdev.major, inode.rdev.minor);
            }
            generic = allocate_inode(0);
            generic->base.type =
                inode.type == FileType::char_device ? SQFS_INODE_CDEV : SQFS_INODE_BDEV;
            generic->data.dev.nlink = links;
            generic->data.dev.devno = *devno;
            break;
        }
        case FileType::fifo:
        case FileType::socket:
            generic = allocate_inode(0);
            generic->base.type = inode.type == FileType::fifo ? SQFS_INODE_FIFO : SQFS_INODE_SOCKET;
            generic->data.ipc.nlink = links;
            break;
        }
        if (!generic) { // every file type above sets it; a new enumerator would not
            throw std::logic_error("squashfs: no inode for " + std::string(entry.path));
        }
        if (inode.type != FileType::regular && inode.type != FileType::directory &&
            xattrs != k_no_xattrs) {
            check(sqfs_inode_set_xattr_index(generic.get(), xattrs), step("recording xattrs of"));
        }

        generic->base.mode = info.mode;
        // SOURCE_DATE_EPOCH clamps every time newer than it (reproducible-builds convention).
        generic->base.mod_time = clamp_time(options_.modification_time
                                                ? std::min(inode.mtime, *options_.modification_time)
                                                : inode.mtime);
        generic->base.inode_number = info.number;
        check(sqfs_id_table_id_to_index(id_table_.get(), inode.uid, &generic->base.uid_idx),
              fmt::format("recording uid {} of {}", inode.uid, entry.path));
        check(sqfs_id_table_id_to_index(id_table_.get(), inode.gid, &generic->base.gid_idx),
              fmt::format("recording gid {} of {}", inode.gid, entry.path));

        sqfs_u64 block = 0;
        sqfs_u32 offset = 0;
        sqfs_meta_writer_get_position(inode_table_.get(), &block, &offset);
        info.reference = (block << 16) | offset;
        check(sqfs_meta_writer_write_inode(inode_table_.get(), generic.get()),
              step("writing the inode of"));
        if (entry.parent == nullptr) {
            super_.root_inode_ref = info.reference;
            root_ = &info;
        }
    }

    // Writes the listing of a directory whose entries are all written and returns its inode.
    InodePtr list_directory(const WalkEntry& entry, sqfs_u32 xattrs) {
        const auto step = [&] { return fmt::format("listing directory {}", entry.path); };
        sqfs_dir_writer_t* writer = directory_writer_.get();
        int code = sqfs_dir_writer_begin(writer, 0);
        if (code != 0) {
            fail(code, step());
        }
        for (const auto& [name, child] : entry.inode.children) {
            if (name.size() > k_max_name_length) {
                throw build_failed("squashfs: the name of {}/{} is {} bytes long; squashfs names "
                                   "hold at most {}",
                                   entry.path == "/" ? "" : entry.path, name, name.size(),
                                   k_max_name_length);
            }
            const InodeInfo& target = inodes_.at(child.get());
            code = sqfs_dir_writer_add_entry(writer, name.c_str(), target.number, target.reference,
                                             target.mode);
            if (code != 0) {
                fail(code, step());
            }
        }
        code = sqfs_dir_writer_end(writer);
        if (code != 0) {
            fail(code, step());
        }
        // The root's parent is one past the last inode, as mksquashfs writes it.
        const sqfs_u32 parent =
            entry.parent != nullptr ? inodes_.at(entry.parent).number : inode_count_ + 1;
        // mksquashfs gives a directory of more than 256 entries or 8 KiB of entries an extended
        // inode with a lookup index, so that the kernel can skip to the right block of a long
        // listing. libsquashfs only builds the index for extended inodes, which it makes for
        // xattrs (or listings over 64 KiB): ask with a placeholder xattr index, then clear it.
        std::size_t listing_bytes = 0;
        for (const auto& [name, child] : entry.inode.children) {
            listing_bytes += k_dir_entry_size + name.size();
        }
        const bool large =
            entry.inode.children.size() > SQFS_MAX_DIR_ENT || listing_bytes >= SQFS_META_BLOCK_SIZE;
        const sqfs_u32 requested = xattrs == k_no_xattrs && large ? 0 : xattrs;
        InodePtr generic(sqfs_dir_writer_create_inode(writer, 0, requested, parent));
        if (!generic) {
            fail(SQFS_ERROR_ALLOC, step());
        }
        if (generic->base.type == SQFS_INODE_EXT_DIR) {
            generic->data.dir_ext.xattr_idx = xattrs;
        }
        // The writer's own count (entries + 2) is not what stat reports for directories.
        const sqfs_u32 links = link_counts_.at(&entry.inode);
        if (generic->base.type == SQFS_INODE_EXT_DIR) {
            generic->data.dir_ext.nlink = links;
        } else {
            generic->data.dir.nlink = links;
        }
        return generic;
    }

    // Records the inode's xattrs and returns their index, or k_no_xattrs. Prefixes squashfs
    // has no code for (system.*, e.g. POSIX ACLs) are left out and reported, as mksquashfs does.
    sqfs_u32 record_xattrs(const WalkEntry& entry) {
        std::vector<const std::pair<const std::string, std::string>*> kept;
        for (const auto& pair : entry.inode.xattrs) {
            if (sqfs_get_xattr_prefix_id(pair.first.c_str()) < 0) {
                ++skipped_xattr_count_;
                if (skipped_xattrs_.size() < k_skipped_xattrs_kept) {
                    skipped_xattrs_.push_back(fmt::format("{}: {}", entry.path, pair.first));
                }
                continue;
            }
            kept.push_back(&pair);
        }
        if (kept.empty()) {
            return k_no_xattrs;
        }
        const auto step = fmt::format("recording xattrs of {}", entry.path);
        check(sqfs_xattr_writer_begin(xattr_writer_.get(), 0), step);
        for (const auto* pair : kept) {
            check(sqfs_xattr_writer_add(xattr_writer_.get(), pair->first.c_str(),
                                        pair->second.data(), pair->second.size()),
                  step);
        }
        sqfs_u32 index = k_no_xattrs;
        check(sqfs_xattr_writer_end(xattr_writer_.get(), &index), step);
        return index;
    }

    // The tables after the directory table, in the order the format requires, then the final
    // superblock and padding to a multiple of 4 KiB (what mksquashfs does, for loop devices).
    void write_tables() {
        check(sqfs_frag_table_write(fragment_table_.get(), file_.get(), &super_, compressor_.get()),
              "writing the fragment table");
        check(sqfs_dir_writer_write_export_table(directory_writer_.get(), file_.get(),
                                                 compressor_.get(), root_->number, root_->reference,
                                                 &super_),
              "writing the export table");
        check(sqfs_id_table_write(id_table_.get(), file_.get(), &super_, compressor_.get()),
              "writing the id table");
        check(sqfs_xattr_writer_flush(xattr_writer_.get(), file_.get(), &super_, compressor_.get()),
              "writing the xattr table");
        super_.inode_count = inode_count_;
        super_.bytes_used = file_->get_size(file_.get());
        check(sqfs_super_write(&super_, file_.get()), "writing the superblock");
        const auto remainder = super_.bytes_used % SQFS_DEVBLK_SIZE;
        if (remainder != 0) {
            const std::vector<char> zeros(static_cast<std::size_t>(SQFS_DEVBLK_SIZE - remainder),
                                          0);
            check(file_->write_at(file_.get(), super_.bytes_used, zeros.data(), zeros.size()),
                  "padding the image");
        }
    }

    SquashfsStats statistics(std::chrono::steady_clock::duration elapsed) const {
        SquashfsStats stats;
        stats.inodes = inode_count_;
        stats.bytes_in = bytes_in_;
        stats.bytes_out = file_->get_size(file_.get());
        stats.data_bytes_out = super_.inode_table_start - data_start_;
        stats.compression_ratio =
            bytes_in_ == 0 ? 1.0
                           : static_cast<double>(stats.bytes_out) / static_cast<double>(bytes_in_);
        stats.seconds = std::chrono::duration<double>(elapsed).count();
        stats.data_blocks = produced_.data_blocks;
        stats.fragment_blocks = produced_.fragment_blocks;
        stats.duplicate_blocks = produced_.duplicate_blocks;
        stats.sparse_blocks = produced_.sparse_blocks;
        stats.duplicate_fragments = produced_.duplicate_fragments;
        stats.region_reused_bytes = region_reused_bytes_;
        stats.threads = threads_;
        if (block_cache_) {
            block_cache_->trim();
            stats.block_cache = true;
            stats.cache_hits = block_cache_->hits();
            stats.cache_reused_bytes = block_cache_->reused_bytes();
            stats.cache_misses = block_cache_->misses();
            stats.cache_compressed_bytes = block_cache_->compressed_bytes();
            stats.cache_dropped = block_cache_->dropped();
        }
        stats.skipped_xattr_count = skipped_xattr_count_;
        stats.skipped_xattrs = skipped_xattrs_;
        return stats;
    }

    const Tree& tree_;
    const SpillFile& spill_;
    const SquashfsOptions& options_;
    const std::filesystem::path output_; // the final name, for messages
    const SquashfsProgress& progress_;

    unsigned threads_ = 1;
    std::unordered_map<const Inode*, std::uint32_t> link_counts_;
    std::unordered_map<const Inode*, InodeInfo> inodes_;
    const InodeInfo* root_ = nullptr;
    sqfs_u32 inode_count_ = 0;
    std::uint64_t bytes_in_ = 0;
    std::uint64_t data_done_ = 0;  // file data bytes through so far, for progress
    std::uint64_t data_total_ = 0; // and the whole of it
    std::uint64_t region_reused_bytes_ = 0;
    SquashfsBlockCounts produced_; // all runs together (a kept region's figures too)
    sqfs_u64 data_start_ = 0;
    std::uint64_t skipped_xattr_count_ = 0;
    std::vector<std::string> skipped_xattrs_;
    std::deque<std::string> file_paths_; // stable addresses: given to libsquashfs as user data
    sqfs_super_t super_{};

    SqfsPtr<sqfs_file_t> file_;
    // Declared before the compressor, which points at it: destroyed after it.
    std::optional<SquashfsBlockCache> block_cache_;
    SqfsPtr<sqfs_compressor_t> compressor_;
    SqfsPtr<sqfs_compressor_t> decompressor_;
    FileInodes file_inodes_; // pointed into by the block processor: must outlive it
    SqfsPtr<sqfs_block_writer_t> block_writer_;
    SqfsPtr<sqfs_frag_table_t> fragment_table_;
    SqfsPtr<sqfs_block_processor_t> processor_;
    SqfsPtr<sqfs_id_table_t> id_table_;
    SqfsPtr<sqfs_xattr_writer_t> xattr_writer_;
    SqfsPtr<sqfs_meta_writer_t> inode_table_;
    SqfsPtr<sqfs_meta_writer_t> directory_table_;
    SqfsPtr<sqfs_dir_writer_t> directory_writer_;
    // The kept base region being copied into the image by a thread of its own: 0, or the errno
    // of a failed copy. Declared last, so that it is waited for before the file is closed.
    std::future<int> region_copy_;
    std::future<void> region_kept_; // a region being kept, also waited for before the close
};

} // namespace

void validate_squashfs_options(const SquashfsOptions& options) {
    const auto block_size = options.block_size;
    if (block_size < SQFS_MIN_BLOCK_SIZE || block_size > SQFS_MAX_BLOCK_SIZE ||
        (block_size & (block_size - 1)) != 0) {
        throw bad_input("squashfs: block size {} is not a power of two from 4 KiB to 1 MiB",
                        block_size);
    }
    if (const auto problem = squashfs_level_problem(options.compressor, options.level)) {
        throw bad_input("squashfs: {}", *problem);
    }
    if (options.threads > k_max_threads) {
        throw bad_input("squashfs: {} compression threads are more than the {} supported",
                        options.threads, k_max_threads);
    }
    if (options.modification_time &&
        (*options.modification_time < 0 ||
         *options.modification_time > std::numeric_limits<sqfs_u32>::max())) {
        throw bad_input("squashfs: modification time {} is outside what squashfs stores (0 to {})",
                        *options.modification_time, std::numeric_limits<sqfs_u32>::max());
    }
}

SquashfsStats write_squashfs(const Tree& tree, const SpillFile& spill,
                             const SquashfsOptions& options, const std::filesystem::path& output,
                             const SquashfsProgress& progress) {
    validate_squashfs_options(options);
    std::optional<util::AtomicFile> file;
    try {
        file.emplace(output);
    } catch (const std::system_error& error) {
        throw build_failed("squashfs: cannot create {}: {}", output.string(),
                           error.code().message());
    }
    SquashfsStats stats;
    {
        // Every libsquashfs object and our descriptor are gone before the file is renamed.
        SquashfsWriter writer(tree, spill, options, output, progress);
        stats = writer.write(file->temp_path());
    }
    try {
        file->commit();
    } catch (const std::system_error& error) {
        throw build_failed("squashfs: cannot finish {}: {}", output.string(),
                           error.code().message());
    }
    return stats;
}

} // namespace edgeforge::fs
