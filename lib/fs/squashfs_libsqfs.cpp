// Adapters around libsquashfs (see squashfs_libsqfs.h).
#include "fs/squashfs_libsqfs.h"

#include <cerrno>
#include <cstring>
#include <new>

#include <fcntl.h>
#include <unistd.h>

#include <sqfs/block.h>
#include <sqfs/error.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <fmt/format.h>

#include "base/error.h"
#include "util/digest.h"

namespace edgeforge::fs::libsqfs {

// ------------------------------------------------------------------------- RAII for libsquashfs

// Destroys any libsquashfs object (they all start with sqfs_object_t).

// Frees memory that libsquashfs allocated for us (inodes), or that we allocated with calloc to
// hand to it, with the C runtime libsquashfs uses.
// ------------------------------------------------------------------- the output as sqfs_file_t

// The sqfs_file_t libsquashfs writes the image through: a descriptor of our own on the
// temporary file, so that a failed call keeps its errno for the message (libsquashfs reduces
// every failure to SQFS_ERROR_IO). It must also read: deduplication compares candidate blocks
// with what was written, and the AtomicFile descriptor is write-only.

OutputFile& output_file(sqfs_file_t* file) {
    return *reinterpret_cast<OutputFile*>(file);
}
const OutputFile& output_file(const sqfs_file_t* file) {
    return *reinterpret_cast<const OutputFile*>(file);
}

int output_read_at(sqfs_file_t* base, sqfs_u64 offset, void* buffer, std::size_t size) {
    auto& file = output_file(base);
    auto* out = static_cast<char*>(buffer);
    while (size > 0) {
        const ssize_t got = ::pread(file.fd, out, size, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            file.error = errno;
            file.failed_call = "read";
            return SQFS_ERROR_IO;
        }
        if (got == 0) {
            return SQFS_ERROR_OUT_OF_BOUNDS;
        }
        out += got;
        size -= static_cast<std::size_t>(got);
        offset += static_cast<sqfs_u64>(got);
    }
    return 0;
}

int output_write_at(sqfs_file_t* base, sqfs_u64 offset, const void* buffer, std::size_t size) {
    auto& file = output_file(base);
    const auto* in = static_cast<const char*>(buffer);
    while (size > 0) {
        const ssize_t written = ::pwrite(file.fd, in, size, static_cast<off_t>(offset));
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            file.error = errno;
            file.failed_call = "write";
            return SQFS_ERROR_IO;
        }
        in += written;
        size -= static_cast<std::size_t>(written);
        offset += static_cast<sqfs_u64>(written);
    }
    file.size = std::max(file.size, offset);
    return 0;
}

sqfs_u64 output_get_size(const sqfs_file_t* base) {
    return output_file(base).size;
}

int output_truncate(sqfs_file_t* base, sqfs_u64 size) {
    auto& file = output_file(base);
    if (::ftruncate(file.fd, static_cast<off_t>(size)) != 0) {
        file.error = errno;
        file.failed_call = "truncate";
        return SQFS_ERROR_IO;
    }
    file.size = size;
    return 0;
}

void output_destroy(sqfs_object_t* object) {
    auto* file = reinterpret_cast<OutputFile*>(object);
    if (file->fd >= 0) {
        ::close(file->fd);
    }
    delete file;
}

// Opens `path` (the AtomicFile's temporary, already created) for reading and writing.
SqfsPtr<sqfs_file_t> open_output_file(const std::filesystem::path& path,
                                      const std::filesystem::path& shown_as) {
    const int fd = ::open(path.c_str(), O_RDWR | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        throw build_failed("squashfs: cannot open {} for writing: {}", shown_as.string(),
                           std::strerror(errno));
    }
    auto* file = new OutputFile{};
    file->fd = fd;
    file->interface.base.destroy = output_destroy;
    file->interface.base.copy = nullptr; // writable files are never copied
    file->interface.read_at = output_read_at;
    file->interface.write_at = output_write_at;
    file->interface.get_size = output_get_size;
    file->interface.truncate = output_truncate;
    return SqfsPtr<sqfs_file_t>(&file->interface);
}

// ------------------------------------------------------------------ compressor: never larger

// libsquashfs 1.2's lz4 compressor reports a block as compressed even when the result is not
// smaller than the input (its xz compressor checks, lz4 does not). unsquashfs then rejects the
// image ("read_id_table: failed to read id table block"): a compressed meta data block may not
// be larger than what it holds. Every compressor is wrapped in this adapter, which turns such
// results into 0, "store the block uncompressed", which is what mksquashfs does.

