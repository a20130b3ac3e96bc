// Merges image layers and host directories into one fs::Tree, applying OCI whiteouts.
#include "oci/merge.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_set>
#include <utility>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/error.h"
#include "oci/archive.h"
#include "oci/blob_cache.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/background_reader.h"

namespace edgeforge::oci {
namespace {

using util::FileDescriptor;

constexpr std::string_view k_whiteout_prefix = ".wh.";
constexpr std::string_view k_opaque_marker = ".wh..wh..opq";
constexpr std::string_view k_aufs_metadata_prefix = ".wh..wh.";

struct DirectoryCloser {
    void operator()(DIR* directory) const { ::closedir(directory); }
};

std::string join_parts(const std::vector<std::string>& parts, std::size_t count) {
    std::string joined;
    for (std::size_t i = 0; i < count; ++i) {
        if (i > 0) {
            joined += '/';
        }
        joined += parts[i];
    }
    return joined;
}

// The layer file as libarchive's input. Bytes are hashed and counted as they are read, so the
// digest is checked and progress reported in the one pass that merges the layer. The file is
// read, hashed and (gzip) inflated with ISA-L on a background thread while libarchive parses
// the tar stream and the merge copies file data: inflating with zlib on the merging thread was
// 70% of the merge time, and hashing an unpacked copy there half of its merge.
//
// With a `tee`, the inflated stream of a gzip layer is also written there (the unpacked copy
// kept in the cache). Progress counts bytes as stored in the layer: reading an unpacked copy
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
        inflated_ = is_gzip(fd_.get());
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
        reader_ = std::make_unique<util::BackgroundReader>(
            [this](char* data, std::size_t capacity) { return read_some(data, capacity); },
            inflated_ ? util::BackgroundReader::Decode::gzip
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

    static bool is_gzip(int fd) {
        char head[2] = {};
        return ::pread(fd, head, sizeof head, 0) == static_cast<ssize_t>(sizeof head) &&
               util::looks_like_gzip(std::string_view(head, sizeof head));
    }

    static la_ssize_t read(archive* handle, void* self, const void** buffer) {
        return static_cast<LayerInput*>(self)->next(handle, buffer);
    }

    // True when libarchive sees the inflated tar, not the stored bytes.
    bool inflated_here() const { return inflated_; }

    // Reads (and hashes) what libarchive left unread (padding after the end-of-archive blocks),
    // so that the digest covers the whole file.
    void drain() {
        if (mapping_ != nullptr) {
            consumed_ = mapping_size_; // the hasher covers the whole mapping
            return;
        }
        for (std::string_view block = reader_->next(); !block.empty(); block = reader_->next()) {
            if (tee_ != nullptr) {
                tee_->write(block.data(), block.size());
            }
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
            if (tee_ != nullptr) {
                tee_->write(block.data(), block.size());
            }
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

    void report_progress() {
        if (progress_) {
            const auto consumed = consumed_.load();
            progress_(base_ + (scale_ == 1.0 ? consumed
                                             : static_cast<std::uint64_t>(
                                                   static_cast<double>(consumed) * scale_)),
                      total_);
        }
    }

    FileDescriptor fd_;
    util::Sha256 hash_;
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
    std::unique_ptr<util::BackgroundReader> reader_; // last: stopped before the rest goes
};

// Applies the entries of one tar layer to the tree. It remembers every path the current layer
// put in place, because an opaque marker hides only lower-layer children of its directory and
// may come after same-layer siblings that must survive.
class LayerMerger {
  public:
    LayerMerger(fs::Tree& tree, fs::SpillFile& spill, std::string context, MergeStats& stats)
        : tree_(tree), spill_(spill), context_(std::move(context)), stats_(stats) {}

    // Files of an uncompressed layer can stay in the layer file at their offsets.
    void reference_blob(std::filesystem::path layer_file) {
        blob_path_ = std::move(layer_file);
        reference_blob_ = true;
    }

    void apply(archive* reader, archive_entry* entry) {
        ++stats_.entries;
        const std::string name = entry_pathname(entry);
        const auto parts = normalize_entry_path(name);
        if (!parts) {
            fail_escape(name);
        }
        for (std::size_t i = 0; i + 1 < parts->size(); ++i) {
            if ((*parts)[i].starts_with(k_aufs_metadata_prefix)) {
                return; // inside AUFS bookkeeping (.wh..wh.plnk/), never part of the result
            }
            if ((*parts)[i].starts_with(k_whiteout_prefix)) {
                fail(name, "lies inside a whiteout marker; the image is malformed");
            }
        }
        const auto link = entry_hardlink(entry);
        if (parts->empty()) {
            // "./": the root directory's own metadata.
            if (!link && archive_entry_filetype(entry) == AE_IFDIR) {
                take_metadata(tree_.root(), *inode_from(entry, fs::FileType::directory, name));
            }
            return;
        }
        if (parts->back().starts_with(k_whiteout_prefix)) {
            whiteout(*parts, name);
            return;
        }
        const std::string path = join_parts(*parts, parts->size());
        if (link) {
            hard_link(*parts, path, name, *link, archive_entry_mtime(entry));
            return;
        }
        std::shared_ptr<fs::Inode> inode;
        switch (archive_entry_filetype(entry)) {
        case AE_IFDIR:
            inode = inode_from(entry, fs::FileType::directory, name);
            break;
        case AE_IFLNK:
            inode = inode_from(entry, fs::FileType::symlink, name);
            inode->symlink_target = entry_symlink(entry);
            break;
        case AE_IFCHR:
        case AE_IFBLK:
            inode =
                inode_from(entry,
                           archive_entry_filetype(entry) == AE_IFCHR ? fs::FileType::char_device
                                                                     : fs::FileType::block_device,
                           name);
            inode->rdev = {static_cast<std::uint32_t>(archive_entry_rdevmajor(entry)),
                           static_cast<std::uint32_t>(archive_entry_rdevminor(entry))};
            break;
        case AE_IFIFO:
            inode = inode_from(entry, fs::FileType::fifo, name);
            break;
        case AE_IFSOCK:
            inode = inode_from(entry, fs::FileType::socket, name);
            break;
        default: // AE_IFREG; libarchive reports unknown tar types as regular files too
            inode = inode_from(entry, fs::FileType::regular, name);
            read_file_data(reader, entry, *inode);
            break;
        }
        put(*parts, path, std::move(inode), name);
    }

    [[noreturn]] void fail_corrupt(archive* reader) const {
        throw build_failed("{} is truncated or corrupt: {}", context_, archive_message(reader));
    }

  private:
    template <typename... Args>
    [[noreturn]] void fail(std::string_view entry, fmt::format_string<Args...> format,
                           Args&&... args) const {
        throw bad_input("{} entry '{}' {}", context_, entry,
                        fmt::format(format, std::forward<Args>(args)...));
    }

    [[noreturn]] void fail_escape(std::string_view entry) const {
        fail(entry, "escapes the image root; the image is malformed or malicious");
    }

    [[noreturn]] void fail_symlink(std::string_view entry, const std::vector<std::string>& parts,
                                   std::size_t count, const fs::Inode& link) const {
        fail(entry,
             "goes through the symbolic link '{}' (-> {}); the image is malformed or "
             "malicious",
             join_parts(parts, count), link.symlink_target);
    }

    std::shared_ptr<fs::Inode> inode_from(archive_entry* entry, fs::FileType type,
                                          std::string_view name) const {
        auto inode = std::make_shared<fs::Inode>();
        inode->type = type;
        inode->mode = static_cast<std::uint32_t>(archive_entry_perm(entry)) & 07777U;
        inode->uid = owner_id(archive_entry_uid(entry), "uid", name);
        inode->gid = owner_id(archive_entry_gid(entry), "gid", name);
        inode->mtime = static_cast<std::int64_t>(archive_entry_mtime(entry));
        if (archive_entry_xattr_reset(entry) > 0) {
            const char* xattr_name = nullptr;
            const void* value = nullptr;
            std::size_t size = 0;
            while (archive_entry_xattr_next(entry, &xattr_name, &value, &size) == ARCHIVE_OK) {
                inode->xattrs[xattr_name] = std::string(static_cast<const char*>(value), size);
            }
        }
        return inode;
    }

    std::uint32_t owner_id(la_int64_t id, std::string_view what, std::string_view name) const {
        if (id < 0 || id > std::numeric_limits<std::uint32_t>::max()) {
            fail(name, "has the {} {}, which is out of range; the image is malformed", what, id);
        }
        return static_cast<std::uint32_t>(id);
    }

    static void take_metadata(fs::Inode& target, fs::Inode& source) {
        target.mode = source.mode;
        target.uid = source.uid;
        target.gid = source.gid;
        target.mtime = source.mtime;
        target.xattrs = std::move(source.xattrs);
    }

    void read_file_data(archive* reader, archive_entry* entry, fs::Inode& inode) {
        const la_int64_t size = archive_entry_size(entry);
        if (size <= 0) {
            return;
        }
        const auto expected = static_cast<std::uint64_t>(size);
        stats_.data_bytes += expected;
        if (reference_blob_ && archive_entry_sparse_count(entry) == 0) {
            // The tar reader has consumed the headers but not the data, so the position of the
            // (unfiltered) stream is where the data starts; libarchive skips it on the next
            // header, and the input still hashes every byte.
            inode.data.kind = fs::DataRef::Kind::blob;
            inode.data.path = blob_path_;
            inode.data.offset = static_cast<std::uint64_t>(archive_filter_bytes(reader, 0));
            inode.data.size = expected;
            return;
        }
        const std::uint64_t start = spill_.size();
        std::uint64_t written = 0;
        const void* block = nullptr;
        std::size_t length = 0;
        la_int64_t offset = 0;
        for (;;) {
            const int status = archive_read_data_block(reader, &block, &length, &offset);
            if (status == ARCHIVE_EOF) {
                break;
            }
            if (status < ARCHIVE_WARN) {
                fail_corrupt(reader);
            }
            const auto at = static_cast<std::uint64_t>(offset);
            if (at < written) {
                throw build_failed("{} is corrupt: the data of a sparse file overlaps itself",
                                   context_);
            }
            spill_.append_zeros(at - written); // a hole of a sparse file
            spill_.append(block, length);
            written = at + length;
        }
        if (written < expected) {
            spill_.append_zeros(expected - written); // a hole at the end
            written = expected;
        }
        stats_.spilled_bytes += written;
        inode.data.kind = fs::DataRef::Kind::spill;
        inode.data.offset = start;
        inode.data.size = written;
    }

    // The directory that holds the last component, creating missing parents (0755, root) and
    // replacing non-directories in the way, as an upper layer's directory would hide them.
    fs::Inode& parent_of(const std::vector<std::string>& parts, std::int64_t mtime,
                         std::string_view entry) {
        fs::Inode* current = &tree_.root();
        std::string path;
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            if (i > 0) {
                path += '/';
            }
            path += parts[i];
            auto found = current->children.find(parts[i]);
            if (found == current->children.end()) {
                found = current->children.emplace(parts[i], fs::make_directory(0755, mtime)).first;
                added_.insert(path);
            } else if (found->second->is_symlink()) {
                fail_symlink(entry, parts, i + 1, *found->second);
            } else if (!found->second->is_directory()) {
                found->second = fs::make_directory(0755, mtime);
                added_.insert(path);
            }
            current = found->second.get();
        }
        return *current;
    }

    // The existing directory made of the first `count` parts, or nullptr when there is none.
    fs::Inode* existing_directory(const std::vector<std::string>& parts, std::size_t count,
                                  std::string_view entry) const {
        fs::Inode* current = &tree_.root();
        for (std::size_t i = 0; i < count; ++i) {
            const auto found = current->children.find(parts[i]);
            if (found == current->children.end()) {
                return nullptr;
            }
            if (found->second->is_symlink()) {
                fail_symlink(entry, parts, i + 1, *found->second);
            }
            if (!found->second->is_directory()) {
                return nullptr;
            }
            current = found->second.get();
        }
        return current;
    }

    void put(const std::vector<std::string>& parts, const std::string& path,
             std::shared_ptr<fs::Inode> inode, std::string_view entry) {
        fs::Inode& parent = parent_of(parts, inode->mtime, entry);
        auto& slot = parent.children[parts.back()];
        if (inode->is_directory() && slot && slot->is_directory()) {
            // A directory over a directory keeps the lower children and takes the new metadata.
            take_metadata(*slot, *inode);
        } else {
            // Anything else replaces what was there, a whole directory subtree included. A new
            // Inode, never an edit, so that hard links to the old file keep the old content.
            slot = std::move(inode);
        }
        added_.insert(path);
    }

    void hard_link(const std::vector<std::string>& parts, const std::string& path,
                   std::string_view entry, const std::string& link, std::int64_t mtime) {
        const auto target_parts = normalize_entry_path(link);
        if (!target_parts) {
            fail(entry,
                 "is a hard link to '{}', which escapes the image root; the image is "
                 "malformed or malicious",
                 link);
        }
        fs::Inode* directory =
            target_parts->empty()
                ? nullptr
                : existing_directory(*target_parts, target_parts->size() - 1, entry);
        std::shared_ptr<fs::Inode> target;
        if (directory != nullptr) {
            const auto found = directory->children.find(target_parts->back());
            if (found != directory->children.end()) {
                target = found->second;
            }
        }
        if (!target) {
            fail(entry,
                 "is a hard link to '{}', which does not exist in the image; the image is "
                 "malformed",
                 link);
        }
        if (target->is_directory()) {
            fail(entry, "is a hard link to the directory '{}'; the image is malformed", link);
        }
        if (join_parts(*target_parts, target_parts->size()) == path) {
            return; // a link to itself changes nothing
        }
        ++stats_.hard_links;
        fs::Inode& parent = parent_of(parts, mtime, entry);
        parent.children[parts.back()] = std::move(target);
        added_.insert(path);
    }

    void whiteout(const std::vector<std::string>& parts, std::string_view entry) {
        const std::string& marker = parts.back();
        const std::size_t parent_count = parts.size() - 1;
        if (marker == k_opaque_marker) {
            fs::Inode* directory = existing_directory(parts, parent_count, entry);
            if (directory != nullptr) {
                prune_lower(*directory, join_parts(parts, parent_count));
                ++stats_.opaque_directories;
            }
            return;
        }
        if (marker.starts_with(k_aufs_metadata_prefix)) {
            return; // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs), not a deletion
        }
        const std::string_view target = std::string_view(marker).substr(k_whiteout_prefix.size());
        if (target.empty()) {
            fail(entry, "is a whiteout that names no file; the image is malformed");
        }
        if (target == "." || target == "..") {
            fail_escape(entry);
        }
        fs::Inode* directory = existing_directory(parts, parent_count, entry);
        if (directory == nullptr) {
            return;
        }
        std::string path = join_parts(parts, parent_count);
        path += path.empty() ? "" : "/";
        path += target;
        if (added_.contains(path)) {
            return; // the OCI spec: a whiteout hides lower layers only, never its own layer
        }
        const auto found = directory->children.find(target);
        if (found != directory->children.end()) {
            directory->children.erase(found);
            ++stats_.whiteouts;
        }
    }

    // Removes every child of `directory` (recursively) that the current layer did not put there.
    void prune_lower(fs::Inode& directory, const std::string& path) {
        for (auto it = directory.children.begin(); it != directory.children.end();) {
            const std::string child = path.empty() ? it->first : path + "/" + it->first;
            if (!added_.contains(child)) {
                it = directory.children.erase(it);
                continue;
            }
            if (it->second->is_directory()) {
                prune_lower(*it->second, child);
            }
            ++it;
        }
    }

    fs::Tree& tree_;
    fs::SpillFile& spill_;
    std::string context_;
    MergeStats& stats_;
    bool reference_blob_ = false;
    std::filesystem::path blob_path_;
    std::unordered_set<std::string> added_;
};

bool is_gzip_file(const std::filesystem::path& path) {
    const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return fd.valid() && LayerInput::is_gzip(fd.get());
}

// How apply_tar_layer() reads a layer.
struct TarSource {
    std::filesystem::path file;  // what is read: the layer, or its unpacked copy
    std::string digest;          // what the bytes read must hash to; empty: not checked
    std::filesystem::path refer; // file data stays in this file at the tar's offsets (no copy)
    BlobWriter* tee = nullptr;   // the inflated tar is written here too
    std::uint64_t progress_size = 0;
    LayerInput::Access access = LayerInput::Access::read;
};

LayerStats apply_tar_source(const Layer& layer, const TarSource& source, std::string_view image,
                            const std::string& context, fs::Tree& tree, fs::SpillFile& spill,
                            const MergeOptions& options, std::uint64_t base, std::uint64_t total) {
    LayerStats result;
    result.layer = layer.name();
    LayerInput input(source.file, context, options.progress, base, total, source.tee,
                     source.progress_size, source.access);
    auto reader = new_tar_reader();
    LayerMerger merger(tree, spill, context, result.stats);
    if (archive_read_open(reader.get(), &input, nullptr, &LayerInput::read, nullptr) !=
        ARCHIVE_OK) {
        input.rethrow_if_failed();
        merger.fail_corrupt(reader.get());
    }
    archive_entry* entry = nullptr;
    for (bool first = true;; first = false) {
        const int status = archive_read_next_header(reader.get(), &entry);
        if (status == ARCHIVE_EOF) {
            break;
        }
        if (status < ARCHIVE_WARN) {
            input.rethrow_if_failed();
            merger.fail_corrupt(reader.get());
        }
        if (first && archive_filter_count(reader.get()) == 1 &&
            archive_filter_code(reader.get(), 0) == ARCHIVE_FILTER_NONE) {
            // libarchive sees a plain tar: its offsets are those of the file, or of the tee.
            if (!source.refer.empty()) {
                merger.reference_blob(source.refer);
            } else if (options.uncompressed_data == UncompressedData::reference_blob &&
                       !input.inflated_here()) {
                merger.reference_blob(std::filesystem::absolute(source.file));
            }
        }
        merger.apply(reader.get(), entry);
    }
    input.rethrow_if_failed();
    input.drain();
    result.stats.input_bytes = input.consumed();
    result.digest = input.digest();
    if (!source.digest.empty() && result.digest != source.digest) {
        throw digest_mismatch(image.empty() ? layer.path.string() : std::string(image),
                              source.digest, "layer", result.digest);
    }
    return result;
}

// A gzip layer whose unpacked copy is in the cache: the copy is read as a plain tar (checked
// against the diff_id) and file data stays in it. A copy that turns out corrupt is removed.
LayerStats apply_unpacked_copy(const Layer& layer, const BlobCache::Held& copy,
                               std::string_view image, const std::string& context,
                               fs::Tree& tree, fs::SpillFile& spill, const MergeOptions& options,
                               std::uint64_t base, std::uint64_t total) {
    const TarSource source{copy.path, {}, copy.path, nullptr, layer.size,
                           LayerInput::Access::map};
    std::error_code ignored;
    try {
        auto result =
            apply_tar_source(layer, source, image, context, tree, spill, options, base, total);
        if (result.digest != layer.diff_id) {
            std::filesystem::remove(copy.path, ignored);
            throw build_failed("{}: its unpacked copy in the cache, {}, is corrupt: it hashes to "
                               "{}, not to the layer's diff_id {}; it is now removed: run the "
                               "build again",
                               context, copy.path.string(), result.digest, layer.diff_id);
        }
        tree.keep_alive(copy.lock);
        result.stats.input_bytes = layer.size;
        result.stats.cached_layers = 1;
        result.digest = layer.digest;
        return result;
    } catch (const Error& error) {
        if (error.code() != ExitCode::build_failed || !std::filesystem::exists(copy.path)) {
            throw;
        }
        std::filesystem::remove(copy.path, ignored);
        throw build_failed("{}; it was read from its unpacked copy in the cache, {}, which is now "
                           "removed: run the build again",
                           error.what(), copy.path.string());
    }
}

// A gzip layer not unpacked yet: inflated as usual, and the tar written to the cache on the
// way. File data refers to the copy's final path, which it has before the tree is used.
LayerStats unpack_layer(const Layer& layer, const BlobCache& store, BlobCache::Lock lock,
                        std::string_view image, const std::string& context, fs::Tree& tree,
                        fs::SpillFile& spill, const MergeOptions& options, std::uint64_t base,
                        std::uint64_t total) {
    BlobWriter writer(store, layer.diff_id, std::nullopt);
    writer.restart(); // a partial copy is never resumed: the inflate starts at the beginning
    const std::filesystem::path final_path = store.blob_path(layer.diff_id);
    const TarSource source{layer.path, layer.digest, final_path, &writer};
    LayerStats result;
    try {
        result = apply_tar_source(layer, source, image, context, tree, spill, options, base,
                                  total);
        // Checked against the diff_id; not synced, because every read checks it again.
        writer.commit(false);
    } catch (const BlobCorrupt& corrupt) {
        throw build_failed("{}: its uncompressed tar hashes to {}, but the image config lists "
                           "the diff_id {}; the image is corrupt, copy or push it again",
                           context, corrupt.actual(), layer.diff_id);
    } catch (...) {
        writer.discard();
        throw;
    }
    lock.make_shared();
    if (!store.find(layer.diff_id)) {
        throw build_failed("{}: its unpacked copy {} was removed from the cache while it was "
                           "written (by `edgeforge cache prune`?); run the build again",
                           context, final_path.string());
    }
    tree.keep_alive(std::make_shared<BlobCache::Lock>(std::move(lock)));
    result.stats.unpacked_layers = 1;
    return result;
}

bool unpackable(const Layer& layer, const MergeOptions& options) {
    return !options.unpacked_layers.empty() && layer.kind == LayerKind::tar &&
           !layer.diff_id.empty() && is_gzip_file(layer.path);
}

// Unpacks the gzip layers above the one being merged on another thread: one gzip stream
// inflates on one core only, so a multi-layer image merges faster with a second stream going.
// Best effort: a layer it cannot unpack (corrupt, or locked by another process) is left to the
// merge, which unpacks it itself and reports what is wrong. The merge waits for a layer this
// thread is writing through the copy's lock (BlobCache::hold()).
class UnpackAhead {
  public:
    UnpackAhead(std::vector<const Layer*> layers, const std::filesystem::path& cache_dir)
        : layers_(std::move(layers)), store_(cache_dir, BlobStore::layers),
          thread_([this] { run(); }) {}
    ~UnpackAhead() {
        stop_ = true;
        thread_.join();
    }
    UnpackAhead(const UnpackAhead&) = delete;
    UnpackAhead& operator=(const UnpackAhead&) = delete;

  private:
    void run() {
        for (const Layer* layer : layers_) {
            if (stop_) {
                return;
            }
            try {
                unpack(*layer);
            } catch (...) {
                // The merge meets the same problem when it reaches the layer, and says so.
            }
        }
    }

    void unpack(const Layer& layer) {
        const auto lock = store_.try_lock(layer.diff_id);
        if (!lock || store_.find(layer.diff_id)) {
            return;
        }
        const FileDescriptor fd(::open(layer.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) {
            return;
        }
        BlobWriter writer(store_, layer.diff_id, std::nullopt);
        writer.restart();
        util::Sha256 stored;
        util::BackgroundReader reader(
            [&](char* data, std::size_t capacity) {
                const std::size_t got = util::read_some(fd.get(), data, capacity);
                stored.update(data, got);
                return got;
            },
            util::BackgroundReader::Decode::gzip);
        for (std::string_view block = reader.next(); !block.empty(); block = reader.next()) {
            if (stop_) {
                writer.discard();
                return;
            }
            writer.write(block.data(), block.size());
        }
        if (!reader.error().empty() ||
            (!layer.digest.empty() && "sha256:" + stored.finish_hex() != layer.digest)) {
            writer.discard();
            return;
        }
        writer.commit(false); // throws (and removes the file) when it is not the diff_id
    }

    std::vector<const Layer*> layers_;
    BlobCache store_;
    std::atomic<bool> stop_{false};
    std::thread thread_; // last: started once the rest is ready
};

LayerStats apply_tar_layer(const Layer& layer, std::string_view image, fs::Tree& tree,
                           fs::SpillFile& spill, const MergeOptions& options, std::uint64_t base,
                           std::uint64_t total) {
    const std::string context = image.empty()
                                    ? fmt::format("layer {}", layer.name())
                                    : fmt::format("image {}: layer {}", image, layer.name());
    if (unpackable(layer, options)) {
        const BlobCache store(options.unpacked_layers, BlobStore::layers);
        for (;;) {
            if (const auto copy = store.hold(layer.diff_id)) {
                return apply_unpacked_copy(layer, *copy, image, context, tree, spill, options,
                                           base, total);
            }
            auto lock = store.lock(layer.diff_id); // one process unpacks, the others wait
            if (!store.find(layer.diff_id)) {
                return unpack_layer(layer, store, std::move(lock), image, context, tree, spill,
                                    options, base, total);
            }
        }
    }
    const TarSource source{layer.path, layer.digest};
    return apply_tar_source(layer, source, image, context, tree, spill, options, base, total);
}

// Merges a host directory: lstat for metadata, file data referenced in place.
class DirectoryMerger {
  public:
    DirectoryMerger(fs::Tree& tree, const DirectoryOptions& options, MergeStats& stats)
        : tree_(tree), options_(options), stats_(stats) {}

    void merge(const std::filesystem::path& root) {
        const auto absolute = std::filesystem::absolute(root);
        struct stat info {};
        // The root itself may be a symbolic link to the directory (dir:/srv/current).
        if (::stat(absolute.c_str(), &info) != 0) {
            throw bad_input("cannot read {}: {}", absolute.string(), std::strerror(errno));
        }
        if (!S_ISDIR(info.st_mode)) {
            throw bad_input("{} is not a directory", absolute.string());
        }
        if (options_.existing_directories == ExistingDirectories::take_metadata) {
            apply_metadata(tree_.root(), info, absolute);
        }
        merge_directory(absolute, tree_.root(), "");
    }

  private:
    static struct stat stat_path(const std::filesystem::path& path) {
        struct stat info {};
        if (::lstat(path.c_str(), &info) != 0) {
            throw bad_input("cannot read {}: {}", path.string(), std::strerror(errno));
        }
        return info;
    }

    [[noreturn]] static void fail_unreadable(const std::filesystem::path& path, int error) {
        throw bad_input("cannot read {}: {}{}", path.string(), std::strerror(error),
                        error == EACCES ? "; edgeforge runs without root, so everything it puts "
                                          "into the image must be readable by the user running it"
                                        : "");
    }

    std::vector<std::string> list(const std::filesystem::path& directory) const {
        std::unique_ptr<DIR, DirectoryCloser> handle(::opendir(directory.c_str()));
        if (!handle) {
            fail_unreadable(directory, errno);
        }
        std::vector<std::string> names;
        errno = 0;
        while (const dirent* item = ::readdir(handle.get())) {
            const std::string_view name = item->d_name;
            if (name != "." && name != "..") {
                names.emplace_back(name);
            }
        }
        if (errno != 0) {
            fail_unreadable(directory, errno);
        }
        std::sort(names.begin(), names.end());
        return names;
    }

    void apply_metadata(fs::Inode& inode, const struct stat& info,
                        const std::filesystem::path& path) const {
        inode.mode = static_cast<std::uint32_t>(info.st_mode) & 07777U;
        inode.uid = options_.ownership == Ownership::root ? 0 : info.st_uid;
        inode.gid = options_.ownership == Ownership::root ? 0 : info.st_gid;
        inode.mtime = static_cast<std::int64_t>(info.st_mtim.tv_sec);
        inode.xattrs.clear();
        if (options_.xattrs == HostXattrs::keep) {
            read_xattrs(path, inode);
        }
    }

    static void read_xattrs(const std::filesystem::path& path, fs::Inode& inode) {
        const ssize_t length = ::llistxattr(path.c_str(), nullptr, 0);
        if (length <= 0) {
            return; // none, or a file system without extended attributes
        }
        std::string names(static_cast<std::size_t>(length), '\0');
        const ssize_t got = ::llistxattr(path.c_str(), names.data(), names.size());
        if (got <= 0) {
            return;
        }
        names.resize(static_cast<std::size_t>(got));
        for (std::size_t start = 0; start < names.size();) {
            const std::string name = names.c_str() + start;
            start += name.size() + 1;
            if (name.empty() || name == "security.selinux") {
                continue; // a label of the build host, not part of the image
            }
            const ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
            if (size < 0) {
                continue;
            }
            std::string value(static_cast<std::size_t>(size), '\0');
            const ssize_t read =
                ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
            if (read >= 0) {
                value.resize(static_cast<std::size_t>(read));
                inode.xattrs[name] = std::move(value);
            }
        }
    }

    std::shared_ptr<fs::Inode> make_inode(const std::filesystem::path& path,
                                          const struct stat& info) {
        if (!S_ISDIR(info.st_mode) && info.st_nlink > 1) {
            const auto found = links_.find({info.st_dev, info.st_ino});
            if (found != links_.end()) {
                ++stats_.hard_links;
                return found->second;
            }
        }
        auto inode = std::make_shared<fs::Inode>();
        apply_metadata(*inode, info, path);
        switch (info.st_mode & S_IFMT) {
        case S_IFREG: {
            inode->type = fs::FileType::regular;
            // Opened once now so that an unreadable file is reported before anything is built.
            const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
            if (fd.get() < 0) {
                fail_unreadable(path, errno);
            }
            const auto size = static_cast<std::uint64_t>(info.st_size);
            if (size > 0) {
                inode->data.kind = fs::DataRef::Kind::host_file;
                inode->data.path = path;
                inode->data.size = size;
            }
            stats_.data_bytes += size;
            break;
        }
        case S_IFLNK: {
            inode->type = fs::FileType::symlink;
            std::string target(static_cast<std::size_t>(info.st_size) + 1, '\0');
            const ssize_t length = ::readlink(path.c_str(), target.data(), target.size());
            if (length < 0) {
                fail_unreadable(path, errno);
            }
            target.resize(static_cast<std::size_t>(length));
            inode->symlink_target = std::move(target);
            inode->mode = 0777;
            break;
        }
        case S_IFCHR:
        case S_IFBLK:
            inode->type =
                S_ISCHR(info.st_mode) ? fs::FileType::char_device : fs::FileType::block_device;
            inode->rdev = {major(info.st_rdev), minor(info.st_rdev)};
            break;
        case S_IFIFO:
            inode->type = fs::FileType::fifo;
            break;
        default:
            inode->type = fs::FileType::socket;
            break;
        }
        if (!S_ISDIR(info.st_mode) && info.st_nlink > 1) {
            links_.emplace(std::make_pair(info.st_dev, info.st_ino), inode);
        }
        return inode;
    }

    void merge_directory(const std::filesystem::path& host, fs::Inode& target,
                         const std::string& tree_path) {
        for (const auto& name : list(host)) {
            ++stats_.entries;
            const auto path = host / name;
            const std::string child_path = tree_path + "/" + name;
            const auto info = stat_path(path);
            if (!S_ISDIR(info.st_mode)) {
                auto inode = make_inode(path, info);
                target.children.insert_or_assign(name, std::move(inode));
                continue;
            }
            const auto found = target.children.find(name);
            fs::Inode* directory = found == target.children.end() ? nullptr : found->second.get();
            if (directory != nullptr && directory->is_symlink()) {
                throw bad_input("{}: the image has a symbolic link at {} (-> {}), so this "
                                "directory cannot be merged there; put its files under the "
                                "link's target instead",
                                path.string(), child_path, directory->symlink_target);
            }
            if (directory == nullptr || !directory->is_directory()) {
                auto created = fs::make_directory(0755, 0);
                apply_metadata(*created, info, path);
                directory = created.get();
                target.children.insert_or_assign(name, std::move(created));
            } else if (options_.existing_directories == ExistingDirectories::take_metadata) {
                apply_metadata(*directory, info, path);
            }
            merge_directory(path, *directory, child_path);
        }
    }

    fs::Tree& tree_;
    const DirectoryOptions& options_;
    MergeStats& stats_;
    std::map<std::pair<dev_t, ino_t>, std::shared_ptr<fs::Inode>> links_;
};

} // namespace

MergeStats& MergeStats::operator+=(const MergeStats& other) {
    entries += other.entries;
    whiteouts += other.whiteouts;
    opaque_directories += other.opaque_directories;
    hard_links += other.hard_links;
    data_bytes += other.data_bytes;
    spilled_bytes += other.spilled_bytes;
    input_bytes += other.input_bytes;
    cached_layers += other.cached_layers;
    unpacked_layers += other.unpacked_layers;
    return *this;
}

LayerStats apply_layer(const Layer& layer, std::string_view image, fs::Tree& tree,
                       fs::SpillFile& spill, const MergeOptions& options) {
    if (layer.kind == LayerKind::directory) {
        LayerStats result;
        result.layer = layer.name();
        result.stats = apply_directory(layer.path, tree);
        return result;
    }
    auto result = apply_tar_layer(layer, image, tree, spill, options, 0, layer.size);
    spill.flush();
    return result;
}

MergeResult merge_layers(const Image& image, fs::Tree& tree, fs::SpillFile& spill,
                         const MergeOptions& options) {
    MergeResult result;
    const std::uint64_t total = image.layer_bytes();
    std::uint64_t base = 0;
    bool references_blobs = false;
    std::optional<UnpackAhead> ahead;
    if (std::thread::hardware_concurrency() > 1) {
        std::vector<const Layer*> later;
        for (std::size_t i = 1; i < image.layers.size(); ++i) {
            if (unpackable(image.layers[i], options)) {
                later.push_back(&image.layers[i]);
            }
        }
        if (!later.empty()) {
            ahead.emplace(std::move(later), options.unpacked_layers);
        }
    }
    for (const auto& layer : image.layers) {
        LayerStats stats;
        if (layer.kind == LayerKind::directory) {
            stats.layer = layer.name();
            stats.stats = apply_directory(layer.path, tree);
        } else {
            stats = apply_tar_layer(layer, image.name, tree, spill, options, base, total);
            // Files left in the layer file itself (an uncompressed layer); those in unpacked
            // copies keep their copy locked on their own.
            const bool in_copy = stats.stats.cached_layers + stats.stats.unpacked_layers > 0;
            references_blobs = references_blobs ||
                               (!in_copy && stats.stats.spilled_bytes < stats.stats.data_bytes);
        }
        base += layer.size;
        result.total += stats.stats;
        result.layers.push_back(std::move(stats));
    }
    spill.flush();
    if (references_blobs && image.storage) {
        tree.keep_alive(image.storage); // files point into the extracted archive
    }
    return result;
}

MergeStats apply_directory(const std::filesystem::path& directory, fs::Tree& tree,
                           const DirectoryOptions& options) {
    MergeStats stats;
    DirectoryMerger(tree, options, stats).merge(directory);
    return stats;
}

} // namespace edgeforge::oci
