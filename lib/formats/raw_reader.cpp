// Reads raw disk images chunk by chunk for the image converters, skipping holes and zero chunks.
#include "formats/raw_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

namespace edgeforge::formats {
namespace {

bool all_zero(std::span<const std::uint8_t> bytes) {
    // Words ORed together a block at a time (the compiler vectorises the inner loop); the first
    // non-zero block ends the test. Data chunks usually differ from zero in their first bytes.
    constexpr std::size_t k_block = 256;
    const std::uint8_t* data = bytes.data();
    std::size_t size = bytes.size();
    while (size >= k_block) {
        std::uint64_t words[k_block / 8];
        std::memcpy(words, data, k_block);
        std::uint64_t any = 0;
        for (const std::uint64_t word : words) {
            any |= word;
        }
        if (any != 0) {
            return false;
        }
        data += k_block;
        size -= k_block;
    }
    return std::all_of(data, data + size, [](std::uint8_t byte) { return byte == 0; });
}

} // namespace

RawImageReader::RawImageReader(std::filesystem::path path, std::size_t chunk_size)
    : path_(std::move(path)) {
    if (chunk_size == 0 || chunk_size % k_sector_size != 0) {
        throw std::invalid_argument("raw image chunks must be whole 512-byte sectors");
    }
    fd_.reset(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd_.valid()) {
        throw bad_input("cannot open the raw disk image {}: {}; check the path and its "
                        "permissions",
                        path_.string(), std::strerror(errno));
    }
    struct stat info {};
    if (::fstat(fd_.get(), &info) != 0) {
        throw bad_input("cannot read the raw disk image {}: {}", path_.string(),
                        std::strerror(errno));
    }
    if (!S_ISREG(info.st_mode)) {
        throw bad_input("the raw disk image {} is not a regular file; give the path of a raw "
                        "image file",
                        path_.string());
    }
    size_ = static_cast<std::uint64_t>(info.st_size);
    if (size_ == 0) {
        throw bad_input("the raw disk image {} is empty; a disk image holds at least one "
                        "512-byte sector",
                        path_.string());
    }
    if (size_ % k_sector_size != 0) {
        throw bad_input("the raw disk image {} is {} bytes, not a whole number of 512-byte "
                        "sectors; pad it to whole sectors (truncate -s %512 FILE)",
                        path_.string(), size_);
    }
    buffer_.resize(chunk_size);
    chunk_count_ = (size_ + chunk_size - 1) / chunk_size;
    // Tells the kernel to read ahead generously; a failure only costs speed.
    ::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
}

bool RawImageReader::find_next_data_region() {
    const std::uint64_t chunk = buffer_.size();
    const auto from = static_cast<off_t>(next_chunk_ * chunk);
    const off_t data = ::lseek(fd_.get(), from, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            return false; // only a hole is left
        }
        if (errno == EINVAL || errno == EOPNOTSUPP) {
            data_end_chunk_ = chunk_count_; // no hole support: treat the rest as data
            return true;
        }
        throw build_failed("cannot read the raw disk image {}: {}", path_.string(),
                           std::strerror(errno));
    }
    const auto data_start = static_cast<std::uint64_t>(data);
    if (data_start >= size_) {
        return false;
    }
    const off_t hole = ::lseek(fd_.get(), data, SEEK_HOLE);
    const std::uint64_t data_end =
        hole < 0 ? size_ : std::min(size_, static_cast<std::uint64_t>(hole));
    next_chunk_ = data_start / chunk;
    data_end_chunk_ = std::max(next_chunk_ + 1, (data_end + chunk - 1) / chunk);
    return true;
}

void RawImageReader::read(std::uint64_t offset, std::span<std::uint8_t> out) const {
    const std::size_t length = static_cast<std::size_t>(
        std::min<std::uint64_t>(out.size(), offset < size_ ? size_ - offset : 0));
    bool complete = false;
    try {
        complete = util::pread_exact(fd_.get(), out.data(), length, offset);
    } catch (const std::system_error& error) {
        throw build_failed("cannot read the raw disk image {}: {}", path_.string(),
                           error.code().message());
    }
    if (!complete) {
        throw build_failed("the raw disk image {} shrank while it was being converted; make sure "
                           "nothing writes to it during the build",
                           path_.string());
    }
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(length), out.end(), 0);
}

std::optional<RawChunk> RawImageReader::next_data_chunk() {
    while (next_chunk_ < chunk_count_) {
        if (next_chunk_ >= data_end_chunk_ && !find_next_data_region()) {
            next_chunk_ = chunk_count_;
            break;
        }
        const std::uint64_t index = next_chunk_++;
        read(index * buffer_.size(), buffer_);
        if (!all_zero(buffer_)) {
            return RawChunk{index, buffer_};
        }
    }
    return std::nullopt;
}

} // namespace edgeforge::formats
