// Writes an image file front to back through aligned buffers, with O_DIRECT where the file system
// allows it, on a writer thread of its own, hashing the bytes as they go.
#include "formats/image_output.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

#include "util/fd.h"

namespace edgeforge::formats {

ImageOutput::ImageOutput(util::AtomicFile& file, const ImageOutputOptions& options)
    : file_(file), hash_mode_(options.hash), buffer_size_(options.buffer_size),
      buffers_(std::max<std::size_t>(options.buffers, 2)) {
    if (buffer_size_ == 0 || buffer_size_ % k_direct_alignment != 0 ||
        (options.hash == ImageHash::writer && options.writers != 1) || options.writers == 0) {
        throw std::invalid_argument("ImageOutput: unusable buffer size or writer count");
    }
    for (auto& buffer : buffers_) {
        buffer.bytes =
            static_cast<unsigned char*>(std::aligned_alloc(k_direct_alignment, buffer_size_));
        if (buffer.bytes == nullptr) {
            release();
            throw std::bad_alloc();
        }
        free_.push_back(&buffer);
    }
    const int flags = ::fcntl(file_.fd(), F_GETFL);
    direct_ = flags >= 0 && ::fcntl(file_.fd(), F_SETFL, flags | O_DIRECT) == 0;
    current_ = take_free();
    try {
        if (hash_mode_ == ImageHash::thread) {
            hasher_ = std::thread([this] { hash_loop(); });
        } else {
            hashing_done_ = true;
        }
        for (std::size_t i = 0; i < options.writers; ++i) {
            writers_.emplace_back([this] { write_loop(); });
        }
    } catch (...) {
        stop();
        release();
        throw;
    }
}

ImageOutput::~ImageOutput() {
    stop();
    release();
}

void ImageOutput::produced(std::size_t size) {
    if (hash_mode_ == ImageHash::producer) {
        hash_.update(current_->bytes + current_->size, size);
    }
    current_->size += size;
    current_->hashed = current_->size;
    if (current_->size == buffer_size_) {
        hand_over(current_);
        current_ = take_free();
    }
}

void ImageOutput::put(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    while (size > 0) {
        const std::size_t piece = std::min(size, room());
        std::memcpy(space(), bytes, piece);
        produced(piece);
        bytes += piece;
        size -= piece;
    }
}

void ImageOutput::finish(std::uint64_t image_size) {
    if (current_ != nullptr && current_->size > 0) {
        if (direct_) {
            const std::size_t padded =
                (current_->size + k_direct_alignment - 1) / k_direct_alignment * k_direct_alignment;
            std::memset(current_->bytes + current_->size, 0, padded - current_->size);
            current_->size = padded;
        }
        hand_over(current_);
        current_ = nullptr;
    }
    stop();
    rethrow_error();
    // Drops the padding of the last direct write, if any.
    if (::ftruncate(file_.fd(), static_cast<off_t>(image_size)) != 0) {
        throw std::system_error(errno, std::generic_category(), "ftruncate");
    }
}

ImageOutput::Buffer* ImageOutput::take_free() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !free_.empty() || error_; });
    if (error_) {
        lock.unlock();
        rethrow_error();
    }
    Buffer* buffer = free_.front();
    free_.pop_front();
    buffer->size = 0;
    return buffer;
}

void ImageOutput::hand_over(Buffer* buffer) {
    buffer->offset = produced_;
    produced_ += buffer->size;
    {
        const std::lock_guard lock(mutex_);
        (hash_mode_ == ImageHash::thread ? to_hash_ : full_).push_back(buffer);
    }
    changed_.notify_all();
}

void ImageOutput::hash_loop() {
    while (true) {
        Buffer* buffer = nullptr;
        {
            std::unique_lock lock(mutex_);
            changed_.wait(lock, [&] { return !to_hash_.empty() || stopping_; });
            if (to_hash_.empty()) {
                hashing_done_ = true;
                break;
            }
            buffer = to_hash_.front();
            to_hash_.pop_front();
        }
        hash_.update(buffer->bytes, buffer->hashed);
        {
            const std::lock_guard lock(mutex_);
            full_.push_back(buffer);
        }
        changed_.notify_all();
    }
    changed_.notify_all();
}

void ImageOutput::write_loop() {
    while (true) {
        Buffer* buffer = nullptr;
        {
            std::unique_lock lock(mutex_);
            changed_.wait(lock, [&] { return !full_.empty() || (stopping_ && hashing_done_); });
            if (full_.empty()) {
                return;
            }
            buffer = full_.front();
            full_.pop_front();
            if (error_) {
                free_.push_back(buffer); // a write failed: the image is lost anyway
                continue;
            }
        }
        try {
            write_buffer(*buffer);
        } catch (...) {
            const std::lock_guard lock(mutex_);
            error_ = std::current_exception();
            full_.clear();
        }
        {
            const std::lock_guard lock(mutex_);
            free_.push_back(buffer);
        }
        changed_.notify_all();
    }
}

void ImageOutput::write_buffer(const Buffer& buffer) {
    if (hash_mode_ == ImageHash::writer) {
        hash_.update(buffer.bytes, buffer.hashed);
    }
    const bool direct = direct_;
    try {
        util::pwrite_exact(file_.fd(), buffer.bytes, buffer.size, buffer.offset);
    } catch (const std::system_error& error) {
        // Some file systems accept the flag and refuse the write: write without it (another
        // writer may have turned it off already).
        if (!direct || error.code().value() != EINVAL) {
            throw;
        }
        {
            const std::lock_guard lock(mutex_);
            if (direct_) {
                const int flags = ::fcntl(file_.fd(), F_GETFL);
                if (flags < 0 || ::fcntl(file_.fd(), F_SETFL, flags & ~O_DIRECT) != 0) {
                    throw;
                }
                direct_ = false;
            }
        }
        util::pwrite_exact(file_.fd(), buffer.bytes, buffer.size, buffer.offset);
    }
}

void ImageOutput::stop() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_all();
    if (hasher_.joinable()) {
        hasher_.join();
    }
    for (auto& writer : writers_) {
        if (writer.joinable()) {
            writer.join();
        }
    }
}

void ImageOutput::rethrow_error() {
    const std::lock_guard lock(mutex_);
    if (error_) {
        std::rethrow_exception(error_);
    }
}

void ImageOutput::release() {
    for (auto& buffer : buffers_) {
        std::free(buffer.bytes);
        buffer.bytes = nullptr;
    }
}

} // namespace edgeforge::formats
