// Composes new OCI images in a layout from existing images' layers plus generated ones, without
// unpacking anything: the installer image (IMAGE_NAME) and the provider images.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/arch.h"
#include "fs/tree.h"
#include "oci/image.h"
#include "oci/layout_writer.h"

namespace edgeforge::oci {

// "2023-11-14T22:13:20Z" for seconds since the epoch (UTC).
std::string rfc3339(std::int64_t seconds);

// One image being put together: layers in order, then finish() writes its config and manifest.
// Layers of source images are linked into the layout as they are (never recompressed); tree
// layers are written as reproducible tar+gzip (write_tree_layer()).
class ImageComposer {
  public:
    // `created`: the image's creation time (SOURCE_DATE_EPOCH or now). `clamp_mtime`: with a
    // value, tree layer mtimes later than it are clamped (SOURCE_DATE_EPOCH semantics).
    ImageComposer(LayoutWriter& layout, std::int64_t created,
                  std::optional<std::int64_t> clamp_mtime);

    // Every layer of `image`, in order; a dir: source becomes one tree layer. Throws Error (bad
    // input) for layers an OCI image cannot hold (xz or bzip2 tarballs).
    // `shown_as` names the image in the history ("layer 1 of SHOWN"); default: image.name. Give
    // local sources relative to the project so that two checkouts record the same text.
    void add_image(const Image& image, std::string_view shown_as = {});
    // A generated layer (overlay, metadata). The tree's regular files may refer to `spill`, or
    // to host files (streamed, never read whole). `gzip_level`: 1 for data that is compressed
    // already (an ISO's squashfs), where higher levels only cost time.
    void add_tree(const fs::Tree& tree, const fs::SpillFile& spill, const std::string& created_by,
                  int gzip_level = LayerWriteOptions{}.gzip_level);

    // Digests of the layers added so far ("sha256:..."), for identifiers derived from inputs.
    const std::vector<std::string>& layer_digests() const { return layer_digests_; }

    struct Finish {
        Arch arch;
        std::string variant;
        nlohmann::json base_config;                     // the base image's config (its "config")
        std::map<std::string, std::string> labels;      // added to config.Labels
        std::map<std::string, std::string> annotations; // manifest annotations
    };
    // Writes the config and manifest blobs; returns the manifest's descriptor (untagged).
    BlobDescriptor finish(const Finish& finish);

  private:
    LayoutWriter& layout_;
    std::int64_t created_;
    std::optional<std::int64_t> clamp_mtime_;
    nlohmann::json layers_ = nlohmann::json::array();
    nlohmann::json diff_ids_ = nlohmann::json::array();
    nlohmann::json history_ = nlohmann::json::array();
    std::vector<std::string> layer_digests_;
};

// Writes an OCI index over `manifests` (each with its platform) and returns its descriptor.
struct PlatformManifest {
    BlobDescriptor manifest;
    Arch arch;
    std::string variant;
};
BlobDescriptor write_index(LayoutWriter& layout, const std::vector<PlatformManifest>& manifests,
                           const std::map<std::string, std::string>& annotations);

} // namespace edgeforge::oci
