// Writes OCI image layouts: content-addressed blobs, tar+gzip layers from trees, index tags.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fs/tree.h"

namespace edgeforge::oci {

// A blob as manifests and indexes refer to it.
struct BlobDescriptor {
    std::string media_type;
    std::string digest; // "sha256:<hex>"
    std::uint64_t size = 0;
    std::map<std::string, std::string> annotations;

    nlohmann::json to_json() const;
};

// An OCI image layout directory being added to. Every blob is written under a temporary name
// and renamed to blobs/sha256/<hex>, and index.json is replaced atomically by commit(), so an
// interrupted write never leaves a corrupt blob or index: at worst unreferenced blobs. Opening
// an existing layout keeps its blobs and other tags.
class LayoutWriter {
  public:
    // Creates the directory and its oci-layout file when needed. Throws Error (bad input) when
    // the directory exists and is neither empty nor an OCI layout.
    explicit LayoutWriter(std::filesystem::path directory);

    const std::filesystem::path& directory() const { return directory_; }
    std::filesystem::path blob_path(std::string_view digest) const;

    // Adds the file's bytes as a blob: a hard link when the file is on the same file system,
    // else a copy. `digest` may be empty (it is computed); when given it is trusted, because the
    // caller verified it (open_image()/merge_layers() did). Blobs present already are kept.
    BlobDescriptor add_blob_file(const std::filesystem::path& file, std::string_view media_type,
                                 std::string_view digest = {});
    BlobDescriptor add_blob_bytes(std::string_view bytes, std::string_view media_type);
    // Moves a finished temporary file (in this layout's directory, see temporary_blob_path())
    // into place as the blob with `digest`.
    BlobDescriptor adopt_blob(const std::filesystem::path& temporary, std::string_view media_type,
                              std::string_view digest, std::uint64_t size);
    // A fresh temporary name inside the layout, on the same file system as the blobs.
    std::filesystem::path temporary_blob_path() const;

    // Points `tag` at `manifest` in index.json, replacing the entry that had the tag.
    void tag(const BlobDescriptor& manifest, std::string_view tag);
    // Writes index.json atomically.
    void commit();

  private:
    std::filesystem::path directory_;
    nlohmann::json index_;
};

struct LayerBlob {
    BlobDescriptor descriptor; // tar+gzip, in the layout
    std::string diff_id;       // sha256 of the uncompressed tar
};

struct LayerWriteOptions {
    // With a value, every mtime later than it is clamped to it (SOURCE_DATE_EPOCH semantics).
    std::optional<std::int64_t> clamp_mtime;
    int gzip_level = 6;
};

// Writes `tree` (root excluded) as a reproducible tar+gzip layer blob into `layout`: PAX
// headers, names sorted, hard links kept (one Inode under several names), xattrs as
// SCHILY.xattr records, numeric ownership, no atime/ctime, gzip header without a timestamp.
// Throws Error (build failed) naming the entry when its data cannot be read.
LayerBlob write_tree_layer(const fs::Tree& tree, const fs::SpillFile& spill, LayoutWriter& layout,
                           const LayerWriteOptions& options = {});

// The sha256 of a layer's uncompressed tar stream (its diff_id), whatever its compression.
std::string uncompressed_digest(const std::filesystem::path& layer);

} // namespace edgeforge::oci
