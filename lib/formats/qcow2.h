// Converts raw disk images to QCOW2 version 3 images in-process, streaming.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace edgeforge::formats {

inline constexpr std::uint32_t k_qcow2_default_cluster_size = 65536;

struct Qcow2Options {
    // Deflate each data cluster (raw deflate with a 4 KiB window, as qemu reads it). Clusters
    // that do not shrink are stored as they are.
    bool compress = false;
    // A power of two from 512 bytes to 2 MiB, as qemu accepts.
    std::uint32_t cluster_size = k_qcow2_default_cluster_size;
    // Hash the image into Qcow2Result::sha256 as it is written (the image is laid out before its
    // first byte is written, so it is written once, front to back).
    bool compute_sha256 = false;
};

struct Qcow2Result {
    std::uint64_t virtual_size = 0;        // bytes, the size of the raw image
    std::uint64_t file_size = 0;           // bytes of the qcow2 file
    std::uint64_t allocated_clusters = 0;  // guest clusters stored; all others read as zeros
    std::uint64_t compressed_clusters = 0; // of those, the ones stored deflated
    std::optional<std::string> sha256;     // of the qcow2 file, when asked for
};

// Writes `raw_image` as a QCOW2 v3 image (no backing file, 16-bit refcounts) to `output`
// atomically: a temporary name next to it, renamed into place when complete. Clusters that are
// entirely zero are left unallocated. The raw image is read twice, holes skipped without reading
// them: once to find its data clusters (and, compressing, their deflated sizes) so that the
// whole layout is known, then to copy them into the image, which is written once, front to back
// (O_DIRECT where the file system allows it). Memory: a few MiB of buffers plus one bit per
// guest cluster; the same input and options always give the same bytes. Error (bad input)
// naming the file for a raw image that cannot be read, is empty, or is not a whole number of
// 512-byte sectors, and for unusable options; Error (build failed) when reading or writing
// fails, or when the raw image changes between the two reads. Nothing is left under `output`
// on failure.
Qcow2Result write_qcow2(const std::filesystem::path& raw_image, const std::filesystem::path& output,
                        const Qcow2Options& options = {});

} // namespace edgeforge::formats
