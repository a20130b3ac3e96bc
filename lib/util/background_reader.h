// Reading (and gzip decompression, with ISA-L's igzip, several times faster than zlib, or zstd
// decompression) on a background thread, so that reading, hashing and inflating a file overlap
// with whatever consumes its bytes.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace util {

// True when `head` starts with the gzip magic bytes.
bool looks_like_gzip(std::string_view head);
// True when `head` starts with the magic bytes of a zstd frame.
bool looks_like_zstd(std::string_view head);

class BackgroundReader {
  public:
    enum class Decode {
        none, // the bytes are handed on as read
        gzip, // the bytes are one or more gzip members, handed on inflated
        zstd, // the bytes are one or more zstd frames (windows up to 128 MiB), handed on inflated
    };

    // Fills `buffer` with up to `capacity` compressed bytes and returns how many; 0 at the end.
    // Runs on the worker thread; it may throw (the exception reaches the consumer).
    using Source = std::function<std::size_t(char* buffer, std::size_t capacity)>;

    // Starts reading at once. Every byte `source` has is read, including bytes after the last
    // gzip member or zstd frame (which are ignored), so a caller hashing in `source` hashes the
    // file.
    explicit BackgroundReader(Source source, Decode decode = Decode::gzip,
                              std::size_t block_size = 1 << 20, std::size_t blocks = 4);
    ~BackgroundReader();
    BackgroundReader(const BackgroundReader&) = delete;
    BackgroundReader& operator=(const BackgroundReader&) = delete;

    // The next block of (decompressed) bytes, valid until the next call; size 0 at the end of
    // the stream. When the stream is corrupt or truncated, returns size 0 and error() says why;
    // when `source` threw, rethrows its exception.
    std::string_view next();
    const std::string& error() const { return error_; }

  private:
    void run();
    void inflate(std::string& error);
    void decompress_zstd(std::string& error);
    void pass_through();
    std::vector<char> take_free_block();
    void publish(std::vector<char> block);

    Source source_;
    Decode decode_;
    std::size_t block_size_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<std::vector<char>> ready_; // filled blocks in order
    std::vector<std::vector<char>> free_;
    std::vector<char> current_; // the block handed out last
    bool done_ = false;         // the worker published its last block
    bool stopping_ = false;     // the consumer is gone
    std::string error_;
    std::exception_ptr exception_;
    std::thread worker_;
};

} // namespace util
