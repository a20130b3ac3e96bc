// Checks the structure an artifact's headers declare (volume and disk sizes, table positions,
// field ranges) against the file before `inspect` reports anything or hands the file to
// libguestfs: a damaged or cut-short artifact is bad input, never a report of impossible facts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "fs/gpt.h"
#include "inspect/detect.h"

namespace edgeforge::inspect {

// Bytes at an offset of the artifact (fewer at its end, none past it).
using ReadAt = std::function<std::vector<std::uint8_t>(std::uint64_t offset, std::size_t size)>;

// What is wrong with the headers of an artifact of `format` that is `file_size` bytes long,
// one line each; empty when nothing is. Reads only headers and tables (a few KiB).
std::vector<std::string> structure_problems(ArtifactFormat format, std::uint64_t file_size,
                                            const ReadAt& read);

// What is wrong with a partition table read from a disk of `disk_size` bytes: the reader's
// own finding (CRC, header size) and partitions that end past the disk.
std::vector<std::string> partition_table_problems(const fs::PartitionTable& table,
                                                  std::uint64_t disk_size);

// structure_problems() of the file at `path`; throws Error (bad input) naming the file and
// every problem when there is one.
void check_structure(const std::filesystem::path& path, ArtifactFormat format);

} // namespace edgeforge::inspect
