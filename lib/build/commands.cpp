#include "build/commands.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "base/error.h"
#include "build/ci_emit.h"
#include "build/compose.h"
#include "build/content_outputs.h"
#include "build/disk.h"
#include "build/installer_image.h"
#include "build/iso.h"
#include "build/iso_disk_image.h"
#include "build/outputs.h"
#include "build/plan.h"
#include "build/provider.h"
#include "build/site_media.h"
#include "build/uki.h"
#include "build/work_plan.h"
#include "content/bundle.h"
#include "content/inputs.h"
#include "inspect/artifact.h"
#include "oci/blob_cache.h"
#include "oci/image.h"
#include "oci/image_summary.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

CommandOutcome build_sites(const IsoPlan& plan, const BuildRequest& request,
                           const Console& console) {
    const SitesBuildResult result = build_iso_sites(
        plan, request.fail_fast ? FailurePolicy::fail_fast : FailurePolicy::continue_with_others,
        console);
    CommandOutcome outcome;
    std::vector<Artifact> artifacts;
    std::vector<std::string> failed;
    for (const auto& site : result.sites) {
        if (site.iso) {
            outcome.text +=
                fmt::format("{}\n{}\n", site.iso->path.string(), site.checksum->path.string());
            artifacts.push_back(*site.iso);
            artifacts.push_back(*site.checksum);
        } else {
            failed.push_back(fmt::format("{} ({})", site.site, site.file.string()));
        }
    }
    artifacts.push_back(result.index);
    outcome.text += result.index.path.string() + "\n";
    outcome.document = artifacts_to_json(artifacts, result.summary);
    if (!failed.empty()) {
        console.error("{} of {} sites failed: {}; the others were built (see {})", failed.size(),
                      result.sites.size(), util::join(failed, ", "), result.index.path.string());
        outcome.code = static_cast<int>(ExitCode::build_failed);
    }
    return outcome;
}

// What a group returns when `build all --shard` left all of its units to other shards.
CommandOutcome not_in_shard(const BuildRequest& request, std::string_view what) {
    const std::string stage = request.assemble ? std::string("the assemble stage")
                                               : fmt::format("shard {}", request.shard);
    return {0, fmt::format("{}: nothing for {}\n", what, stage),
            {{"skipped", fmt::format("no unit of {}", stage)}}};
}

// `build all` with content in outputs: a bundle per file of content.manifests.
CommandOutcome run_build_content_bundles(const Config& config, const BuildRequest& request,
                                         const Console& console) {
    std::vector<ConfiguredBundle> bundles = configured_bundles(config);
    std::erase_if(bundles,
                  [&](const ConfiguredBundle& bundle) { return !request.runs(content_unit_id(bundle.name)); });
    if (bundles.empty()) {
        return not_in_shard(request, "content");
    }
    CommandOutcome outcome{0, {}, {{"bundles", nlohmann::json::array()}}};
    for (const auto& bundle : bundles) {
        const content::BundleInputs inputs = read_bundle_source(bundle.source);
        content::BuildOptions options = content_build_options(config, bundle.name);
        if (request.dry_run) {
            const nlohmann::json plan = content::plan_bundle(inputs, options);
            outcome.text += content::render_plan(plan);
            outcome.document["bundles"].push_back(plan);
            continue;
        }
        console.info("content bundle {}: packing what {} lists", bundle.name,
                     bundle.source.string());
        use_cache_work_dir(options);
        const content::BuildResult result = content::build_bundle(inputs, options, console);
        std::vector<std::string> written;
        for (const auto& file : result.written) {
            written.push_back(file.string());
            outcome.text += file.string() + "\n";
        }
        outcome.document["bundles"].push_back({{"name", bundle.name},
                                               {"source", bundle.source.string()},
                                               {"directory", result.directory.string()},
                                               {"archive", result.archive.string()},
                                               {"size", result.size},
                                               {"sha256", result.sha256},
                                               {"written", written}});
    }
    return outcome;
}

// One arch's part of a `build all --shard`: its units without their "<arch>/" prefix (the
// builders filter by the plain ids).
BuildRequest for_arch_units(BuildRequest request, const Config& arch_config) {
    const std::string prefix = arch_unit_prefix(arch_config);
    if (!request.units || prefix.empty()) {
        return request;
    }
    std::set<std::string> ids;
    for (const auto& id : *request.units) {
        if (id.starts_with(prefix)) {
            ids.insert(id.substr(prefix.size()));
        }
    }
    request.units = std::move(ids);
    return request;
}

