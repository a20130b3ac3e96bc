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

// "<name>.part-NNN"
std::string part_name(const std::string& archive_name, std::uint64_t number);

// Reads `archive` once in parts of at most `split_size` bytes and returns their index (each
// part's name, size and sha256, and the whole archive's). `on_bytes` sees every byte, part by
// part in order; `on_part` runs after each part with its offset in the archive. Error (build
// failed) naming the file when it cannot be read or shrinks meanwhile.
PartsIndex split_into_parts(
    const std::filesystem::path& archive, std::uint64_t split_size,
    const std::function<void(const char* data, std::size_t size)>& on_bytes,
    const std::function<void(const BundlePart& part, std::uint64_t offset)>& on_part);

} // namespace edgeforge::content
