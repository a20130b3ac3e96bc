// The in-memory filesystem tree that image layers are merged into and image
// writers walk.
#include "fs/tree.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unordered_set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "util/fd.h"

namespace edgeforge::fs {
namespace {

using util::FileDescriptor;

constexpr std::size_t k_spill_buffer_size = 1 << 20;
constexpr std::size_t k_read_chunk_size = 1 << 20;
constexpr int k_max_symlink_follows = 40;

void pwrite_all(int fd, const char* data, std::size_t size, std::uint64_t offset) {
    while (size > 0) {
        const ssize_t written = ::pwrite(fd, data, size, static_cast<off_t>(offset));
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category());
        }
        data += written;
        size -= static_cast<std::size_t>(written);
        offset += static_cast<std::uint64_t>(written);
    }
}

// Streams `size` bytes at `offset` of the host file `path`. When `whole_file`
// is set the file must still have exactly `size` bytes, so that a file edited
// mid-build is reported, not silently truncated or padded in the image.
void stream_host_file(const std::filesystem::path& path, std::uint64_t offset, std::uint64_t size,
                      bool whole_file, const std::function<void(const char*, std::size_t)>& sink) {
    const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        throw build_failed("cannot read {}: {}", path.string(), std::strerror(errno));
    }
    if (whole_file) {
        struct stat info {};
        if (::fstat(fd.get(), &info) == 0 && static_cast<std::uint64_t>(info.st_size) != size) {
            throw build_failed("{} changed while the image was being built (it was {} bytes, now "
                               "{}); run the build again",
                               path.string(), size, info.st_size);
        }
    }
    std::vector<char> buffer(
        static_cast<std::size_t>(std::min<std::uint64_t>(size, k_read_chunk_size)));
    std::uint64_t done = 0;
    while (done < size) {
        const auto chunk =
            static_cast<std::size_t>(std::min<std::uint64_t>(size - done, k_read_chunk_size));
        bool complete = false;
        try {
            complete = util::pread_exact(fd.get(), buffer.data(), chunk, offset + done);
        } catch (const std::system_error& error) {
            throw build_failed("cannot read {}: {}", path.string(), error.code().message());
        }
        if (!complete) {
            throw build_failed("{} ends before the {} bytes edgeforge expects at offset {}; the "
                               "file was truncated or changed during the build",
                               path.string(), size, offset);
        }
        sink(buffer.data(), chunk);
        done += chunk;
    }
}

void walk_inode(const Inode& inode, const Inode* parent, std::string& path, std::string_view name,
                int depth, WalkOrder order, const std::function<void(const WalkEntry&)>& visit) {
    const std::string_view shown = path.empty() ? std::string_view("/") : std::string_view(path);
    if (order == WalkOrder::parents_first) {
        visit(WalkEntry{shown, name, inode, parent, depth});
    }
    if (inode.is_directory()) {
        const std::size_t length = path.size();
        for (const auto& [child_name, child] : inode.children) {
            path += '/';
            path += child_name;
            walk_inode(*child, &inode, path, child_name, depth + 1, order, visit);
            path.resize(length);
        }
    }
    if (order == WalkOrder::children_first) {
        const std::string_view again =
            path.empty() ? std::string_view("/") : std::string_view(path);
        visit(WalkEntry{again, name, inode, parent, depth});
    }
}

} // namespace

std::string_view file_type_name(FileType type) {
    switch (type) {
    case FileType::regular:
        return "regular file";
    case FileType::directory:
        return "directory";
    case FileType::symlink:
        return "symbolic link";
    case FileType::char_device:
        return "character device";
    case FileType::block_device:
        return "block device";
    case FileType::fifo:
        return "fifo";
    case FileType::socket:
        return "socket";
    }
    return "file";
}

// ----------------------------------------------------------------------------------
// SpillFile

SpillFile::SpillFile(const std::filesystem::path& directory) : directory_(directory) {
    fd_ = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        std::string pattern = (directory / ".edgeforge-spill-XXXXXX").string();
        fd_ = ::mkostemp(pattern.data(), O_CLOEXEC);
        if (fd_ >= 0) {
            ::unlink(pattern.c_str());
        }
    }
    if (fd_ < 0) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot create a temporary file in " + directory.string());
    }
    buffer_.reserve(k_spill_buffer_size);
}

SpillFile::~SpillFile() {
    if (writer_.joinable()) {
        {
            const std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        changed_.notify_all();
        writer_.join();
    }
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

void SpillFile::write_loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
        changed_.wait(lock, [this] { return busy_ || stopping_; });
        if (!busy_) {
            return;
        }
        lock.unlock();
        int error = 0;
        try {
            pwrite_all(fd_, in_flight_.data(), in_flight_.size(), in_flight_offset_);
        } catch (const std::system_error& failure) {
            error = failure.code().value();
        }
        lock.lock();
        busy_ = false;
        write_error_ = write_error_ != 0 ? write_error_ : error;
        changed_.notify_all();
    }
}

