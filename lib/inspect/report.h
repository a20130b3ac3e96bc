// The inspect report model: what the readers found, as the JSON keys `inspect --json` prints.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "formats/iso_reader.h"
#include "fs/gpt.h"
#include "fs/squashfs_superblock.h"

namespace edgeforge::inspect {

// The report's top level: artifact, format, file_size, virtual_size; iso (ISO images); ova
// (members, disk); partition_table, hybrid_mbr, partition_table_problem, partitions;
// filesystems (device, partition, type, label, problem); the arrays esp, grub_cfg, squashfs,
// kernel, initrd and user_data, each item tagged with the device and label it was found on;
// libguestfs (backend, tcg, launch_seconds). render_artifact_report reads the same keys.

// "iso": volume_id, volume_size, el_torito (platform, bootable, emulation, load_block,
// sectors) and boot_catalog_block when there is a boot record.
nlohmann::json iso_report(const formats::IsoVolume& volume);

// Sets partition_table ("gpt", "mbr", "none"), hybrid_mbr and partition_table_problem (when
// set) of `report`.
void add_partition_table(const fs::PartitionTable& table, nlohmann::json& report);

// One item of "partitions": number, start, size; gpt_type, type_name, type_code and name for
// GPT entries; mbr_type ("0x83") and bootable for MBR entries. The caller adds device,
// filesystem and label.
nlohmann::json partition_report(const fs::PartitionEntry& partition);

// Adds what a squashfs superblock says to `out` (compression, compression_level,
// xz_dictionary_size, block_size, inode_count, fragment_count, bytes_used, version,
// modification_time), or "problem" when it could not be parsed.
void add_squashfs(const fs::SquashfsParse& parsed, nlohmann::json& out);

// A user-data file: size, sha256, lines, the first 5 lines (secrets masked), stylus_site (the
// stylus.site settings, secrets masked) and yaml_error when it is not YAML.
nlohmann::json user_data_summary(const std::string& content);

} // namespace edgeforge::inspect
