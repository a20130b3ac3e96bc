// The platforms of a sharded provider build (work_plan.h): where the build stage writes each,
// the record of what it was built from, and how the assemble stage checks and joins them.
#include "build/provider_platforms.h"

#include <fmt/format.h>

#include "build/plan.h"
#include "build/step_cache.h"
#include "oci/image.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

stdfs::path provider_platform_layout(const ProviderPlan& plan, const ProviderImagePlan& image,
                                     Arch arch) {
    return plan.layout.parent_path() / k_provider_platforms_directory /
           fmt::format("{}-{}", image.tag, arch.name());
}

namespace {

constexpr std::string_view k_platform_inputs_file = "edgeforge-platform-inputs.json";

// What one platform's bytes come from, as far as the plan knows it: every setting the
// composition reads, the image references, and the digests of the /etc overlay and the edge
// custom config. The build stage records it next to the platform; the assemble stage refuses a
// platform whose record differs (a stale layout, another configuration).
nlohmann::json platform_inputs(const ProviderPlan& plan, const ProviderImagePlan& image,
                               const ProviderPlatform& platform) {
    // Local sources relative to the project: each shard has a checkout of its own.
    const auto references = [&](const std::vector<oci::ImageReference>& list) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& reference : list) {
            out.push_back(project_relative(reference, plan.project_dir));
        }
        return out;
    };
    return {
        {"tag", image.tag},
        {"reference", image.reference},
        {"kubernetes_version", image.kubernetes_version},
        {"arch", platform.arch.name()},
        {"base", project_relative(platform.base, plan.project_dir)},
        {"kubernetes", references(platform.kubernetes)},
        {"agents", references(platform.agents)},
        {"distribution", plan.distribution},
        {"agent_version", plan.agent_version},
        {"fips", plan.fips},
        {"os", {plan.os_distribution, plan.os_version}},
        {"proxy", {plan.http_proxy, plan.https_proxy, plan.no_proxy}},
        {"source", plan.source_url},
        {"repository", plan.repository_prefix},
        {"source_date_epoch",
         plan.source_date_epoch ? nlohmann::json(*plan.source_date_epoch) : nlohmann::json()},
        {"etc_overlay",
         plan.etc_overlay ? nlohmann::json(hash_directory(*plan.etc_overlay)) : nlohmann::json()},
        {"edge_custom_config", plan.edge_custom_config
                                   ? nlohmann::json(util::sha256_file_hex(*plan.edge_custom_config))
                                   : nlohmann::json()},
        {"uki", plan.uki ? nlohmann::json{{"keys", plan.uki->keys.layout},
                                          {"title", plan.uki->title},
                                          {"secure_boot_enroll", plan.uki->secure_boot_enroll},
                                          {"max_efi_size", plan.uki->max_efi_size}}
                         : nlohmann::json()},
    };
}

} // namespace

void write_platform_inputs(const ProviderPlan& plan, const ProviderImagePlan& image,
                           const ProviderPlatform& platform) {
    util::write_file_atomically(provider_platform_layout(plan, image, platform.arch) /
                                    k_platform_inputs_file,
                                platform_inputs(plan, image, platform).dump(2) + "\n");
}

// A platform the build stage of a sharded build composed into its own layout, checked and
// linked into `layout`. The labels must name this image's tag, distribution, Kubernetes and
// agent versions: a layout from another configuration is refused.
oci::PlatformManifest adopt_platform(const ProviderPlan& plan, const ProviderImagePlan& image,
                                     const ProviderPlatform& platform, oci::LayoutWriter& layout) {
    const stdfs::path directory = provider_platform_layout(plan, image, platform.arch);
    std::error_code ec;
    if (!stdfs::is_regular_file(directory / "index.json", ec)) {
        throw bad_input("provider image {} ({}): {} has no built platform: the build stage "
                        "(`edgeforge build all --shard I/N`, every shard) writes it; run it "
                        "first and give this job its output directories",
                        image.tag, platform.arch.name(), directory.string());
    }
    // The record of its inputs: small, read bounded.
    const stdfs::path record = directory / k_platform_inputs_file;
    constexpr std::uintmax_t k_max_record = 1 << 20;
    const auto record_size = stdfs::file_size(record, ec);
    nlohmann::json recorded;
    if (!ec && record_size <= k_max_record) {
        recorded = util::parse_json(util::read_file(record), false); // nesting bounded
    }
    const nlohmann::json expected_inputs = platform_inputs(plan, image, platform);
    // (A discarded value compares unequal to nothing: test its kind first.)
    if (!recorded.is_object() || !(recorded == expected_inputs)) {
        std::vector<std::string> differing;
        for (const auto& [key, value] : expected_inputs.items()) {
            if (!recorded.is_object() || !recorded.contains(key) || recorded[key] != value) {
                differing.push_back(key);
            }
        }
        throw bad_input("provider image {} ({}): {} was built from other inputs ({} {}): run the "
                        "build stage again with this configuration, on a clean output directory",
                        image.tag, platform.arch.name(), directory.string(),
                        recorded.is_object() ? "differing:" : "no readable record",
                        recorded.is_object() ? util::join(differing, ", ")
                                             : record.filename().string());
    }
    oci::ImageReference reference;
    reference.transport = oci::Transport::oci_layout;
    reference.path = directory.string();
    reference.tag = image.tag;
    const oci::Image built = oci::open_image(reference, platform.arch);
    const nlohmann::json* labels = nullptr;
    if (built.config.is_object() && built.config.contains("config") &&
        built.config["config"].is_object() && built.config["config"].contains("Labels") &&
        built.config["config"]["Labels"].is_object()) {
        labels = &built.config["config"]["Labels"];
    }
    const std::pair<std::string_view, std::string_view> expected[] = {
        {"org.opencontainers.image.version", image.tag},
        {"io.edgeforge.kubernetes.distribution", plan.distribution},
        {"io.edgeforge.kubernetes.version", image.kubernetes_version},
        {"io.edgeforge.agent.version", plan.agent_version},
    };
    for (const auto& [label, value] : expected) {
        const std::string key(label);
        const bool same = labels != nullptr && labels->contains(key) &&
                          (*labels)[key].is_string() && (*labels)[key].get<std::string>() == value;
        if (!same) {
            throw bad_input("provider image {} ({}): {} was built from other settings (label {} "
                            "is not '{}'): run the build stage again with this edgeforge.yaml",
                            image.tag, platform.arch.name(), built.name, key, value);
        }
    }
    for (const auto& layer : built.layers) {
        oci::verify_blob(layer.path, layer.digest, built.name, "layer");
        layout.add_blob_file(layer.path, layer.media_type, layer.digest);
    }
    oci::verify_blob(built.config_path, built.config_digest, built.name, "config");
    oci::verify_blob(built.manifest_path, built.manifest_digest, built.name, "manifest");
    layout.add_blob_file(built.config_path, oci::media_type::oci_config, built.config_digest);
    const oci::BlobDescriptor manifest =
        layout.add_blob_file(built.manifest_path, built.manifest_media_type, built.manifest_digest);
    return oci::PlatformManifest{manifest, platform.arch, built.platform.variant};
}

void remove_platform_layouts(const ProviderPlan& plan) {
    std::error_code ignored;
    for (const auto& image : plan.images) {
        for (const auto& platform : image.platforms) {
            stdfs::remove_all(provider_platform_layout(plan, image, platform.arch), ignored);
        }
    }
    const stdfs::path parent = plan.layout.parent_path() / k_provider_platforms_directory;
    if (stdfs::is_empty(parent, ignored)) {
        stdfs::remove(parent, ignored);
    }
}

} // namespace edgeforge
