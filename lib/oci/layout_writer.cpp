// Writes OCI image layouts: content-addressed blobs, tar+gzip layers from trees, index tags.
#include "oci/layout_writer.h"
#include "oci/descriptor.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <system_error>
#include <unordered_map>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include "base/error.h"
#include "oci/archive.h"
#include "oci/image.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/json.h"

namespace edgeforge::oci {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_layout_file = "{\"imageLayoutVersion\":\"1.0.0\"}";

std::string hex_of(std::string_view digest) {
    return std::string(digest.substr(digest.find(':') + 1));
}

void write_all(int fd, const void* data, std::size_t size, const stdfs::path& file) {
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t written = ::write(fd, bytes, size);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw build_failed("cannot write {}: {}", file.string(), std::strerror(errno));
        }
        bytes += written;
        size -= static_cast<std::size_t>(written);
    }
}

// The tar stream of a layer: hashed as it is produced (diff_id), gzip-compressed into the
// output file and hashed again (digest).
class GzipSink {
  public:
    GzipSink(int fd, stdfs::path file, int level) : fd_(fd), file_(std::move(file)) {
        // windowBits 15 + 16: a gzip wrapper; zlib writes mtime 0 and no name, so the bytes
        // depend on the content only.
        if (deflateInit2(&stream_, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            throw build_failed("cannot start gzip compression for {}", file_.string());
        }
        out_.resize(1u << 20);
    }
    ~GzipSink() { deflateEnd(&stream_); }
    GzipSink(const GzipSink&) = delete;
    GzipSink& operator=(const GzipSink&) = delete;

    void write(const void* data, std::size_t size) {
        uncompressed_.update(data, size);
        stream_.next_in = static_cast<Bytef*>(const_cast<void*>(data));
        stream_.avail_in = static_cast<uInt>(size);
        pump(Z_NO_FLUSH);
    }
    void finish() { pump(Z_FINISH); }

    std::string diff_id() { return "sha256:" + uncompressed_.finish_hex(); }
    std::string digest() { return "sha256:" + compressed_.finish_hex(); }
    std::uint64_t size() const { return size_; }

  private:
    void pump(int flush) {
        while (true) {
            stream_.next_out = reinterpret_cast<Bytef*>(out_.data());
            stream_.avail_out = static_cast<uInt>(out_.size());
            const int code = deflate(&stream_, flush);
            if (code == Z_STREAM_ERROR) {
                throw build_failed("gzip compression failed for {}", file_.string());
            }
            const std::size_t produced = out_.size() - stream_.avail_out;
            if (produced > 0) {
                compressed_.update(out_.data(), produced);
                write_all(fd_, out_.data(), produced, file_);
                size_ += produced;
            }
            if (flush == Z_FINISH ? code == Z_STREAM_END : stream_.avail_in == 0) {
                return;
            }
        }
    }

  public:
    std::string failure; // why a write from libarchive's callback failed

  private:
    int fd_;
    stdfs::path file_;
    z_stream stream_{};
    std::vector<char> out_;
    util::Sha256 uncompressed_;
    util::Sha256 compressed_;
    std::uint64_t size_ = 0;
};

struct ArchiveWriteDeleter {
    void operator()(archive* handle) const { archive_write_free(handle); }
};
struct EntryDeleter {
    void operator()(archive_entry* entry) const { archive_entry_free(entry); }
};

// libarchive's write callback: a C frame, so nothing may be thrown through it. A failed write
// (disk full) is kept for the message and reported to libarchive as -1.
la_ssize_t sink_write(archive*, void* client, const void* buffer, size_t size) {
    auto* sink = static_cast<GzipSink*>(client);
    try {
        sink->write(buffer, size);
    } catch (const std::exception& error) {
        sink->failure = error.what();
        return -1;
    }
    return static_cast<la_ssize_t>(size);
}

// What went wrong in libarchive's writer: our sink's failure when there was one.
std::string writer_message(const GzipSink& sink, archive* writer) {
    return sink.failure.empty() ? archive_message(writer) : sink.failure;
}

unsigned file_type_bits(fs::FileType type) {
    switch (type) {
    case fs::FileType::regular:
        return AE_IFREG;
    case fs::FileType::directory:
        return AE_IFDIR;
    case fs::FileType::symlink:
        return AE_IFLNK;
    case fs::FileType::char_device:
        return AE_IFCHR;
    case fs::FileType::block_device:
        return AE_IFBLK;
    case fs::FileType::fifo:
        return AE_IFIFO;
    case fs::FileType::socket:
        return AE_IFSOCK;
    }
    return AE_IFREG;
}

} // namespace

