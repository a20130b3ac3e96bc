// The base region of a squashfs image: the data and fragment blocks of the base image's files,
// laid out first and closed off, so that a rebuild on the same base copies them whole instead of
// reading, hashing and compressing every file again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fs/tree.h"
#include "util/fd.h"

namespace edgeforge::fs {

// The files of the base image, as the caller saw them right after merging it (before the agent,
// overlays and other layers went on top). Those still in the tree when the image is written are
// laid out first, as a region of their own: its fragment block is closed at its end and nothing
// after it is deduplicated against it, so its bytes depend on the base and the settings alone.
// Whether an image has a base region (not whether a cached one was found) decides the layout, so
// an image is byte-identical with a warm or an empty cache.
struct SquashfsBaseRegion {
    // Names the base's content: the digests of its layers, checked while merging them. Empty
    // (a dir: base, a layer without a digest): the region is laid out but never cached.
    std::string identity;
    // Each base file and its path in the base: a file's content is the base's at that path
    // whatever names it has later. Holding the inodes keeps their addresses from being reused.
    std::unordered_map<const Inode*, std::string> base_paths;
    std::vector<std::shared_ptr<const Inode>> keep_alive;

    // Every regular file of `tree` now, under `identity`.
    static std::shared_ptr<const SquashfsBaseRegion> snapshot(const Tree& tree,
                                                              std::string identity);
};

// What block processor runs produced: the writer adds up its runs, a kept region carries its own.
struct SquashfsBlockCounts {
    std::uint64_t data_blocks = 0, fragment_blocks = 0, duplicate_blocks = 0, sparse_blocks = 0,
                  duplicate_fragments = 0;

    SquashfsBlockCounts& operator+=(const SquashfsBlockCounts& other) {
        data_blocks += other.data_blocks;
        fragment_blocks += other.fragment_blocks;
        duplicate_blocks += other.duplicate_blocks;
        sparse_blocks += other.sparse_blocks;
        duplicate_fragments += other.duplicate_fragments;
        return *this;
    }
};

// A base region written once and kept for later images (in the block cache's directory, so it
// is bounded, trimmed and pruned with it): the bytes of the region and, per file of the region,
// the inode libsquashfs filled in, plus the fragment table entries.
struct SquashfsRegionIndex {
    std::uint64_t start = 0; // offset of the region in the image
    std::uint64_t size = 0;  // bytes of the region
    std::string digest;      // XXH3-128 of those bytes: a damaged copy is dropped
    // Fragment table entries of the region: location and on-disk size word.
    std::vector<std::pair<std::uint64_t, std::uint32_t>> fragments;
    // Raw libsquashfs inode records (fixed part and block sizes), one per distinct file, in the
    // order the region holds them.
    std::vector<std::string> inodes;
    // What the region's compression produced, for the statistics of images that reuse it, and
    // the uncompressed bytes of its files.
    SquashfsBlockCounts produced;
    std::uint64_t data_bytes = 0;
};

// The index file's content, and back; nullopt for anything that is not a well-formed index of
// `files` distinct files (bounded: never more than `files` records or 64 MiB).
std::string format_region_index(const SquashfsRegionIndex& index);
std::optional<SquashfsRegionIndex> parse_region_index(std::string_view content, std::size_t files);

// A kept region: <entry>/index and <entry>/region. Entries appear whole (written under a
// temporary name, then renamed) and are checked whole before use.
struct KeptRegion {
    SquashfsRegionIndex index;
    util::FileDescriptor fd; // the region's bytes, checked against the index's digest
};
// The region kept at `entry` for an image with `files` distinct base files whose data starts at
// `start`, or nullopt: none there, or a damaged or foreign one (which is then removed). Marks
// it used, for the block cache's least-recently-used trimming. Never throws.
std::optional<KeptRegion> open_region(const std::filesystem::path& entry, std::size_t files,
                                      std::uint64_t start);
// Removes a kept region that turned out bad.
void drop_region(const std::filesystem::path& entry);
// Keeps `index` and the `index.size` bytes at `index.start` of `image_fd` (digest computed
// here) at `entry`. Best effort: never throws.
void store_region(const std::filesystem::path& entry, SquashfsRegionIndex index, int image_fd);
// Copies `size` bytes of `region_fd` (from its start) to `image_fd` at `offset`, in the kernel
// where it can (copy_file_range: a reflink on filesystems that have them). false on failure.
bool copy_region(int region_fd, int image_fd, std::uint64_t offset, std::uint64_t size);

} // namespace edgeforge::fs
