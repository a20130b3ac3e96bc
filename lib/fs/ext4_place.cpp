// Adds big files to an ext4 image that mke2fs made: blocks allocated with libext2fs, data copied
// into them by the kernel.
#include "fs/ext4_place.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "base/error.h"
#include "util/fd.h"
#include "util/units.h"

namespace edgeforge::fs {
namespace {

std::string message_of(errcode_t code) {
    const char* text = ::error_message(code);
    return text != nullptr ? text : fmt::format("libext2fs error {}", code);
}

// An open filesystem that is dropped unwritten unless close() flushes it: a failure halfway
// leaves the image as mke2fs made it (and its caller removes it).
class OpenFilesystem {
  public:
    OpenFilesystem(const std::filesystem::path& image, const std::filesystem::path& display,
                   std::optional<std::int64_t> now) {
        if (const errcode_t code =
                ::ext2fs_open2(image.c_str(), nullptr, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0,
                               unix_io_manager, &filesystem_)) {
            throw build_failed("cannot open the ext4 image {} to add files: {}", display.string(),
                               message_of(code));
        }
        if (const errcode_t code = ::ext2fs_read_bitmaps(filesystem_)) {
            throw build_failed("cannot read the bitmaps of the ext4 image {}: {}", display.string(),
                               message_of(code));
        }
        if (now) {
            // What libext2fs stamps (the superblock's write time) instead of the clock's time.
            filesystem_->now = static_cast<time_t>(*now);
        }
    }
    ~OpenFilesystem() {
        if (filesystem_ != nullptr) {
            ::ext2fs_free(filesystem_);
        }
    }
    OpenFilesystem(const OpenFilesystem&) = delete;
    OpenFilesystem& operator=(const OpenFilesystem&) = delete;

    ext2_filsys get() const { return filesystem_; }

    // Writes bitmaps, group descriptors and the superblock back.
    void close(const std::filesystem::path& display) {
        if (const errcode_t code = ::ext2fs_close_free(&filesystem_)) {
            throw build_failed("cannot write the ext4 image {} back: {}", display.string(),
                               message_of(code));
        }
    }

