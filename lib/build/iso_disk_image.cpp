// `edgeforge build iso-disk-image`: the installer ISO as a KubeVirt containerDisk OCI image.
#include "build/iso_disk_image.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

#include "base/error.h"
#include "build/outputs.h"
#include "oci/image_composer.h"
#include "oci/layout_writer.h"
#include "oci/reference.h"
#include "oci/registry.h"
#include "util/fs.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr std::size_t k_max_tag_length = 128; // the OCI distribution spec's limit

// The ISO is mostly a squashfs that is compressed already: gzip's higher levels would cost
// minutes on a large ISO for a few bytes.
constexpr int k_layer_gzip_level = 1;

bool tag_character(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

} // namespace

std::string iso_disk_image_tag(std::string_view agent_version, std::string_view custom_tag) {
    std::string tag(agent_version);
    if (!custom_tag.empty()) {
        tag += "-";
        tag += custom_tag;
    }
    for (char& c : tag) {
        if (!tag_character(c)) {
            c = '_';
        }
    }
    if (tag.empty() || tag.size() > k_max_tag_length || tag.front() == '.' || tag.front() == '-') {
        return {};
    }
    return tag;
}

std::string iso_disk_image_reference(std::string_view registry, std::string_view repository,
                                     std::string_view name, std::string_view tag) {
    while (registry.ends_with('/')) {
        registry.remove_suffix(1);
    }
    while (repository.ends_with('/')) {
        repository.remove_suffix(1);
    }
    if (repository.empty()) {
        return {};
    }
    const std::string prefix =
        registry.empty() ? std::string(repository) : fmt::format("{}/{}", registry, repository);
    return fmt::format("{}/{}:{}", prefix, name, tag);
}

std::string iso_disk_image_member(std::string_view name) {
    return fmt::format("disk/{}.iso", name);
}

nlohmann::json IsoDiskImagePlan::to_json() const {
    return {{"iso", iso.to_json()},
            {"layout", layout.string()},
            {"tag", tag},
            {"member", iso_disk_image_member(iso.name)},
            {"owner", fmt::format("{}:{}", k_container_disk_owner, k_container_disk_owner)},
            {"mode", fmt::format("{:04o}", k_container_disk_file_mode)},
            {"reference", reference.empty() ? nlohmann::json(nullptr) : nlohmann::json(reference)},
            {"push", push}};
}

IsoDiskImagePlan plan_iso_disk_image(const Config& config, bool push, bool push_required) {
    Diagnostics diagnostics;
    IsoDiskImagePlan plan;
    plan.iso = plan_iso(config, diagnostics);
    // plan_iso reported its own problems; the rest is checked from the settings directly so that
    // every problem is listed together.
    const std::string name = config.string("name");
    if (config.get("sites").is_set()) {
        diagnostics.error(setting_location(config, "sites"),
                          "iso-disk-image wraps the one installer ISO, and sites builds one per "
                          "site; build the containerDisk without sites (unset it or build "
                          "iso-disk-image from a project without it)");
    }

    const std::string agent_version = config.string("agent.version");
    const std::string custom_tag = config.string("provider.custom_tag");
    plan.tag = iso_disk_image_tag(agent_version, custom_tag);
    if (plan.tag.empty()) {
        diagnostics.error(
            setting_location(config, "provider.custom_tag"),
            fmt::format("the iso-disk-image tag '{}{}{}' (agent.version / PE_VERSION, "
                        "then provider.custom_tag / CUSTOM_TAG) is longer than {} "
                        "characters; shorten CUSTOM_TAG",
                        agent_version, custom_tag.empty() ? "" : "-", custom_tag,
                        k_max_tag_length));
    }

    const std::string registry = config.string("provider.registry");
    const std::string repository = config.string("provider.repository");
    if (!plan.tag.empty()) {
        plan.reference = iso_disk_image_reference(registry, repository, name, plan.tag);
    }
    if (!plan.reference.empty()) {
        // A name may hold what a repository path cannot (upper case, '+'): then it is the culprit.
        const bool name_fits = std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                   c == '-';
        });
        const SourceLocation where =
            setting_location(config, name_fits ? "provider.repository" : "name");
        try {
            const oci::ImageReference parsed = oci::parse_reference(plan.reference);
            if (!parsed.is_registry()) {
                diagnostics.error(where, fmt::format("{} (IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG) "
                                                     "is not a registry name; set "
                                                     "provider.registry to host[:port]",
                                                     plan.reference));
            }
        } catch (const Error& error) {
            diagnostics.error(where, fmt::format("the iso-disk-image name {} "
                                                 "(IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG from "
                                                 "provider.registry, provider.repository and "
                                                 "name) is not a registry name: {}",
                                                 plan.reference, error.what()));
        }
    }
    plan.push = push && !plan.reference.empty();
    if (push && push_required && plan.reference.empty() && !plan.tag.empty()) {
        diagnostics.error(SourceLocation{"--push"},
                          "--push needs somewhere to push the iso-disk-image: set IMAGE_REGISTRY "
                          "and IMAGE_REPO (.arg), provider.registry and provider.repository, or "
                          "--registry and --repository (it goes to REGISTRY/REPO/NAME:TAG)");
    }

    const stdfs::path output_dir = config.path("output_dir");
    plan.layout =
        output_dir / (name + std::string(find_output_format("iso-disk-image")->file_suffix));
    std::error_code ec;
    if (stdfs::exists(plan.layout, ec)) {
        const bool directory = stdfs::is_directory(plan.layout, ec);
        if (!directory ||
            (!stdfs::exists(plan.layout / "oci-layout", ec) && !stdfs::is_empty(plan.layout, ec))) {
            diagnostics.error(setting_location(config, "output_dir"),
                              fmt::format("{} exists and is not an OCI layout edgeforge wrote; "
                                          "move it away or choose another output_dir / name",
                                          plan.layout.string()));
        }
    }
    diagnostics.throw_if_any();
    return plan;
}

