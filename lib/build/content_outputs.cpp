// The content bundles of `build all`, from content.manifests and the content.* settings.
#include "build/content_outputs.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "build/plan.h"
#include "build/step_cache.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

std::vector<ConfiguredBundle> configured_bundles(const Config& config) {
    const std::vector<std::string> outputs = config.list("outputs");
    const bool wanted = std::find(outputs.begin(), outputs.end(), "content") != outputs.end();
    const SourceLocation where = setting_location(config, "content.manifests");
    std::vector<ConfiguredBundle> bundles;
    if (!config.get("content.manifests").is_set()) {
        if (wanted) {
            throw bad_input("outputs lists content, but content.manifests names no bundle: list "
                            "the bundle manifests (or images files) to pack in edgeforge.yaml "
                            "(content: {{manifests: [apps.yaml]}}), one bundle each, named "
                            "after the file");
        }
        return bundles;
    }
    std::map<std::string, stdfs::path> seen;
    for (const auto& source : config.paths("content.manifests")) {
        std::string name = source.filename().string();
        for (const std::string_view extension : {".yaml", ".yml", ".json", ".txt"}) {
            if (name.size() > extension.size() && name.ends_with(extension)) {
                name.resize(name.size() - extension.size());
                break;
            }
        }
        if (!content::is_bundle_name(name)) {
            throw Error(ExitCode::bad_input,
                        fmt::format("{}: {} gives the bundle name '{}': rename the file to "
                                    "letters, digits, '.', '_', '+' and '-' (at most 128, not "
                                    "starting with '.', '+' or '-')",
                                    where.str(), source.string(), name));
        }
        if (const auto [it, fresh] = seen.emplace(name, source); !fresh) {
            throw Error(ExitCode::bad_input,
                        fmt::format("{}: {} and {} both give the bundle name '{}' (each bundle "
                                    "is named after its file): rename one",
                                    where.str(), it->second.string(), source.string(), name));
        }
        bundles.push_back({name, source});
    }
    return bundles;
}

content::BundleInputs read_bundle_source(const stdfs::path& source) {
    content::BundleInputs inputs;
    const std::string extension = source.extension().string();
    if (extension == ".yaml" || extension == ".yml" || extension == ".json") {
        content::read_bundle_manifest(source, inputs);
    } else {
        content::read_images_file(source, inputs);
    }
    return inputs;
}

content::BuildOptions content_build_options(const Config& config, std::string name) {
    content::BuildOptions build;
    build.name = std::move(name);
    content::check_bundle_name(build.name);
    build.output_dir = config.path("output_dir");
    build.arch = config.arch();
    build.platforms = config.boolean("content.all_platforms") ? content::PlatformSelection::all
                                                              : content::PlatformSelection::one;
    build.level = static_cast<int>(config.integer("content.level"));
    build.threads = static_cast<unsigned>(config.integer("content.threads"));
    if (config.get("content.sign").is_set()) {
        build.signing_key = config.path("content.sign");
    }
    if (config.get("content.split_size").is_set()) {
        build.split_size = config.size("content.split_size");
    }
    if (config.get("source_date_epoch").is_set()) {
        build.source_date_epoch = config.integer("source_date_epoch");
    }
    build.open.cache_dir = config.path("cache_dir");
    build.open.registry = registry_options(config);
    return build;
}

void use_cache_work_dir(content::BuildOptions& options) {
    options.open.work_dir = StepCache(options.open.cache_dir / "steps").work_dir();
}

} // namespace edgeforge