nlohmann::json BlobDescriptor::to_json() const {
    nlohmann::json json{{"mediaType", media_type}, {"digest", digest}, {"size", size}};
    if (!annotations.empty()) {
        json["annotations"] = annotations;
    }
    return json;
}

LayoutWriter::LayoutWriter(stdfs::path directory) : directory_(std::move(directory)) {
    std::error_code ec;
    const bool exists = stdfs::exists(directory_, ec);
    if (exists && !stdfs::is_directory(directory_, ec)) {
        throw bad_input("cannot write an OCI image layout at {}: it is a file",
                        directory_.string());
    }
    const bool layout = stdfs::exists(directory_ / "oci-layout", ec);
    if (exists && !layout && !stdfs::is_empty(directory_, ec)) {
        throw bad_input("cannot write an OCI image layout into {}: the directory has other files "
                        "(no oci-layout file); choose an empty or new directory",
                        directory_.string());
    }
    stdfs::create_directories(directory_ / "blobs" / "sha256", ec);
    if (ec) {
        throw build_failed("cannot create {}: {}", (directory_ / "blobs").string(), ec.message());
    }
    if (!layout) {
        util::write_file_atomically(directory_ / "oci-layout", k_layout_file);
    }
    index_ = {{"schemaVersion", 2},
              {"mediaType", media_type::oci_index},
              {"manifests", nlohmann::json::array()}};
    if (stdfs::exists(directory_ / "index.json", ec)) {
        try {
            index_ = util::parse_json(util::read_file(directory_ / "index.json"));
        } catch (const std::exception& error) {
            throw bad_input("the OCI layout {} has an unreadable index.json ({}); move it away or "
                            "choose another directory",
                            directory_.string(), error.what());
        }
    }
}

stdfs::path LayoutWriter::blob_path(std::string_view digest) const {
    return directory_ / "blobs" / "sha256" / hex_of(digest);
}

stdfs::path LayoutWriter::temporary_blob_path() const {
    // Unique across processes and machines: a layout on a shared filesystem (the oci: build
    // cache) is written by containers that may well have the same pid.
    static std::atomic<unsigned> counter{0};
    static const std::uint64_t nonce = [] {
        std::random_device random;
        return (static_cast<std::uint64_t>(random()) << 32) | random();
    }();
    return directory_ / "blobs" /
           fmt::format(".tmp-{}-{:016x}-{}", ::getpid(), nonce,
                       counter.fetch_add(1, std::memory_order_relaxed));
}

BlobDescriptor LayoutWriter::adopt_blob(const stdfs::path& temporary, std::string_view media_type,
                                        std::string_view digest, std::uint64_t size) {
    const stdfs::path target = blob_path(digest);
    std::error_code ec;
    if (stdfs::exists(target, ec)) {
        stdfs::remove(temporary, ec);
    } else {
        stdfs::rename(temporary, target, ec);
        if (ec) {
            stdfs::remove(temporary, ec);
            throw build_failed("cannot store blob {} in {}: {}", digest, directory_.string(),
                               ec.message());
        }
    }
    util::unregister_temporary(temporary);
    return BlobDescriptor{std::string(media_type), std::string(digest), size, {}};
}

