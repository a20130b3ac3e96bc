// An exclusive flock on a lock file, held for the lifetime of the object (cache entries).
#pragma once

#include <filesystem>

namespace edgeforge {

// Waits for an exclusive flock on `lock_file` (created when missing) and holds it until
// destroyed; closing the descriptor releases it, also when the process dies. Throws Error
// (build failed) naming the file when it cannot be created or locked.
class FileLock {
  public:
    explicit FileLock(const std::filesystem::path& lock_file);
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    FileLock(FileLock&& other) noexcept;
    FileLock& operator=(FileLock&&) = delete;

  private:
    int fd_ = -1;
};

} // namespace edgeforge
