// Content-addressed cache of image blobs (layers, configs, manifests), verified as they stream in.
#include "oci/blob_cache.h"

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"

namespace edgeforge::oci {
namespace stdfs = std::filesystem;

namespace {

constexpr std::size_t k_hex_digits = 64;

std::string_view digest_hex(std::string_view digest) {
    const bool valid = digest.size() == 7 + k_hex_digits && digest.starts_with("sha256:") &&
                       std::all_of(digest.begin() + 7, digest.end(), [](char c) {
                           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                       });
    if (!valid) {
        throw bad_input("'{}' is not a sha256 digest (sha256: and 64 lowercase hex digits)",
                        digest);
    }
    return digest.substr(7);
}

void create_directories_or_throw(const stdfs::path& directory) {
    std::error_code error;
    stdfs::create_directories(directory, error);
    if (error) {
        throw WriteFailed(fmt::format("cannot create cache directory {}: {}; check "
                                           "--cache-dir",
                                           directory.string(), error.message()),
                               error.value());
    }
}

std::string errno_text() {
    return std::generic_category().message(errno);
}

// Non-blocking exclusive lock for pruning: an invalid descriptor when someone else holds it.
util::FileDescriptor try_lock(const stdfs::path& lock_file) {
    util::FileDescriptor fd(::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd.valid()) {
        return fd;
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        fd.reset();
    }
    return fd;
}

std::uint64_t tree_size(const stdfs::path& directory) {
    std::uint64_t total = 0;
    std::error_code error;
    for (stdfs::recursive_directory_iterator it(directory, error), end; !error && it != end;
         it.increment(error)) {
        if (it->is_regular_file(error) && !it->is_symlink(error)) {
            total += it->file_size(error);
        }
    }
    return total;
}

stdfs::path store_dir(const stdfs::path& cache_dir, BlobStore store) {
    return cache_dir / (store == BlobStore::blobs ? "blobs" : "layers");
}

stdfs::path steps_dir(const stdfs::path& cache_dir) {
    return cache_dir / "steps";
}

} // namespace

BlobCache::BlobCache(stdfs::path cache_dir, BlobStore store)
    : cache_dir_(std::move(cache_dir)), store_dir_(store_dir(cache_dir_, store)) {}

stdfs::path BlobCache::blob_path(std::string_view digest) const {
    return store_dir_ / "sha256" / std::string(digest_hex(digest));
}

stdfs::path BlobCache::partial_path(std::string_view digest) const {
    return store_dir_ / "tmp" / (std::string(digest_hex(digest)) + ".partial");
}

std::optional<stdfs::path> BlobCache::find(std::string_view digest,
                                        std::optional<std::uint64_t> size) const {
    const stdfs::path path = blob_path(digest);
    std::error_code error;
    const auto actual = stdfs::file_size(path, error);
    if (error || (size && actual != *size)) {
        return std::nullopt;
    }
    // Refresh the last use, so that prune --older-than keeps what builds still read.
    stdfs::last_write_time(path, stdfs::file_time_type::clock::now(), error);
    return path;
}

stdfs::path BlobCache::store_bytes(std::string_view digest, std::string_view bytes) const {
    // Looked for before locking: this process may hold the blob shared (hold()), and asking
    // for the exclusive lock on top would wait for itself.
    if (const auto found = find(digest, bytes.size())) {
        return *found;
    }
    const auto lock_held = lock(digest);
    if (const auto found = find(digest, bytes.size())) {
        return *found;
    }
    BlobWriter writer(*this, std::string(digest), bytes.size());
    writer.restart();
    writer.write(bytes.data(), bytes.size());
    return writer.commit();
}

BlobCache::Lock BlobCache::lock(std::string_view digest, FileLock::Mode mode) const {
    const stdfs::path directory = store_dir_ / "locks";
    create_directories_or_throw(directory);
    return Lock(directory / (std::string(digest_hex(digest)) + ".lock"), mode);
}

std::optional<BlobCache::Lock> BlobCache::try_lock(std::string_view digest) const {
    const stdfs::path directory = store_dir_ / "locks";
    create_directories_or_throw(directory);
    return Lock::try_lock(directory / (std::string(digest_hex(digest)) + ".lock"));
}

std::optional<BlobCache::Held> BlobCache::hold(std::string_view digest,
                                               std::optional<std::uint64_t> size) const {
    auto held = std::make_shared<Lock>(lock(digest, FileLock::Mode::shared));
    // Looked up under the lock: a prune that removed the blob before it was taken is over.
    auto path = find(digest, size);
    if (!path) {
        return std::nullopt;
    }
    return Held{std::move(*path), std::move(held)};
}


BlobWriter::BlobWriter(const BlobCache& cache, std::string digest,
                       std::optional<std::uint64_t> expected_size)
    : cache_(cache), digest_(std::move(digest)), expected_size_(expected_size),
      partial_(cache.partial_path(digest_)) {
    create_directories_or_throw(partial_.parent_path());
    fd_ = ::open(partial_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
        const int error_number = errno;
        throw WriteFailed(
            fmt::format("cannot create {} in the cache: {}", partial_.string(), errno_text()),
            error_number);
    }
    // What an interrupted download left is hashed again (the hash state is not saved) and
    // kept, unless it is already longer than the blob can be.
    struct stat info {};
    if (::fstat(fd_, &info) == 0 && info.st_size > 0 &&
        (!expected_size_ || static_cast<std::uint64_t>(info.st_size) <= *expected_size_)) {
        std::vector<char> buffer(1 << 20);
        for (;;) {
            const ssize_t got = ::read(fd_, buffer.data(), buffer.size());
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got <= 0) {
                break;
            }
            hasher_.update(buffer.data(), static_cast<std::size_t>(got));
            size_ += static_cast<std::uint64_t>(got);
        }
        resumed_from_ = size_;
    } else if (info.st_size > 0) {
        restart();
    }
}

