// Composes new OCI images in a layout from existing images' layers plus generated ones.
#include "oci/image_composer.h"

#include <ctime>

#include "base/error.h"
#include "oci/archive.h"
#include "oci/merge.h"

namespace edgeforge::oci {

std::string rfc3339(std::int64_t seconds) {
    const auto time = static_cast<std::time_t>(seconds);
    std::tm utc{};
    gmtime_r(&time, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

namespace {

// The OCI media type a source layer keeps in the new manifest.
std::string oci_layer_type(const Layer& layer, std::string_view image) {
    const std::string& type = layer.media_type;
    if (type.ends_with("tar.gzip") || type.ends_with("tar+gzip")) {
        return std::string(media_type::oci_layer_gzip);
    }
    if (type.ends_with("tar+zstd")) {
        return std::string(media_type::oci_layer_zstd);
    }
    if (type.ends_with(".tar") || type.ends_with("layer.v1.tar")) {
        return std::string(media_type::oci_layer_tar);
    }
    if (type.empty()) { // tar: sources
        switch (sniff_compression(layer.path)) {
        case Compression::none:
            return std::string(media_type::oci_layer_tar);
        case Compression::gzip:
            return std::string(media_type::oci_layer_gzip);
        case Compression::zstd:
            return std::string(media_type::oci_layer_zstd);
        default:
            break;
        }
    }
    throw bad_input("image {}: layer {} ({}) cannot be a layer of an OCI image; use a tar, "
                    "tar.gz or tar.zst rootfs instead",
                    image, layer.name(), type.empty() ? "xz or bzip2 tarball" : type);
}

} // namespace

ImageComposer::ImageComposer(LayoutWriter& layout, std::int64_t created,
                             std::optional<std::int64_t> clamp_mtime)
    : layout_(layout), created_(created), clamp_mtime_(clamp_mtime) {}

void ImageComposer::add_image(const Image& image, std::string_view shown_as) {
    const std::string_view shown = shown_as.empty() ? std::string_view(image.name) : shown_as;
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
        const Layer& layer = image.layers[i];
        const std::string created_by =
            fmt::format("edgeforge: layer {} of {}", i + 1, shown);
        if (layer.kind == LayerKind::directory) {
            fs::Tree tree;
            apply_directory(layer.path, tree);
            add_tree(tree, fs::SpillFile(layout_.directory()), created_by);
            continue;
        }
        const BlobDescriptor blob =
            layout_.add_blob_file(layer.path, oci_layer_type(layer, image.name), layer.digest);
        layers_.push_back(blob.to_json());
        // From the image config (Layer::diff_id) when it lists one per layer; otherwise (tar:
        // sources, configs without them) computed from the layer.
        diff_ids_.push_back(layer.diff_id.empty() ? uncompressed_digest(layer.path)
                                                  : layer.diff_id);
        layer_digests_.push_back(blob.digest);
        history_.push_back({{"created", rfc3339(created_)}, {"created_by", created_by}});
    }
}

void ImageComposer::add_tree(const fs::Tree& tree, const fs::SpillFile& spill,
                             const std::string& created_by, int gzip_level) {
    const LayerBlob blob = write_tree_layer(tree, spill, layout_,
                                            {.clamp_mtime = clamp_mtime_, .gzip_level = gzip_level});
    layers_.push_back(blob.descriptor.to_json());
    diff_ids_.push_back(blob.diff_id);
    layer_digests_.push_back(blob.descriptor.digest);
    history_.push_back({{"created", rfc3339(created_)}, {"created_by", created_by}});
}

BlobDescriptor ImageComposer::finish(const Finish& finish) {
    nlohmann::json config{{"architecture", std::string(finish.arch.name())},
                          {"os", "linux"},
                          {"created", rfc3339(created_)},
                          {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids_}}},
                          {"history", history_}};
    if (!finish.variant.empty()) {
        config["variant"] = finish.variant;
    }
    nlohmann::json runtime =
        finish.base_config.is_object() ? finish.base_config : nlohmann::json::object();
    if (!finish.labels.empty()) {
        nlohmann::json& labels = runtime["Labels"];
        if (!labels.is_object()) {
            labels = nlohmann::json::object();
        }
        for (const auto& [key, value] : finish.labels) {
            labels[key] = value;
        }
    }
    if (!runtime.empty()) {
        config["config"] = runtime;
    }
    const BlobDescriptor config_blob = layout_.add_blob_bytes(config.dump(), media_type::oci_config);
    nlohmann::json manifest{{"schemaVersion", 2},
                            {"mediaType", media_type::oci_manifest},
                            {"config", config_blob.to_json()},
                            {"layers", layers_}};
    if (!finish.annotations.empty()) {
        manifest["annotations"] = finish.annotations;
    }
    return layout_.add_blob_bytes(manifest.dump(), media_type::oci_manifest);
}

BlobDescriptor write_index(LayoutWriter& layout, const std::vector<PlatformManifest>& manifests,
                           const std::map<std::string, std::string>& annotations) {
    nlohmann::json entries = nlohmann::json::array();
    for (const auto& entry : manifests) {
        nlohmann::json descriptor = entry.manifest.to_json();
        descriptor["platform"] = {{"architecture", std::string(entry.arch.name())},
                                  {"os", "linux"}};
        if (!entry.variant.empty()) {
            descriptor["platform"]["variant"] = entry.variant;
        }
        entries.push_back(descriptor);
    }
    nlohmann::json index{
        {"schemaVersion", 2}, {"mediaType", media_type::oci_index}, {"manifests", entries}};
    if (!annotations.empty()) {
        index["annotations"] = annotations;
    }
    return layout.add_blob_bytes(index.dump(), media_type::oci_index);
}

} // namespace edgeforge::oci