sqfs_compressor_t* inner_compressor(const sqfs_compressor_t* base) {
    return reinterpret_cast<const NeverLargerCompressor*>(base)->inner;
}

void never_larger_get_configuration(const sqfs_compressor_t* base,
                                    sqfs_compressor_config_t* config) {
    sqfs_compressor_t* inner = inner_compressor(base);
    inner->get_configuration(inner, config);
}

int never_larger_write_options(sqfs_compressor_t* base, sqfs_file_t* file) {
    sqfs_compressor_t* inner = inner_compressor(base);
    return inner->write_options(inner, file);
}

int never_larger_read_options(sqfs_compressor_t* base, sqfs_file_t* file) {
    sqfs_compressor_t* inner = inner_compressor(base);
    return inner->read_options(inner, file);
}

// Blocks this big are tried first; the trial looks at three samples this big before the whole
// block.
constexpr sqfs_u32 k_probe_min_block = 64 * 1024;
constexpr std::size_t k_probe_sample = 16 * 1024;

// Whether zstd level 1 cannot shrink the block at all: then no compressor gains anything worth
// having and the block is stored as it is, as it would be anyway when the real compressor's
// result is not smaller. Samples from the start, middle and end of the block that do shrink
// settle it cheaply the other way; only a block whose samples do not shrink is tried whole.
bool incompressible(const NeverLargerCompressor* self, const sqfs_u8* in, sqfs_u32 size) {
    if (self->probe == nullptr || size < k_probe_min_block) {
        return false;
    }
    for (const std::size_t offset :
         {std::size_t{0}, size / 2 - k_probe_sample / 2, std::size_t{size} - k_probe_sample}) {
        const std::size_t got = ZSTD_compressCCtx(
            self->probe, self->probe_out, self->probe_capacity, in + offset, k_probe_sample, 1);
        if (ZSTD_isError(got) != 0 || got < k_probe_sample) {
            return false;
        }
    }
    const std::size_t got =
        ZSTD_compressCCtx(self->probe, self->probe_out, self->probe_capacity, in, size, 1);
    return ZSTD_isError(got) == 0 && got >= size;
}

sqfs_s32 compress_never_larger(const NeverLargerCompressor* self, const sqfs_u8* in, sqfs_u32 size,
                               sqfs_u8* out, sqfs_u32 out_size) {
    if (incompressible(self, in, size)) {
        return 0;
    }
    sqfs_compressor_t* inner = self->inner;
    const sqfs_s32 result = inner->do_block(inner, in, size, out, out_size);
    if (result > 0 && static_cast<sqfs_u32>(result) >= size) {
        return 0;
    }
    return result;
}

sqfs_s32 never_larger_do_block(sqfs_compressor_t* base, const sqfs_u8* in, sqfs_u32 size,
                               sqfs_u8* out, sqfs_u32 out_size) {
    const auto* self = reinterpret_cast<const NeverLargerCompressor*>(base);
    SquashfsBlockCache* cache = self->cache;
    if (cache == nullptr || size < k_min_cached_block) {
        return compress_never_larger(self, in, size, out, out_size);
    }
    // Called from libsquashfs' worker threads: nothing may throw through it.
    try {
        const std::string key =
            block_key(std::string_view(reinterpret_cast<const char*>(in), size));
        if (auto hit = cache->find(key, size)) {
            // "Stored uncompressed" holds no bytes to check: the image gets the block itself.
            if (hit->stored_raw) {
                cache->count_reused(size);
                return 0;
            }
            // The entry's digest catches damage; decompressing proves it is this block's.
            bool same = false;
            if (hit->compressed.size() <= out_size && self->verifier != nullptr &&
                size <= self->scratch_size) {
                const sqfs_s32 got = self->verifier->do_block(
                    self->verifier, reinterpret_cast<const sqfs_u8*>(hit->compressed.data()),
                    static_cast<sqfs_u32>(hit->compressed.size()), self->scratch,
                    self->scratch_size);
                same =
                    got == static_cast<sqfs_s32>(size) && std::memcmp(self->scratch, in, size) == 0;
            }
            if (same) {
                cache->count_reused(size);
                std::memcpy(out, hit->compressed.data(), hit->compressed.size());
                return static_cast<sqfs_s32>(hit->compressed.size());
            }
            cache->reject(key);
        }
        const sqfs_s32 result = compress_never_larger(self, in, size, out, out_size);
        if (result >= 0) {
            cache->count_compressed(size);
            cache->store(key, size,
                         std::string_view(reinterpret_cast<const char*>(out),
                                          static_cast<std::size_t>(result)),
                         result == 0);
        }
        return result;
    } catch (...) {
        return compress_never_larger(self, in, size, out, out_size);
    }
}