// A shard's ISOs and disks carry the content bundles the first stage packed: each must be in
// the output directory (the pipeline hands it on), or the shard's outputs would differ from a
// single machine's.
void check_shared_bundles(const WorkPlan& plan, const std::set<std::string>& units,
                          std::string_view shard) {
    std::set<std::string> missing;
    for (const auto& unit : plan.units) {
        if (!units.contains(unit.id)) {
            continue;
        }
        for (const auto& need : unit.needs) {
            const auto needed = std::find_if(plan.units.begin(), plan.units.end(),
                                             [&](const WorkUnit& other) { return other.id == need; });
            if (needed == plan.units.end() || needed->kind != "content" || needed->outputs.empty()) {
                continue;
            }
            const stdfs::path directory(needed->outputs.front());
            const auto found = discover_bundles(directory.parent_path());
            if (std::none_of(found.begin(), found.end(), [&](const stdfs::path& bundle) {
                    return bundle.parent_path() == directory;
                })) {
                missing.insert(fmt::format("{} ({})", need, directory.string()));
            }
        }
    }
    if (!missing.empty()) {
        throw bad_input("shard {}: the ISOs and disks of this shard carry content bundles the "
                        "first stage packs, and {} {} not there: run `edgeforge build rootfs` "
                        "first and give this job its output directory (the generated pipelines "
                        "pass it on as an artifact)",
                        shard, util::join(std::vector<std::string>(missing.begin(), missing.end()), ", "),
                        missing.size() == 1 ? "is" : "are");
    }
}

// How `build all` checks and runs one group of the outputs table.
struct GroupRunner {
    OutputGroup group;
    void (*check)(const Config& config, const BuildRequest& request,
                  const std::vector<std::string>& names);
    CommandOutcome (*run)(const Config& config, const BuildRequest& request,
                          const Console& console);
};

BuildRequest with_formats(BuildRequest request, const std::vector<std::string>& names) {
    request.disk_formats = names;
    return request;
}

// Content bundles come first: the ISO and the disks of the same build carry them (plan_iso
// finds build/content-*/), as they do after `edgeforge content build`.
const GroupRunner k_group_runners[] = {
    {OutputGroup::content,
     [](const Config& config, const BuildRequest& request, const std::vector<std::string>&) {
         for (const auto& bundle : configured_bundles(config)) {
             if (!request.runs(content_unit_id(bundle.name))) {
                 continue; // packed by the first stage, not by this shard
             }
             (void)content::plan_bundle(read_bundle_source(bundle.source),
                                        content_build_options(config, bundle.name));
         }
     },
     run_build_content_bundles},
    {OutputGroup::iso,
     [](const Config& config, const BuildRequest& request, const std::vector<std::string>&) {
         if (config.boolean("iso.uki")) {
             (void)plan_uki(config, request.keys_directory, UkiMedium::iso);
         } else {
             (void)plan_iso(config);
         }
     },
     run_build_iso},
    {OutputGroup::iso_disk_image,
     [](const Config& config, const BuildRequest& request, const std::vector<std::string>&) {
         (void)plan_iso_disk_image(config, request.push, request.push_needs_disk_image);
         if (config.boolean("iso.uki")) {
             (void)plan_uki(config, request.keys_directory, UkiMedium::iso);
         }
     },
     run_build_iso_disk_image},
    {OutputGroup::disk,
     [](const Config& config, const BuildRequest& request, const std::vector<std::string>& names) {
         (void)plan_disk(config, names, request.upload);
     },
     run_build_disk},
    {OutputGroup::provider,
     [](const Config& config, const BuildRequest& request, const std::vector<std::string>&) {
         (void)plan_provider(config, request.push, request.keys_directory);
     },
     run_build_provider},
};

// The outputs of `outputs` that belong to `group`, in table order.
std::vector<std::string> wanted_in_group(const Config& config, OutputGroup group) {
    const std::vector<std::string> outputs = config.list("outputs");
    std::vector<std::string> names;
    for (const auto& row : output_formats()) {
        if (row.group == group &&
            std::find(outputs.begin(), outputs.end(), row.name) != outputs.end()) {
            names.emplace_back(row.name);
        }
    }
    return names;
}

std::string age_text(stdfs::file_time_type when) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                             stdfs::file_time_type::clock::now() - when)
                             .count();
    if (seconds < 60) {
        return fmt::format("{}s ago", std::max<long long>(seconds, 0));
    }
    if (seconds < 3600) {
        return fmt::format("{}m ago", seconds / 60);
    }
    if (seconds < 86400) {
        return fmt::format("{}h ago", seconds / 3600);
    }
    return fmt::format("{}d ago", seconds / 86400);
}

