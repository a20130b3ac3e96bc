// An exclusive flock on a lock file, held for the lifetime of the object (cache entries).
#include "core/file_lock.h"

#include <cerrno>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/error.h"

namespace edgeforge {

FileLock::FileLock(const std::filesystem::path& lock_file) {
    fd_ = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
        throw build_failed("cannot create lock file {}: {}", lock_file.string(),
                           std::generic_category().message(errno));
    }
    while (::flock(fd_, LOCK_EX) != 0) {
        if (errno != EINTR) {
            const std::string reason = std::generic_category().message(errno);
            ::close(fd_);
            fd_ = -1;
            throw build_failed("cannot lock {}: {}", lock_file.string(), reason);
        }
    }
}

FileLock::~FileLock() {
    if (fd_ >= 0) {
        ::close(fd_); // closing releases the flock
    }
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(other.fd_) {
    other.fd_ = -1;
}

} // namespace edgeforge