NeverLargerCompressor* wrap_compressor(sqfs_compressor_t* inner, SquashfsBlockCache* cache);

void never_larger_destroy(sqfs_object_t* object) {
    auto* self = reinterpret_cast<NeverLargerCompressor*>(object);
    sqfs_destroy(self->inner);
    sqfs_destroy(self->verifier);
    delete[] self->scratch;
    ZSTD_freeCCtx(self->probe);
    delete[] self->probe_out;
    delete self;
}

// The block processor copies the compressor once per worker thread.
sqfs_object_t* never_larger_copy(const sqfs_object_t* object) {
    const auto* self = reinterpret_cast<const NeverLargerCompressor*>(object);
    auto* inner = static_cast<sqfs_compressor_t*>(sqfs_copy(self->inner));
    if (inner == nullptr) {
        return nullptr;
    }
    NeverLargerCompressor* copy = wrap_compressor(inner, self->cache);
    if (copy == nullptr) {
        sqfs_destroy(inner);
        return nullptr;
    }
    return &copy->interface.base;
}

// Takes ownership of `inner`; nullptr (and `inner` untouched) when out of memory. Never
// throws: it also runs inside libsquashfs' copy callback.
NeverLargerCompressor* wrap_compressor(sqfs_compressor_t* inner, SquashfsBlockCache* cache) {
    auto* self = new (std::nothrow) NeverLargerCompressor{};
    if (self == nullptr) {
        return nullptr;
    }
    self->inner = inner;
    self->cache = cache;
    if (cache != nullptr) {
        // The decompressor of the same configuration checks cached blocks; without one (out of
        // memory) the cache is not used by this copy.
        sqfs_compressor_config_t config{};
        inner->get_configuration(inner, &config);
        config.flags = static_cast<sqfs_u16>(config.flags | SQFS_COMP_FLAG_UNCOMPRESS);
        sqfs_compressor_t* verifier = nullptr;
        self->scratch = new (std::nothrow) sqfs_u8[config.block_size];
        if (self->scratch != nullptr && sqfs_compressor_create(&config, &verifier) == 0) {
            self->verifier = verifier;
            self->scratch_size = config.block_size;
        } else {
            delete[] self->scratch;
            self->scratch = nullptr;
            self->cache = nullptr;
        }
    }
    sqfs_compressor_config_t own{};
    inner->get_configuration(inner, &own);
    if (own.id != SQFS_COMP_LZ4) { // lz4 costs about what the trial would
        self->probe_capacity = ZSTD_compressBound(own.block_size);
        self->probe_out = new (std::nothrow) sqfs_u8[self->probe_capacity];
        self->probe = self->probe_out != nullptr ? ZSTD_createCCtx() : nullptr;
    }
    self->interface.base.destroy = never_larger_destroy;
    self->interface.base.copy = never_larger_copy;
    self->interface.get_configuration = never_larger_get_configuration;
    self->interface.write_options = never_larger_write_options;
    self->interface.read_options = never_larger_read_options;
    self->interface.do_block = never_larger_do_block;
    return self;
}

// ------------------------------------------------------- block writer: who was being written

// Data blocks are written in the background, in order, while the caller is already feeding
// later files: a write error surfaces wherever the caller happens to be. This adapter around
// libsquashfs' block writer remembers the file (the user pointer given to begin_file, a path)
// whose block failed, so that the message names the right file.

int tracking_write_data_block(sqfs_block_writer_t* base, void* user, sqfs_u32 size,
                              sqfs_u32 checksum, sqfs_u32 flags, const sqfs_u8* data,
                              sqfs_u64* location) {
    auto* self = reinterpret_cast<TrackingBlockWriter*>(base);
    const int result =
        self->inner->write_data_block(self->inner, user, size, checksum, flags, data, location);
    if (result != 0 && !self->failed) {
        self->failed = true;
        // A fragment block carries the user pointer of whichever file started it, but holds
        // the tail ends of many.
        self->failed_path = (flags & SQFS_BLK_FRAGMENT_BLOCK) != 0
                                ? nullptr
                                : static_cast<const std::string*>(user);
    }
    return result;
}

sqfs_u64 tracking_get_block_count(const sqfs_block_writer_t* base) {
    const auto* self = reinterpret_cast<const TrackingBlockWriter*>(base);
    return self->inner->get_block_count(self->inner);
}

void tracking_destroy(sqfs_object_t* object) {
    auto* self = reinterpret_cast<TrackingBlockWriter*>(object);
    sqfs_destroy(self->inner);
    delete self;
}

