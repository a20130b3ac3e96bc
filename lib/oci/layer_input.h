// The layer file as libarchive's input (internal to the layer merge): read, hashed and inflated
// on a background thread, or mapped for unpacked copies.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <thread>

#include <archive.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "oci/blob_cache.h"
#include "oci/merge.h"
#include "util/background_reader.h"
#include "util/background_sink.h"
#include "util/digest.h"
#include "util/fd.h"

namespace edgeforge::oci::detail {

// The layer file as libarchive's input. Bytes are hashed and counted as they are read, so the
// digest is checked and progress reported in the one pass that merges the layer. The file is
// read, hashed and (gzip) inflated with ISA-L on a background thread while libarchive parses
// the tar stream and the merge copies file data: inflating with zlib on the merging thread was
// 70% of the merge time, and hashing an unpacked copy there half of its merge.
//
// zstd layers are decompressed on the background thread the same way. The inflated stream of a
// gzip or zstd layer is hashed as it is handed to libarchive (inflated_digest(): the diff_id the
// image config must list). With a `tee`, the inflated stream of a gzip layer is written there
// instead (the unpacked copy kept in the cache), whose writer checks the diff_id. Progress counts bytes as stored in the layer: reading an unpacked copy
// passes `progress_size`, the layer's stored size, so that its bytes are scaled to it.
//
// Access::map is for files nobody truncates while they are read (the cache's unpacked copies,
// renamed into place and locked): libarchive parses the mapping in place and a second thread
// hashes it, so no byte is copied. Copying from the page cache with read() was half the time.
class LayerInput {
  public:
    enum class Access { read, map };

