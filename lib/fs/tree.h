// The in-memory filesystem tree that image layers are merged into and image
// writers walk.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace edgeforge::fs {

enum class FileType { regular, directory, symlink, char_device, block_device, fifo, socket };

// "regular file", "directory", ...: for messages.
std::string_view file_type_name(FileType type);

// An appendable, automatically deleted temporary file that holds the bytes of
// files merged from compressed layers. Only metadata lives in memory, so a
// multi-gigabyte image costs disk space in the work directory, not RAM. Appends
// are collected in 1 MiB buffers that a background thread writes while the
// caller decompresses the next one (writing into the page cache costs about as
// much as zstd decompression). Reads (pread) are safe from several threads once
// appending has finished.
class SpillFile {
  public:
    // Creates the file in `directory` (O_TMPFILE, or a name unlinked at once
    // where O_TMPFILE is not supported), so nothing is left behind even when the
    // process is killed.
    explicit SpillFile(const std::filesystem::path& directory);
    ~SpillFile();
    SpillFile(const SpillFile&) = delete;
    SpillFile& operator=(const SpillFile&) = delete;

    // Appends bytes at the end and returns the offset they were written at.
    // Throws std::system_error when writing the file failed (disk full), possibly
    // for earlier bytes.
    std::uint64_t append(const void* data, std::size_t size);
    std::uint64_t append(std::string_view data) { return append(data.data(), data.size()); }
    // Appends `count` zero bytes (holes of sparse files).
    void append_zeros(std::uint64_t count);
    // Total bytes appended so far: the offset the next append() writes at.
    std::uint64_t size() const { return handed_off_ + buffer_.size(); }
    // Writes everything appended to the file; reads work without it, it only
    // makes them cheaper.
    void flush();
    // Reads exactly `size` bytes at `offset`; throws std::system_error on I/O
    // errors and std::out_of_range when the range lies beyond size().
    void read(std::uint64_t offset, void* buffer, std::size_t size) const;
    const std::filesystem::path& directory() const { return directory_; }

  private:
    // Gives the full buffer to the writer thread (starting it the first time).
    void hand_off();
    // Waits until the writer thread is idle; rethrows its write error, if any.
    void wait_for_writer() const;
    void write_loop();

    std::filesystem::path directory_;
    int fd_ = -1;
    std::uint64_t handed_off_ = 0; // bytes written or being written; buffer_ follows them
    std::vector<char> buffer_;     // being filled by append()
    std::vector<char> in_flight_;  // being written by the writer thread
    std::uint64_t in_flight_offset_ = 0;
    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    bool busy_ = false; // in_flight_ holds bytes not yet written
    bool stopping_ = false;
    int write_error_ = 0; // errno of a failed background write
    std::thread writer_;
};

// Where the bytes of a regular file are. Writers stream them through
// read_data(), whatever the kind, so a layer's data can stay in its blob or on
// the host instead of being copied.
struct DataRef {
    enum class Kind {
        none,      // an empty file
        spill,     // `size` bytes at `offset` in the SpillFile
        host_file, // the whole file `path` on the host (overlay directories, dir:
                   // sources)
        blob,      // `size` bytes at `offset` in the uncompressed tar file `path`
    };
    Kind kind = Kind::none;
    std::filesystem::path path;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
};

struct DeviceNumber {
    std::uint32_t major = 0;
    std::uint32_t minor = 0;
    bool operator==(const DeviceNumber&) const = default;
};

// One file system object. Hard links are several directory entries holding the
// same shared_ptr<Inode>; replacing a file therefore always installs a new
// Inode, and only directories (which cannot be hard linked) are ever changed in
// place.
struct Inode {
    FileType type = FileType::regular;
    std::uint32_t mode = 0644; // permission bits including setuid/setgid/sticky (mode & 07777)
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::int64_t mtime = 0; // seconds since the epoch
    std::string symlink_target;
    DeviceNumber rdev;                         // character and block devices
    std::map<std::string, std::string> xattrs; // name -> binary-safe value, sorted by name
    DataRef data;                              // regular files
    // Directories: entries sorted bytewise by name, which is the order writers
    // emit them in (std::less<> so that lookups by string_view need no temporary
    // string).
    std::map<std::string, std::shared_ptr<Inode>, std::less<>> children;