BlobWriter::~BlobWriter() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

bool BlobWriter::write(const void* data, std::size_t size) {
    if (expected_size_ && size_ + size > *expected_size_) {
        return false;
    }
    const auto* bytes = static_cast<const char*>(data);
    std::size_t written = 0;
    while (written < size) {
        const ssize_t done =
            ::pwrite(fd_, bytes + written, size - written, static_cast<off_t>(size_ + written));
        if (done < 0) {
            if (errno == EINTR) {
                continue;
            }
            const int error_number = errno;
            throw WriteFailed(fmt::format("cannot write {} (cache directory full?): {}",
                                               partial_.string(), errno_text()),
                                   error_number);
        }
        written += static_cast<std::size_t>(done);
    }
    hasher_.update(data, size);
    // Each whole 8 MiB written starts going to the storage device now, while the writer goes on:
    // an unpacked layer is hundreds of MB, and left to the kernel it would all be written back at
    // once, under the next fsync of any small file on the same filesystem (ext4 commits them
    // together), stalling the build. A failure here only loses that overlap.
    constexpr std::uint64_t k_writeback_chunk = std::uint64_t{8} << 20;
    const std::uint64_t from = size_ / k_writeback_chunk * k_writeback_chunk;
    const std::uint64_t to = (size_ + size) / k_writeback_chunk * k_writeback_chunk;
    if (to > from) {
        ::sync_file_range(fd_, static_cast<off64_t>(from), static_cast<off64_t>(to - from),
                          SYNC_FILE_RANGE_WRITE);
    }
    size_ += size;
    return true;
}

void BlobWriter::restart() {
    if (::ftruncate(fd_, 0) != 0) {
        throw build_failed("cannot truncate {}: {}", partial_.string(), errno_text());
    }
    hasher_ = util::Sha256();
    size_ = 0;
    resumed_from_ = 0;
}

void BlobWriter::discard() {
    std::error_code error;
    stdfs::remove(partial_, error);
    done_ = true;
}

