// The units of work of `build all` as a DAG, and their split into shards.
#include "build/work_plan.h"

#include <algorithm>
#include <charconv>

#include "base/error.h"
#include "build/compose.h"
#include "build/content_outputs.h"
#include "build/disk.h"
#include "build/outputs.h"
#include "build/plan.h"
#include "build/provider.h"
#include "build/uki.h"
#include "util/digest.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr unsigned k_max_shards = 1000;

std::string_view stage_name(UnitStage stage) {
    switch (stage) {
    case UnitStage::shared:
        return "shared";
    case UnitStage::fan_out:
        return "fan-out";
    case UnitStage::assemble:
        return "assemble";
    }
    return "";
}

bool wanted(const std::vector<std::string>& outputs, std::string_view name) {
    return std::find(outputs.begin(), outputs.end(), name) != outputs.end();
}

// The rootfs unit of an ISO plan (squashfs, or the UKI initrd of a Trusted Boot ISO).
WorkUnit rootfs_unit(const IsoPlan& iso, RootfsForm form, const Console& console) {
    const RootfsStepInputs step = rootfs_step_inputs(iso, console, form);
    WorkUnit unit;
    unit.id =
        fmt::format("rootfs/{}{}", iso.arch.name(), form == RootfsForm::uki_initrd ? "/uki" : "");
    unit.kind = "rootfs";
    unit.stage = UnitStage::shared;
    unit.step_key = step.key;
    unit.inputs = {{"images", step.images}, {"step", step.inputs}};
    return unit;
}

std::string file_digest(const stdfs::path& file) {
    return util::sha256_file_hex(file);
}

} // namespace

namespace {

// The rootfs steps of one arch's configuration.
std::vector<SharedRootfs> arch_rootfs_steps(const Config& config,
                                            const stdfs::path& keys_directory) {
    const std::vector<std::string> outputs = config.list("outputs");
    const bool uki = config.boolean("iso.uki");
    const bool needs_iso = wanted(outputs, "iso") || wanted(outputs, "iso-disk-image");
    bool needs_disk = false;
    for (const auto& row : output_formats()) {
        needs_disk = needs_disk || (row.group == OutputGroup::disk && wanted(outputs, row.name));
    }
    std::vector<SharedRootfs> steps;
    if (uki && needs_iso) {
        steps.push_back(
            {plan_uki(config, keys_directory, UkiMedium::iso).iso, RootfsForm::uki_initrd});
    }
    if ((needs_iso && !uki) || needs_disk) {
        steps.push_back({plan_iso(config), RootfsForm::squashfs});
    }
    return steps;
}

} // namespace

std::vector<SharedRootfs> shared_rootfs_steps(const Config& config,
                                              const stdfs::path& keys_directory) {
    std::vector<SharedRootfs> steps;
    for (const Config& arch_config : arch_configs(config)) {
        for (auto& step : arch_rootfs_steps(arch_config, keys_directory)) {
            steps.push_back(std::move(step));
        }
    }
    return steps;
}

std::string arch_unit_prefix(const Config& config) {
    return config.arches().empty() ? std::string()
                                   : fmt::format("{}/", config.arch().name());
}

std::string site_unit_id(std::string_view site) {
    return fmt::format("iso/{}", site);
}
std::string disk_unit_id(std::string_view format) {
    return fmt::format("disk/{}", format);
}
std::string provider_unit_id(std::string_view tag) {
    return fmt::format("provider/{}", tag);
}
std::string provider_platform_unit_id(std::string_view tag, Arch arch) {
    return fmt::format("provider/{}/{}", tag, arch.name());
}
std::string content_unit_id(std::string_view bundle) {
    return fmt::format("content/{}", bundle);
}

Shard parse_shard(std::string_view text) {
    const auto slash = text.find('/');
    Shard shard;
    const auto number = [](std::string_view part, unsigned& value) {
        const auto* end = part.data() + part.size();
        const auto [ptr, ec] = std::from_chars(part.data(), end, value);
        return ec == std::errc() && ptr == end && !part.empty();
    };
    if (slash == std::string_view::npos || !number(text.substr(0, slash), shard.index) ||
        !number(text.substr(slash + 1), shard.count) || shard.count == 0 ||
        shard.count > k_max_shards || shard.index == 0 || shard.index > shard.count) {
        throw bad_input("--shard '{}': expected I/N with 1 <= I <= N <= {}, e.g. --shard 2/4 "
                        "(GitLab CI: --shard $CI_NODE_INDEX/$CI_NODE_TOTAL)",
                        text, k_max_shards);
    }
    return shard;
}