nlohmann::json cache_entry_json(const oci::CacheEntry& entry) {
    const auto used = std::chrono::file_clock::to_sys(entry.last_used);
    return {{"kind", entry.kind_name()},
            {"name", entry.name},
            {"size", entry.size},
            {"last_used",
             std::chrono::duration_cast<std::chrono::seconds>(used.time_since_epoch()).count()},
            {"path", entry.path.string()}};
}

} // namespace

namespace {

// `build iso --uki` (IS_UKI=true): the Trusted Boot installer ISO.
CommandOutcome run_build_uki_iso(const Config& config, const BuildRequest& request,
                                 const Console& console) {
    if (request.push && request.push_needs_installer) {
        throw bad_input("--push pushes the installer image (IMAGE_NAME), which build iso --uki "
                        "does not write; leave --push out");
    }
    const UkiPlan plan = plan_uki(config, request.keys_directory, UkiMedium::iso);
    for (const auto& warning : plan.iso.warnings) {
        console.warning("{}", warning);
    }
    if (request.dry_run) {
        return {0, render_uki_plan(plan), plan.to_json()};
    }
    const IsoBuildResult result = build_uki_iso(plan, console);
    CommandOutcome outcome;
    outcome.text = fmt::format("{}\n{}\n", result.iso.path.string(), result.checksum.path.string());
    outcome.document = artifacts_to_json({result.iso, result.checksum}, result.summary);
    return outcome;
}

} // namespace

CommandOutcome run_build_iso(const Config& config, const BuildRequest& request,
                             const Console& console) {
    if (config.boolean("iso.uki")) {
        if (!request.runs(k_iso_unit_id)) {
            return not_in_shard(request, "iso");
        }
        return run_build_uki_iso(config, request, console);
    }
    IsoPlan plan = plan_iso(config);
    const bool registry_image = plan.installer_image && plan.installer_image->is_registry();
    if (request.push && !registry_image && request.push_needs_installer) {
        throw bad_input("--push pushes the installer image: set IMAGE_NAME (.installer.env), "
                        "installer.image_name or --installer-image to a registry name such as "
                        "registry.example.com/edge/installer:v1");
    }
    plan.push_installer_image = request.push && registry_image;
    for (const auto& directory : plan.pending_content_bundles) {
        console.warning("the content bundle {} is not there yet: `build all` packs it before the "
                        "ISO, which then carries it; this ISO goes without it",
                        directory.string());
    }
    for (const auto& warning : plan.warnings) {
        console.warning("{}", warning);
    }
    if (request.dry_run) {
        // The plan says FAILS for a broken site; the exit code says it too (2: its input is
        // bad), as the build itself would (1, or 2 with --fail-fast).
        const bool broken_site = std::any_of(plan.sites.begin(), plan.sites.end(),
                                             [](const SitePlan& site) { return !site.error.empty(); });
        return {broken_site ? 2 : 0, render_iso_plan(plan), plan.to_json()};
    }
    if (plan.sites_dir) {
        if (request.units) {
            std::erase_if(plan.sites, [&](const SitePlan& site) {
                return !request.runs(site_unit_id(site.name));
            });
            if (plan.sites.empty()) {
                return not_in_shard(request, "iso");
            }
        }
        return build_sites(plan, request, console);
    }
    if (!request.runs(k_iso_unit_id)) {
        return not_in_shard(request, "iso");
    }
    const IsoBuildResult result = build_iso(plan, console);
    CommandOutcome outcome;
    outcome.text = fmt::format("{}\n{}\n", result.iso.path.string(), result.checksum.path.string());
    outcome.document = artifacts_to_json({result.iso, result.checksum}, result.summary);
    if (plan.installer_image) {
        const InstallerImageResult image = build_installer_image(plan, console);
        outcome.text += fmt::format("oci:{}:{}\n", image.layout.string(), image.tag);
        outcome.document["installer_image"] = image.to_json();
    }
    return outcome;
}

