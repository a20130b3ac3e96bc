// Writes an fs::Tree as a newc cpio archive (the kernel's initramfs format).
#include "fs/cpio.h"

#include <array>
#include <sys/stat.h>
#include <unordered_map>

#include <fmt/format.h>

#include "base/error.h"

namespace edgeforge::fs {
namespace {

constexpr std::uint64_t k_max_file_size = 0xFFFFFFFFULL; // newc's c_filesize is 32 bits
constexpr std::size_t k_max_name = 4095;                // with its NUL: the kernel's PATH_MAX
constexpr std::size_t k_skipped_xattrs_kept = 16;

std::uint32_t type_bits(FileType type) {
    switch (type) {
    case FileType::regular:
        return S_IFREG;
    case FileType::directory:
        return S_IFDIR;
    case FileType::symlink:
        return S_IFLNK;
    case FileType::char_device:
        return S_IFCHR;
    case FileType::block_device:
        return S_IFBLK;
    case FileType::fifo:
        return S_IFIFO;
    case FileType::socket:
        return S_IFSOCK;
    }
    return S_IFREG;
}

bool under(std::string_view path, std::string_view directory) {
    return path.size() > directory.size() && path.starts_with(directory) &&
           path[directory.size()] == '/';
}

class Writer {
  public:
    Writer(const CpioSink& sink) : sink_(sink) {}

    void emit(const void* data, std::size_t size) {
        if (size > 0) {
            sink_(static_cast<const char*>(data), size);
            written_ += size;
        }
    }
    void pad() {
        static constexpr std::array<char, 4> zeros{};
        emit(zeros.data(), (4 - written_ % 4) % 4);
    }
    // One member header and its name, padded; the data (if any) follows.
    void header(std::uint32_t ino, std::uint32_t mode, std::uint32_t uid, std::uint32_t gid,
                std::uint32_t nlink, std::int64_t mtime, std::uint64_t size, DeviceNumber rdev,
                std::string_view name) {
        const std::uint32_t time =
            mtime <= 0 ? 0 : (mtime > 0xFFFFFFFFLL ? 0xFFFFFFFFU : static_cast<std::uint32_t>(mtime));
        const std::string text = fmt::format(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            ino, mode, uid, gid, nlink, time, static_cast<std::uint32_t>(size), 0, 0, rdev.major,
            rdev.minor, static_cast<std::uint32_t>(name.size() + 1), 0);
        emit(text.data(), text.size());
        emit(name.data(), name.size());
        emit("", 1);
        pad();
    }
    std::uint64_t written() const { return written_; }

  private:
    const CpioSink& sink_;
    std::uint64_t written_ = 0;
};

} // namespace

CpioStats write_cpio(const Tree& tree, const SpillFile& spill, const CpioOptions& options,
                     const CpioSink& sink, const CpioProgress& progress) {
    CpioStats stats;
    Writer writer(sink);
    const auto link_counts = tree.link_counts();
    std::unordered_map<const Inode*, std::uint32_t> inode_numbers;
    std::uint32_t next_inode = 1;

    tree.walk([&](const WalkEntry& entry) {
        for (const auto& directory : options.emptied_directories) {
            if (under(entry.path, directory)) {
                return;
            }
        }
        const Inode& inode = entry.inode;
        const std::string name = entry.depth == 0 ? "." : std::string(entry.path.substr(1));
        if (name.size() > k_max_name) {
            throw bad_input("{}: the path is {} bytes long; an initramfs (cpio) takes at most {}",
                            std::string(entry.path.substr(0, 64)) + "...", name.size(), k_max_name);
        }
        for (const auto& xattr : inode.xattrs) {
            ++stats.skipped_xattr_count;
            if (stats.skipped_xattrs.size() < k_skipped_xattrs_kept) {
                stats.skipped_xattrs.push_back(fmt::format("{}: {}", entry.path, xattr.first));
            }
        }
        const auto [found, first_name] = inode_numbers.try_emplace(&inode, next_inode);
        if (first_name) {
            ++next_inode;
        }
        const auto links = link_counts.find(&inode);
        const std::uint32_t nlink = links == link_counts.end() ? 1 : links->second;
        std::uint64_t size = 0;
        std::string symlink_target;
        if (inode.is_regular() && first_name) {
            size = inode.size();
            if (size > k_max_file_size) {
                throw bad_input("{}: {} bytes; an initramfs (cpio newc) holds files below 4 GiB",
                                entry.path, size);
            }
        } else if (inode.is_symlink()) {
            size = inode.symlink_target.size();
        }
        writer.header(found->second, type_bits(inode.type) | (inode.mode & 07777), inode.uid,
                      inode.gid, nlink, inode.mtime, size, inode.rdev, name);
        ++stats.entries;
        if (inode.is_symlink()) {
            writer.emit(inode.symlink_target.data(), inode.symlink_target.size());
        } else if (size > 0) {
            std::uint64_t copied = 0;
            read_data(inode, spill, [&](const char* data, std::size_t chunk) {
                writer.emit(data, chunk);
                copied += chunk;
                stats.data_bytes += chunk;
                if (progress) {
                    progress(stats.data_bytes);
                }
            });
            if (copied != size) {
                throw build_failed("{}: read {} bytes of its {} for the initramfs", entry.path,
                                   copied, size);
            }
        }
        writer.pad();
    });
    writer.header(0, 0, 0, 0, 1, 0, 0, DeviceNumber{}, "TRAILER!!!");
    stats.bytes_out = writer.written();
    return stats;
}

} // namespace edgeforge::fs
