// Google Compute Engine images: the raw disk as disk.raw in a gzip'd GNU tar.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace edgeforge::formats {

// GCE imports disks whose size is a whole number of GiB.
inline constexpr std::uint64_t k_gce_size_alignment = std::uint64_t{1} << 30;

struct GceTarballResult {
    std::uint64_t size = 0; // bytes of the .tar.gz
    std::string sha256;     // of the .tar.gz, hashed as it was written
};

// Writes `raw` (GCE imports only whole GiB: produce_gce sizes the disk so) as the single member
// disk.raw (mode 0644, owner 0:0 root/root, mtime `mtime`) of a GNU-format tar, gzip'd without a
// name or timestamp in the gzip header, to `output` atomically. The holes of the raw file are not
// read, but stored as the zeros they are (GCE does not need a sparse tar). The same raw and mtime
// give the same bytes. Error (bad input) for a raw that cannot be read, is empty or not whole
// sectors; Error (build failed) when writing fails.
GceTarballResult write_gce_tarball(const std::filesystem::path& raw,
                                   const std::filesystem::path& output, std::int64_t mtime);

} // namespace edgeforge::formats