void SpillFile::wait_for_writer() const {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return !busy_; });
    if (write_error_ != 0) {
        throw std::system_error(write_error_, std::generic_category(),
                                "cannot write the spill file in " + directory_.string());
    }
}

void SpillFile::hand_off() {
    wait_for_writer();
    {
        const std::lock_guard lock(mutex_);
        std::swap(in_flight_, buffer_);
        in_flight_offset_ = handed_off_;
        handed_off_ += in_flight_.size();
        busy_ = true;
    }
    buffer_.clear();
    buffer_.reserve(k_spill_buffer_size);
    if (!writer_.joinable()) {
        writer_ = std::thread([this] { write_loop(); });
    }
    changed_.notify_all();
}

std::uint64_t SpillFile::append(const void* data, std::size_t size) {
    const std::uint64_t offset = this->size();
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        const std::size_t room = k_spill_buffer_size - buffer_.size();
        const std::size_t chunk = std::min(size, room);
        buffer_.insert(buffer_.end(), bytes, bytes + chunk);
        bytes += chunk;
        size -= chunk;
        if (buffer_.size() == k_spill_buffer_size) {
            hand_off();
        }
    }
    return offset;
}

void SpillFile::append_zeros(std::uint64_t count) {
    static const std::vector<char> k_zeros(k_read_chunk_size, 0);
    while (count > 0) {
        const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(count, k_zeros.size()));
        append(k_zeros.data(), chunk);
        count -= chunk;
    }
}

void SpillFile::flush() {
    wait_for_writer();
    if (!buffer_.empty()) {
        try {
            pwrite_all(fd_, buffer_.data(), buffer_.size(), handed_off_);
        } catch (const std::system_error& failure) {
            throw std::system_error(failure.code(),
                                    "cannot write the spill file in " + directory_.string());
        }
        handed_off_ += buffer_.size();
        buffer_.clear();
    }
}

void SpillFile::read(std::uint64_t offset, void* buffer, std::size_t size) const {
    if (offset > this->size() || size > this->size() - offset) {
        throw std::out_of_range("read beyond the end of the spill file");
    }
    wait_for_writer();
    auto* out = static_cast<char*>(buffer);
    if (offset < handed_off_) {
        const auto from_file =
            static_cast<std::size_t>(std::min<std::uint64_t>(size, handed_off_ - offset));
        if (!util::pread_exact(fd_, out, from_file, offset)) {
            throw std::system_error(EIO, std::generic_category(), "the spill file is truncated");
        }
        out += from_file;
        offset += from_file;
        size -= from_file;
    }
    if (size > 0) {
        const auto start = static_cast<std::ptrdiff_t>(offset - handed_off_);
        std::copy_n(buffer_.begin() + start, size, out);
    }
}

// --------------------------------------------------------------------------------------
// Inode

std::uint64_t Inode::size() const {
    switch (type) {
    case FileType::regular:
        return data.size;
    case FileType::symlink:
        return symlink_target.size();
    default:
        return 0;
    }
}

std::shared_ptr<Inode> make_directory(std::uint32_t mode, std::int64_t mtime, std::uint32_t uid,
                                      std::uint32_t gid) {
    auto inode = std::make_shared<Inode>();
    inode->type = FileType::directory;
    inode->mode = mode;
    inode->mtime = mtime;
    inode->uid = uid;
    inode->gid = gid;
    return inode;
}

std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> components;
    while (!path.empty()) {
        const auto slash = path.find('/');
        const auto component = path.substr(0, slash);
        if (!component.empty() && component != ".") {
            components.push_back(component);
        }
        if (slash == std::string_view::npos) {
            break;
        }
        path.remove_prefix(slash + 1);
    }
    return components;
}

// ---------------------------------------------------------------------------------------
// Tree

Tree::Tree() : root_(make_directory(0755, 0)) {}

std::shared_ptr<Inode> Tree::lookup(std::string_view path) const {
    std::shared_ptr<Inode> current = root_;
    for (const auto component : split_path(path)) {
        if (component == ".." || !current->is_directory()) {
            return nullptr;
        }
        const auto found = current->children.find(component);
        if (found == current->children.end()) {
            return nullptr;
        }
        current = found->second;
    }
    return current;
}