  private:
    ext2_filsys filesystem_ = nullptr;
};

struct ExtentHandleFree {
    void operator()(struct ext2_extent_handle* handle) const { ::ext2fs_extent_free(handle); }
};

// Where the file's blocks are: logical block, physical block, blocks.
struct Run {
    std::uint64_t logical = 0;
    std::uint64_t physical = 0;
    std::uint64_t blocks = 0;
};

// Creates `path` (its directory must exist) as a regular file of `size` bytes whose blocks are
// allocated and initialised (not unwritten: readers see what is copied there), and returns where
// they are.
std::vector<Run> allocate(ext2_filsys filesystem, const std::string& path, const struct stat& host,
                          const std::filesystem::path& display) {
    const auto fail = [&](std::string_view what, errcode_t code) {
        return build_failed("cannot add {} to the ext4 image {}: {}: {}", path, display.string(),
                            what, message_of(code));
    };
    const auto slash = path.rfind('/');
    if (path.empty() || path[0] != '/' || slash == std::string::npos || slash + 1 == path.size()) {
        throw bad_input("cannot add '{}' to the ext4 image {}: give an absolute path to a file",
                        path, display.string());
    }
    const std::string directory = slash == 0 ? "/" : path.substr(0, slash);
    const std::string name = path.substr(slash + 1);
    ext2_ino_t parent = 0;
    if (::ext2fs_namei(filesystem, EXT2_ROOT_INO, EXT2_ROOT_INO, directory.c_str(), &parent) != 0) {
        throw bad_input("cannot add {} to the ext4 image {}: its directory {} is not in it", path,
                        display.string(), directory);
    }
    ext2_ino_t existing = 0;
    if (::ext2fs_namei(filesystem, EXT2_ROOT_INO, EXT2_ROOT_INO, path.c_str(), &existing) == 0) {
        throw bad_input("cannot add {} to the ext4 image {}: the tree copied into it already has "
                        "it",
                        path, display.string());
    }
    const auto mode = static_cast<__u16>(LINUX_S_IFREG | (host.st_mode & 07777));
    ext2_ino_t inode_number = 0;
    if (const errcode_t code =
            ::ext2fs_new_inode(filesystem, parent, mode, nullptr, &inode_number)) {
        throw fail("no inode", code);
    }
    errcode_t code =
        ::ext2fs_link(filesystem, parent, name.c_str(), inode_number, EXT2_FT_REG_FILE);
    if (code == EXT2_ET_DIR_NO_SPACE) {
        if (const errcode_t expanded = ::ext2fs_expand_dir(filesystem, parent)) {
            throw fail("cannot grow its directory", expanded);
        }
        code = ::ext2fs_link(filesystem, parent, name.c_str(), inode_number, EXT2_FT_REG_FILE);
    }
    if (code != 0) {
        throw fail("cannot link it", code);
    }
    ::ext2fs_inode_alloc_stats2(filesystem, inode_number, +1, 0);

    struct ext2_inode inode {};
    inode.i_mode = mode;
    inode.i_links_count = 1;
    // The host file's times, as mke2fs -d copies them (a reproducible image gets its own later).
    inode.i_atime = static_cast<__u32>(host.st_atime);
    inode.i_mtime = static_cast<__u32>(host.st_mtime);
    inode.i_ctime = static_cast<__u32>(host.st_ctime);
    const auto size = static_cast<std::uint64_t>(host.st_size);
    if (const errcode_t sized =
            ::ext2fs_inode_size_set(filesystem, &inode, static_cast<ext2_off64_t>(size))) {
        throw fail("cannot set its size", sized);
    }
    // An empty extent tree in the inode, as mke2fs -d starts every file.
    ext2_extent_handle_t opened = nullptr;
    if (const errcode_t started =
            ::ext2fs_extent_open2(filesystem, inode_number, &inode, &opened)) {
        throw fail("cannot start its extent tree", started);
    }
    ::ext2fs_extent_free(opened);
    if (const errcode_t written = ::ext2fs_write_new_inode(filesystem, inode_number, &inode)) {
        throw fail("cannot write its inode", written);
    }
    const std::uint64_t block_size = filesystem->blocksize;
    const std::uint64_t blocks = util::divide_round_up(size, block_size);
    std::vector<Run> runs;
    if (blocks == 0) {
        return runs;
    }
    // Initialised extents inside the file's size, blocks not zeroed: every byte of them is
    // written below.
    if (const errcode_t placed = ::ext2fs_fallocate(filesystem, EXT2_FALLOCATE_FORCE_INIT,
                                                    inode_number, &inode, ~blk64_t{0}, 0, blocks)) {
        if (placed == EXT2_ET_BLOCK_ALLOC_FAIL) {
            throw build_failed("the ext4 image {} has no room for {} ({} bytes); it needs a bigger "
                               "partition",
                               display.string(), path, size);
        }
        throw fail("cannot allocate its blocks", placed);
    }
    ext2_extent_handle_t raw_handle = nullptr;
    if (const errcode_t reopened =
            ::ext2fs_extent_open2(filesystem, inode_number, &inode, &raw_handle)) {
        throw fail("cannot read its extent tree", reopened);
    }
    const std::unique_ptr<struct ext2_extent_handle, ExtentHandleFree> handle(raw_handle);
    struct ext2fs_extent extent {};
    std::uint64_t covered = 0;
    for (errcode_t step = ::ext2fs_extent_get(handle.get(), EXT2_EXTENT_ROOT, &extent); step == 0;
         step = ::ext2fs_extent_get(handle.get(), EXT2_EXTENT_NEXT_LEAF, &extent)) {
        if ((extent.e_flags & EXT2_EXTENT_FLAGS_LEAF) == 0) {
            continue;
        }
        if ((extent.e_flags & EXT2_EXTENT_FLAGS_UNINIT) != 0 || extent.e_lblk != covered) {
            throw build_failed("cannot add {} to the ext4 image {}: libext2fs allocated blocks "
                               "it cannot be copied into (unwritten or out of order at block {}); "
                               "this is a bug of edgeforge's with this e2fsprogs version, please "
                               "report it with `edgeforge version`",
                               path, display.string(), covered);
        }
        runs.push_back({extent.e_lblk, extent.e_pblk, extent.e_len});
        covered += extent.e_len;
    }
    if (covered != blocks) {
        throw build_failed("cannot add {} to the ext4 image {}: {} of its {} blocks were "
                           "allocated; this is a bug of edgeforge's with this e2fsprogs version, "
                           "please report it with `edgeforge version`",
                           path, display.string(), covered, blocks);
    }
    return runs;
}

} // namespace

std::vector<util::FileExtent>
place_ext4_files(const std::filesystem::path& image,
                 const std::map<std::string, std::filesystem::path>& files,
                 const std::filesystem::path& display,
                 std::optional<std::int64_t> source_date_epoch, PlacedData data) {
    std::vector<util::FileExtent> extents;
    if (files.empty()) {
        return extents;
    }
    // Each file stays open from its size being read to its bytes being copied.
    struct Opened {
        util::FileDescriptor fd;
        std::size_t first_extent = 0;
    };
    std::vector<Opened> opened;
    {
        OpenFilesystem filesystem(image, display, source_date_epoch);
        const std::uint64_t block_size = filesystem.get()->blocksize;
        for (const auto& [path, source] : files) {
            Opened file{util::FileDescriptor(::open(source.c_str(), O_RDONLY | O_CLOEXEC)),
                        extents.size()};
            struct stat host {};
            if (!file.fd.valid() || ::fstat(file.fd.get(), &host) != 0) {
                throw build_failed("cannot read {} for the ext4 image {}: {}", source.string(),
                                   display.string(), std::strerror(errno));
            }
            if (!S_ISREG(host.st_mode)) {
                throw bad_input("cannot add {} to the ext4 image {}: it is not a regular file",
                                source.string(), display.string());
            }
            const auto size = static_cast<std::uint64_t>(host.st_size);
            for (const Run& run : allocate(filesystem.get(), path, host, display)) {
                const std::uint64_t from = run.logical * block_size;
                extents.push_back({run.physical * block_size, source, from,
                                   std::min(run.blocks * block_size, size - from)});
            }
            opened.push_back(std::move(file));
        }
        filesystem.close(display);
    }
    if (data == PlacedData::returned) {
        return extents;
    }
    const util::FileDescriptor out(::open(image.c_str(), O_WRONLY | O_CLOEXEC));
    if (!out.valid()) {
        throw build_failed("cannot write to the ext4 image {}: {}", display.string(),
                           std::strerror(errno));
    }
    for (std::size_t i = 0; i < opened.size(); ++i) {
        const std::size_t end = i + 1 < opened.size() ? opened[i + 1].first_extent : extents.size();
        for (std::size_t e = opened[i].first_extent; e < end; ++e) {
            const util::FileExtent& extent = extents[e];
            if (!util::copy_range(opened[i].fd.get(), extent.file_offset, out.get(), extent.offset,
                                  extent.length)) {
                throw build_failed("cannot copy {} into the ext4 image {}: {}; check that it is "
                                   "not changing during the build and that there is space",
                                   extent.file.string(), display.string(), std::strerror(errno));
            }
        }
    }
    return extents;
}

} // namespace edgeforge::fs
