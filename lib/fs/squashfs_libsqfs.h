// Adapters around libsquashfs: RAII for its objects, our output file as its sqfs_file_t, a
// compressor that never makes a block larger, a block writer that remembers the failing file,
// and the error and compressor codes. Internal to the squashfs writer.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include <sqfs/block_writer.h>
#include <sqfs/compressor.h>
#include <sqfs/io.h>

#include "base/arch.h"
#include "fs/squashfs.h"
#include "fs/squashfs_block_cache.h"

struct ZSTD_CCtx_s; // zstd.h

namespace edgeforge::fs::libsqfs {

struct SqfsObjectDeleter {
    void operator()(void* object) const { sqfs_destroy(object); }
};
template <typename T> using SqfsPtr = std::unique_ptr<T, SqfsObjectDeleter>;

struct SqfsFreeDeleter {
    void operator()(void* memory) const { sqfs_free(memory); }
};

struct OutputFile {
    sqfs_file_t interface; // first member: libsquashfs only sees this part
    int fd = -1;
    sqfs_u64 size = 0;
    int error = 0;                // errno of the last failed call
    const char* failed_call = ""; // "read", "write", "truncate"
};
static_assert(std::is_standard_layout_v<OutputFile>, "OutputFile must start with its interface");

OutputFile& output_file(sqfs_file_t* file);
const OutputFile& output_file(const sqfs_file_t* file);
// Opens `path` (the AtomicFile's temporary, already created) for reading and writing; errors
// name `shown_as`.
SqfsPtr<sqfs_file_t> open_output_file(const std::filesystem::path& path,
                                      const std::filesystem::path& shown_as);

struct NeverLargerCompressor {
    sqfs_compressor_t interface; // first member: libsquashfs only sees this part
    sqfs_compressor_t* inner = nullptr;
    // Not owned; shared by the copies of every worker thread. nullptr: no cache.
    SquashfsBlockCache* cache = nullptr;
    // With a cache, owned by this copy (one per worker thread): a cached block is decompressed
    // into `scratch` and compared with the block before it is used.
    sqfs_compressor_t* verifier = nullptr;
    sqfs_u8* scratch = nullptr;
    sqfs_u32 scratch_size = 0;
    // Owned by this copy: a zstd level 1 trial that spares the real compressor the blocks
    // nothing shrinks (already compressed data: an initrd, a kernel), which cost a high level
    // the most. nullptr: no trial (lz4, or out of memory).
    ::ZSTD_CCtx_s* probe = nullptr;
    sqfs_u8* probe_out = nullptr;
    std::size_t probe_capacity = 0;
};
static_assert(std::is_standard_layout_v<NeverLargerCompressor>,
              "NeverLargerCompressor must start with its interface");

// Takes ownership of `inner`; nullptr (and `inner` untouched) when out of memory. Never
// throws: it also runs inside libsquashfs' copy callback. With `cache`, blocks of at least
// k_min_cached_block bytes are looked up there before they are compressed, and stored after.
NeverLargerCompressor* wrap_compressor(sqfs_compressor_t* inner,
                                       SquashfsBlockCache* cache = nullptr);

// The text naming what decides compressed bytes besides a block's content: for the block cache.
std::string compression_context(SquashfsCompressor compressor, int level, std::uint32_t block_size,
                                const Arch& arch);

struct TrackingBlockWriter {
    sqfs_block_writer_t interface; // first member: libsquashfs only sees this part
    sqfs_block_writer_t* inner = nullptr;
    bool failed = false;
    const std::string* failed_path = nullptr; // nullptr for fragment blocks (several files)
};
static_assert(std::is_standard_layout_v<TrackingBlockWriter>,
              "TrackingBlockWriter must start with its interface");

// Takes ownership of `inner`.
SqfsPtr<sqfs_block_writer_t> track_block_writer(sqfs_block_writer_t* inner);

// A libsquashfs error code in words.
std::string_view describe_sqfs_error(int code);
SQFS_COMPRESSOR compressor_id(SquashfsCompressor compressor);
// The xz branch/call/jump filter for the image's machine code.
sqfs_u16 xz_filter_flags(const Arch& arch);

} // namespace edgeforge::fs::libsqfs