std::string render_iso_disk_image_plan(const IsoDiskImagePlan& plan) {
    std::string out = render_iso_plan(plan.iso);
    out += fmt::format("iso-disk-image: {} -> /{} ({:04o}, {}:{}) in a FROM scratch image, "
                       "one layer\n",
                       plan.iso.iso_path().string(), iso_disk_image_member(plan.iso.name),
                       k_container_disk_file_mode, k_container_disk_owner, k_container_disk_owner);
    out += fmt::format("  layout  oci:{}:{}\n", plan.layout.string(), plan.tag);
    out += fmt::format("  push    {}\n",
                       plan.reference.empty() ? std::string("no (no IMAGE_REGISTRY/IMAGE_REPO)")
                       : plan.push            ? plan.reference
                                   : fmt::format("no (add --push for {})", plan.reference));
    return out;
}

nlohmann::json IsoDiskImageResult::to_json() const {
    return {{"layout", layout.string()},
            {"tag", tag},
            {"reference", "oci:" + layout.string() + ":" + tag},
            {"manifest_digest", manifest_digest},
            {"layer_digest", layer_digest},
            {"layer_size", layer_size},
            {"pushed", pushed.empty() ? nlohmann::json(nullptr) : nlohmann::json(pushed)}};
}

IsoDiskImageResult build_iso_disk_image(const IsoDiskImagePlan& plan, const stdfs::path& iso,
                                        const Console& console) {
    std::error_code ec;
    const std::uint64_t iso_size = stdfs::file_size(iso, ec);
    if (ec) {
        throw build_failed("iso-disk-image: cannot read {}: {}", iso.string(), ec.message());
    }
    const std::int64_t created = plan.iso.source_date_epoch.value_or(std::time(nullptr));
    const std::string member = iso_disk_image_member(plan.iso.name);
    console.info("iso-disk-image: writing {} as /{} into {}", iso.string(), member,
                 plan.layout.string());

    // The layout is written next to its final place and renamed over the old one, so a layout
    // never holds the blobs of earlier ISOs (each as big as the ISO).
    util::PartialDirectory partial(plan.layout);
    oci::LayoutWriter layout(partial.path());
    oci::ImageComposer composer(layout, created, plan.iso.source_date_epoch);

    fs::Tree tree;
    tree.root().mtime = created;
    auto disk = fs::make_directory(k_container_disk_dir_mode, created, k_container_disk_owner,
                                   k_container_disk_owner);
    auto file = std::make_shared<fs::Inode>();
    file->mode = k_container_disk_file_mode;
    file->uid = k_container_disk_owner;
    file->gid = k_container_disk_owner;
    file->mtime = created;
    file->data.kind = iso_size == 0 ? fs::DataRef::Kind::none : fs::DataRef::Kind::host_file;
    file->data.path = iso; // streamed by write_tree_layer, 1 MiB at a time
    file->data.size = iso_size;
    disk->children[plan.iso.name + ".iso"] = file;
    tree.root().children["disk"] = disk;
    composer.add_tree(tree, fs::SpillFile(partial.path()),
                      fmt::format("edgeforge: {}.iso -> /{}", plan.iso.name, member),
                      k_layer_gzip_level);

    oci::ImageComposer::Finish finish{.arch = plan.iso.arch};
    finish.annotations = {
        {"org.opencontainers.image.created", oci::rfc3339(created)},
        {"org.opencontainers.image.title", plan.iso.name},
        {"org.opencontainers.image.version", plan.tag},
        {"org.opencontainers.image.description",
         fmt::format("edgeforge installer ISO {}.iso as a KubeVirt containerDisk", plan.iso.name)},
    };
    const oci::BlobDescriptor manifest = composer.finish(finish);
    layout.tag(manifest, plan.tag);
    layout.commit();

    try {
        partial.commit();
    } catch (const std::system_error& e) {
        throw build_failed("iso-disk-image: cannot replace {} with {}: {}", plan.layout.string(),
                           partial.path().string(), e.code().message());
    }

    IsoDiskImageResult result;
    result.layout = plan.layout;
    result.tag = plan.tag;
    result.manifest_digest = manifest.digest;
    result.layer_digest = composer.layer_digests().front();
    result.layer_size =
        stdfs::file_size(plan.layout / "blobs" / "sha256" /
                             result.layer_digest.substr(result.layer_digest.find(':') + 1),
                         ec);
    console.info("iso-disk-image: oci:{}:{} (manifest {})", plan.layout.string(), plan.tag,
                 result.manifest_digest.substr(0, 19));
    if (!plan.reference.empty() && !plan.push) {
        console.info("iso-disk-image: not pushed to {} (add --push to push it)", plan.reference);
    }
    if (plan.push) {
        oci::PushOptions push;
        push.on_progress = [&console](const std::string& line) { console.detail("{}", line); };
        const oci::PushResult pushed = oci::push_layout(
            plan.layout, plan.tag, oci::parse_reference(plan.reference), plan.iso.registry, push);
        result.pushed = plan.reference;
        console.info("iso-disk-image: pushed {}@{} ({} blobs uploaded, {} already there)",
                     plan.reference, pushed.digest, pushed.uploaded, pushed.skipped);
    }
    return result;
}

} // namespace edgeforge