CommandOutcome run_build_iso_disk_image(const Config& config, const BuildRequest& request,
                                        const Console& console) {
    if (!request.runs(k_iso_disk_image_unit_id)) {
        return not_in_shard(request, "iso-disk-image");
    }
    const IsoDiskImagePlan plan =
        plan_iso_disk_image(config, request.push, request.push_needs_disk_image);
    // IS_UKI: the ISO inside is the UKI installer ISO, its keys checked now.
    std::optional<UkiPlan> uki;
    if (config.boolean("iso.uki")) {
        uki = plan_uki(config, request.keys_directory, UkiMedium::iso);
    }
    for (const auto& warning : uki ? uki->iso.warnings : plan.iso.warnings) {
        console.warning("{}", warning);
    }
    if (request.dry_run) {
        if (uki) {
            nlohmann::json document = plan.to_json();
            document["uki"] = uki->to_json();
            return {0, render_uki_plan(*uki) + render_iso_disk_image_plan(plan), document};
        }
        return {0, render_iso_disk_image_plan(plan), plan.to_json()};
    }
    CommandOutcome outcome;
    std::vector<Artifact> artifacts;
    nlohmann::json summary = nlohmann::json::object();
    stdfs::path iso = plan.iso.iso_path();
    std::error_code ec;
    if (request.iso_built && stdfs::is_regular_file(iso, ec)) {
        console.info("iso-disk-image: using {} built above", iso.string());
    } else {
        const IsoBuildResult built = uki ? build_uki_iso(*uki, console) : build_iso(plan.iso, console);
        iso = built.iso.path;
        artifacts = {built.iso, built.checksum};
        summary = built.summary;
        outcome.text = fmt::format("{}\n{}\n", built.iso.path.string(), built.checksum.path.string());
    }
    const IsoDiskImageResult image = build_iso_disk_image(plan, iso, console);
    outcome.text += fmt::format("oci:{}:{}  {}{}\n", image.layout.string(), image.tag,
                                image.manifest_digest,
                                image.pushed.empty() ? "" : "  (pushed " + image.pushed + ")");
    outcome.document = artifacts_to_json(artifacts, summary);
    outcome.document["iso_disk_image"] = image.to_json();
    return outcome;
}

CommandOutcome run_build_uki(const Config& config, const BuildRequest& request,
                             const Console& console) {
    const UkiPlan plan = plan_uki(config, request.keys_directory);
    for (const auto& warning : plan.iso.warnings) {
        console.warning("{}", warning);
    }
    if (request.dry_run) {
        return {0, render_uki_plan(plan), plan.to_json()};
    }
    const UkiBuildResult result = build_uki(plan, console);
    CommandOutcome outcome;
    for (const auto& file : result.files) {
        outcome.text += fmt::format("{}\n", file.path.string());
    }
    outcome.document = artifacts_to_json(result.files, result.summary);
    return outcome;
}

CommandOutcome run_build_disk(const Config& config, const BuildRequest& request,
                              const Console& console) {
    std::vector<std::string> formats = request.disk_formats;
    if (request.units) {
        if (formats.empty()) {
            formats = wanted_in_group(config, OutputGroup::disk);
        }
        std::erase_if(formats, [&](const std::string& format) {
            return !request.runs(disk_unit_id(format));
        });
        if (formats.empty()) {
            return not_in_shard(request, "disk");
        }
    }
    DiskPlan plan = plan_disk(config, formats, request.upload);
    for (const auto& warning : plan.installer.warnings) {
        console.warning("{}", warning);
    }
    if (request.dry_run) {
        return {0, render_disk_plan(plan), plan.to_json()};
    }
    const DiskBuildResult built = build_disk(plan, console);
    CommandOutcome outcome;
    for (const auto& artifact : built.artifacts) {
        outcome.text += artifact.path.string() + "\n";
    }
    outcome.document = artifacts_to_json(built.artifacts, built.summary);
    return outcome;
}

CommandOutcome run_build_provider(const Config& config, const BuildRequest& request,
                                  const Console& console) {
    ProviderPlan plan = plan_provider(config, request.push, request.keys_directory);
    if (request.assemble) {
        // The assemble stage: the images whose platforms the build stage composed.
        plan.stage = ProviderStage::assemble;
        std::erase_if(plan.images, [&](const ProviderImagePlan& image) {
            return !request.runs(provider_unit_id(image.tag));
        });
    } else if (request.units) {
        // A shard of the build stage: its platforms, each into a layout of its own.
        plan.stage = ProviderStage::platforms;
        for (auto& image : plan.images) {
            std::erase_if(image.platforms, [&](const ProviderPlatform& platform) {
                return !request.runs(provider_platform_unit_id(image.tag, platform.arch));
            });
        }
        std::erase_if(plan.images,
                      [](const ProviderImagePlan& image) { return image.platforms.empty(); });
    }
    if (plan.images.empty()) {
        return not_in_shard(request, "provider");
    }
    if (request.dry_run) {
        return {0, render_provider_plan(plan), plan.to_json()};
    }
    const ProviderBuildResult result = build_provider(plan, console);
    if (plan.stage == ProviderStage::platforms) {
        std::string text;
        for (const auto& image : result.images) {
            text += fmt::format("{}  {}  ({}: joined by `build all --assemble`)\n",
                                image.reference, image.digest, util::join(image.arches, ", "));
        }
        return {0, text, result.to_json()};
    }
    std::string text;
    for (const auto& image : result.images) {
        text += fmt::format("{}  {}{}\n", image.reference, image.digest,
                            image.pushed ? "  (pushed)" : "");
    }
    const auto& last = result.images.back();
    text += fmt::format("\nCluster profile, OS layer (Bring Your Own OS) values for {}:\n\n{}",
                        last.tag, last.profile_snippet);
    if (result.images.size() > 1) {
        text += "(the other tags differ only in system.uri)\n";
    }
    if (!last.pushed) {
        text += "Not pushed: the OS layer needs a registry reference. Set IMAGE_REGISTRY and "
                "IMAGE_REPO (or provider.registry and provider.repository) and add --push.\n";
    }
    return {0, text, result.to_json()};
}