namespace {

// The units of one arch's installer outputs and content bundles; with `arches`, their ids start
// with "<arch>/" (the rootfs ids name their arch already).
void add_arch_units(WorkPlan& plan, const Config& config, const stdfs::path& keys_directory,
                    const Console& console) {
    const std::size_t first = plan.units.size();
    const std::vector<std::string> outputs = config.list("outputs");
    // The content bundles, packed by the first stage: the ISO and the disks carry them.
    std::vector<std::string> bundle_ids;
    if (wanted(outputs, "content")) {
        for (const auto& bundle : configured_bundles(config)) {
            const content::BuildOptions options = content_build_options(config, bundle.name);
            WorkUnit unit;
            unit.id = content_unit_id(bundle.name);
            unit.kind = "content";
            unit.stage = UnitStage::shared;
            unit.inputs = {{"source", bundle.source.string()},
                           {"source_sha256", file_digest(bundle.source)},
                           {"arch", options.arch.name()},
                           {"all_platforms", config.boolean("content.all_platforms")}};
            unit.outputs = {(options.output_dir / ("content-" + bundle.name)).string()};
            bundle_ids.push_back(unit.id);
            plan.units.push_back(std::move(unit));
        }
    }
    const bool uki = config.boolean("iso.uki");
    std::vector<std::string> disk_formats;
    for (const auto& row : output_formats()) {
        if (row.group == OutputGroup::disk && wanted(outputs, row.name)) {
            disk_formats.emplace_back(row.name);
        }
    }
    const bool needs_iso = wanted(outputs, "iso") || wanted(outputs, "iso-disk-image");
    if (needs_iso || !disk_formats.empty()) {
        std::optional<IsoPlan> iso_plan;
        std::string rootfs_id;
        std::string squashfs_id;
        for (auto& shared : arch_rootfs_steps(config, keys_directory)) {
            plan.units.push_back(rootfs_unit(shared.plan, shared.form, console));
            if (shared.form == RootfsForm::squashfs) {
                squashfs_id = plan.units.back().id;
            }
            if (!iso_plan) { // the UKI form comes first: a Trusted Boot ISO boots it
                iso_plan = std::move(shared.plan);
                rootfs_id = plan.units.back().id;
            }
        }
        const IsoPlan& iso = *iso_plan;
        if (wanted(outputs, "iso")) {
            if (iso.sites_dir && !uki) {
                for (const auto& site : iso.sites) {
                    WorkUnit unit;
                    unit.id = site_unit_id(site.name);
                    unit.kind = "site-iso";
                    unit.needs = {rootfs_id};
                    unit.needs.insert(unit.needs.end(), bundle_ids.begin(), bundle_ids.end());
                    unit.inputs = {{"site", site.name},
                                   {"site_file", site.file.string()},
                                   {"user_data_sha256", util::sha256_hex(site.user_data)}};
                    const stdfs::path path = iso.site_iso_path(site);
                    unit.outputs = {path.string(), path.string() + ".sha256"};
                    plan.units.push_back(std::move(unit));
                }
            } else {
                WorkUnit unit;
                unit.id = std::string(k_iso_unit_id);
                unit.kind = "iso";
                unit.needs = {rootfs_id};
                unit.needs.insert(unit.needs.end(), bundle_ids.begin(), bundle_ids.end());
                unit.inputs = {{"user_data_sha256", file_digest(iso.user_data)}};
                unit.outputs = {iso.iso_path().string(), iso.checksum_path().string()};
                plan.units.push_back(std::move(unit));
            }
        }
        if (wanted(outputs, "iso-disk-image")) {
            WorkUnit unit;
            unit.id = std::string(k_iso_disk_image_unit_id);
            unit.kind = "iso-disk-image";
            unit.needs = {rootfs_id};
            unit.needs.insert(unit.needs.end(), bundle_ids.begin(), bundle_ids.end());
            unit.inputs = {{"user_data_sha256", file_digest(iso.user_data)}};
            unit.outputs = {(iso.output_dir / (iso.name + "-disk-image")).string()};
            plan.units.push_back(std::move(unit));
        }
        for (const auto& format : disk_formats) {
            const OutputFormat* row = find_output_format(format);
            WorkUnit unit;
            unit.id = disk_unit_id(format);
            unit.kind = "disk";
            unit.needs = {squashfs_id};
            // COS_CONTENT holds the bundles, unless disk.content_partition says false.
            if (wants_content_partition(config.string("disk.content_partition"),
                                        !bundle_ids.empty())
                    .value_or(true)) {
                unit.needs.insert(unit.needs.end(), bundle_ids.begin(), bundle_ids.end());
            }
            unit.inputs = {{"format", format}, {"user_data_sha256", file_digest(iso.user_data)}};
            // A format that wraps another (qcow2 wraps raw) writes that one too, as
            // `build disk --format qcow2` does.
            for (const auto* written : {find_output_format(row->wraps), row}) {
                if (written != nullptr) {
                    const stdfs::path path =
                        iso.output_dir / (iso.name + std::string(written->file_suffix));
                    unit.outputs.push_back(path.string());
                    unit.outputs.push_back(path.string() + ".sha256");
                }
            }
            plan.units.push_back(std::move(unit));
        }
    }
    const std::string prefix = arch_unit_prefix(config);
    for (std::size_t i = first; i < plan.units.size(); ++i) {
        WorkUnit& unit = plan.units[i];
        if (unit.kind != "rootfs") {
            unit.id = prefix + unit.id;
        }
        for (auto& need : unit.needs) {
            if (!need.starts_with("rootfs/")) {
                need = prefix + need;
            }
        }
    }
}

} // namespace