std::shared_ptr<Inode> Tree::resolve(std::string_view path) const {
    // Components still to walk, last first; a symbolic link pushes its target's
    // components.
    std::vector<std::string> pending;
    for (const auto component : split_path(path)) {
        pending.emplace_back(component);
    }
    std::reverse(pending.begin(), pending.end());
    std::vector<std::shared_ptr<Inode>> chain{root_};
    int follows = 0;
    while (!pending.empty()) {
        const std::string component = std::move(pending.back());
        pending.pop_back();
        if (component == "..") {
            if (chain.size() > 1) {
                chain.pop_back();
            }
            continue;
        }
        const auto& current = chain.back();
        if (!current->is_directory()) {
            return nullptr;
        }
        const auto found = current->children.find(component);
        if (found == current->children.end()) {
            return nullptr;
        }
        const auto& child = found->second;
        if (!child->is_symlink()) {
            chain.push_back(child);
            continue;
        }
        if (++follows > k_max_symlink_follows) {
            return nullptr;
        }
        if (child->symlink_target.starts_with('/')) {
            chain.resize(1);
        }
        auto target = split_path(child->symlink_target);
        for (auto it = target.rbegin(); it != target.rend(); ++it) {
            pending.emplace_back(*it);
        }
    }
    return chain.back();
}

void Tree::walk(const std::function<void(const WalkEntry&)>& visit, WalkOrder order) const {
    std::string path;
    walk_inode(*root_, nullptr, path, "", 0, order, visit);
}

TreeStats Tree::stats() const {
    TreeStats stats;
    std::unordered_set<const Inode*> seen;
    walk([&](const WalkEntry& entry) {
        ++stats.entries;
        if (!seen.insert(&entry.inode).second) {
            return;
        }
        ++stats.inodes;
        switch (entry.inode.type) {
        case FileType::directory:
            ++stats.directories;
            break;
        case FileType::regular:
            ++stats.regular_files;
            stats.data_bytes += entry.inode.data.size;
            break;
        case FileType::symlink:
            ++stats.symlinks;
            break;
        default:
            ++stats.special_files;
            break;
        }
    });
    return stats;
}

std::unordered_map<const Inode*, std::uint32_t> Tree::link_counts() const {
    std::unordered_map<const Inode*, std::uint32_t> counts;
    walk([&](const WalkEntry& entry) {
        if (entry.inode.is_directory()) {
            std::uint32_t subdirectories = 0;
            for (const auto& [name, child] : entry.inode.children) {
                subdirectories += child->is_directory() ? 1U : 0U;
            }
            counts[&entry.inode] = 2 + subdirectories;
        } else {
            ++counts[&entry.inode];
        }
    });
    return counts;
}

void Tree::ensure_directories(std::span<const std::string> paths, std::int64_t mtime) {
    for (const auto& path : paths) {
        Inode* current = root_.get();
        for (const auto component : split_path(path)) {
            if (component == "..") {
                throw std::invalid_argument("ensure_directories: '..' in " + path);
            }
            auto [slot, inserted] = current->children.try_emplace(std::string(component));
            if (inserted) {
                slot->second = make_directory(0755, mtime);
            } else if (!slot->second->is_directory()) {
                break; // the image put something else here on purpose
            }
            current = slot->second.get();
        }
    }
}

void Tree::keep_alive(std::shared_ptr<const void> resource) {
    kept_alive_.push_back(std::move(resource));
}

// ----------------------------------------------------------------------------------
// read_data

void read_data(const Inode& inode, const SpillFile& spill,
               const std::function<void(const char* data, std::size_t size)>& sink) {
    const DataRef& ref = inode.data;
    switch (ref.kind) {
    case DataRef::Kind::none:
        return;
    case DataRef::Kind::spill: {
        std::vector<char> buffer(
            static_cast<std::size_t>(std::min<std::uint64_t>(ref.size, k_read_chunk_size)));
        std::uint64_t done = 0;
        while (done < ref.size) {
            const auto chunk = static_cast<std::size_t>(
                std::min<std::uint64_t>(ref.size - done, k_read_chunk_size));
            try {
                spill.read(ref.offset + done, buffer.data(), chunk);
            } catch (const std::exception& error) {
                throw build_failed("cannot read merged file data from the spill file in {}: {}",
                                   spill.directory().string(), error.what());
            }
            sink(buffer.data(), chunk);
            done += chunk;
        }
        return;
    }
    case DataRef::Kind::host_file:
        stream_host_file(ref.path, 0, ref.size, true, sink);
        return;
    case DataRef::Kind::blob:
        stream_host_file(ref.path, ref.offset, ref.size, false, sink);
        return;
    }
}

std::string read_data(const Inode& inode, const SpillFile& spill) {
    std::string content;
    content.reserve(static_cast<std::size_t>(inode.data.size));
    read_data(inode, spill,
              [&](const char* data, std::size_t size) { content.append(data, size); });
    return content;
}

} // namespace edgeforge::fs
