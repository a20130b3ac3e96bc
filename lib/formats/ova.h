// OVA packages for vSphere: a streamOptimized VMDK, its OVF descriptor and manifest, in a tar.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "base/arch.h"

namespace edgeforge::formats {

struct OvaOptions {
    std::string name;                     // the VM name; members are <name>.ovf, .mf, -disk1.vmdk
    Arch arch;                            // the guest OS type in the OVF
    int cpus = 2;                         // 1-768
    std::uint64_t memory_bytes = 8ULL << 30; // whole MiB, at least 1 MiB
    int hardware_version = 14;            // vmx-NN, 7-21
    bool efi = true;                      // firmware=efi (our disks boot UEFI)
    std::string content_digest;           // identifies the raw image (VMDK CID); empty: hashed
    std::optional<std::int64_t> source_date_epoch; // member mtimes; now when unset
    std::filesystem::path templates;      // empty: templates_directory()
};

struct OvaResult {
    std::filesystem::path path;
    std::uint64_t size = 0;
    std::string sha256;        // of the .ova
    std::uint64_t capacity = 0; // bytes of disk
    std::uint64_t vmdk_size = 0;
    std::string ovf;           // the descriptor, as packed
    std::string manifest;      // the .mf, as packed
};

// Converts `raw_image` to a VMDK streamOptimized, renders templates/ovf/ova.ovf (name, CPUs,
// memory, SCSI controller, VMXNET3 NIC, firmware, disk capacity and file size), writes the
// manifest with lines exactly "SHA256(<file>)= <hex>", and packs .ovf, .mf and .vmdk in that
// order into a ustar archive at `output`, atomically. The VMDK is written straight into the
// archive (no temporary copy of it). Error (bad input) for options out of range; errors of the
// VMDK writer pass through.
OvaResult write_ova(const std::filesystem::path& raw_image, const std::filesystem::path& output,
                    const OvaOptions& options);

} // namespace edgeforge::formats