BlobDescriptor LayoutWriter::add_blob_bytes(std::string_view bytes, std::string_view media_type) {
    const std::string digest = "sha256:" + util::sha256_hex(bytes);
    if (!stdfs::exists(blob_path(digest))) {
        util::write_file_atomically(blob_path(digest), bytes);
    }
    return BlobDescriptor{std::string(media_type), digest, bytes.size(), {}};
}

BlobDescriptor LayoutWriter::add_blob_file(const stdfs::path& file, std::string_view media_type,
                                           std::string_view digest) {
    std::error_code ec;
    const std::uint64_t size = stdfs::file_size(file, ec);
    if (ec) {
        throw build_failed("cannot read blob {}: {}", file.string(), ec.message());
    }
    const std::string known =
        digest.empty() ? "sha256:" + util::sha256_file_hex(file) : std::string(digest);
    if (stdfs::exists(blob_path(known), ec)) {
        return BlobDescriptor{std::string(media_type), known, size, {}};
    }
    const stdfs::path temporary = temporary_blob_path();
    util::register_temporary(temporary);
    stdfs::create_hard_link(file, temporary, ec);
    if (ec) {
        ec.clear();
        stdfs::copy_file(file, temporary, ec);
        if (ec) {
            stdfs::remove(temporary, ec);
            util::unregister_temporary(temporary);
            throw build_failed("cannot copy {} into {}: {}", file.string(), directory_.string(),
                               ec.message());
        }
    }
    return adopt_blob(temporary, media_type, known, size);
}

void LayoutWriter::tag(const BlobDescriptor& manifest, std::string_view tag) {
    auto& manifests = index_["manifests"];
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& entry : manifests) {
        const auto annotations = entry.find("annotations");
        const bool same_tag = annotations != entry.end() && annotations->contains(k_ref_name_annotation) &&
                              (*annotations)[std::string(k_ref_name_annotation)] == tag;
        if (!same_tag) {
            kept.push_back(entry);
        }
    }
    BlobDescriptor tagged = manifest;
    tagged.annotations[std::string(k_ref_name_annotation)] = std::string(tag);
    kept.push_back(tagged.to_json());
    manifests = kept;
}

void LayoutWriter::commit() {
    util::write_file_atomically(directory_ / "index.json", index_.dump() + "\n");
}

