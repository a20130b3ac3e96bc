// The content bundles `build all` packs (`content` in outputs): one per file of
// content.manifests, each named after its file, and the content.* settings every bundle shares.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "build/config.h"
#include "content/bundle.h"
#include "content/inputs.h"

namespace edgeforge {

struct ConfiguredBundle {
    std::string name;             // the file name without its extension: <output_dir>/content-<name>/
    std::filesystem::path source; // a bundle manifest (.yaml, .yml, .json) or an images file
};

// The bundles of content.manifests, in the order listed. Error (bad input), naming the setting,
// for a file name that is no bundle name, two files with one name, and `content` in outputs
// with no file listed.
std::vector<ConfiguredBundle> configured_bundles(const Config& config);

// What a bundle holds, read from its file (a manifest by its extension, else an images file).
content::BundleInputs read_bundle_source(const std::filesystem::path& source);

// How bundles are written: output and cache directories, arch, level, threads, split size,
// signing key, platforms and SOURCE_DATE_EPOCH from the settings.
content::BuildOptions content_build_options(const Config& config, std::string name);

// Before a build: archives are extracted under the cache directory (created now), never in the
// system's temporary one.
void use_cache_work_dir(content::BuildOptions& options);

} // namespace edgeforge
