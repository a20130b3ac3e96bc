// Content-addressed cache of image blobs (layers, configs, manifests), verified as they stream in.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/file_lock.h"
#include "base/error.h"
#include "util/digest.h"

namespace edgeforge::oci {

// A blob whose bytes do not hash to its digest (or are more or fewer than its descriptor says).
// Nothing was stored; callers rethrow with the image, registry and layer named.
class BlobCorrupt : public Error {
  public:
    BlobCorrupt(const std::string& message, std::string digest, std::string actual,
                std::uint64_t size)
        : Error(ExitCode::build_failed, message), digest_(std::move(digest)),
          actual_(std::move(actual)), size_(size) {}
    const std::string& digest() const { return digest_; }
    const std::string& actual() const { return actual_; } // empty when the size was wrong
    std::uint64_t size() const { return size_; }

  private:
    std::string digest_;
    std::string actual_;
    std::uint64_t size_;
};

// Which content-addressed store of the cache directory a BlobCache is.
enum class BlobStore {
    blobs,  // <cache_dir>/blobs: image blobs as a registry serves them (layers, configs, manifests)
    layers, // <cache_dir>/layers: gzip layers kept uncompressed, named by their diff_id, so that
            // later merges skip the inflate and refer to file data in place (see merge_layers())
};

// Blobs live at <cache_dir>/<store>/sha256/<hex> and appear there only once verified: downloads
// go to <cache_dir>/<store>/tmp/<hex>.partial and are renamed into place after the digest
// matched. A blob's modification time is its last use (find() touches it), which prune reads.
// Two processes sharing the cache take a per-blob flock (<store>/locks/<hex>.lock) exclusively
// while downloading, so the second one waits and finds the blob; correctness comes from the
// atomic rename of verified bytes. A build holds the same lock shared while it uses the blob
// (hold()), so that `cache prune` leaves it alone.
class BlobCache {
  public:
    explicit BlobCache(std::filesystem::path cache_dir, BlobStore store = BlobStore::blobs);

    const std::filesystem::path& cache_dir() const { return cache_dir_; }
    // Where the blob with `digest` ("sha256:<hex>") is, or would be, stored.
    std::filesystem::path blob_path(std::string_view digest) const;
    std::filesystem::path partial_path(std::string_view digest) const;

    // The stored blob, its last use refreshed; nullopt when it is not cached. `size`, when
    // given, must match too (a blob of another size cannot be the one a descriptor means).
    std::optional<std::filesystem::path> find(std::string_view digest,
                                              std::optional<std::uint64_t> size = {}) const;

    // Verifies `bytes` against `digest` and stores them (manifests, configs). Throws BlobCorrupt.
    std::filesystem::path store_bytes(std::string_view digest, std::string_view bytes) const;

    // A lock on one blob: exclusive while it is downloaded or written, shared while it is used.
    using Lock = FileLock;
    Lock lock(std::string_view digest, FileLock::Mode mode = FileLock::Mode::exclusive) const;
    // The exclusive lock if nobody holds the blob's lock now; nullopt instead of waiting.
    std::optional<Lock> try_lock(std::string_view digest) const;

    // The stored blob, with a shared lock that keeps `cache prune` from removing it while the
    // returned lock lives; nullopt when it is not cached.
    struct Held {
        std::filesystem::path path;
        std::shared_ptr<Lock> lock;
    };
    std::optional<Held> hold(std::string_view digest,
                             std::optional<std::uint64_t> size = {}) const;

  private:
    std::filesystem::path cache_dir_;
    std::filesystem::path store_dir_;
};

// Streams one blob into the cache: every byte is hashed as it is written, and commit() moves
// the file into place only when digest (and expected size) match. A writer opened while an
// earlier, interrupted download of the same blob left a partial file continues from it
// (resumed_from() bytes), so the caller can ask the server for the rest with a Range request.
// Hold BlobCache::lock() for the digest while a writer exists.
class BlobWriter {
  public:
    BlobWriter(const BlobCache& cache, std::string digest,
               std::optional<std::uint64_t> expected_size);
    ~BlobWriter();
    BlobWriter(const BlobWriter&) = delete;
    BlobWriter& operator=(const BlobWriter&) = delete;

    const std::string& digest() const { return digest_; }
    std::uint64_t size() const { return size_; }
    std::uint64_t resumed_from() const { return resumed_from_; }

    // Appends bytes. Returns false (writing nothing) when they would exceed the expected size:
    // the source sends more than the descriptor says, so it is not this blob.
    bool write(const void* data, std::size_t size);
    // Drops everything written so far (a server that ignored the Range request).
    void restart();
    // Verifies and renames into the cache; returns the blob's path. On a mismatch the partial
    // file is removed and BlobCorrupt is thrown. `durable` syncs the data first; a store whose
    // entries are verified on every read (BlobStore::layers) can do without.
    std::filesystem::path commit(bool durable = true);
    // Removes the partial file (a download that must start over next time).
    void discard();

  private:
    const BlobCache& cache_;
    std::string digest_;
    std::optional<std::uint64_t> expected_size_;
    std::filesystem::path partial_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::uint64_t resumed_from_ = 0;
    util::Sha256 hasher_;
    bool done_ = false;
};

// One entry of `edgeforge cache ls`: a blob, an unpacked layer, a partial download, a cached
// build step, or the compressed squashfs blocks of one compressor setting (blocks/<context>).
struct CacheEntry {
    enum class Kind { blob, layer, partial, step, blocks };
    Kind kind = Kind::blob;
    std::string name; // "sha256:<hex>", or "<step>/<key>" for steps
    std::filesystem::path path;
    std::uint64_t size = 0;
    std::filesystem::file_time_type last_used;
    std::filesystem::path lock_file; // what writers and users lock (prune must get it)

    std::string_view kind_name() const;
};

struct CacheListing {
    // blobs, then unpacked layers, then partial downloads, then steps; by name within each
    std::vector<CacheEntry> entries;
    std::uint64_t blob_bytes = 0;
    std::uint64_t layer_bytes = 0;
    std::uint64_t partial_bytes = 0;
    std::uint64_t step_bytes = 0;
    std::uint64_t block_bytes = 0;
    std::uint64_t total_bytes() const {
        return blob_bytes + layer_bytes + partial_bytes + step_bytes + block_bytes;
    }
};

// Everything under <cache_dir>/blobs, <cache_dir>/layers, <cache_dir>/steps (see StepCache)
// and <cache_dir>/blocks (see fs::SquashfsBlockCache; one entry per setting, last used when
// its newest block was).
CacheListing list_cache(const std::filesystem::path& cache_dir);

struct PruneResult {
    std::vector<CacheEntry> removed;
    std::uint64_t removed_bytes = 0;
    std::size_t kept = 0;
    std::size_t busy = 0; // entries another process holds locked, left alone
};

// Removes every entry last used longer than `older_than` ago (every entry when nullopt).
// Entries another edgeforge process is downloading, producing or using (locked) are skipped.
PruneResult prune_cache(const std::filesystem::path& cache_dir,
                        std::optional<std::chrono::seconds> older_than);

} // namespace edgeforge::oci
