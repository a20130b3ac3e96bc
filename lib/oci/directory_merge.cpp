// Merges a host directory into an fs::Tree (overlays, dir: layers): ownership, existing
// directories and extended attributes as DirectoryOptions say.
#include "oci/merge.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/error.h"
#include "util/fd.h"

namespace edgeforge::oci {
namespace {

using util::FileDescriptor;

struct DirectoryCloser {
    void operator()(DIR* directory) const { ::closedir(directory); }
};

// Merges a host directory: lstat for metadata, file data referenced in place.
class DirectoryMerger {
  public:
    DirectoryMerger(fs::Tree& tree, const DirectoryOptions& options, MergeStats& stats)
        : tree_(tree), options_(options), stats_(stats) {}

    void merge(const std::filesystem::path& root) {
        const auto absolute = std::filesystem::absolute(root);
        struct stat info {};
        // The root itself may be a symbolic link to the directory (dir:/srv/current).
        if (::stat(absolute.c_str(), &info) != 0) {
            throw bad_input("cannot read {}: {}", absolute.string(), std::strerror(errno));
        }
        if (!S_ISDIR(info.st_mode)) {
            throw bad_input("{} is not a directory", absolute.string());
        }
        if (options_.existing_directories == ExistingDirectories::take_metadata) {
            apply_metadata(tree_.root(), info, absolute);
        }
        merge_directory(absolute, tree_.root(), "");
    }

  private:
    static struct stat stat_path(const std::filesystem::path& path) {
        struct stat info {};
        if (::lstat(path.c_str(), &info) != 0) {
            throw bad_input("cannot read {}: {}", path.string(), std::strerror(errno));
        }
        return info;
    }

    [[noreturn]] static void fail_unreadable(const std::filesystem::path& path, int error) {
        throw bad_input("cannot read {}: {}{}", path.string(), std::strerror(error),
                        error == EACCES ? "; edgeforge runs without root, so everything it puts "
                                          "into the image must be readable by the user running it"
                                        : "");
    }

    std::vector<std::string> list(const std::filesystem::path& directory) const {
        std::unique_ptr<DIR, DirectoryCloser> handle(::opendir(directory.c_str()));
        if (!handle) {
            fail_unreadable(directory, errno);
        }
        std::vector<std::string> names;
        errno = 0;
        while (const dirent* item = ::readdir(handle.get())) {
            const std::string_view name = item->d_name;
            if (name != "." && name != "..") {
                names.emplace_back(name);
            }
        }
        if (errno != 0) {
            fail_unreadable(directory, errno);
        }
        std::sort(names.begin(), names.end());
        return names;
    }

    void apply_metadata(fs::Inode& inode, const struct stat& info,
                        const std::filesystem::path& path) const {
        inode.mode = static_cast<std::uint32_t>(info.st_mode) & 07777U;
        inode.uid = options_.ownership == Ownership::root ? 0 : info.st_uid;
        inode.gid = options_.ownership == Ownership::root ? 0 : info.st_gid;
        inode.mtime = static_cast<std::int64_t>(info.st_mtim.tv_sec);
        inode.xattrs.clear();
        if (options_.xattrs == HostXattrs::keep) {
            read_xattrs(path, inode);
        }
    }

    static void read_xattrs(const std::filesystem::path& path, fs::Inode& inode) {
        const ssize_t length = ::llistxattr(path.c_str(), nullptr, 0);
        if (length <= 0) {
            return; // none, or a file system without extended attributes
        }
        std::string names(static_cast<std::size_t>(length), '\0');
        const ssize_t got = ::llistxattr(path.c_str(), names.data(), names.size());
        if (got <= 0) {
            return;
        }
        names.resize(static_cast<std::size_t>(got));
        for (std::size_t start = 0; start < names.size();) {
            const std::string name = names.c_str() + start;
            start += name.size() + 1;
            if (name.empty() || name == "security.selinux") {
                continue; // a label of the build host, not part of the image
            }
            const ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
            if (size < 0) {
                continue;
            }
            std::string value(static_cast<std::size_t>(size), '\0');
            const ssize_t read =
                ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
            if (read >= 0) {
                value.resize(static_cast<std::size_t>(read));
                inode.xattrs[name] = std::move(value);
            }
        }
    }

