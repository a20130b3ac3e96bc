// A content-addressed cache of compressed squashfs blocks: a rebuild copies the compressed bytes
// of blocks it has compressed before instead of compressing them again.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace edgeforge::fs {

// Blocks smaller than this are not cached: squashfs metadata blocks (inode and directory
// tables, at most 8 KiB) change with every tree, and a lookup would cost more than compressing.
inline constexpr std::uint32_t k_min_cached_block = 8192 + 1;

// The key of an uncompressed block: XXH3-128 as 32 hex digits. A fast index rather than a proof
// (hits are decompressed and compared with the block), so the writer spends a fraction of what
// SHA-256 cost it per block (0.4 s of CPU on a 750 MiB root filesystem).
std::string block_key(std::string_view block);

// One entry file's content checked against the block it should hold (`key`, block_key() of its
// `size` uncompressed bytes): the stored result, or nullopt when the content is not a good
// entry for it (another key or size, damaged, truncated, too long). Never throws.
struct SquashfsBlockEntry {
    std::string compressed; // empty when stored_raw
    bool stored_raw = false;
};
std::optional<SquashfsBlockEntry> parse_block_entry(std::string_view content, std::string_view key,
                                                    std::uint32_t size);
// The content of an entry file for that block: what parse_block_entry() reads back.
std::string format_block_entry(std::string_view key, std::uint32_t size,
                               const SquashfsBlockEntry& entry);

// Entries live in <directory>/<context>/<xx>/<key>, where the context is a digest of everything
// besides the block's bytes that decides the compressed bytes (compressor, level, block size,
// filters, library versions) and the key is block_key() of the uncompressed block. An entry
// holds its key and a digest of its payload; one that does not match (damaged, truncated,
// moved) is removed and the block compressed again. A hit that does match is still
// decompressed and compared with the block by the caller (an entry planted under another
// block's key, or a key collision, is rejected that way), so a bad entry never reaches an image.
// Compressors are deterministic, so an image built with hits is byte-identical to one built
// with an empty cache. Thread-safe: entries appear atomically (written, then renamed).
class SquashfsBlockCache {
  public:
    // `context`: the text that names the compression settings (hashed into the directory name).
    // `max_bytes`: the whole of `directory` (every context) is trimmed to this size (least
    // recently used entries first) by trim().
    SquashfsBlockCache(std::filesystem::path directory, std::string_view context,
                       std::uint64_t max_bytes);

    // The result of compressing a block of `size` bytes whose block_key() is `key`: the compressed
    // bytes, or an empty string for "store it uncompressed" (`stored_raw`). nullopt on a miss.
    // Not counted: the caller counts what it uses (count_reused()) once it has checked it.
    using Hit = SquashfsBlockEntry;
    std::optional<Hit> find(const std::string& key, std::uint32_t size);
    // Removes the entry of `key` after its payload failed a check of the caller (it does not
    // decompress to the block): counted as dropped.
    void reject(const std::string& key);
    // Records a compression result (best effort: a cache that cannot be written is a miss next
    // time, never an error).
    void store(const std::string& key, std::uint32_t size, std::string_view compressed,
               bool stored_raw);

    // Removes least recently used entries (of any context) until `directory` holds at most
    // max_bytes.
    void trim() const;

    const std::filesystem::path& directory() const { return context_dir_; }

    // Counters of this run, for stats and `make bench`.
    std::uint64_t hits() const { return hits_; }
    std::uint64_t misses() const { return misses_; }
    std::uint64_t reused_bytes() const { return reused_bytes_; }         // uncompressed
    std::uint64_t compressed_bytes() const { return compressed_bytes_; } // uncompressed input
    std::uint64_t dropped() const { return dropped_; }                   // bad entries removed
    // What the caller did with a block of `size` bytes: took a found entry, or compressed it.
    void count_reused(std::uint32_t size) {
        ++hits_;
        reused_bytes_ += size;
    }
    void count_compressed(std::uint32_t size) {
        ++misses_;
        compressed_bytes_ += size;
    }

  private:
    std::filesystem::path entry_path(const std::string& key) const;

    std::filesystem::path root_;
    std::filesystem::path context_dir_;
    std::uint64_t max_bytes_;
    std::atomic<std::uint64_t> hits_{0}, misses_{0}, reused_bytes_{0}, compressed_bytes_{0},
        dropped_{0};
};

} // namespace edgeforge::fs