    LayerInput(const std::filesystem::path& path, std::string_view context,
               const MergeProgress& progress, std::uint64_t base, std::uint64_t total,
               BlobWriter* tee = nullptr, std::uint64_t progress_size = 0,
               Access access = Access::read)
        : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)),
          progress_(progress), base_(base), total_(total), tee_(tee) {
        if (fd_.get() < 0) {
            throw bad_input("{}: cannot read {}: {}", context, path.string(), std::strerror(errno));
        }
        struct stat info {};
        if (::fstat(fd_.get(), &info) != 0) {
            throw bad_input("{}: cannot read {}: {}", context, path.string(), std::strerror(errno));
        }
        const auto file_size = static_cast<std::uint64_t>(info.st_size);
        if (progress_size > 0 && file_size > 0) {
            scale_ = static_cast<double>(progress_size) / static_cast<double>(file_size);
        }
        const Compression compression = compression_of(fd_.get());
        inflated_ = compression != Compression::none;
        if (access == Access::map && !inflated_ && tee_ == nullptr && file_size > 0) {
            void* mapping = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd_.get(), 0);
            if (mapping != MAP_FAILED) {
                mapping_ = static_cast<const char*>(mapping);
                mapping_size_ = file_size;
                ::madvise(mapping, file_size, MADV_SEQUENTIAL);
                hasher_ = std::thread([this] { hash_mapping(); });
                return;
            }
        }
        if (tee_ != nullptr) {
            // Writing the copy and hashing it take about as long as inflating: on a thread of
            // their own, they leave the merge's thread to parse the tar and build the tree.
            tee_sink_ = std::make_unique<util::BackgroundSink>(
                [tee](const std::uint8_t* data, std::size_t size) { tee->write(data, size); });
        }
        reader_ = std::make_unique<util::BackgroundReader>(
            [this](char* data, std::size_t capacity) { return read_some(data, capacity); },
            compression == Compression::gzip   ? util::BackgroundReader::Decode::gzip
            : compression == Compression::zstd ? util::BackgroundReader::Decode::zstd
                                               : util::BackgroundReader::Decode::none);
    }

    ~LayerInput() {
        if (hasher_.joinable()) {
            stop_hashing_ = true;
            hasher_.join();
        }
        if (mapping_ != nullptr) {
            ::munmap(const_cast<char*>(mapping_), mapping_size_);
        }
    }
    LayerInput(const LayerInput&) = delete;
    LayerInput& operator=(const LayerInput&) = delete;

    // What this class inflates itself; other compressions (xz, bzip2: rare in layers) are left
    // to libarchive.
    enum class Compression { none, gzip, zstd };
    static Compression compression_of(int fd) {
        char head[4] = {};
        const ssize_t got = ::pread(fd, head, sizeof head, 0);
        const std::string_view bytes(head, got > 0 ? static_cast<std::size_t>(got) : 0);
        return util::looks_like_gzip(bytes)   ? Compression::gzip
               : util::looks_like_zstd(bytes) ? Compression::zstd
                                              : Compression::none;
    }
    static bool is_gzip(int fd) { return compression_of(fd) == Compression::gzip; }

    static la_ssize_t read(archive* handle, void* self, const void** buffer) {
        return static_cast<LayerInput*>(self)->next(handle, buffer);
    }

    // True when libarchive sees the tar this class inflated, not the stored bytes.
    bool inflated_here() const { return inflated_; }

    // "sha256:<hex>" of the inflated tar handed to libarchive (call after drain()); empty when
    // the layer was not inflated here, or went to a tee (whose writer checks the digest).
    std::string inflated_digest() {
        return inflated_ && tee_ == nullptr ? "sha256:" + inflated_hash_.finish_hex()
                                            : std::string();
    }

    // Reads (and hashes) what libarchive left unread (padding after the end-of-archive blocks),
    // so that the digest covers the whole file.
    void drain() {
        if (mapping_ != nullptr) {
            consumed_ = mapping_size_; // the hasher covers the whole mapping
            return;
        }
        for (std::string_view block = reader_->next(); !block.empty(); block = reader_->next()) {
            take_inflated(block);
        }
        if (tee_sink_) {
            tee_sink_->finish(); // the whole copy is written (or its write error thrown)
        }
    }

    std::string digest() {
        if (hasher_.joinable()) {
            hasher_.join();
        }
        return "sha256:" + hash_.finish_hex();
    }
    std::uint64_t consumed() const { return consumed_; }

    // A progress callback that threw (Ctrl-C handling, say) or a read error ends the read; its
    // exception, not libarchive's resulting "read error", is what the caller should see.
    void rethrow_if_failed() const {
        if (error_) {
            std::rethrow_exception(error_);
        }
    }

  private:
    // Reads and hashes the next bytes of the file (on the worker thread for gzip layers).
    std::size_t read_some(char* data, std::size_t capacity) {
        const std::size_t got = util::read_some(fd_.get(), data, capacity);
        hash_.update(data, got);
        consumed_ += got;
        return got;
    }

    // Hashes the mapping front to back. Pages are dropped from the mapping behind both readers,
    // so that resident memory stays small however big the layer is; that is always safe for a
    // read-only mapping of a file: a page touched again is read back from the page cache.
    void hash_mapping() {
        constexpr std::uint64_t step = 4 << 20;
        for (std::uint64_t at = 0; at < mapping_size_ && !stop_hashing_; at += step) {
            const auto size = static_cast<std::size_t>(std::min(step, mapping_size_ - at));
            hash_.update(mapping_ + at, size);
            release_mapping(at, size);
        }
    }

    void release_mapping(std::uint64_t at, std::uint64_t size) const {
        ::madvise(const_cast<char*>(mapping_) + at, size, MADV_DONTNEED);
    }

    la_ssize_t next(archive* handle, const void** buffer) {
        if (mapping_ != nullptr) {
            constexpr std::uint64_t step = 8 << 20;
            const std::uint64_t at = consumed_;
            if (at >= step) {
                release_mapping(at - step, step); // the block libarchive is done with
            }
            const std::uint64_t size = std::min(step, mapping_size_ - at);
            consumed_ = at + size;
            *buffer = mapping_ + at;
            try {
                report_progress();
            } catch (...) {
                error_ = std::current_exception();
                archive_set_error(handle, ECANCELED, "interrupted");
                return -1;
            }
            return static_cast<la_ssize_t>(size);
        }
        try {
            const std::string_view block = reader_->next();
            if (block.empty() && !reader_->error().empty()) {
                archive_set_error(handle, EINVAL, "%s", reader_->error().c_str());
                return -1;
            }
            take_inflated(block);
            report_progress();
            *buffer = block.data();
            return static_cast<la_ssize_t>(block.size());
        } catch (const std::system_error& error) {
            archive_set_error(handle, error.code().value(), "%s",
                              std::strerror(error.code().value()));
            return -1;
        } catch (...) {
            error_ = std::current_exception();
            archive_set_error(handle, ECANCELED, "interrupted");
            return -1;
        }
    }

    // A block of what libarchive reads: to the tee (which hashes it) through its thread, or
    // hashed here when this class inflated it.
    void take_inflated(std::string_view block) {
        if (tee_sink_) {
            tee_sink_->update(block.data(), block.size());
        } else if (inflated_) {
            inflated_hash_.update(block.data(), block.size());
        }
    }

    void report_progress() {
        if (progress_) {
            const auto consumed = consumed_.load();
            progress_(base_ + (scale_ == 1.0 ? consumed
                                             : static_cast<std::uint64_t>(
                                                   static_cast<double>(consumed) * scale_)),
                      total_);
        }
    }

    util::FileDescriptor fd_;
    util::Sha256 hash_;
    util::Sha256 inflated_hash_;
    std::atomic<std::uint64_t> consumed_{0};
    const MergeProgress& progress_;
    std::uint64_t base_;
    std::uint64_t total_;
    std::exception_ptr error_;
    BlobWriter* tee_;
    double scale_ = 1.0;
    bool inflated_ = false;
    const char* mapping_ = nullptr;
    std::uint64_t mapping_size_ = 0;
    std::atomic<bool> stop_hashing_{false};
    std::thread hasher_;
    std::unique_ptr<util::BackgroundSink> tee_sink_; // writes to tee_, which outlives this
    std::unique_ptr<util::BackgroundReader> reader_; // last: stopped before the rest goes
};

} // namespace edgeforge::oci::detail