WorkPlan plan_work(const Config& config, const stdfs::path& keys_directory, unsigned shards,
                   const Console& console) {
    if (shards > k_max_shards) {
        throw bad_input("--shards {}: at most {}", shards, k_max_shards);
    }
    WorkPlan plan;
    plan.shards = shards;
    const std::vector<std::string> outputs = config.list("outputs");
    for (const Config& arch_config : arch_configs(config)) {
        add_arch_units(plan, arch_config, keys_directory, console);
    }
    if (wanted(outputs, "provider")) {
        const ProviderPlan provider = plan_provider(config, false, keys_directory);
        // Each platform (version and arch) is a unit of the build stage, composed into a layout
        // of its own; the image is a unit of the assemble stage that joins its platforms into
        // the provider layout (an index for several arches) as a whole build writes it.
        for (const auto& image : provider.images) {
            WorkUnit assemble;
            assemble.id = provider_unit_id(image.tag);
            assemble.kind = "provider";
            assemble.stage = UnitStage::assemble;
            nlohmann::json arches = nlohmann::json::array();
            for (const auto& platform : image.platforms) {
                WorkUnit unit;
                unit.id = provider_platform_unit_id(image.tag, platform.arch);
                unit.kind = "provider-platform";
                nlohmann::json kubernetes = nlohmann::json::array();
                for (const auto& reference : platform.kubernetes) {
                    kubernetes.push_back(reference.str());
                }
                nlohmann::json agents = nlohmann::json::array();
                for (const auto& reference : platform.agents) {
                    agents.push_back(reference.str());
                }
                unit.inputs = {{"tag", image.tag},
                               {"kubernetes_version", image.kubernetes_version},
                               {"arch", platform.arch.name()},
                               {"base", platform.base.str()},
                               {"kubernetes", kubernetes},
                               {"agents", agents}};
                unit.outputs = {provider_platform_layout(provider, image, platform.arch).string()};
                arches.push_back(platform.arch.name());
                assemble.needs.push_back(unit.id);
                plan.units.push_back(std::move(unit));
            }
            assemble.inputs = {{"tag", image.tag},
                               {"kubernetes_version", image.kubernetes_version},
                               {"arches", arches}};
            assemble.outputs = {provider.layout.string() + ":" + image.tag};
            plan.units.push_back(std::move(assemble));
        }
    }
    if (shards > 0) {
        unsigned next = 0;
        for (auto& unit : plan.units) {
            if (unit.stage == UnitStage::fan_out) {
                unit.shard = next % shards + 1;
                ++next;
            }
        }
    }
    return plan;
}

std::set<std::string> WorkPlan::shard_units(unsigned index) const {
    std::set<std::string> ids;
    for (const auto& unit : units) {
        if (unit.shard && *unit.shard == index) {
            ids.insert(unit.id);
        }
    }
    return ids;
}

std::set<std::string> WorkPlan::stage_units(UnitStage stage) const {
    std::set<std::string> ids;
    for (const auto& unit : units) {
        if (unit.stage == stage) {
            ids.insert(unit.id);
        }
    }
    return ids;
}

bool WorkPlan::has_stage(UnitStage stage) const {
    return std::any_of(units.begin(), units.end(),
                       [stage](const WorkUnit& unit) { return unit.stage == stage; });
}

nlohmann::json WorkPlan::to_json() const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& unit : units) {
        nlohmann::json entry{
            {"id", unit.id},         {"kind", unit.kind},       {"stage", stage_name(unit.stage)},
            {"inputs", unit.inputs}, {"outputs", unit.outputs}, {"needs", unit.needs}};
        entry["step_key"] =
            unit.step_key.empty() ? nlohmann::json(nullptr) : nlohmann::json(unit.step_key);
        entry["shard"] = unit.shard ? nlohmann::json(*unit.shard) : nlohmann::json(nullptr);
        list.push_back(std::move(entry));
    }
    return {{"units", list}, {"shards", shards}};
}

std::string WorkPlan::render() const {
    std::string text;
    for (const auto& unit : units) {
        text += fmt::format("{:<40} {:<8}", unit.id, stage_name(unit.stage));
        if (unit.shard) {
            text += fmt::format(" shard {}", *unit.shard);
        }
        if (!unit.step_key.empty()) {
            text += fmt::format(" key {}", unit.step_key.substr(0, 12));
        }
        if (!unit.needs.empty()) {
            text += " needs " + util::join(unit.needs, ", ");
        }
        text += "\n";
        for (const auto& output : unit.outputs) {
            text += "    -> " + output + "\n";
        }
    }
    if (units.empty()) {
        text += "nothing to build: list outputs under 'outputs' in edgeforge.yaml\n";
    }
    return text;
}

} // namespace edgeforge
