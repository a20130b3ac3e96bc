// Merges image layers and host directories into one fs::Tree, applying OCI whiteouts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fs/tree.h"
#include "oci/image.h"

namespace edgeforge::oci {

// Counts for progress and --verbose output.
struct MergeStats {
    std::uint64_t entries = 0;            // tar entries or host directory entries read
    std::uint64_t whiteouts = 0;          // ".wh.NAME" markers that removed something
    std::uint64_t opaque_directories = 0; // ".wh..wh..opq" markers applied
    std::uint64_t hard_links = 0;
    std::uint64_t data_bytes = 0;    // uncompressed bytes of regular files added
    std::uint64_t spilled_bytes = 0; // of those, bytes copied into the SpillFile
    // Layer bytes merged, as stored (compressed); a layer read from its unpacked copy counts
    // its stored size, so throughputs compare.
    std::uint64_t input_bytes = 0;
    std::uint64_t cached_layers = 0;   // layers read from their unpacked copy in the cache
    std::uint64_t unpacked_layers = 0; // layers unpacked into the cache by this merge

    MergeStats& operator+=(const MergeStats& other);
};

// The check of an unpacked copy against its diff_id, still running on a thread of its own
// (MergeOptions::defer_copy_checks).
class DeferredCopyCheck {
  public:
    virtual ~DeferredCopyCheck() = default;
    // Waits for the digest. Throws edgeforge::Error (build failed, naming the layer and the
    // copy, which is removed) when it is not the diff_id. Once is enough; later calls do nothing.
    virtual void finish() = 0;
};

struct LayerStats {
    std::string layer;  // Layer::name(): the digest, or the path
    std::string digest; // "sha256:<hex>" of the bytes read; empty for directories
    MergeStats stats;
    std::shared_ptr<DeferredCopyCheck> pending_check; // set only with defer_copy_checks
};

struct MergeResult {
    MergeStats total;
    std::vector<LayerStats> layers;
};

// Called as layer bytes are read: bytes consumed so far (as stored, i.e. compressed) and the
// total of the whole merge, so a progress bar can be drawn.
using MergeProgress = std::function<void(std::uint64_t done, std::uint64_t total)>;

// What happens to the file data of uncompressed tar layers.
enum class UncompressedData {
    reference_blob, // files point into the layer file (DataRef::Kind::blob): nothing is copied
    copy_to_spill,  // files are copied into the SpillFile like those of compressed layers
};

struct MergeOptions {
    MergeProgress progress;
    UncompressedData uncompressed_data = UncompressedData::reference_blob;
    // A cache directory whose BlobStore::layers keeps gzip layers uncompressed, named by their
    // diff_id. The first merge of a layer writes the copy while it inflates (instead of copying
    // file data to the spill file); later merges read the copy, checked against the diff_id,
    // without inflating, and its files stay in it. Empty: gzip layers are inflated every time.
    // Layers without a diff_id (tar: sources, images without a config) are not kept.
    // The copies are optional: when the cache cannot take one (full, read-only, over quota),
    // the layer is merged from the layer file instead (file data to the spill file), no further
    // copies are written by this merge, and `copies_unwritable` is called once with the reason.
    std::filesystem::path unpacked_layers;
    bool write_unpacked_layers = true; // false: copies already there are read, none are written
    std::function<void(const std::string& reason)> copies_unwritable;
    // The directory the layer is applied under ({"opt", "spectrocloud"}: a tar unpacked there,
    // as `tar -C /opt/spectrocloud -xf` would), instead of the root. Entry names and hard link
    // targets are checked as for any layer first, so nothing can leave that directory.
    std::vector<std::string> under;
    // How messages name what is merged ("local UI archive FILE"); empty: "image NAME: layer ID".
    std::string context;
    // An unpacked copy's digest is checked while the caller goes on (it is hashed on a thread of
    // its own, which otherwise decides how long a rebuild's merge takes): each such layer's
    // LayerStats::pending_check must be finished before anything made from the tree is kept or
    // an error it may explain is reported. false: checked before merge_layers() returns.
    bool defer_copy_checks = false;
};

// Applies every layer of `image`, bottom to top, onto `tree`. Each layer is read once, as a
// stream (libarchive detects gzip/zstd/plain), its digest checked in the same pass. File data
// goes to `spill` (or stays in uncompressed layer files and unpacked copies, which the tree then
// keeps locked against `cache prune`); only metadata is kept in memory.
// OCI rules: ".wh.NAME" deletes NAME from lower layers; ".wh..wh..opq" hides every lower-layer
// child of its directory wherever it appears in the layer; later layers win; a directory over a
// directory keeps the lower children; missing parents are created (0755, root).
// Throws edgeforge::Error naming the image, the layer and the entry: bad_input for entries that
// escape the root, go through a symbolic link or link to nothing; build_failed for truncated or
// corrupt layers and layers that do not match their digest.
MergeResult merge_layers(const Image& image, fs::Tree& tree, fs::SpillFile& spill,
                         const MergeOptions& options = {});

// One tar layer onto `tree`; `image` names the image in messages ("" to leave it out). Progress
// counts this layer's bytes only.
LayerStats apply_layer(const Layer& layer, std::string_view image, fs::Tree& tree,
                       fs::SpillFile& spill, const MergeOptions& options = {});

// Who owns what a host directory adds.
enum class Ownership {
    keep, // the host's uid/gid (dir: sources, which were unpacked with their ownership)
    root, // root:root (overlays: the files belong to the system, not to whoever built it)
};

// What happens to the metadata of directories that are already in the tree.
enum class ExistingDirectories {
    take_metadata, // the host directory's mode, owner and mtime win, as a layer's would
    keep_metadata, // the image's stay (an overlay adding /etc/foo must not re-mode /etc)
};

enum class HostXattrs {
    keep, // extended attributes are copied (security.selinux, a host label, never is)
    drop, // none are (desktop tools leave user.* attributes on files)
};

struct DirectoryOptions {
    Ownership ownership = Ownership::keep;
    ExistingDirectories existing_directories = ExistingDirectories::take_metadata;
    HostXattrs xattrs = HostXattrs::keep;

    // The settings for the rootfs overlay directory of a build.
    static DirectoryOptions overlay() {
        return {Ownership::root, ExistingDirectories::keep_metadata, HostXattrs::drop};
    }
};

// Merges the host directory `directory` onto `tree` (a dir: source or an overlay), reading
// metadata with lstat and referring to file data in place (DataRef::Kind::host_file); nothing is
// copied. Hard links within the directory stay hard links. Files named ".wh.*" are ordinary
// files here. Throws edgeforge::Error (bad input) naming the path when something cannot be read
// or when a host directory would go through a symbolic link of the tree.
MergeStats apply_directory(const std::filesystem::path& directory, fs::Tree& tree,
                           const DirectoryOptions& options = {});

} // namespace edgeforge::oci