    bool is_directory() const { return type == FileType::directory; }
    bool is_regular() const { return type == FileType::regular; }
    bool is_symlink() const { return type == FileType::symlink; }
    // File size as stat reports it: data bytes for regular files, target length
    // for symlinks.
    std::uint64_t size() const;
};

std::shared_ptr<Inode> make_directory(std::uint32_t mode, std::int64_t mtime, std::uint32_t uid = 0,
                                      std::uint32_t gid = 0);

// What walk() hands the visitor for every entry.
struct WalkEntry {
    std::string_view path; // "/" for the root, otherwise "/etc/passwd"
    std::string_view name; // "" for the root, otherwise the last path component
    const Inode& inode;
    const Inode* parent; // nullptr for the root
    int depth;           // 0 for the root
};

enum class WalkOrder {
    parents_first,  // a directory before its entries (ISO writers, listings)
    children_first, // a directory after its entries (writers that need child
                    // inode numbers)
};

struct TreeStats {
    std::uint64_t inodes = 0;  // distinct objects (hard links counted once), root included
    std::uint64_t entries = 0; // directory entries (names), root included
    std::uint64_t directories = 0;
    std::uint64_t regular_files = 0;
    std::uint64_t symlinks = 0;
    std::uint64_t special_files = 0; // devices, fifos, sockets
    std::uint64_t data_bytes = 0;    // bytes of distinct regular files
};

// A whole file system: a root directory Inode and the operations writers need.
// Paths are
// '/'-separated, relative to the root; leading "/" and "./" and empty
// components are ignored, and ".." is never interpreted (lookups with it find
// nothing).
class Tree {
  public:
    Tree();

    Inode& root() { return *root_; }
    const Inode& root() const { return *root_; }
    const std::shared_ptr<Inode>& root_ptr() const { return root_; }

    // The object at `path`, without following symbolic links anywhere in the
    // path; nullptr when there is none.
    std::shared_ptr<Inode> lookup(std::string_view path) const;
    // Like lookup() but follows symbolic links (absolute targets are relative to
    // this tree's root, never the host's), as the booted system would see the
    // path; nullptr when it does not resolve within 40 links.
    std::shared_ptr<Inode> resolve(std::string_view path) const;

    // Visits every entry once per name, names sorted bytewise.
    void walk(const std::function<void(const WalkEntry&)>& visit,
              WalkOrder order = WalkOrder::parents_first) const;
    TreeStats stats() const;
    // The link count stat would report for every object: names for files, 2 +
    // subdirectories for directories.
    std::unordered_map<const Inode*, std::uint32_t> link_counts() const;

    // Creates every missing directory in `paths` (and its missing parents) as
    // mode 0755, root:root, with `mtime`. Existing entries are left alone,
    // including a symbolic link in place of a directory (/var/run -> /run): the
    // image decided that. The ISO writer uses it for the mount points /proc /sys
    // /dev /run /tmp.
    void ensure_directories(std::span<const std::string> paths, std::int64_t mtime);

    // Keeps `resource` alive as long as the tree (for example the directory
    // holding the blobs that DataRef::Kind::blob entries point into).
    void keep_alive(std::shared_ptr<const void> resource);

  private:
    std::shared_ptr<Inode> root_;
    std::vector<std::shared_ptr<const void>> kept_alive_;
};

// Splits a path into its components, dropping empty and "." components; ".." is
// kept so that callers can reject it.
std::vector<std::string_view> split_path(std::string_view path);

// Streams the bytes of a regular file to `sink` in chunks of at most 1 MiB.
// `spill` is needed for DataRef::Kind::spill data. Throws edgeforge::Error
// (build failed) naming the file when the data cannot be read or a host file
// changed size since it was added.
void read_data(const Inode& inode, const SpillFile& spill,
               const std::function<void(const char* data, std::size_t size)>& sink);
// The whole content of a regular file, for small files (configuration, tests).
std::string read_data(const Inode& inode, const SpillFile& spill);

} // namespace edgeforge::fs
