// The archive writer of content bundles: a reproducible tar (libarchive) compressed by libzstd
// worker threads into a file, hashed as it is written. Internal to content/bundle.cpp.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/console.h"
#include "base/error.h"
#include "content/bundle_files.h"
#include "oci/archive.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/zstd_stream.h"

namespace edgeforge::content::detail {
namespace stdfs = std::filesystem;

struct ArchiveWriteDeleter {
    void operator()(archive* handle) const { archive_write_free(handle); }
};

// Compresses what libarchive writes with libzstd (util::ZstdStream, worker threads) into a file,
// hashing the compressed bytes on the way.
class ZstdFileSink {
  public:
    ZstdFileSink(const stdfs::path& file, int level, unsigned threads)
        : file_(file), stream_(make_stream(level, threads)) {}

    void write(const void* data, std::size_t size) {
        try {
            stream_->write(data, size);
        } catch (const Error&) {
            throw;
        } catch (const std::runtime_error& e) {
            rethrow(e);
        }
    }
    void finish() {
        try {
            stream_->finish();
        } catch (const Error&) {
            throw;
        } catch (const std::runtime_error& e) {
            rethrow(e);
        }
        if (::fsync(fd_.get()) != 0) {
            throw build_failed("cannot write {}: {}", file_.string(), std::strerror(errno));
        }
    }
    std::uint64_t bytes() const { return bytes_; }
    std::string sha256() { return hasher_.finish_hex(); }
    unsigned workers() const { return stream_->workers(); }

  private:
    std::unique_ptr<util::ZstdStream> make_stream(int level, unsigned threads) {
        fd_.reset(::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd_.valid()) {
            throw build_failed("cannot create {}: {}", file_.string(), std::strerror(errno));
        }
        return std::make_unique<util::ZstdStream>(
            level, threads, [this](const char* data, std::size_t size) { append(data, size); });
    }
    void append(const char* data, std::size_t size) {
        const char* at = data;
        std::size_t left = size;
        while (left > 0) {
            const ssize_t written = ::write(fd_.get(), at, left);
            if (written < 0 && errno == EINTR) {
                continue;
            }
            if (written <= 0) {
                throw build_failed("cannot write {}: {}", file_.string(), std::strerror(errno));
            }
            at += written;
            left -= static_cast<std::size_t>(written);
        }
        hasher_.update(data, size);
        bytes_ += size;
    }
    // A zstd failure (not an I/O one: those are build_failed already) as a failed build.
    [[noreturn]] static void rethrow(const std::runtime_error& e) {
        throw build_failed("{}", e.what());
    }

    stdfs::path file_;
    util::FileDescriptor fd_;
    util::Sha256 hasher_;
    std::uint64_t bytes_ = 0;
    std::unique_ptr<util::ZstdStream> stream_; // last: its sink writes to the members above
};

// A reproducible tar stream: PAX (restricted) headers, fixed mtime, owner 0:0 without names.
class TarZstWriter {
  public:
    TarZstWriter(ZstdFileSink& sink, std::int64_t mtime, Progress& progress)
        : sink_(sink), mtime_(mtime), progress_(progress), archive_(archive_write_new()) {
        if (!archive_) {
            throw std::bad_alloc();
        }
        archive_write_set_format_pax_restricted(archive_.get());
        archive_write_add_filter_none(archive_.get());
        archive_write_set_bytes_per_block(archive_.get(), 10240);
        if (archive_write_open2(archive_.get(), this, nullptr, &TarZstWriter::write_callback,
                                nullptr, nullptr) != ARCHIVE_OK) {
            throw build_failed("libarchive: {}", oci::archive_message(archive_.get()));
        }
        buffer_.resize(k_buffer_size);
    }

    // libarchive's final flush runs write_callback: free the handle while every member it
    // touches is alive, and after a failure do not write to the sink again.
    ~TarZstWriter() {
        abandoned_ = true;
        archive_.reset();
    }
    TarZstWriter(const TarZstWriter&) = delete;
    TarZstWriter& operator=(const TarZstWriter&) = delete;

    void directory(const std::string& name) { header(name, AE_IFDIR, 0755, 0); }
    void bytes(const std::string& name, std::string_view content, unsigned mode = 0644) {
        header(name, AE_IFREG, mode, content.size());
        data(content.data(), content.size());
    }
    // Copies a file; when `digest` is given the bytes must hash to it.
    void file(const std::string& name, const stdfs::path& path, std::uint64_t size,
              std::string_view digest, std::string_view what, unsigned mode = 0644) {
        util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) {
            throw build_failed("cannot read {} ({}): {}", path.string(), what,
                               std::strerror(errno));
        }
        header(name, AE_IFREG, mode, size);
        util::Sha256 hasher;
        std::uint64_t done = 0;
        while (done < size) {
            const auto chunk =
                static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), size - done));
            if (!util::pread_exact(fd.get(), buffer_.data(), chunk, done)) {
                throw build_failed("{} ({}) changed while it was being read", path.string(), what);
            }
            hasher.update(buffer_.data(), chunk);
            data(buffer_.data(), chunk);
            progress_.advance(chunk);
            done += chunk;
        }
        if (!digest.empty()) {
            const std::string actual = "sha256:" + hasher.finish_hex();
            if (actual != digest) {
                throw oci::digest_mismatch(what, digest, "blob", actual);
            }
        }
    }
    void close() {
        // The final flush writes the last blocks: a full disk shows here as often as not, and
        // the sink's own message ("cannot write FILE: No space left on device") says so.
        if (archive_write_close(archive_.get()) != ARCHIVE_OK) {
            fail("the end of the archive");
        }
    }

  private:
    static la_ssize_t write_callback(archive*, void* self, const void* data, size_t size) {
        auto* writer = static_cast<TarZstWriter*>(self);
        if (writer->abandoned_) {
            return -1; // destroyed without close(): the bundle is being thrown away
        }
        try {
            writer->sink_.write(data, size);
        } catch (const std::exception& error) {
            writer->failure_ = error.what();
            return -1;
        }
        return static_cast<la_ssize_t>(size);
    }
    void header(const std::string& name, unsigned type, unsigned mode, std::uint64_t size) {
        std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                            archive_entry_free);
        archive_entry_set_pathname(entry.get(), name.c_str());
        archive_entry_set_filetype(entry.get(), type);
        archive_entry_set_perm(entry.get(), static_cast<__LA_MODE_T>(mode));
        archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
        archive_entry_set_mtime(entry.get(), mtime_, 0);
        archive_entry_set_uid(entry.get(), 0);
        archive_entry_set_gid(entry.get(), 0);
        if (archive_write_header(archive_.get(), entry.get()) != ARCHIVE_OK) {
            fail(name);
        }
    }
    void data(const void* bytes, std::size_t size) {
        if (size > 0 && archive_write_data(archive_.get(), bytes, size) < 0) {
            fail("data");
        }
    }
    [[noreturn]] void fail(const std::string& what) {
        if (!failure_.empty()) {
            throw build_failed("{}", failure_);
        }
        throw build_failed("writing {}: {}", what, oci::archive_message(archive_.get()));
    }

    ZstdFileSink& sink_;
    std::int64_t mtime_;
    Progress& progress_;
    std::string failure_; // declared before archive_: it outlives the handle's final flush
    bool abandoned_ = false;
    std::vector<char> buffer_;
    std::unique_ptr<archive, ArchiveWriteDeleter> archive_;
};

} // namespace edgeforge::content::detail