std::vector<std::string> build_all_groups(const Config& config) {
    std::vector<std::string> groups;
    for (const auto& runner : k_group_runners) {
        if (!wanted_in_group(config, runner.group).empty()) {
            groups.emplace_back(group_name(runner.group));
        }
    }
    return groups;
}

CommandOutcome run_build_all(const Config& config, const BuildRequest& request,
                             const Console& console) {
    // With `arches`, every group but the provider images (which have arches of their own) runs
    // once per arch, into <output_dir>/<arch>.
    const std::vector<Config> arch_list = arch_configs(config);
    const bool multi_arch = !config.arches().empty();
    const std::vector<Config> whole{config};
    const auto configs_of = [&](OutputGroup group) -> const std::vector<Config>& {
        return group == OutputGroup::provider ? whole : arch_list;
    };
    if (request.push && arch_list.size() > 1) {
        // One reference per output: two arches would push over each other.
        std::vector<std::string> targets;
        if (!wanted_in_group(config, OutputGroup::iso).empty() && !config.boolean("iso.uki")) {
            const IsoPlan iso = plan_iso(arch_list.front());
            if (iso.installer_image && iso.installer_image->is_registry()) {
                targets.push_back("the installer image " + iso.installer_image->str());
            }
        }
        if (!wanted_in_group(config, OutputGroup::iso_disk_image).empty()) {
            const IsoDiskImagePlan disk_image = plan_iso_disk_image(arch_list.front(), true, false);
            if (disk_image.push) {
                targets.push_back("the iso-disk-image " + disk_image.reference);
            }
        }
        if (!targets.empty()) {
            throw bad_input("build all --push with arches {}: each arch would push {} to the "
                            "same reference; push one arch at a time (build iso --arch ARCH "
                            "--push), or leave --push out",
                            util::join(config.list("arches"), ", "), util::join(targets, " and "));
        }
    }
    CommandOutcome all{0, {}, nlohmann::json::object()};
    BuildRequest shared = request;
    if (request.assemble) {
        if (request.sharded) {
            throw bad_input("build all: --assemble joins what every shard built; give it "
                            "without --shard");
        }
        const WorkPlan plan = plan_work(config, request.keys_directory, 0, console);
        shared.units = plan.stage_units(UnitStage::assemble);
        std::vector<std::string> ids(shared.units->begin(), shared.units->end());
        console.info("assemble stage: {} of the plan's units: {}", ids.size(),
                     ids.empty() ? std::string("none") : util::join(ids, ", "));
        all.document["assemble"] = {{"units", ids}};
    } else if (request.sharded) {
        const Shard shard = parse_shard(request.shard);
        const WorkPlan plan = plan_work(config, request.keys_directory, shard.count, console);
        shared.units = plan.shard_units(shard.index);
        std::vector<std::string> ids(shared.units->begin(), shared.units->end());
        console.info("shard {}: {} of the plan's units: {}", request.shard, ids.size(),
                     ids.empty() ? std::string("none") : util::join(ids, ", "));
        all.document["shard"] = {{"shard", request.shard}, {"units", ids}};
        if (!request.dry_run) {
            check_shared_bundles(plan, *shared.units, request.shard);
        }
    }
    if (!request.dry_run) {
        Diagnostics diagnostics;
        for (const auto& runner : k_group_runners) {
            const auto names = wanted_in_group(config, runner.group);
            if (names.empty()) {
                continue;
            }
            for (const Config& group_config : configs_of(runner.group)) {
                try {
                    // A shard checks what it builds (the content bundles are the first stage's).
                    runner.check(group_config,
                                 runner.group == OutputGroup::provider
                                     ? shared
                                     : for_arch_units(shared, group_config),
                                 names);
                } catch (const Error& error) {
                    if (error.code() != ExitCode::bad_input) {
                        throw;
                    }
                    diagnostics.absorb(error);
                }
            }
        }
        diagnostics.throw_if_any();
    }
    std::set<std::string> iso_built; // the arches whose ISO the iso group built
    for (const auto& runner : k_group_runners) {
        const auto names = wanted_in_group(config, runner.group);
        if (names.empty()) {
            continue;
        }
        for (const Config& group_config : configs_of(runner.group)) {
            const std::string arch(group_config.arch().name());
            BuildRequest group_request = with_formats(shared, names);
            if (runner.group != OutputGroup::provider) {
                group_request = for_arch_units(std::move(group_request), group_config);
                group_request.iso_built = iso_built.contains(arch);
            }
            const CommandOutcome outcome = runner.run(group_config, group_request, console);
            console.print(outcome.text); // each group's results as soon as it is done
            const std::string group(group_name(runner.group));
            if (multi_arch && runner.group != OutputGroup::provider) {
                all.document["arches"][arch][group] = outcome.document;
            } else {
                all.document[group] = outcome.document;
            }
            all.code = std::max(all.code, outcome.code);
            if (runner.group == OutputGroup::iso && outcome.code == 0 && !request.dry_run &&
                !outcome.document.contains("skipped")) {
                iso_built.insert(arch); // the containerDisk wraps this ISO, not a second one
            }
        }
    }
    return all;
}

