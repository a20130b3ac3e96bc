// The installer root filesystem as an OCI image (IMAGE_NAME): base + agents + overlay layers.
#include "build/installer_image.h"

#include <ctime>

#include "build/step_cache.h"
#include "oci/image.h"
#include "oci/image_composer.h"
#include "oci/merge.h"
#include "util/fs.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

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
    oci::ImageComposer composer(layout, created, plan.source_date_epoch);
    for (std::size_t i = 0; i < images.size(); ++i) {
        const oci::ImageReference& reference = i == 0 ? plan.base : plan.agents[i - 1];
        composer.add_image(images[i], project_relative(reference, plan.project_dir));
    }
    if (plan.rootfs_overlay) {
        fs::Tree tree;
        oci::apply_directory(*plan.rootfs_overlay, tree, oci::DirectoryOptions::overlay());
        composer.add_tree(tree, fs::SpillFile(layout_dir),
                          fmt::format("edgeforge: rootfs overlay {}",
                                      project_relative(*plan.rootfs_overlay, plan.project_dir)));
    }
    const oci::Image& base = images.front();
    oci::ImageComposer::Finish finish{.arch = plan.arch, .variant = base.platform.variant};
    if (base.config.is_object() && base.config.contains("config")) {
        finish.base_config = base.config["config"];
    }
    finish.annotations = {{"org.opencontainers.image.created", oci::rfc3339(created)},
                          {"org.opencontainers.image.base.name", plan.base.str()},
                          {"org.opencontainers.image.title", plan.name},
                          {std::string(oci::k_ref_name_annotation), plan.installer_image->str()}};
    const oci::BlobDescriptor manifest_blob = composer.finish(finish);
    const std::string tag = plan.installer_image->tag.empty() ? "latest" : plan.installer_image->tag;
    layout.tag(manifest_blob, tag);
    layout.commit();

    InstallerImageResult result;
    result.layout = layout_dir;
    result.tag = tag;
    result.manifest_digest = manifest_blob.digest;
    result.layers = composer.layer_digests().size();
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

} // namespace edgeforge
