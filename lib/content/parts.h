// Split content bundles: <name>.part-000, -001, ... and their index <name>.parts.json (each
// part's size and sha256, and the whole archive's). `content build --split-size` writes them,
// `build iso --split-size` writes the same for the bundles it splits on the ISO, and
// `content verify` checks parts against the index wherever they are.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace edgeforge::content {

// How parts are named. edgeforge's own: NAME.part-000, -001, ...; CanvOS's (GNU `split
// --numeric-suffixes`, which the device-side agent looks for): NAME_part00, ..., NAME_part89,
// NAME_part9000, ..., NAME_part9899, NAME_part990000, ... (lexical order is part order).
enum class PartNaming { edgeforge, canvos };

// CanvOS splits content bundles on its ISOs into parts of `split --bytes=3GB`.
inline constexpr std::uint64_t k_canvos_part_size = 3'000'000'000;

struct BundlePart {
    std::string name; // "apps.tar.zst.part-000", next to the index
    std::uint64_t size = 0;
    std::string sha256; // lowercase hex
};

struct PartsIndex {
    std::string name; // the archive the parts reassemble to: "apps.tar.zst"
    std::uint64_t size = 0;
    std::string sha256; // of the whole archive, lowercase hex
    std::uint64_t split_size = 0;
    std::vector<BundlePart> parts;
    PartNaming naming = PartNaming::edgeforge; // for the "reassemble" hint

    // {"name", "size", "sha256", "splitSize", "reassemble": "cat NAME.part-* > NAME", "parts"}
    nlohmann::json to_json() const;
    std::string text() const { return to_json().dump(2) + "\n"; }
    // Throws Error (bad input) naming `file` when it cannot be read or is not a parts index.
    static PartsIndex read(const std::filesystem::path& file);
};

// FILE.parts.json for FILE.tar.zst, and back.
std::filesystem::path parts_index_path(const std::filesystem::path& archive);
bool is_parts_index(const std::filesystem::path& file); // named *.parts.json
std::filesystem::path archive_of_parts_index(const std::filesystem::path& index);

// The parts index a bundle reference means: the reference itself when it names a .parts.json,
// else <reference>.parts.json when the archive is not there but its index is; nullopt for a
// whole archive (or nothing at all).
std::optional<std::filesystem::path> split_bundle_index(const std::filesystem::path& bundle);

// "<name>.part-NNN", or CanvOS's "<name>_partNN" (see PartNaming).
std::string part_name(const std::string& archive_name, std::uint64_t number,
                      PartNaming naming = PartNaming::edgeforge);

// Reads `archive` once in parts of at most `split_size` bytes and returns their index (each
// part's name, size and sha256, and the whole archive's). `on_bytes` sees every byte, part by
// part in order; `on_part` runs after each part with its offset in the archive. Error (build
// failed) naming the file when it cannot be read or shrinks meanwhile.
PartsIndex split_into_parts(
    const std::filesystem::path& archive, std::uint64_t split_size,
    const std::function<void(const char* data, std::size_t size)>& on_bytes,
    const std::function<void(const BundlePart& part, std::uint64_t offset)>& on_part,
    PartNaming naming = PartNaming::edgeforge);

} // namespace edgeforge::content