LayerBlob write_tree_layer(const fs::Tree& tree, const fs::SpillFile& spill, LayoutWriter& layout,
                           const LayerWriteOptions& options) {
    const stdfs::path temporary = layout.temporary_blob_path();
    util::register_temporary(temporary);
    util::FileDescriptor fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) {
        util::unregister_temporary(temporary);
        throw build_failed("cannot create {}: {}", temporary.string(), std::strerror(errno));
    }
    struct RemoveOnFailure {
        const stdfs::path& path;
        bool armed = true;
        ~RemoveOnFailure() {
            if (armed) {
                std::error_code ec;
                stdfs::remove(path, ec);
                util::unregister_temporary(path);
            }
        }
    } cleanup{temporary};

    GzipSink sink(fd.get(), temporary, options.gzip_level);
    std::unique_ptr<archive, ArchiveWriteDeleter> writer(archive_write_new());
    archive_write_set_format_pax_restricted(writer.get());
    archive_write_set_bytes_per_block(writer.get(), 0); // no padding to 10 KiB records
    if (archive_write_open(writer.get(), &sink, nullptr, sink_write, nullptr) != ARCHIVE_OK) {
        throw build_failed("cannot start the layer tar: {}", writer_message(sink, writer.get()));
    }
    std::unordered_map<const fs::Inode*, std::string> first_names; // hard links
    std::optional<Error> failure;
    tree.walk([&](const fs::WalkEntry& walked) {
        if (failure || walked.parent == nullptr) {
            return;
        }
        const fs::Inode& inode = walked.inode;
        std::string name(walked.path.substr(1));
        std::unique_ptr<archive_entry, EntryDeleter> entry(archive_entry_new());
        archive_entry_set_pathname(entry.get(), inode.is_directory() ? (name + "/").c_str()
                                                                     : name.c_str());
        archive_entry_set_mode(entry.get(), file_type_bits(inode.type) | (inode.mode & 07777));
        archive_entry_set_uid(entry.get(), inode.uid);
        archive_entry_set_gid(entry.get(), inode.gid);
        std::int64_t mtime = inode.mtime;
        if (options.clamp_mtime) {
            mtime = std::min(mtime, *options.clamp_mtime);
        }
        archive_entry_set_mtime(entry.get(), static_cast<time_t>(mtime), 0);
        for (const auto& [key, value] : inode.xattrs) {
            archive_entry_xattr_add_entry(entry.get(), key.c_str(), value.data(), value.size());
        }
        bool with_data = false;
        if (inode.is_regular()) {
            const auto [found, inserted] = first_names.emplace(&inode, name);
            if (!inserted) {
                archive_entry_set_hardlink(entry.get(), found->second.c_str());
                archive_entry_set_size(entry.get(), 0);
            } else {
                archive_entry_set_size(entry.get(), static_cast<la_int64_t>(inode.data.size));
                with_data = inode.data.size > 0;
            }
        } else if (inode.is_symlink()) {
            archive_entry_set_symlink(entry.get(), inode.symlink_target.c_str());
        } else if (inode.type == fs::FileType::char_device ||
                   inode.type == fs::FileType::block_device) {
            archive_entry_set_rdevmajor(entry.get(), inode.rdev.major);
            archive_entry_set_rdevminor(entry.get(), inode.rdev.minor);
        }
        if (archive_write_header(writer.get(), entry.get()) < ARCHIVE_WARN) {
            failure = build_failed("cannot write layer entry {}: {}", walked.path,
                                   writer_message(sink, writer.get()));
            return;
        }
        if (with_data) {
            fs::read_data(inode, spill, [&](const char* data, std::size_t size) {
                if (archive_write_data(writer.get(), data, size) < 0) {
                    throw build_failed("cannot write the data of {} to the layer: {}", walked.path,
                                       writer_message(sink, writer.get()));
                }
            });
        }
    });
    if (failure) {
        throw *failure;
    }
    if (archive_write_close(writer.get()) != ARCHIVE_OK) {
        throw build_failed("cannot finish the layer tar: {}", writer_message(sink, writer.get()));
    }
    sink.finish();
    if (::fsync(fd.get()) != 0) {
        throw build_failed("cannot write {}: {}", temporary.string(), std::strerror(errno));
    }
    fd.reset();
    LayerBlob blob;
    blob.diff_id = sink.diff_id();
    const std::string digest = sink.digest();
    cleanup.armed = false;
    blob.descriptor = layout.adopt_blob(temporary, media_type::oci_layer_gzip, digest, sink.size());
    return blob;
}

std::string uncompressed_digest(const stdfs::path& layer) {
    struct ReadDeleter {
        void operator()(archive* handle) const { archive_read_free(handle); }
    };
    std::unique_ptr<archive, ReadDeleter> reader(archive_read_new());
    support_layer_filters(reader.get());
    archive_read_support_format_raw(reader.get());
    if (archive_read_open_filename(reader.get(), layer.c_str(), 1u << 20) != ARCHIVE_OK) {
        throw build_failed("cannot read layer {}: {}", layer.string(),
                           archive_message(reader.get()));
    }
    archive_entry* entry = nullptr;
    util::Sha256 hasher;
    if (archive_read_next_header(reader.get(), &entry) == ARCHIVE_OK) {
        std::vector<char> buffer(1u << 20);
        while (true) {
            const la_ssize_t got = archive_read_data(reader.get(), buffer.data(), buffer.size());
            if (got < 0) {
                throw build_failed("cannot decompress layer {}: {}", layer.string(),
                                   archive_message(reader.get()));
            }
            if (got == 0) {
                break;
            }
            hasher.update(buffer.data(), static_cast<std::size_t>(got));
        }
    }
    return "sha256:" + hasher.finish_hex();
}

} // namespace edgeforge::oci