stdfs::path BlobWriter::commit(bool durable) {
    if (expected_size_ && size_ != *expected_size_) {
        discard();
        throw BlobCorrupt(fmt::format("blob {} is {} bytes, but its descriptor says {}; nothing "
                                      "was stored",
                                      digest_, size_, *expected_size_),
                          digest_, "", size_);
    }
    const std::string actual = "sha256:" + hasher_.finish_hex();
    if (actual != digest_) {
        discard();
        throw BlobCorrupt(fmt::format("blob {} is corrupt: its content hashes to {}; nothing was "
                                      "stored",
                                      digest_, actual),
                          digest_, actual, size_);
    }
    if (durable && ::fdatasync(fd_) != 0) {
        const int error_number = errno;
        throw WriteFailed(fmt::format("cannot write {}: {}", partial_.string(), errno_text()),
                               error_number);
    }
    const stdfs::path final_path = cache_.blob_path(digest_);
    create_directories_or_throw(final_path.parent_path());
    std::error_code error;
    stdfs::rename(partial_, final_path, error);
    if (error) {
        throw WriteFailed(fmt::format("cannot store blob {} at {}: {}", digest_,
                                           final_path.string(), error.message()),
                               error.value());
    }
    done_ = true;
    return final_path;
}

std::string_view CacheEntry::kind_name() const {
    switch (kind) {
    case Kind::blob:
        return "blob";
    case Kind::layer:
        return "layer";
    case Kind::partial:
        return "partial";
    case Kind::step:
        return "step";
    case Kind::blocks:
        return "blocks";
    }
    return "blob";
}

CacheListing list_cache(const stdfs::path& cache_dir) {
    CacheListing listing;
    std::error_code error;
    const auto add_files = [&](BlobStore store, const char* subdirectory, CacheEntry::Kind kind,
                               std::string_view suffix, std::uint64_t& total) {
        const stdfs::path directory = store_dir(cache_dir, store) / subdirectory;
        std::vector<CacheEntry> found;
        for (stdfs::directory_iterator it(directory, error), end; !error && it != end;
             it.increment(error)) {
            const std::string name = it->path().filename().string();
            std::error_code entry_error;
            if (!it->is_regular_file(entry_error) || !name.ends_with(suffix) ||
                name.size() != k_hex_digits + suffix.size()) {
                continue;
            }
            CacheEntry entry;
            entry.kind = kind;
            entry.name = "sha256:" + name.substr(0, k_hex_digits);
            entry.path = it->path();
            entry.size = it->file_size(entry_error);
            entry.last_used = it->last_write_time(entry_error);
            entry.lock_file = store_dir(cache_dir, store) / "locks" /
                              (name.substr(0, k_hex_digits) + ".lock");
            total += entry.size;
            found.push_back(std::move(entry));
        }
        error.clear();
        std::sort(found.begin(), found.end(),
                  [](const CacheEntry& a, const CacheEntry& b) { return a.name < b.name; });
        listing.entries.insert(listing.entries.end(), found.begin(), found.end());
    };
    add_files(BlobStore::blobs, "sha256", CacheEntry::Kind::blob, "", listing.blob_bytes);
    add_files(BlobStore::layers, "sha256", CacheEntry::Kind::layer, "", listing.layer_bytes);
    add_files(BlobStore::blobs, "tmp", CacheEntry::Kind::partial, ".partial",
              listing.partial_bytes);
    add_files(BlobStore::layers, "tmp", CacheEntry::Kind::partial, ".partial",
              listing.partial_bytes);

    // StepCache entries: steps/<step>/<key>/; "tmp" holds the scratch space of running builds
    // and dot files are locks and entries being stored.
    std::vector<CacheEntry> steps;
    for (stdfs::directory_iterator step(steps_dir(cache_dir), error), end; !error && step != end;
         step.increment(error)) {
        const std::string step_name = step->path().filename().string();
        std::error_code step_error;
        if (step_name == "tmp" || step_name.starts_with('.') || !step->is_directory(step_error)) {
            continue;
        }
        for (stdfs::directory_iterator key(step->path(), step_error), keys_end;
             !step_error && key != keys_end; key.increment(step_error)) {
            const std::string key_name = key->path().filename().string();
            std::error_code key_error;
            if (key_name.starts_with('.') || !key->is_directory(key_error)) {
                continue;
            }
            CacheEntry entry;
            entry.kind = CacheEntry::Kind::step;
            entry.name = step_name + "/" + key_name;
            entry.path = key->path();
            entry.size = tree_size(key->path());
            entry.last_used = stdfs::last_write_time(key->path(), key_error);
            // StepCache::lock()
            entry.lock_file = step->path() / ("." + key_name + ".lock");
            listing.step_bytes += entry.size;
            steps.push_back(std::move(entry));
        }
    }
    std::sort(steps.begin(), steps.end(),
              [](const CacheEntry& a, const CacheEntry& b) { return a.name < b.name; });
    listing.entries.insert(listing.entries.end(), steps.begin(), steps.end());

    // Compressed squashfs blocks: blocks/<context>/<xx>/<key>, one entry per context. Builds
    // take no lock on them: an entry removed under a build is a miss, never a wrong block.
    std::vector<CacheEntry> blocks;
    for (stdfs::directory_iterator context(cache_dir / "blocks", error), end;
         !error && context != end; context.increment(error)) {
        std::error_code context_error;
        const std::string name = context->path().filename().string();
        if (name.starts_with('.') || !context->is_directory(context_error)) {
            continue;
        }
        CacheEntry entry;
        entry.kind = CacheEntry::Kind::blocks;
        entry.name = "blocks/" + name;
        entry.path = context->path();
        entry.last_used = stdfs::last_write_time(context->path(), context_error);
        for (stdfs::recursive_directory_iterator it(context->path(), context_error), files_end;
             !context_error && it != files_end; it.increment(context_error)) {
            std::error_code file_error;
            if (it->is_regular_file(file_error)) {
                entry.size += it->file_size(file_error);
                entry.last_used = std::max(entry.last_used, it->last_write_time(file_error));
            }
        }
        entry.lock_file = cache_dir / "blocks" / ("." + name + ".lock");
        listing.block_bytes += entry.size;
        blocks.push_back(std::move(entry));
    }
    error.clear();
    std::sort(blocks.begin(), blocks.end(),
              [](const CacheEntry& a, const CacheEntry& b) { return a.name < b.name; });
    listing.entries.insert(listing.entries.end(), blocks.begin(), blocks.end());
    return listing;
}

