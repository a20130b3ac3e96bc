// Where a bundle's files are: the archive, or a split bundle's parts index and parts; and its
// sha256sum file. Shared by building (incremental bundles), reading and verifying.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "content/parts.h"

namespace edgeforge::content {

// Read and copy buffers of bundle files.
inline constexpr std::size_t k_buffer_size = 1u << 20;

// The archive's own name and, for split bundles, its parts in order.
struct BundleFiles {
    std::filesystem::path archive; // <name>.tar.zst (may not exist when split)
    std::optional<std::filesystem::path> parts_index;
    std::vector<std::filesystem::path> parts;
    PartsIndex index;
};

// The bundle named by `given` (<name>.tar.zst or its .parts.json). Error (bad input) when
// neither exists.
BundleFiles locate_bundle(const std::filesystem::path& given);
// The hex digest of a sha256sum-format file ("HEX  NAME"); Error (bad input) otherwise.
std::string read_checksum_file(const std::filesystem::path& file);

} // namespace edgeforge::content
