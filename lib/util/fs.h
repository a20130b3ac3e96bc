// Files written atomically, temporary directories, and cleanup of temporaries on Ctrl-C.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace util {

// Whether commit() makes a file durable (fsync of the data and of its directory) or only
// renames it: scratch is for intermediate files in a work directory that are read once more and
// removed (a partition image copied into a disk), where a flush only costs time.
enum class Durability { durable, scratch };

// A file written under a temporary name next to its final path and renamed into place by
// commit() after fsync. Destroying it uncommitted (failure, exception) removes the temporary,
// and so does SIGINT/SIGTERM, so no half-written file ever appears under the final name.
class AtomicFile {
  public:
    explicit AtomicFile(std::filesystem::path final_path,
                        Durability durability = Durability::durable);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    int fd() const { return fd_; }
    const std::filesystem::path& temp_path() const { return temp_path_; }
    const std::filesystem::path& final_path() const { return final_path_; }

    void write(const void* data, std::size_t size);
    void write(std::string_view data) { write(data.data(), data.size()); }
    // fsync the data, rename over the final path, fsync the directory (scratch: rename only).
    void commit();

  private:
    std::filesystem::path final_path_;
    std::filesystem::path temp_path_;
    Durability durability_;
    int fd_ = -1;
    bool committed_ = false;
};

// A directory removed with its contents when it goes out of scope.
class TempDir {
  public:
    explicit TempDir(const std::filesystem::path& parent = std::filesystem::temp_directory_path(),
                     std::string_view prefix = "edgeforge-");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

// A directory built next to its final place (FINAL.partial) and moved there by commit(): an
// earlier interrupted build's partial directory is removed first; destroying it uncommitted
// (failure, exception) or Ctrl-C removes it, so a final directory is always whole.
class PartialDirectory {
  public:
    explicit PartialDirectory(std::filesystem::path final_path);
    ~PartialDirectory();
    PartialDirectory(const PartialDirectory&) = delete;
    PartialDirectory& operator=(const PartialDirectory&) = delete;
    const std::filesystem::path& path() const { return path_; }
    // Replaces the final directory (removing what was there) with this one. Throws
    // std::system_error naming neither path: callers say what they were doing.
    void commit();

  private:
    std::filesystem::path final_path_;
    std::filesystem::path path_;
    bool armed_ = true;
};

// Writes `content` to `file` atomically.
void write_file_atomically(const std::filesystem::path& file, std::string_view content);
// Reads a whole file; throws std::system_error naming the file.
std::string read_file(const std::filesystem::path& file);

// Installs SIGINT/SIGTERM/SIGHUP handlers that remove registered temporaries and then exit with
// 128 + the signal number (130 for Ctrl-C), so that no caller sees a process killed by a signal.
// Safe to call more than once.
void install_interrupt_cleanup();
void register_temporary(const std::filesystem::path& path);
// A directory removed with everything in it (TempDir registers itself).
void register_temporary_directory(const std::filesystem::path& path);
void unregister_temporary(const std::filesystem::path& path);

// Free bytes available to unprivileged users on the filesystem holding `path`.
std::uint64_t available_space(const std::filesystem::path& path);

} // namespace util