CommandOutcome run_build_rootfs(const Config& config, const BuildRequest& request,
                                const Console& console) {
    std::vector<SharedRootfs> steps = shared_rootfs_steps(config, request.keys_directory);
    for (auto& step : steps) {
        step.plan.remote_cache.push_cached = true; // the first stage fills the shared cache
    }
    const bool bundles = !wanted_in_group(config, OutputGroup::content).empty();
    if (steps.empty() && !bundles) {
        return {0,
                "no root filesystem step: none of the outputs under 'outputs' needs one\n",
                {{"rootfs", nlohmann::json::array()}}};
    }
    CommandOutcome outcome{0, {}, {{"rootfs", nlohmann::json::array()}}};
    if (bundles) {
        // The content bundles are shared units too: the ISOs and disks of every shard carry
        // them. They go to the output directory, which the pipeline hands to the next stage.
        BuildRequest bundle_request = request;
        bundle_request.units.reset();
        outcome.document["content"] = nlohmann::json::array();
        for (const Config& arch_config : arch_configs(config)) {
            const CommandOutcome packed =
                run_build_content_bundles(arch_config, bundle_request, console);
            outcome.text += packed.text;
            for (const auto& bundle : packed.document["bundles"]) {
                outcome.document["content"].push_back(bundle);
            }
        }
    }
    std::vector<std::string> failed;
    for (const auto& step : steps) {
        if (request.dry_run) {
            const RootfsStepInputs inputs = rootfs_step_inputs(step.plan, console, step.form);
            outcome.text += fmt::format("rootfs step {} ({})\n", inputs.key, step.plan.arch.name());
            outcome.document["rootfs"].push_back({{"key", inputs.key},
                                                  {"arch", step.plan.arch.name()},
                                                  {"inputs", inputs.inputs}});
            continue;
        }
        const ComposedRootfs rootfs = compose_rootfs(step.plan, console, step.form);
        const bool uki = step.form == RootfsForm::uki_initrd;
        const stdfs::path& product = uki ? rootfs.initrd : rootfs.squashfs;
        outcome.text += fmt::format("{}\nkey {}\n", product.string(), rootfs.key);
        nlohmann::json summary = rootfs.summary;
        summary["arch"] = step.plan.arch.name();
        outcome.document["rootfs"].push_back(std::move(summary));
        if (rootfs.summary.contains("remote_cache") &&
            rootfs.summary["remote_cache"].value("push_failed", false)) {
            failed.push_back(rootfs.key.substr(0, 12));
        }
    }
    if (!failed.empty()) {
        // The first stage exists to fill the shared cache: a stage that could not must not
        // pass, or every shard computes the step itself.
        console.error("the rootfs step {} is not in the cache repository (see the warning "
                      "above); the shards would each compute it",
                      util::join(failed, ", "));
        outcome.code = static_cast<int>(ExitCode::build_failed);
    }
    return outcome;
}

