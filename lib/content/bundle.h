// Air-gapped content bundles: many images (one deduplicated OCI layout), Helm charts and files
// packed as one reproducible, optionally signed and split <name>.tar.zst.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "content/inputs.h"
#include "base/arch.h"
#include "base/console.h"
#include "oci/image.h"

namespace edgeforge::content {

// The bundle manifest inside every archive, its first member (so `content ls` reads only the
// head of the stream).
inline constexpr std::string_view k_bundle_manifest_name = "bundle.json";

enum class PlatformSelection {
    one, // the platform of `arch` only
    all, // every platform an image index lists
};

struct BuildOptions {
    std::string name;
    std::filesystem::path output_dir; // the bundle goes to <output_dir>/content-<name>/
    Arch arch;
    PlatformSelection platforms = PlatformSelection::one;
    int level = 3;        // zstd level 1..19
    unsigned threads = 0; // zstd workers; 0 = one per CPU
    std::optional<std::filesystem::path> signing_key;
    // An earlier bundle whose blobs are left out (and recorded as expected from it).
    std::optional<std::filesystem::path> existing_bundle;
    std::uint64_t split_size = 0; // 0 = one file
    std::optional<std::int64_t> source_date_epoch;
    oci::OpenOptions open; // cache_dir, registry options, work_dir
};

struct BuildResult {
    std::filesystem::path directory;            // <output_dir>/content-<name>
    std::filesystem::path archive;              // <name>.tar.zst (gone when split)
    std::uint64_t size = 0;                     // of the whole archive
    std::string sha256;                         // of the whole archive
    std::vector<std::filesystem::path> written; // every file written, in order
    nlohmann::json manifest;                    // the bundle.json written inside
};

// Resolves and pulls every image, then writes the bundle under a temporary directory in the
// output directory and moves it into place at the end: a failure or Ctrl-C leaves nothing.
// Pull failures are Errors (build failed) naming the image and where it was listed.
BuildResult build_bundle(const BundleInputs& inputs, const BuildOptions& options,
                         const Console& console);

// Checks every input (references, names, charts, files, keys, the base bundle) without pulling
// anything, and describes what build_bundle() would write: `content build --dry-run`.
nlohmann::json plan_bundle(const BundleInputs& inputs, const BuildOptions& options);
std::string render_plan(const nlohmann::json& plan);

// Reads bundle.json from a bundle (FILE.tar.zst, or its .parts.json when split) by streaming
// the head of the archive; nothing is unpacked to disk. Throws Error (bad input) for missing
// files and archives that are not content bundles.
nlohmann::json read_bundle_manifest_json(const std::filesystem::path& bundle);

// The table `content ls` prints.
std::string render_listing(const nlohmann::json& manifest);

struct VerifyOptions {
    std::optional<std::filesystem::path> public_key;
};

struct VerifyResult {
    bool ok = false;
    std::vector<std::string> problems; // why it failed, one line each
    std::vector<std::string> checked;  // what passed, one line each
    std::string sha256;
    nlohmann::json to_json() const;
};

// Checks a bundle (FILE.tar.zst, or FILE.tar.zst.parts.json / a missing FILE.tar.zst whose
// parts index exists) against its .sha256 file, every part against the parts index, and with a
// public key the detached signature <name>.tar.zst.sig. Throws Error (bad input) for missing
// files and unreadable keys; mismatches are reported in the result.
VerifyResult verify_bundle(const std::filesystem::path& bundle, const VerifyOptions& options);

} // namespace edgeforge::content