PruneResult prune_cache(const stdfs::path& cache_dir, std::optional<std::chrono::seconds> older_than) {
    PruneResult result;
    const auto now = stdfs::file_time_type::clock::now();
    for (const auto& entry : list_cache(cache_dir).entries) {
        if (older_than && now - entry.last_used < *older_than) {
            ++result.kept;
            continue;
        }
        // The lock files writers and users take: BlobCache::lock() and StepCache::lock().
        const stdfs::path& lock_file = entry.lock_file;
        std::error_code error;
        stdfs::create_directories(lock_file.parent_path(), error);
        const util::FileDescriptor lock = try_lock(lock_file);
        if (!lock.valid()) {
            ++result.busy;
            continue;
        }
        if (entry.kind == CacheEntry::Kind::blocks) {
            // Builds take no lock on blocks (one removed under a build is a miss): a build
            // storing blocks meanwhile may leave the directory not empty. Busy, not an error.
            stdfs::remove_all(entry.path, error);
            if (error) {
                ++result.busy;
                continue;
            }
        } else if (entry.kind == CacheEntry::Kind::step) {
            stdfs::remove_all(entry.path, error);
        } else {
            stdfs::remove(entry.path, error);
        }
        if (error) {
            throw build_failed("cannot remove {} from the cache: {}", entry.path.string(),
                               error.message());
        }
        // The lock file goes too while it is held. A process that opened it just before waits
        // on the unlinked file and then downloads again: wasted work, never a wrong blob.
        stdfs::remove(lock_file, error);
        result.removed_bytes += entry.size;
        result.removed.push_back(entry);
    }
    return result;
}

} // namespace edgeforge::oci
