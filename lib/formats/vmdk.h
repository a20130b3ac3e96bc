// Converts raw disk images to VMDK streamOptimized sparse extents, the disk format of OVA packages.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace edgeforge::formats {

// The disk controller the embedded descriptor names (ddb.adapterType); it also picks the
// geometry: 16 heads for IDE, 255 for the SCSI adapters.
enum class VmdkAdapterType { ide, buslogic, lsilogic };

struct VmdkOptions {
    VmdkAdapterType adapter_type = VmdkAdapterType::lsilogic;
    // ddb.virtualHWVersion. Obsolete (only ESX 3.x and older read it); VMware's own stream
    // writers put 4 there.
    int hardware_version = 4;
    // The file name on the extent line of the embedded descriptor. Empty: the output's file
    // name (an OVA member keeps the name of its file).
    std::string extent_file_name;
    // Identifies the content of the raw image (its SHA-256, a cache key): the descriptor's CID
    // and ddb.longContentID derive from it. Empty: the data of the raw image is hashed first,
    // one extra read of its data regions (holes are skipped), since the descriptor comes before
    // the grains in the stream.
    std::string content_digest;
};

struct VmdkResult {
    std::uint64_t capacity = 0;   // bytes of disk the image describes (the raw image's size)
    std::uint64_t file_size = 0;  // bytes of the VMDK file
    std::uint64_t grains = 0;     // 64 KiB grains stored; all others read as zeros
    std::uint32_t content_id = 0; // the CID in the descriptor
    std::string sha256;           // of the VMDK file, hashed as it is written
};

// Writes `raw_image` as a monolithic VMDK streamOptimized sparse extent to `output` atomically
// (temporary name next to it, renamed into place when complete): version 3 header with compressed
// grains and markers, embedded descriptor, zlib-deflated 64 KiB grains each behind a grain
// marker, grain tables written after each 512 grains' range (ranges without data are left out),
// the grain directory, the footer (the header with the directory's offset) and the
// end-of-stream marker. All-zero grains are not stored. The raw image is streamed and memory
// stays bounded; the same input and options give the same bytes. Error (bad input) naming the
// file for a raw image that cannot be read, is empty, or is not a whole number of 512-byte
// sectors, and for unusable options; Error (build failed) when reading or writing fails.
// Nothing is left under `output` on failure.
VmdkResult write_vmdk_stream_optimized(const std::filesystem::path& raw_image,
                                       const std::filesystem::path& output,
                                       const VmdkOptions& options = {});

// The same stream written into the open file `out` from byte `offset` on, with pwrite (the rest
// of the file is the caller's, and so are flushing and the file's final size): a container (an
// OVA) gets its VMDK member without a copy through a temporary file. `out_name` names the file in
// messages; options.extent_file_name must be set. Errors as above (a failed write is Error
// (build failed) naming `out_name`); the bytes already written are left for the caller to drop.
VmdkResult write_vmdk_stream_optimized_into(const std::filesystem::path& raw_image, int out,
                                            std::uint64_t offset,
                                            const std::filesystem::path& out_name,
                                            const VmdkOptions& options);

} // namespace edgeforge::formats
