// Adds big files to an ext4 image that mke2fs made: blocks allocated with libext2fs, data copied
// into them by the kernel.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/file_extent.h"

namespace edgeforge::fs {

// What place_ext4_files does with the files' bytes once their blocks are allocated.
enum class PlacedData {
    copied, // copied into the image: the image is complete
    // left out (the blocks stay holes) and returned: the image is complete only with them
    // copied over it, which a disk writer does as it copies the image (saving one copy)
    returned,
};

// Adds each file of `files` (a path in the image, "/rootfs.squashfs", to the host file) to the
// ext4 filesystem in the image file `image`: a regular file with the host file's permission bits,
// its blocks allocated as initialised extents in one go (libext2fs), then, with PlacedData::copied,
// the host file's bytes copied to where those blocks are with copy_file_range. The same image and
// files give the same bytes. mke2fs -d writes a file 4 KiB at a time through its I/O cache; this
// is one kernel copy. Returns where each file's bytes go in the image (offsets in bytes, in the
// order of `files` and of their blocks; with PlacedData::copied they are already there).
// Owners and inode times are left to the caller (root and the time of the image's creation);
// with source_date_epoch, the superblock's write time is that time, not the clock's.
//
// `display` names the image in messages. Error (bad input) for a path whose directory is not in
// the image, or that is already there; Error (build failed) when the filesystem has no room for
// a file (naming it and its size), or libext2fs or the copy fail.
std::vector<util::FileExtent> place_ext4_files(
    const std::filesystem::path& image, const std::map<std::string, std::filesystem::path>& files,
    const std::filesystem::path& display, std::optional<std::int64_t> source_date_epoch,
    PlacedData data = PlacedData::copied);

} // namespace edgeforge::fs