    std::shared_ptr<fs::Inode> make_inode(const std::filesystem::path& path,
                                          const struct stat& info) {
        if (!S_ISDIR(info.st_mode) && info.st_nlink > 1) {
            const auto found = links_.find({info.st_dev, info.st_ino});
            if (found != links_.end()) {
                ++stats_.hard_links;
                return found->second;
            }
        }
        auto inode = std::make_shared<fs::Inode>();
        apply_metadata(*inode, info, path);
        switch (info.st_mode & S_IFMT) {
        case S_IFREG: {
            inode->type = fs::FileType::regular;
            // Opened once now so that an unreadable file is reported before anything is built.
            const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
            if (fd.get() < 0) {
                fail_unreadable(path, errno);
            }
            const auto size = static_cast<std::uint64_t>(info.st_size);
            if (size > 0) {
                inode->data.kind = fs::DataRef::Kind::host_file;
                inode->data.path = path;
                inode->data.size = size;
            }
            stats_.data_bytes += size;
            break;
        }
        case S_IFLNK: {
            inode->type = fs::FileType::symlink;
            std::string target(static_cast<std::size_t>(info.st_size) + 1, '\0');
            const ssize_t length = ::readlink(path.c_str(), target.data(), target.size());
            if (length < 0) {
                fail_unreadable(path, errno);
            }
            target.resize(static_cast<std::size_t>(length));
            inode->symlink_target = std::move(target);
            inode->mode = 0777;
            break;
        }
        case S_IFCHR:
        case S_IFBLK:
            inode->type =
                S_ISCHR(info.st_mode) ? fs::FileType::char_device : fs::FileType::block_device;
            inode->rdev = {major(info.st_rdev), minor(info.st_rdev)};
            break;
        case S_IFIFO:
            inode->type = fs::FileType::fifo;
            break;
        default:
            inode->type = fs::FileType::socket;
            break;
        }
        if (!S_ISDIR(info.st_mode) && info.st_nlink > 1) {
            links_.emplace(std::make_pair(info.st_dev, info.st_ino), inode);
        }
        return inode;
    }

    void merge_directory(const std::filesystem::path& host, fs::Inode& target,
                         const std::string& tree_path) {
        for (const auto& name : list(host)) {
            ++stats_.entries;
            const auto path = host / name;
            const std::string child_path = tree_path + "/" + name;
            const auto info = stat_path(path);
            if (!S_ISDIR(info.st_mode)) {
                auto inode = make_inode(path, info);
                target.children.insert_or_assign(name, std::move(inode));
                continue;
            }
            const auto found = target.children.find(name);
            fs::Inode* directory = found == target.children.end() ? nullptr : found->second.get();
            if (directory != nullptr && directory->is_symlink()) {
                throw bad_input("{}: the image has a symbolic link at {} (-> {}), so this "
                                "directory cannot be merged there; put its files under the "
                                "link's target instead",
                                path.string(), child_path, directory->symlink_target);
            }
            if (directory == nullptr || !directory->is_directory()) {
                auto created = fs::make_directory(0755, 0);
                apply_metadata(*created, info, path);
                directory = created.get();
                target.children.insert_or_assign(name, std::move(created));
            } else if (options_.existing_directories == ExistingDirectories::take_metadata) {
                apply_metadata(*directory, info, path);
            }
            merge_directory(path, *directory, child_path);
        }
    }

    fs::Tree& tree_;
    const DirectoryOptions& options_;
    MergeStats& stats_;
    std::map<std::pair<dev_t, ino_t>, std::shared_ptr<fs::Inode>> links_;
};

} // namespace

MergeStats apply_directory(const std::filesystem::path& directory, fs::Tree& tree,
                           const DirectoryOptions& options) {
    MergeStats stats;
    DirectoryMerger(tree, options, stats).merge(directory);
    return stats;
}

} // namespace edgeforge::oci
