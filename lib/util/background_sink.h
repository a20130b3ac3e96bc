// Bytes handed to a consumer on a thread of its own while the caller goes on.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace util {

// Bytes given in order with update() are copied and passed, in the same order, to `consume` on
// a worker thread, so the caller does not wait for what consuming them costs (hashing, a write
// to the page cache). At most `max_pending` bytes wait at a time (update() blocks until there
// is room), so memory stays bounded whatever passes through.
// When `consume` throws, what is still queued is dropped, and the exception is rethrown to the
// caller by the next update() or by finish().
class BackgroundSink {
  public:
    using Consume = std::function<void(const std::uint8_t* data, std::size_t size)>;

    explicit BackgroundSink(Consume consume, std::size_t max_pending = std::size_t{16} << 20);
    // Stops the worker; bytes still queued are dropped.
    ~BackgroundSink();
    BackgroundSink(const BackgroundSink&) = delete;
    BackgroundSink& operator=(const BackgroundSink&) = delete;

    void update(const void* data, std::size_t size);
    // `count` zero bytes, without a buffer of them (passed on in pieces of 64 KiB).
    void update_zeros(std::uint64_t count);
    // Waits until everything given is consumed and stops the worker; call once.
    void finish();

  private:
    struct Piece {
        std::vector<std::uint8_t> bytes; // empty: `zeros` zero bytes
        std::uint64_t zeros = 0;
    };
    void push(Piece piece, std::size_t weight);
    void run();
    void rethrow_failure(); // with mutex_ held

    Consume consume_;
    std::size_t max_pending_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Piece> pieces_;
    std::size_t pending_ = 0;
    bool done_ = false;
    std::exception_ptr failure_;
    std::thread worker_; // last: started once the rest is ready
};

} // namespace util
