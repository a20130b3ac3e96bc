// The installer root filesystem as an OCI image (IMAGE_NAME): base + agents + overlay layers.
#include "formats/installer_image.h"

#include <ctime>

#include "core/step_cache.h"
#include "oci/archive.h"
#include "oci/image.h"
#include "oci/layout_writer.h"
#include "oci/merge.h"
#include "util/fs.h"

namespace edgeforge::formats {
namespace stdfs = std::filesystem;

namespace {

std::string rfc3339(std::int64_t seconds) {
    const auto time = static_cast<std::time_t>(seconds);
    std::tm utc{};
    gmtime_r(&time, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

// The OCI media type a source layer keeps in the new manifest.
std::string oci_layer_type(const oci::Layer& layer, std::string_view image) {
    const std::string& type = layer.media_type;
    if (type.ends_with("tar.gzip") || type.ends_with("tar+gzip")) {
        return std::string(oci::media_type::oci_layer_gzip);
    }
    if (type.ends_with("tar+zstd")) {
        return std::string(oci::media_type::oci_layer_zstd);
    }
    if (type.ends_with(".tar") || type.ends_with("layer.v1.tar")) {
        return std::string(oci::media_type::oci_layer_tar);
    }
    if (type.empty()) { // tar: sources
        switch (oci::sniff_compression(layer.path)) {
        case oci::Compression::none:
            return std::string(oci::media_type::oci_layer_tar);
        case oci::Compression::gzip:
            return std::string(oci::media_type::oci_layer_gzip);
        case oci::Compression::zstd:
            return std::string(oci::media_type::oci_layer_zstd);
        default:
            break;
        }
    }
    throw bad_input("image {}: layer {} ({}) cannot be a layer of an OCI image; use a tar, "
                    "tar.gz or tar.zst rootfs for the installer image",
                    image, layer.name(), type.empty() ? "xz or bzip2 tarball" : type);
}

} // namespace

nlohmann::json InstallerImageResult::to_json() const {
    return {{"layout", layout.string()},
            {"tag", tag},
            {"manifest_digest", manifest_digest},
            {"layers", layers},
            {"reference", "oci:" + layout.string() + ":" + tag},
            {"pushed", pushed.empty() ? nlohmann::json(nullptr) : nlohmann::json(pushed)}};
}

InstallerImageResult build_installer_image(const IsoPlan& plan, const Console& console) {
    const stdfs::path& layout_dir = *plan.installer_layout;
    console.info("installer image: writing {} into {}", plan.installer_image->str(),
                 layout_dir.string());
    StepCache cache(plan.cache_dir / "steps");
    oci::OpenOptions open_options;
    open_options.work_dir = cache.work_dir();
    open_options.cache_dir = plan.cache_dir;
    open_options.registry = plan.registry;
    std::vector<oci::Image> images;
    images.push_back(oci::open_image(plan.base, plan.arch, open_options));
    for (const auto& agent : plan.agents) {
        images.push_back(oci::open_image(agent, plan.arch, open_options));
    }

    oci::LayoutWriter layout(layout_dir);
    const std::int64_t created = plan.source_date_epoch.value_or(std::time(nullptr));
    nlohmann::json layers = nlohmann::json::array();
    nlohmann::json diff_ids = nlohmann::json::array();
    nlohmann::json history = nlohmann::json::array();
    const auto add_history = [&](std::string created_by) {
        history.push_back({{"created", rfc3339(created)}, {"created_by", std::move(created_by)}});
    };

    for (const auto& image : images) {
        // Diff IDs come from the image config when it lists one per layer; otherwise (tar:
        // sources, configs without them) they are computed from the layer.
        std::vector<std::string> known;
        if (image.config.is_object() && image.config.contains("rootfs") &&
            image.config["rootfs"].contains("diff_ids") &&
            image.config["rootfs"]["diff_ids"].size() == image.layers.size()) {
            known = image.config["rootfs"]["diff_ids"].get<std::vector<std::string>>();
        }
        for (std::size_t i = 0; i < image.layers.size(); ++i) {
            const oci::Layer& layer = image.layers[i];
            if (layer.kind == oci::LayerKind::directory) {
                fs::Tree tree;
                oci::apply_directory(layer.path, tree);
                fs::SpillFile no_spill(layout_dir);
                const oci::LayerBlob blob = oci::write_tree_layer(
                    tree, no_spill, layout, {.clamp_mtime = plan.source_date_epoch});
                layers.push_back(blob.descriptor.to_json());
                diff_ids.push_back(blob.diff_id);
            } else {
                const oci::BlobDescriptor blob = layout.add_blob_file(
                    layer.path, oci_layer_type(layer, image.name), layer.digest);
                layers.push_back(blob.to_json());
                diff_ids.push_back(known.empty() ? oci::uncompressed_digest(layer.path)
                                                 : known[i]);
            }
            add_history(fmt::format("edgeforge: layer {} of {}", i + 1, image.name));
        }
    }
    if (plan.rootfs_overlay) {
        fs::Tree tree;
        oci::apply_directory(*plan.rootfs_overlay, tree, oci::DirectoryOptions::overlay());
        fs::SpillFile no_spill(layout_dir);
        const oci::LayerBlob blob =
            oci::write_tree_layer(tree, no_spill, layout, {.clamp_mtime = plan.source_date_epoch});
        layers.push_back(blob.descriptor.to_json());
        diff_ids.push_back(blob.diff_id);
        add_history(fmt::format("edgeforge: rootfs overlay {}", plan.rootfs_overlay->string()));
    }

    const oci::Image& base = images.front();
    nlohmann::json config{{"architecture", std::string(plan.arch.name())},
                          {"os", "linux"},
                          {"created", rfc3339(created)},
                          {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
                          {"history", history}};
    if (base.config.is_object() && base.config.contains("config")) {
        config["config"] = base.config["config"];
    }
    if (!base.platform.variant.empty()) {
        config["variant"] = base.platform.variant;
    }
    const oci::BlobDescriptor config_blob =
        layout.add_blob_bytes(config.dump(), oci::media_type::oci_config);
    nlohmann::json manifest{
        {"schemaVersion", 2},
        {"mediaType", oci::media_type::oci_manifest},
        {"config", config_blob.to_json()},
        {"layers", layers},
        {"annotations",
         {{"org.opencontainers.image.created", rfc3339(created)},
          {"org.opencontainers.image.base.name", plan.base.str()},
          {"org.opencontainers.image.title", plan.name},
          {"org.opencontainers.image.ref.name", plan.installer_image->str()}}}};
    const oci::BlobDescriptor manifest_blob =
        layout.add_blob_bytes(manifest.dump(), oci::media_type::oci_manifest);
    const std::string tag = plan.installer_image->tag.empty() ? "latest" : plan.installer_image->tag;
    layout.tag(manifest_blob, tag);
    layout.commit();

    InstallerImageResult result;
    result.layout = layout_dir;
    result.tag = tag;
    result.manifest_digest = manifest_blob.digest;
    result.layers = layers.size();
    console.info("installer image: oci:{}:{} ({} layers, manifest {})", layout_dir.string(), tag,
                 result.layers, result.manifest_digest.substr(0, 19));
    if (plan.installer_image->is_registry() && !plan.push_installer_image) {
        console.info("installer image: not pushed to {} (add --push to push it)",
                     plan.installer_image->str());
    }
    if (plan.installer_image->is_registry() && plan.push_installer_image) {
        oci::PushOptions push;
        push.on_progress = [&console](const std::string& line) { console.detail("{}", line); };
        const oci::PushResult pushed =
            oci::push_layout(layout_dir, tag, *plan.installer_image, plan.registry, push);
        result.pushed = plan.installer_image->str();
        console.info("installer image: pushed {} ({} blobs uploaded, {} already there)",
                     result.pushed, pushed.uploaded, pushed.skipped);
    }
    return result;
}

} // namespace edgeforge::formats
