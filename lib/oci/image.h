// Image sources (oci:, oci-archive:, docker-archive:, dir:, tar:, docker://) opened as one Image.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/arch.h"
#include "base/error.h"
#include "oci/descriptor.h"
#include "oci/reference.h"
#include "oci/registry.h"

namespace edgeforge::oci {

namespace media_type {
inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_config = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view oci_layer_tar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view oci_layer_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view oci_layer_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view docker_manifest_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view docker_manifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_config = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view docker_layer_gzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
} // namespace media_type

bool is_index_media_type(std::string_view type);    // OCI index or Docker manifest list
bool is_manifest_media_type(std::string_view type); // OCI manifest or Docker manifest v2
// Every tar layer type edgeforge can unpack: OCI tar, tar+gzip, tar+zstd (and their
// nondistributable twins), Docker rootfs.diff.tar(.gzip) and foreign layers.
bool is_layer_media_type(std::string_view type);

enum class LayerKind {
    tar,       // a tar stream, plain or compressed (libarchive detects the compression)
    directory, // a host directory merged as it is (dir: sources)
};

struct Layer {
    LayerKind kind = LayerKind::tar;
    std::filesystem::path path; // the blob, the tarball or the directory
    std::string media_type;     // empty for tar: and dir: sources
    // "sha256:<hex>" the stored bytes must hash to; merge_layers() checks it while it reads the
    // layer (a separate pass would read every layer twice). Empty when the source records no
    // digest (tar:, dir:, compressed layers of old docker-archive files).
    std::string digest;
    std::uint64_t size = 0; // bytes stored (compressed size); 0 for directories
    // "sha256:<hex>" of the uncompressed tar, from the image config's rootfs.diff_ids; empty
    // when the source has no config or the config does not list one per layer.
    std::string diff_id;

    // How messages name the layer: its digest, else its path.
    std::string name() const;
};


// An image ready to be merged: its layers bottom to top and its metadata. Archives are
// extracted into a directory that lives as long as the Image (and any Tree merged from it).
struct Image {
    ImageReference reference;
    std::string name;            // the reference as typed, for messages: "oci:/images/base:latest"
    std::string description;     // "oci:/images/base:latest (linux/amd64, 2 layers, 58.3 MiB)"
    std::string manifest_digest; // empty for tar:, dir: and docker-archive sources
    std::string config_digest;   // empty when there is no config or it has no digest
    // The stored manifest and config blobs (OCI layouts, archives, the registry blob cache):
    // content bundles copy them byte for byte so that the digests stay valid. Empty where the
    // source has no such file (tar:, dir:; docker-archive: has no manifest).
    std::filesystem::path manifest_path;
    std::string manifest_media_type;
    std::filesystem::path config_path;
    nlohmann::json config;       // the image configuration; null for tar: and dir: sources
    Platform platform;           // empty for tar: and dir: sources (no metadata to check)
    std::vector<Layer> layers;
    // The extracted archive (oci-archive:, docker-archive:), removed when the last user goes.
    std::shared_ptr<const void> storage;

    std::uint64_t layer_bytes() const;
};

struct OpenOptions {
    // Where oci-archive: and docker-archive: files are extracted (into a fresh subdirectory that
    // is removed with the Image). Defaults to the system temporary directory.
    std::filesystem::path work_dir;
    // Registry images: their blobs go to <cache_dir>/blobs (see BlobCache). Empty means
    // default_cache_dir().
    std::filesystem::path cache_dir;
    // Registry images: credentials, CA certificates, insecure hosts, timeouts.
    RegistryOptions registry;
    // Registry images: fetch the manifest and config only, not the layers (inspect); the
    // layers' paths then name cache entries that may not exist.
    bool metadata_only = false;
    // Registry images: one line per pull step ("pulling 3 layers (58.3 MiB) ..."), for people.
    std::function<void(const std::string&)> on_progress;
    // Registry images: bytes of layers downloaded so far out of `total`, while they download.
    std::function<void(std::uint64_t done, std::uint64_t total)> on_pull_bytes;
};

// ${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge, the cache_dir setting's default.
std::filesystem::path default_cache_dir();

// Opens an image for `arch`: reads and verifies (digest, size, JSON) the index, manifest and
// config, selects the tag and the platform, checks the image architecture, and checks that
// every layer blob exists with its recorded size. Layer digests are verified by merge_layers().
// Registry images are pulled into the blob cache first (every blob verified as it arrives), and
// their layers point at the cached blobs.
// Throws edgeforge::Error: bad_input for missing files, malformed JSON, unknown media types,
// unknown tags, wrong architectures and registry authentication; build_failed for blobs that do
// not match their digest and unreachable registries.
Image open_image(const ImageReference& reference, Arch arch, const OpenOptions& options = {});

// Hashes a blob file, for callers that want a layer verified without merging it. Throws
// edgeforge::Error (build failed) naming the image, the digest and `what` ("layer", "config")
// when the content does not match.
void verify_blob(const std::filesystem::path& file, std::string_view digest, std::string_view image,
                 std::string_view what);

// The error for a blob whose content hashes to `actual` ("sha256:<hex>") instead of `digest`;
// shared so that open_image(), verify_blob() and merge_layers() word it the same way.
Error digest_mismatch(std::string_view image, std::string_view digest, std::string_view what,
                      std::string_view actual);

} // namespace edgeforge::oci
