// Builds ext4 filesystem images from a directory without root (mke2fs -d), reproducibly on request.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/ext4_place.h"
#include "util/fs.h"

namespace edgeforge::fs {

// An ext4 volume label holds at most 16 bytes.
inline constexpr std::size_t k_ext4_label_max = 16;
// Images are made of 4 KiB blocks whatever their size (mke2fs would pick 1 KiB blocks for small
// ones), so an image size is a whole number of them.
inline constexpr std::uint64_t k_ext4_block_size = 4096;

struct Ext4ImageOptions {
    // durable: the image is flushed to disk before it is renamed into place; scratch (a
    // partition image that is copied into a disk and removed): only renamed.
    util::Durability durability = util::Durability::durable;
    // Files whose content the caller already identifies (a path in the image, "/boot/kernel",
    // to a digest or cache key of that content): the reproducible UUID and hash seed take the
    // identifier instead of hashing the file again. A wrong identifier only gives another UUID.
    std::map<std::string, std::string> content_ids;
    // Big files added after mke2fs (a path in the image, "/rootfs.squashfs", to the host file;
    // `directory_or_empty` must not hold them): allocated in one go with libext2fs and copied in
    // by the kernel instead of 4 KiB at a time (see fs/ext4_place.h). Their directories must be
    // in the tree. Owners and times are set as for the tree's files.
    std::map<std::string, std::filesystem::path> placed_files;
    // copied: the placed files' bytes are copied into the image. returned: their blocks are
    // left as holes and Ext4Image::unwritten says where their bytes go, for a disk writer that
    // copies the image to take them from the files themselves (one copy of them instead of two).
    PlacedData placed_data = PlacedData::copied;
};

struct Ext4Image {
    std::filesystem::path path;
    // With PlacedData::returned: the placed files' bytes that belong in the image (offsets in it).
    std::vector<util::FileExtent> unwritten;
};

// Writes an ext4 filesystem image of `size` bytes labelled `label` to `output`, holding a copy of
// `directory_or_empty` (an empty path gives an empty filesystem), atomically: nothing appears
// under `output` unless the image is complete (but for Ext4ImageOptions::placed_data). Returns
// `output` and, with PlacedData::returned, the placed bytes it leaves to the caller.
//
// Rootless: mke2fs -d copies the tree into the image file, and debugfs then makes every file
// owned by root (uid and gid 0), as the media's files are meant to be whoever builds them;
// permission bits, symlinks, hard links and special files are kept; extended attributes of the
// build host are not copied. The feature set, block and inode sizes are fixed rather than taken
// from the host's mke2fs.conf.
//
// With source_date_epoch, the image is byte-for-byte reproducible: every inode time and every
// superblock time is that time (E2FSPROGS_FAKE_TIME for mke2fs's own, debugfs for the ones
// mke2fs -d copies from the host files, whose change times no user can set), and the filesystem
// UUID and directory hash seed are derived from the label, the size, the time and the tree's
// content. Without it, times are the host's and the UUID is random, as mke2fs makes them.
//
// Error (bad input) for a size that is not a positive multiple of 4 KiB, a label over 16 bytes,
// a directory that does not exist or holds names with a newline, or a negative
// source_date_epoch; Error (build failed) naming the tool and quoting its message when mke2fs or
// debugfs is missing or fails (a tree too big for the size, an unreadable file).
Ext4Image make_ext4_image(const std::filesystem::path& directory_or_empty, std::uint64_t size,
                          std::string_view label, const std::filesystem::path& output,
                          std::optional<std::int64_t> source_date_epoch,
                          const Ext4ImageOptions& options = {});

} // namespace edgeforge::fs
