// Merges image layers and host directories into one fs::Tree, applying OCI whiteouts.
#include "oci/merge.h"
#include "oci/layer_input.h"

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
#include <unordered_map>
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
using detail::LayerInput;

constexpr std::string_view k_whiteout_prefix = ".wh.";
constexpr std::string_view k_opaque_marker = ".wh..wh..opq";
constexpr std::string_view k_aufs_metadata_prefix = ".wh..wh.";

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


// Applies the entries of one tar layer to the tree. It remembers every path the current layer
// put in place, because an opaque marker hides only lower-layer children of its directory and
// may come after same-layer siblings that must survive.
class LayerMerger {
  public:
    LayerMerger(fs::Tree& tree, fs::SpillFile& spill, std::string context, MergeStats& stats)
        : tree_(tree), spill_(spill), context_(std::move(context)), stats_(stats) {}

    // Entries go below this directory (MergeOptions::under) instead of the root.
    void place_under(std::vector<std::string> prefix) { under_ = std::move(prefix); }

    // Files of an uncompressed layer can stay in the layer file at their offsets.
    void reference_blob(std::filesystem::path layer_file) {
        blob_path_ = std::move(layer_file);
        reference_blob_ = true;
    }

    void apply(archive* reader, archive_entry* entry) {
        ++stats_.entries;
        const std::string name = entry_pathname(entry);
        if (const auto problem = entry_name_problem(name)) {
            fail(name, "{}; the image is malformed or malicious", *problem);
        }
        auto parts = normalize_entry_path(name);
        if (!parts) {
            fail_escape(name);
        }
        parts->insert(parts->begin(), under_.begin(), under_.end());
        for (std::size_t i = 0; i + 1 < parts->size(); ++i) {
            if ((*parts)[i].starts_with(k_aufs_metadata_prefix)) {
                return; // inside AUFS bookkeeping (.wh..wh.plnk/), never part of the result
            }
            if ((*parts)[i].starts_with(k_whiteout_prefix)) {
                fail(name, "lies inside a whiteout marker; the image is malformed");
            }
        }
        const auto link = entry_hardlink(entry);
        if (link) {
            if (const auto problem = entry_name_problem(*link)) {
                fail(name, "is a hard link whose target {}; the image is malformed or malicious",
                     *problem);
            }
        }
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
        if (link) {
            hard_link(*parts, name, *link, archive_entry_mtime(entry));
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
            if (inode->symlink_target.size() >= k_max_entry_path) {
                fail(name, "is a symbolic link whose target is {} bytes long; Linux allows {} "
                     "(PATH_MAX); the image is malformed or malicious",
                     inode->symlink_target.size(), k_max_entry_path - 1);
            }
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
        put(*parts, std::move(inode), name);
    }

    [[noreturn]] void fail_corrupt(archive* reader) const {
        throw build_failed("{} is truncated or corrupt: {}", context_, archive_message(reader));
    }

  private:
    template <typename... Args>
    [[noreturn]] void fail(std::string_view entry, fmt::format_string<Args...> format,
                           Args&&... args) const {
        throw bad_input("{} entry '{}' {}", context_, shown_entry(entry),
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
    const std::shared_ptr<fs::Inode>& parent_of(const std::vector<std::string>& parts,
                                                std::int64_t mtime, std::string_view entry) {
        const std::shared_ptr<fs::Inode>* current = &tree_.root_ptr();
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            auto& children = (*current)->children;
            auto found = children.find(parts[i]);
            if (found == children.end()) {
                found = children.emplace(parts[i], fs::make_directory(0755, mtime)).first;
                mark_added(*current, parts[i]);
            } else if (found->second->is_symlink()) {
                fail_symlink(entry, parts, i + 1, *found->second);
            } else if (!found->second->is_directory()) {
                found->second = fs::make_directory(0755, mtime);
                mark_added(*current, parts[i]);
            }
            current = &found->second;
        }
        return *current;
    }

    // What the current layer put in place is remembered by directory and name, never by full
    // path (a deep path would cost memory quadratic in its length). The directories are held
    // so that no new directory can reuse the address of one removed meanwhile.
    void mark_added(const std::shared_ptr<fs::Inode>& directory, const std::string& name) {
        auto& entry = added_[directory.get()];
        entry.directory = directory;
        entry.names.insert(name);
    }

    bool was_added(const fs::Inode& directory, const std::string& name) const {
        const auto found = added_.find(&directory);
        return found != added_.end() && found->second.names.contains(name);
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

    void put(const std::vector<std::string>& parts, std::shared_ptr<fs::Inode> inode,
             std::string_view entry) {
        const auto& parent = parent_of(parts, inode->mtime, entry);
        auto& slot = parent->children[parts.back()];
        if (inode->is_directory() && slot && slot->is_directory()) {
            // A directory over a directory keeps the lower children and takes the new metadata.
            take_metadata(*slot, *inode);
        } else {
            // Anything else replaces what was there, a whole directory subtree included. A new
            // Inode, never an edit, so that hard links to the old file keep the old content.
            slot = std::move(inode);
        }
        mark_added(parent, parts.back());
    }

    void hard_link(const std::vector<std::string>& parts, std::string_view entry,
                   const std::string& link, std::int64_t mtime) {
        auto target_parts = normalize_entry_path(link);
        if (!target_parts) {
            fail(entry,
                 "is a hard link to '{}', which escapes the image root; the image is "
                 "malformed or malicious",
                 link);
        }
        target_parts->insert(target_parts->begin(), under_.begin(), under_.end());
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
        if (*target_parts == parts) {
            return; // a link to itself changes nothing
        }
        ++stats_.hard_links;
        const auto& parent = parent_of(parts, mtime, entry);
        parent->children[parts.back()] = std::move(target);
        mark_added(parent, parts.back());
    }

    void whiteout(const std::vector<std::string>& parts, std::string_view entry) {
        const std::string& marker = parts.back();
        const std::size_t parent_count = parts.size() - 1;
        if (marker == k_opaque_marker) {
            fs::Inode* directory = existing_directory(parts, parent_count, entry);
            if (directory != nullptr) {
                prune_lower(*directory);
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
        if (was_added(*directory, std::string(target))) {
            return; // the OCI spec: a whiteout hides lower layers only, never its own layer
        }
        const auto found = directory->children.find(target);
        if (found != directory->children.end()) {
            directory->children.erase(found);
            ++stats_.whiteouts;
        }
    }

    // Removes every child of `directory` (and of its subdirectories) that the current layer did
    // not put there. Iterative: the depth is the image's to choose.
    void prune_lower(fs::Inode& top) {
        std::vector<fs::Inode*> pending{&top};
        while (!pending.empty()) {
            fs::Inode& directory = *pending.back();
            pending.pop_back();
            for (auto it = directory.children.begin(); it != directory.children.end();) {
                if (!was_added(directory, it->first)) {
                    it = directory.children.erase(it);
                    continue;
                }
                if (it->second->is_directory()) {
                    pending.push_back(it->second.get());
                }
                ++it;
            }
        }
    }

    fs::Tree& tree_;
    fs::SpillFile& spill_;
    std::string context_;
    MergeStats& stats_;
    bool reference_blob_ = false;
    std::vector<std::string> under_;
    std::filesystem::path blob_path_;
    struct Added {
        std::shared_ptr<fs::Inode> directory;
        std::unordered_set<std::string> names;
    };
    std::unordered_map<const fs::Inode*, Added> added_;
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
                            const MergeOptions& options, std::uint64_t base, std::uint64_t total,
                            std::unique_ptr<LayerInput>* keep_input = nullptr) {
    LayerStats result;
    result.layer = layer.name();
    auto input = std::make_unique<LayerInput>(source.file, context, options.progress, base, total,
                                              source.tee, source.progress_size, source.access);
    auto reader = new_tar_reader();
    LayerMerger merger(tree, spill, context, result.stats);
    merger.place_under(options.under);
    if (archive_read_open(reader.get(), input.get(), nullptr, &LayerInput::read, nullptr) !=
        ARCHIVE_OK) {
        input->rethrow_if_failed();
        merger.fail_corrupt(reader.get());
    }
    archive_entry* entry = nullptr;
    for (bool first = true;; first = false) {
        const int status = archive_read_next_header(reader.get(), &entry);
        if (status == ARCHIVE_EOF) {
            break;
        }
        if (status < ARCHIVE_WARN) {
            input->rethrow_if_failed();
            merger.fail_corrupt(reader.get());
        }
        if (first && archive_filter_count(reader.get()) == 1 &&
            archive_filter_code(reader.get(), 0) == ARCHIVE_FILTER_NONE) {
            // libarchive sees a plain tar: its offsets are those of the file, or of the tee.
            if (!source.refer.empty()) {
                merger.reference_blob(source.refer);
            } else if (options.uncompressed_data == UncompressedData::reference_blob &&
                       !input->inflated_here()) {
                merger.reference_blob(std::filesystem::absolute(source.file));
            }
        }
        merger.apply(reader.get(), entry);
    }
    input->rethrow_if_failed();
    input->drain();
    result.stats.input_bytes = input->consumed();
    if (keep_input != nullptr) {
        *keep_input = std::move(input); // the caller reads its digest later
        return result;
    }
    result.digest = input->digest();
    if (!source.digest.empty() && result.digest != source.digest) {
        throw digest_mismatch(image.empty() ? layer.path.string() : std::string(image),
                              source.digest, "layer", result.digest);
    }
    // The diff_id the image config lists, in this same pass where possible: a plain tar's is
    // the digest of its bytes, a gzip or zstd layer's that of the stream inflated here. An
    // unpacked copy (`refer`) is checked by its caller, one written through a tee by the tee's
    // writer; xz and bzip2 layers, which libarchive inflates, take a second pass.
    if (!layer.diff_id.empty() && source.refer.empty() && source.tee == nullptr) {
        std::optional<std::string> uncompressed;
        if (input->inflated_here()) {
            uncompressed = input->inflated_digest();
        } else if (archive_filter_count(reader.get()) == 1) {
            uncompressed = result.digest;
        } else {
            uncompressed = decompressed_digest(source.file);
        }
        if (uncompressed != layer.diff_id) {
            throw build_failed("{}: its uncompressed tar hashes to {}, but the image config "
                               "lists the diff_id {}; the image is corrupt, copy or push it "
                               "again",
                               context, uncompressed.value_or("(unreadable)"), layer.diff_id);
        }
    }
    return result;
}

// An unpacked copy that does not hash to its diff_id: removed, and the build fails naming it.
Error corrupt_copy(const std::string& context, const std::filesystem::path& copy,
                   const std::string& digest, const std::string& diff_id) {
    std::error_code ignored;
    std::filesystem::remove(copy, ignored);
    return build_failed("{}: its unpacked copy in the cache, {}, is corrupt: it hashes to {}, not "
                        "to the layer's diff_id {}; it is now removed: run the build again",
                        context, copy.string(), digest, diff_id);
}

// MergeOptions::defer_copy_checks: the copy's hashing thread, joined when the caller asks.
class CopyCheck : public DeferredCopyCheck {
  public:
    CopyCheck(std::unique_ptr<LayerInput> input, std::string context, std::filesystem::path copy,
              std::string diff_id)
        : input_(std::move(input)), context_(std::move(context)), copy_(std::move(copy)),
          diff_id_(std::move(diff_id)) {}

    void finish() override {
        if (!input_) {
            return;
        }
        const std::string digest = input_->digest();
        input_.reset(); // unmapped
        if (digest != diff_id_) {
            throw corrupt_copy(context_, copy_, digest, diff_id_);
        }
    }

  private:
    std::unique_ptr<LayerInput> input_;
    std::string context_;
    std::filesystem::path copy_;
    std::string diff_id_;
};

// A gzip layer whose unpacked copy is in the cache: the copy is read as a plain tar (checked
// against the diff_id, now or, with defer_copy_checks, when the caller finishes the check) and
// file data stays in it. A copy that turns out corrupt is removed.
LayerStats apply_unpacked_copy(const Layer& layer, const BlobCache::Held& copy,
                               std::string_view image, const std::string& context,
                               fs::Tree& tree, fs::SpillFile& spill, const MergeOptions& options,
                               std::uint64_t base, std::uint64_t total) {
    const TarSource source{copy.path, {}, copy.path, nullptr, layer.size,
                           LayerInput::Access::map};
    std::error_code ignored;
    try {
        std::unique_ptr<LayerInput> hashing;
        auto result = apply_tar_source(layer, source, image, context, tree, spill, options, base,
                                       total, options.defer_copy_checks ? &hashing : nullptr);
        if (hashing) {
            result.pending_check =
                std::make_shared<CopyCheck>(std::move(hashing), context, copy.path, layer.diff_id);
        } else if (result.digest != layer.diff_id) {
            throw corrupt_copy(context, copy.path, result.digest, layer.diff_id);
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

// Whether this merge still writes unpacked copies: the first copy the cache cannot take (full,
// read-only, over quota) turns them off for the rest of the merge, with one warning.
struct CopyState {
    bool enabled = true;
};

LayerStats apply_tar_layer(const Layer& layer, std::string_view image, fs::Tree& tree,
                           fs::SpillFile& spill, const MergeOptions& options, std::uint64_t base,
                           std::uint64_t total, CopyState& copies) {
    const std::string context = !options.context.empty() ? options.context
                                : image.empty()
                                    ? fmt::format("layer {}", layer.name())
                                    : fmt::format("image {}: layer {}", image, layer.name());
    if (unpackable(layer, options)) {
        try {
            const BlobCache store(options.unpacked_layers, BlobStore::layers);
            for (;;) {
                if (const auto copy = store.hold(layer.diff_id)) {
                    return apply_unpacked_copy(layer, *copy, image, context, tree, spill,
                                               options, base, total);
                }
                if (!copies.enabled) {
                    break;
                }
                auto lock = store.lock(layer.diff_id); // one process unpacks, the others wait
                if (!store.find(layer.diff_id)) {
                    return unpack_layer(layer, store, std::move(lock), image, context, tree,
                                        spill, options, base, total);
                }
            }
        } catch (const WriteFailed& failure) {
            // The copy is optional. The entries merged so far refer to it; merging the whole
            // layer again from the layer file replaces every one of them (a layer applied over
            // its own partial application gives the same tree: its whiteouts and opaque
            // markers spare what the layer itself adds).
            if (copies.enabled && options.copies_unwritable) {
                options.copies_unwritable(failure.what());
            }
            copies.enabled = false;
        }
    }
    const TarSource source{layer.path, layer.digest};
    return apply_tar_source(layer, source, image, context, tree, spill, options, base, total);
}

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
    CopyState copies{options.write_unpacked_layers};
    auto result = apply_tar_layer(layer, image, tree, spill, options, 0, layer.size, copies);
    spill.flush();
    return result;
}

MergeResult merge_layers(const Image& image, fs::Tree& tree, fs::SpillFile& spill,
                         const MergeOptions& options) {
    MergeResult result;
    const std::uint64_t total = image.layer_bytes();
    std::uint64_t base = 0;
    bool references_blobs = false;
    CopyState copies{options.write_unpacked_layers};
    std::optional<UnpackAhead> ahead;
    if (std::thread::hardware_concurrency() > 1 && copies.enabled) {
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
    // A layer that fails after an earlier one's copy check was deferred: that check is
    // finished first, so that a corrupt copy (which may be the cause) is what gets reported.
    const auto finish_pending = [&] {
        for (const auto& done : result.layers) {
            if (done.pending_check) {
                done.pending_check->finish();
            }
        }
    };
    for (const auto& layer : image.layers) {
        try {
            LayerStats stats;
            if (layer.kind == LayerKind::directory) {
                stats.layer = layer.name();
                stats.stats = apply_directory(layer.path, tree);
            } else {
                stats =
                    apply_tar_layer(layer, image.name, tree, spill, options, base, total, copies);
                if (!copies.enabled && ahead) {
                    ahead.reset(); // it would meet the same full or read-only cache
                }
                // Files left in the layer file itself (an uncompressed layer); those in unpacked
                // copies keep their copy locked on their own.
                const bool in_copy = stats.stats.cached_layers + stats.stats.unpacked_layers > 0;
                references_blobs = references_blobs ||
                                   (!in_copy && stats.stats.spilled_bytes < stats.stats.data_bytes);
            }
            base += layer.size;
            result.total += stats.stats;
            result.layers.push_back(std::move(stats));
        } catch (const Error&) {
            finish_pending();
            throw;
        }
    }
    spill.flush();
    if (references_blobs && image.storage) {
        tree.keep_alive(image.storage); // files point into the extracted archive
    }
    return result;
}

} // namespace edgeforge::oci
