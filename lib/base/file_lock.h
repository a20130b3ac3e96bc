// A flock on a lock file, held for the lifetime of the object (cache entries).
#pragma once

#include <filesystem>
#include <optional>

namespace edgeforge {

// Waits for a flock on `lock_file` (created when missing) and holds it until destroyed; closing
// the descriptor releases it, also when the process dies. Writers of a cache entry hold it
// exclusive; readers that must not see the entry pruned while they use it hold it shared.
// Throws Error (build failed) naming the file when it cannot be created or locked.
class FileLock {
  public:
    enum class Mode { exclusive, shared };

    explicit FileLock(const std::filesystem::path& lock_file, Mode mode = Mode::exclusive);
    // The lock if nobody holds it in a conflicting mode now; nullopt instead of waiting.
    static std::optional<FileLock> try_lock(const std::filesystem::path& lock_file,
                                            Mode mode = Mode::exclusive);
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    FileLock(FileLock&& other) noexcept;
    FileLock& operator=(FileLock&&) = delete;

    // Turns an exclusive lock into a shared one. flock() does this by releasing and locking
    // again, so another process may take the lock exclusively in between: callers check
    // afterwards that what they wrote is still there.
    void make_shared();

  private:
    FileLock(const std::filesystem::path& lock_file, Mode mode, bool wait);
    // False when `wait` is off and someone else holds the lock.
    bool lock(int operation, bool wait = true);

    std::filesystem::path file_;
    int fd_ = -1;
};

} // namespace edgeforge
