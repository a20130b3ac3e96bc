#include "base/artifact.h"

#include <system_error>

#include <fmt/format.h>

#include "base/error.h"
#include "util/digest.h"
#include "util/fs.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

Artifact write_checksum_file(const Artifact& artifact) {
    const stdfs::path path = artifact.path.string() + ".sha256";
    const std::string line =
        fmt::format("{}  {}\n", artifact.sha256, artifact.path.filename().string());
    try {
        util::write_file_atomically(path, line);
    } catch (const std::system_error& error) {
        throw build_failed("cannot write {}: {}", path.string(), error.what());
    }
    return Artifact{path, line.size(), util::sha256_hex(line)};
}

Artifact artifact_with_checksum(const stdfs::path& path) {
    const Artifact artifact{path, stdfs::file_size(path), util::sha256_file_hex(path)};
    write_checksum_file(artifact);
    return artifact;
}

} // namespace edgeforge