// Takes ownership of `inner`.
SqfsPtr<sqfs_block_writer_t> track_block_writer(sqfs_block_writer_t* inner) {
    auto* self = new (std::nothrow) TrackingBlockWriter{};
    if (self == nullptr) {
        sqfs_destroy(inner);
        throw std::bad_alloc();
    }
    self->inner = inner;
    self->interface.base.destroy = tracking_destroy;
    self->interface.base.copy = nullptr;
    self->interface.write_data_block = tracking_write_data_block;
    self->interface.get_block_count = tracking_get_block_count;
    return SqfsPtr<sqfs_block_writer_t>(&self->interface);
}

// ------------------------------------------------------------------------------------ helpers

std::string_view describe_sqfs_error(int code) {
    switch (code) {
    case SQFS_ERROR_ALLOC:
        return "out of memory";
    case SQFS_ERROR_IO:
        return "input/output error";
    case SQFS_ERROR_COMPRESSOR:
        return "the compressor reported an error";
    case SQFS_ERROR_INTERNAL:
        return "internal libsquashfs error";
    case SQFS_ERROR_CORRUPTED:
        return "inconsistent data";
    case SQFS_ERROR_UNSUPPORTED:
        return "not supported by libsquashfs";
    case SQFS_ERROR_OVERFLOW:
        return "a size or count does not fit the squashfs format";
    case SQFS_ERROR_OUT_OF_BOUNDS:
        return "access out of bounds";
    case SQFS_ERROR_SUPER_BLOCK_SIZE:
        return "invalid block size";
    case SQFS_ERROR_ARG_INVALID:
        return "invalid argument";
    case SQFS_ERROR_SEQUENCE:
        return "calls out of sequence";
    default:
        return "unknown error";
    }
}

SQFS_COMPRESSOR compressor_id(SquashfsCompressor compressor) {
    switch (compressor) {
    case SquashfsCompressor::zstd:
        return SQFS_COMP_ZSTD;
    case SquashfsCompressor::gzip:
        return SQFS_COMP_GZIP;
    case SquashfsCompressor::xz:
        return SQFS_COMP_XZ;
    case SquashfsCompressor::lz4:
        return SQFS_COMP_LZ4;
    }
    return SQFS_COMP_ZSTD;
}

// The xz branch/call/jump filter for the image's machine code. libsquashfs (1.2) knows x86,
// PowerPC, IA-64, ARM, ARM-Thumb and SPARC, but not ARM64: its ARM filter rewrites 32-bit ARM
// BL instructions, whose encoding AArch64 does not share, so for arm64 no filter is the right
// choice (libsquashfs tries each filter per block and keeps the smallest, so a filter that
// never helps would only double the compression time).
sqfs_u16 xz_filter_flags(const Arch& arch) {
    switch (arch.id()) {
    case Arch::Id::amd64:
        return SQFS_COMP_FLAG_XZ_X86;
    case Arch::Id::arm64:
        return 0;
    }
    return 0;
}

std::string compression_context(SquashfsCompressor compressor, int level, std::uint32_t block_size,
                                const Arch& arch) {
    // The library whose code makes the bytes, by version: a Debian update of it may change them.
    std::string library;
    switch (compressor) {
    case SquashfsCompressor::zstd:
        library = fmt::format("zstd {}", ZSTD_versionNumber());
        break;
    case SquashfsCompressor::gzip:
        library = fmt::format("zlib {}", zlibVersion());
        break;
    case SquashfsCompressor::xz:
        library =
            fmt::format("liblzma {} filters {}", lzma_version_string(), xz_filter_flags(arch));
        break;
    case SquashfsCompressor::lz4:
        library = fmt::format("lz4 {}", LZ4_versionNumber());
        break;
    }
#ifndef EDGEFORGE_LIBSQUASHFS_VERSION
#define EDGEFORGE_LIBSQUASHFS_VERSION "unknown"
#endif
    // "never larger 1": the adapter's rule above (a result not smaller is stored raw);
    // "probe zstd-1": blocks zstd level 1 cannot shrink are stored raw untried.
    // libsquashfs chooses parameters of its own (xz dictionary and filter trials, gzip window).
    // "keys xxh3-128": entries are named by block_key() (SHA-256 before).
    return fmt::format("squashfs block; {} level {}; block size {}; {}; libsquashfs {}; "
                       "never larger 1; probe zstd-1; keys xxh3-128",
                       squashfs_compressor_name(compressor),
                       effective_squashfs_level(compressor, level), block_size, library,
                       EDGEFORGE_LIBSQUASHFS_VERSION);
}

} // namespace edgeforge::fs::libsqfs