CommandOutcome run_plan(const Config& config, const BuildRequest& request,
                        const PlanRequest& plan_request, const Console& console) {
    std::optional<CiEngine> engine;
    if (plan_request.emit_given) {
        engine = parse_ci_engine(plan_request.emit);
        if (!engine) {
            throw bad_input("--emit '{}': expected one of {}", plan_request.emit,
                            k_ci_engines_text);
        }
    }
    if (engine && plan_request.shards_given && plan_request.shards == 0) {
        throw bad_input("--shards 0: a pipeline has at least one shard");
    }
    if (engine) {
        // The jobs read the project's edgeforge.yaml (and .arg, .installer.env) themselves: a
        // setting given here on the command line would shape this plan but not theirs.
        std::vector<std::string> flags;
        for (const auto& row : settings_table()) {
            const std::string key(row.key);
            if (!key.starts_with("cache.") && config.get(key).origin == Origin::flag) {
                flags.push_back("--" + std::string(row.flag));
            }
        }
        if (!flags.empty()) {
            throw bad_input("plan --emit: {} would not reach the pipeline's jobs, which read "
                            "edgeforge.yaml; set {} there instead (cache.remote may stay a "
                            "flag: it goes into the pipeline)",
                            util::join(flags, ", "), flags.size() == 1 ? "it" : "them");
        }
    }
    const unsigned shards = plan_request.shards > 0 ? plan_request.shards : engine ? 4 : 0;
    const WorkPlan plan = plan_work(config, request.keys_directory, shards, console);
    if (!engine) {
        return {0, plan.render(), plan.to_json()};
    }
    CiEmitOptions options;
    options.shards = shards;
    Diagnostics diagnostics;
    const RemoteCacheSettings remote =
        remote_cache_settings(config, registry_options(config), diagnostics);
    diagnostics.throw_if_any();
    const nlohmann::json cache = remote.to_json();
    options.cache = !cache["to"].is_null()     ? cache["to"].get<std::string>()
                    : !cache["from"].is_null() ? cache["from"].get<std::string>()
                                               : std::string();
    if (options.cache.empty()) {
        console.warning("no cache.remote is set: the pipeline's EDGEFORGE_CACHE_REMOTE is a "
                        "placeholder; set cache.remote in edgeforge.yaml (docker://HOST/REPO) so "
                        "that the jobs share the root filesystem");
    }
    const stdfs::path project = project_directory(config);
    const auto relative = [&](const stdfs::path& path) {
        const stdfs::path shown = path.lexically_relative(project);
        return shown.empty() || shown.begin()->string() == ".." ? path.string() : shown.string();
    };
    if (!plan_request.config_file.empty()) {
        options.config_file = relative(stdfs::absolute(plan_request.config_file));
    }
    options.output_dir = relative(config.path("output_dir"));
    options.command = plan_request.ci_command;
    options.image = plan_request.ci_image;
    const std::string text = emit_ci(plan, *engine, options);
    return {0,
            text,
            {{"engine", plan_request.emit},
             {"shards", shards},
             {"pipeline", text},
             {"plan", plan.to_json()}}};
}

CommandOutcome run_site_media(const Config& config, const stdfs::path& user_data,
                              const Console& console) {
    SiteMediaPlan plan;
    plan.user_data = user_data;
    plan.output = config.path("output_dir") /
                  (config.string("name") + std::string(find_output_format("site-media")->file_suffix));
    if (config.get("source_date_epoch").is_set()) {
        plan.source_date_epoch = config.integer("source_date_epoch");
    }
    const Artifact artifact = build_site_media(plan, console);
    return {0, artifact.path.string() + "\n",
            artifacts_to_json({artifact}, nlohmann::json::object())};
}

CommandOutcome run_content_build(const Config& config, const ContentRequest& request,
                                 const Console& console) {
    content::BundleInputs inputs;
    for (const auto& image : request.images) {
        inputs.images.push_back(content::image_request(image, SourceLocation{"--image"}));
    }
    if (!request.images_file.empty()) {
        content::read_images_file(request.images_file, inputs);
    }
    if (!request.manifest.empty()) {
        content::read_bundle_manifest(request.manifest, inputs);
    }
    content::BuildOptions build = content_build_options(
        config, request.name.empty() ? config.string("name") : request.name);
    if (!request.existing_bundle.empty()) {
        build.existing_bundle = request.existing_bundle;
    }
    if (request.dry_run) {
        const nlohmann::json plan = content::plan_bundle(inputs, build);
        return {0, content::render_plan(plan), plan};
    }
    use_cache_work_dir(build);
    const content::BuildResult result = content::build_bundle(inputs, build, console);
    std::vector<std::string> written;
    std::string text;
    for (const auto& file : result.written) {
        written.push_back(file.string());
        text += file.string() + "\n";
    }
    return {0, text,
            {{"directory", result.directory.string()},
             {"archive", result.archive.string()},
             {"size", result.size},
             {"sha256", result.sha256},
             {"written", written},
             {"bundle", result.manifest}}};
}

