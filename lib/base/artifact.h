// A finished output file (path, size, SHA-256) and the sha256sum-format checksum file next to it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace edgeforge {

struct Artifact {
    std::filesystem::path path;
    std::uint64_t size = 0;
    std::string sha256;
};

// Writes <artifact>.sha256 next to the artifact, in sha256sum format ("HEX  NAME"), atomically,
// and returns it as an artifact of its own. Throws Error (build failed) naming the file.
Artifact write_checksum_file(const Artifact& artifact);
// The file as an artifact (size, SHA-256 read from it) with its .sha256 written next to it.
Artifact artifact_with_checksum(const std::filesystem::path& path);

} // namespace edgeforge
