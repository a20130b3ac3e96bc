// Writes an image file front to back through aligned buffers, with O_DIRECT where the file system
// allows it, on a writer thread of its own, hashing the bytes as they go.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/digest.h"
#include "util/fs.h"

namespace edgeforge::formats {

inline constexpr std::size_t k_direct_alignment = 4096; // O_DIRECT buffer, offset, size alignment

// Where the SHA-256 of the image is computed.
enum class ImageHash {
    none,     // not at all
    writer,   // on the writer thread, before each buffer is written (the producer is busy)
    producer, // in produced(), on the caller's thread, while the bytes are still in its cache;
              // the writer thread then only writes
    thread,   // on a thread of its own, in order, between the producer and the writers: the
              // producer, the hashing and the writes overlap
};

struct ImageOutputOptions {
    ImageHash hash = ImageHash::writer;
    // Bytes per buffer (a multiple of k_direct_alignment) and buffers in flight.
    std::size_t buffer_size = 1 << 20;
    std::size_t buffers = 4;
    // Writer threads, each writing whole buffers at their offsets: more than one keeps several
    // direct writes in flight, which a disk behind O_DIRECT needs to reach its throughput.
    // ImageHash::writer hashes in order on the one writer, so it allows only one.
    std::size_t writers = 1;
};

// The image is written once and not read back, so the page cache only costs: on the machines we
// measured, write() + fsync of a 290 MiB ISO took 0.9 s and O_DIRECT 0.2 s. Producing the next
// buffer overlaps writing the last one. Falls back to ordinary writes when the file system
// refuses O_DIRECT (tmpfs, some FUSE and network file systems). The file is written from offset
// 0, front to back, with pwrite (its file offset is left alone).
class ImageOutput {
  public:
    explicit ImageOutput(util::AtomicFile& file, const ImageOutputOptions& options = {});
    ~ImageOutput();
    ImageOutput(const ImageOutput&) = delete;
    ImageOutput& operator=(const ImageOutput&) = delete;

    unsigned char* space() { return current_->bytes + current_->size; }
    std::size_t room() const { return buffer_size_ - current_->size; }
    // `size` bytes were placed at space(). Throws std::system_error for an earlier write error.
    void produced(std::size_t size);
    // Copies `size` bytes in (through as many buffers as it takes).
    void put(const void* data, std::size_t size);
    // Writes what is left, waits for the writer and gives the file its exact size (the last
    // direct write is padded to the alignment). Throws std::system_error for write errors.
    void finish(std::uint64_t image_size);
    // The SHA-256 of the image bytes, once finished (not with ImageHash::none).
    std::string sha256() { return hash_.finish_hex(); }

  private:
    struct Buffer {
        unsigned char* bytes = nullptr;
        std::size_t size = 0;     // bytes to write
        std::size_t hashed = 0;   // of which image bytes (the rest is alignment padding)
        std::uint64_t offset = 0; // in the file
    };

    Buffer* take_free();
    void hand_over(Buffer* buffer);
    void hash_loop();
    void write_loop();
    void write_buffer(const Buffer& buffer);
    void stop();
    void rethrow_error();
    void release();

    util::AtomicFile& file_;
    ImageHash hash_mode_;
    std::size_t buffer_size_;
    util::Sha256 hash_;
    std::uint64_t produced_ = 0; // bytes handed over so far
    std::vector<Buffer> buffers_;
    std::deque<Buffer*> free_;
    std::deque<Buffer*> to_hash_; // ImageHash::thread: full, not yet hashed
    std::deque<Buffer*> full_;    // to write
    Buffer* current_ = nullptr;
    std::atomic<bool> direct_{false};
    std::mutex mutex_;
    std::condition_variable changed_;
    bool stopping_ = false;
    bool hashing_done_ = false;
    std::exception_ptr error_;
    std::thread hasher_;
    std::vector<std::thread> writers_;
};

} // namespace edgeforge::formats
