// Writes an fs::Tree as a squashfs image with libsquashfs: parallel compression, atomic output.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/arch.h"
#include "fs/squashfs_region.h"
#include "fs/tree.h"

namespace edgeforge::fs {

// The compressors the Linux kernel can mount and edgeforge offers (lzo and lzma are left out:
// libsquashfs has no lzo compressor (it is GPL-only), and lzma is the legacy format xz replaced).
enum class SquashfsCompressor { zstd, gzip, xz, lz4 };

// "zstd", "gzip", "xz", "lz4".
std::string_view squashfs_compressor_name(SquashfsCompressor compressor);
// The compressor for a configuration value such as "zstd"; nullopt when it is not one of ours.
std::optional<SquashfsCompressor> parse_squashfs_compressor(std::string_view name);
// Every compressor's name, in the order of the enum (the allowed values of the setting).
std::vector<std::string_view> squashfs_compressor_names();

// The levels a compressor takes besides 0 (its default): zstd 1-22, gzip 1-9, xz 1-9; lz4 none.
struct SquashfsLevelRange {
    int low = 0;
    int high = 0; // 0: the compressor has no levels
};
SquashfsLevelRange squashfs_level_range(SquashfsCompressor compressor);
// Why `level` does not fit `compressor` ("level 12 does not fit the gzip compressor: gzip takes
// 1 to 9 (0 picks its default)"), or nullopt when it does. The one home of the level rule:
// configuration checks and the writer both ask it.
std::optional<std::string> squashfs_level_problem(SquashfsCompressor compressor, int level);

// edgeforge's zstd level when none is given. mksquashfs uses 15, but with 1 MiB blocks of a
// root filesystem level 10 gives images within 0.3% of level 15's size (232.6 vs 231.9 MiB on
// the 740 MiB debootstrap base of `make bench`) in under a third of the CPU time (20 s vs 73 s),
// and decompression is as fast. Levels up to 22 stay available with --compression-level.
inline constexpr int k_default_zstd_level = 10;

struct SquashfsOptions {
    SquashfsCompressor compressor = SquashfsCompressor::zstd;
    // 0 picks edgeforge's default (zstd k_default_zstd_level; gzip 9 and xz 6, as mksquashfs
    // does); otherwise zstd 1-22, gzip 1-9, xz 1-9. lz4 has no levels and takes only 0.
    int level = 0;
    // A power of two from 4 KiB to 1 MiB. Large blocks compress a root filesystem best.
    std::uint32_t block_size = 1U << 20;
    // Compression threads; 0 uses one per available core. The image is byte-identical
    // whatever the count.
    unsigned threads = 0;
    // Selects the xz branch filter (BCJ) that matches the machine code in the image.
    Arch arch = Arch(Arch::Id::amd64);
    // The superblock's modification time (SOURCE_DATE_EPOCH for reproducible images); the
    // current time when unset, as mksquashfs does. When set, it also clamps inode times: a
    // file newer than it (a fresh checkout's overlay) gets this time, older ones keep theirs.
    std::optional<std::int64_t> modification_time;
    // The compressed-block cache (SquashfsBlockCache): blocks compressed by an earlier build
    // with the same settings are copied from there instead of compressed again; the image is
    // byte-identical either way. Empty: no cache. Trimmed to `block_cache_max_bytes` after the
    // write (least recently used entries first).
    std::filesystem::path block_cache_dir;
    std::uint64_t block_cache_max_bytes = 8ULL << 30;
    // The base image's files (SquashfsBaseRegion): laid out first as a region of their own,
    // which the block cache keeps whole, so an image on the same base copies it instead of
    // reading and compressing those files again. Null: one run of files, no region.
    std::shared_ptr<const SquashfsBaseRegion> base_region;
    // Called before a newly written region is kept: it throws (failing the write) when what the
    // region was made from turned out bad, so a bad region is never kept under a good name.
    std::function<void()> before_keeping_region;
};

// Bytes of file data consumed so far and the total to consume, for a progress bar.
using SquashfsProgress = std::function<void(std::uint64_t done, std::uint64_t total)>;

struct SquashfsStats {
    std::uint64_t inodes = 0;         // squashfs inodes (hard links counted once)
    std::uint64_t bytes_in = 0;       // file data bytes read from the tree
    std::uint64_t bytes_out = 0;      // size of the image file, padding included
    std::uint64_t data_bytes_out = 0; // of which compressed data and fragment blocks
    // bytes_out / bytes_in: 0.35 means the image is 35% of the data it holds (1 when empty).
    double compression_ratio = 1.0;
    double seconds = 0.0;               // wall time of the whole write
    std::uint64_t data_blocks = 0;      // full data blocks produced
    std::uint64_t fragment_blocks = 0;  // blocks packing the tail ends of files together
    std::uint64_t duplicate_blocks = 0; // blocks found identical to earlier ones and not stored
    std::uint64_t sparse_blocks = 0;    // all-zero blocks, stored as holes
    std::uint64_t duplicate_fragments = 0;
    unsigned threads = 0;
    // The block cache, when one was used: blocks copied from it and their uncompressed bytes,
    // blocks compressed (and stored) and theirs, and damaged entries dropped.
    bool block_cache = false;
    std::uint64_t cache_hits = 0;
    std::uint64_t cache_reused_bytes = 0;
    std::uint64_t cache_misses = 0;
    std::uint64_t cache_compressed_bytes = 0;
    std::uint64_t cache_dropped = 0;
    // Uncompressed bytes of the base region taken whole from the block cache (0: compressed).
    std::uint64_t region_reused_bytes = 0;
    // Extended attributes squashfs cannot hold (only user.*, trusted.* and security.* exist
    // there; system.posix_acl_* do not), as "path: name", left out as mksquashfs leaves them.
    std::uint64_t skipped_xattr_count = 0;
    std::vector<std::string> skipped_xattrs; // the first few of them, for a warning
};

// The level the compressor runs at: `level`, or the default it stands for when 0 (0 for lz4).
int effective_squashfs_level(SquashfsCompressor compressor, int level);

// Checks the options alone; throws Error (bad input) naming the offending option.
void validate_squashfs_options(const SquashfsOptions& options);

// Writes `tree` to `output` as a squashfs 4.0 image. File data is streamed with read_data()
// (`spill` holds the bytes of merged layers) into a pool of compressor threads; full blocks and
// tail ends are deduplicated, all-zero blocks become holes, and tail ends are packed into
// fragment blocks. Hard links (one Inode under several names) become one inode. As mksquashfs
// does: inodes are written to the table children first (a directory after its entries) but
// numbered depth first with a directory before its entries and the root last; directories are
// listed bytewise.
// The image is written under a temporary name in the output directory and renamed into place
// when complete, so a failure or Ctrl-C never leaves a partial file under `output`.
// Throws Error: bad input for invalid options; build failed, naming the step and the path
// inside the image, for anything that goes wrong while writing.
SquashfsStats write_squashfs(const Tree& tree, const SpillFile& spill,
                             const SquashfsOptions& options, const std::filesystem::path& output,
                             const SquashfsProgress& progress = {});

} // namespace edgeforge::fs
