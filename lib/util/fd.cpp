// File descriptors owned by RAII, and exact positional reads and writes.
#include "util/fd.h"

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

#include <fcntl.h>

#include <unistd.h>

namespace util {

void FileDescriptor::reset(int fd) {
    if (fd_ >= 0) {
        ::close(fd_);
    }
    fd_ = fd;
}

std::size_t read_some(int fd, void* buffer, std::size_t capacity) {
    for (;;) {
        const ssize_t got = ::read(fd, buffer, capacity);
        if (got >= 0) {
            return static_cast<std::size_t>(got);
        }
        if (errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "read");
        }
    }
}

bool pread_exact(int fd, void* buffer, std::size_t size, std::uint64_t offset) {
    auto* bytes = static_cast<char*>(buffer);
    while (size > 0) {
        const ssize_t got = ::pread(fd, bytes, size, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "read");
        }
        if (got == 0) {
            return false;
        }
        bytes += got;
        size -= static_cast<std::size_t>(got);
        offset += static_cast<std::uint64_t>(got);
    }
    return true;
}

void pwrite_exact(int fd, const void* data, std::size_t size, std::uint64_t offset) {
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t written = ::pwrite(fd, bytes, size, static_cast<off_t>(offset));
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "write");
        }
        bytes += written;
        size -= static_cast<std::size_t>(written);
        offset += static_cast<std::uint64_t>(written);
    }
}

bool copy_range(int in_fd, std::uint64_t in_offset, int out_fd, std::uint64_t out_offset,
                std::uint64_t size) {
    auto in = static_cast<loff_t>(in_offset);
    auto out = static_cast<loff_t>(out_offset);
    std::uint64_t left = size;
    while (left > 0) {
        const ssize_t copied =
            ::copy_file_range(in_fd, &in, out_fd, &out,
                              static_cast<std::size_t>(std::min<std::uint64_t>(left, 1U << 30)), 0);
        if (copied < 0 && errno == EINTR) {
            continue;
        }
        if (copied <= 0) {
            break; // not supported here (or a short file): copied by hand below
        }
        left -= static_cast<std::uint64_t>(copied);
    }
    // Copied by hand from where the kernel stopped.
    std::vector<char> buffer(left > 0 ? 4U << 20 : 0);
    try {
        while (left > 0) {
            const auto want =
                static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), left));
            if (!pread_exact(in_fd, buffer.data(), want, static_cast<std::uint64_t>(in))) {
                errno = EIO; // the source ended first
                return false;
            }
            pwrite_exact(out_fd, buffer.data(), want, static_cast<std::uint64_t>(out));
            in += static_cast<loff_t>(want);
            out += static_cast<loff_t>(want);
            left -= want;
        }
    } catch (const std::system_error& error) {
        errno = error.code().value();
        return false;
    }
    return true;
}

} // namespace util
