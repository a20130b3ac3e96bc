// A flock on a lock file, held for the lifetime of the object (cache entries).
#include "base/file_lock.h"

#include <cerrno>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

namespace edgeforge {

FileLock::FileLock(const std::filesystem::path& lock_file, Mode mode)
    : FileLock(lock_file, mode, true) {}

std::optional<FileLock> FileLock::try_lock(const std::filesystem::path& lock_file, Mode mode) {
    FileLock lock(lock_file, mode, false);
    if (lock.fd_ < 0) {
        return std::nullopt;
    }
    return lock;
}

FileLock::FileLock(const std::filesystem::path& lock_file, Mode mode, bool wait)
    : file_(lock_file) {
    // `cache prune` removes a lock file while it holds it; whoever waited on that file then
    // holds a lock nobody else can see, so it opens the file at the path again.
    for (;;) {
        // Never through a symbolic link: one planted in place of a lock file (in a shared cache
        // repository, say) would have us create a file wherever it points.
        fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd_ < 0) {
            const int error_number = errno;
            throw WriteFailed(fmt::format("cannot create lock file {}: {}", lock_file.string(),
                                          std::generic_category().message(error_number)),
                              error_number);
        }
        bool locked = false;
        try {
            locked = lock(mode == Mode::shared ? LOCK_SH : LOCK_EX, wait);
        } catch (...) {
            ::close(fd_);
            fd_ = -1;
            throw;
        }
        if (!locked) {
            ::close(fd_);
            fd_ = -1;
            return;
        }
        struct stat held {};
        struct stat named {};
        if (::fstat(fd_, &held) == 0 && ::stat(lock_file.c_str(), &named) == 0 &&
            held.st_ino == named.st_ino && held.st_dev == named.st_dev) {
            return;
        }
        ::close(fd_);
        fd_ = -1;
    }
}

bool FileLock::lock(int operation, bool wait) {
    while (::flock(fd_, operation | (wait ? 0 : LOCK_NB)) != 0) {
        if (!wait && errno == EWOULDBLOCK) {
            return false;
        }
        if (errno != EINTR) {
            throw build_failed("cannot lock {}: {}", file_.string(),
                               std::generic_category().message(errno));
        }
    }
    return true;
}

void FileLock::make_shared() {
    lock(LOCK_SH);
}

FileLock::~FileLock() {
    if (fd_ >= 0) {
        ::close(fd_); // closing releases the flock
    }
}

FileLock::FileLock(FileLock&& other) noexcept : file_(std::move(other.file_)), fd_(other.fd_) {
    other.fd_ = -1;
}

} // namespace edgeforge
