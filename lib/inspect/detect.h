// Tells the artifact kinds edgeforge builds apart by their first bytes, never by their name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace edgeforge::inspect {

// The artifact kinds edgeforge builds, told apart by their content, never by their name.
enum class ArtifactFormat { unknown, iso, raw, qcow2, vmdk, ova };

std::string_view format_name(ArtifactFormat format);

// What `inspect` reads, for error messages that reject a file.
inline constexpr std::string_view k_supported_formats =
    "supported are ISO 9660 images, raw disks with a GPT or MBR partition table, QCOW2, VMDK "
    "(sparse) and OVA (tar with a VMDK), recognised by their content whatever the file is called";

// How many leading bytes detect_format needs to see: the ISO 9660 primary volume descriptor
// sits at 0x8000 and a GPT header of 4096-byte sectors at 4096.
inline constexpr std::size_t k_detect_bytes = 0x8800;

// The format of an artifact from its first bytes (fewer than k_detect_bytes when the file is
// shorter): QCOW2 ("QFI\xfb"), sparse VMDK ("KDMV"), ustar tar (an OVA), ISO 9660 ("CD001" at
// 0x8001; checked before the partition tables because hybrid ISOs carry an MBR and a GPT too),
// then a raw disk with a GPT ("EFI PART" at 512 or 4096) or an MBR with a partition.
ArtifactFormat detect_format(std::span<const std::uint8_t> head);

// The first k_detect_bytes of the file at `path` (all of it when shorter) and its size. Error
// (bad input, "inspect: FILE: ...") when it cannot be opened or read, or is neither a regular
// file nor a block device.
std::vector<std::uint8_t> read_artifact_head(const std::filesystem::path& path,
                                             std::uint64_t& file_size);

// The format of the file at `path`. Error (bad input, "inspect: FILE: ...") when the file cannot
// be read, is not a regular file, or is none of the supported formats.
ArtifactFormat detect_file_format(const std::filesystem::path& path);

} // namespace edgeforge::inspect
