// File descriptors owned by RAII, and exact positional reads and writes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace util {

// Closes the descriptor it owns when it goes out of scope.
class FileDescriptor {
  public:
    explicit FileDescriptor(int fd = -1) : fd_(fd) {}
    ~FileDescriptor() { reset(); }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    FileDescriptor(FileDescriptor&& other) noexcept : fd_(other.release()) {}
    FileDescriptor& operator=(FileDescriptor&& other) noexcept {
        if (this != &other) {
            reset(other.release());
        }
        return *this;
    }

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    // Closes the current descriptor (if any) and owns `fd` instead.
    void reset(int fd = -1);
    // Gives up ownership without closing.
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }

  private:
    int fd_;
};

// Reads what is there, up to `capacity` bytes, from the file position (read(), retrying EINTR).
// Returns 0 at the end; throws std::system_error on read errors.
std::size_t read_some(int fd, void* buffer, std::size_t capacity);

// Reads exactly `size` bytes at `offset`, retrying short reads and EINTR. Returns false when the
// file ends first; throws std::system_error on read errors.
bool pread_exact(int fd, void* buffer, std::size_t size, std::uint64_t offset);

// Writes all `size` bytes at `offset`, retrying short writes and EINTR; throws std::system_error
// on write errors. The file position is left alone.
void pwrite_exact(int fd, const void* data, std::size_t size, std::uint64_t offset);

// Copies `size` bytes at `in_offset` of `in` to `out_offset` of `out`: in the kernel where it can
// (copy_file_range, a reflink on filesystems that have them), by hand through a buffer where it
// cannot. false (errno set) when reading or writing fails or `in` ends first. File positions are
// left alone.
bool copy_range(int in, std::uint64_t in_offset, int out, std::uint64_t out_offset,
                std::uint64_t size);

} // namespace util