bool is_artifact_target(const std::string& target) {
    std::error_code exists_error;
    return target.find(':') == std::string::npos ||
           stdfs::is_regular_file(target, exists_error);
}

CommandOutcome run_inspect_artifact(const std::string& target, const Console& console) {
    const nlohmann::json report = inspect::inspect_artifact(target, console);
    return {0, inspect::render_artifact_report(report), report};
}

CommandOutcome run_inspect_image(const Config& config, const std::string& target,
                                 const Console&) {
    const oci::ImageReference reference = oci::parse_reference(target);
    std::optional<oci::Image> image;
    oci::OpenOptions open_options;
    open_options.cache_dir = config.path("cache_dir");
    open_options.registry = registry_options(config);
    open_options.metadata_only = true;
    if (config.get("arch").origin != Origin::default_value) {
        image = oci::open_image(reference, config.arch(), open_options);
    } else {
        std::optional<Error> first_error;
        for (const Arch arch : Arch::all()) {
            try {
                image = oci::open_image(reference, arch, open_options);
                break;
            } catch (const Error& error) {
                if (error.code() != ExitCode::bad_input) {
                    throw; // a network failure or a corrupt blob: the next arch meets it again
                }
                first_error = first_error.value_or(error);
            }
        }
        if (!image) {
            throw *first_error;
        }
    }
    return {0, oci::render_image_summary(*image), oci::image_summary_json(*image)};
}

CommandOutcome run_cache_ls(const Config& config) {
    const auto cache_dir = config.path("cache_dir");
    const oci::CacheListing listing = oci::list_cache(cache_dir);
    std::string text = fmt::format("{:<8} {:>10}  {:<9}  {}\n", "KIND", "SIZE", "LAST USED", "NAME");
    nlohmann::json entries = nlohmann::json::array();
    for (const auto& entry : listing.entries) {
        text += fmt::format("{:<8} {:>10}  {:<9}  {}\n", entry.kind_name(),
                            util::format_bytes(entry.size), age_text(entry.last_used), entry.name);
        entries.push_back(cache_entry_json(entry));
    }
    text += fmt::format(
        "{}: blobs {}, unpacked layers {}, partial downloads {}, build steps {}, squashfs "
        "blocks {}; total {}\n",
        cache_dir.string(), util::format_bytes(listing.blob_bytes),
        util::format_bytes(listing.layer_bytes), util::format_bytes(listing.partial_bytes),
        util::format_bytes(listing.step_bytes), util::format_bytes(listing.block_bytes),
        util::format_bytes(listing.total_bytes()));
    return {0,
            text,
            {{"cache_dir", cache_dir.string()},
             {"entries", entries},
             {"blob_bytes", listing.blob_bytes},
             {"layer_bytes", listing.layer_bytes},
             {"partial_bytes", listing.partial_bytes},
             {"step_bytes", listing.step_bytes},
             {"block_bytes", listing.block_bytes},
             {"total_bytes", listing.total_bytes()}}};
}

CommandOutcome run_cache_prune(const Config& config, const std::string& older_than_text,
                               const Console& console) {
    std::optional<std::chrono::seconds> older_than;
    if (!older_than_text.empty()) {
        const auto seconds = util::parse_duration_seconds(older_than_text);
        if (!seconds) {
            throw bad_input("--older-than: '{}' is not a duration; write a number and a unit "
                            "s, m, h, d or w (e.g. 7d, 12h)",
                            older_than_text);
        }
        older_than = std::chrono::seconds(static_cast<std::int64_t>(*seconds));
    }
    const auto cache_dir = config.path("cache_dir");
    const oci::PruneResult result = oci::prune_cache(cache_dir, older_than);
    nlohmann::json removed = nlohmann::json::array();
    for (const auto& entry : result.removed) {
        console.detail("removed {} {} ({})", entry.kind_name(), entry.name,
                       util::format_bytes(entry.size));
        removed.push_back(cache_entry_json(entry));
    }
    const std::string text = fmt::format(
        "{}: removed {} {} ({}), kept {}{}\n", cache_dir.string(), result.removed.size(),
        result.removed.size() == 1 ? "entry" : "entries", util::format_bytes(result.removed_bytes),
        result.kept,
        result.busy > 0 ? fmt::format(", {} in use by another edgeforge", result.busy)
                        : std::string());
    return {0, text,
            {{"cache_dir", cache_dir.string()},
             {"removed", removed},
             {"removed_bytes", result.removed_bytes},
             {"kept", result.kept},
             {"busy", result.busy}}};
}

} // namespace edgeforge
