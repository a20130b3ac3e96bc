// SHA-256 taken on a thread of its own while the caller goes on (writing what it hashes).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/digest.h"

namespace util {

// Bytes given in order with update() are copied and hashed on a worker thread, so a copy loop
// does not wait for SHA-256 (about 1.8 GB/s on one core) between its reads and writes. At most
// `max_pending` bytes wait at a time (update() blocks until there is room), so memory stays
// bounded whatever is hashed.
class BackgroundSha256 {
  public:
    explicit BackgroundSha256(std::size_t max_pending = std::size_t{16} << 20);
    ~BackgroundSha256();
    BackgroundSha256(const BackgroundSha256&) = delete;
    BackgroundSha256& operator=(const BackgroundSha256&) = delete;

    void update(const void* data, std::size_t size);
    // `count` zero bytes, without a buffer of them.
    void update_zeros(std::uint64_t count);
    // Waits for everything given and returns the digest; call once.
    std::string finish_hex();

  private:
    struct Piece {
        std::vector<std::uint8_t> bytes; // empty: `zeros` zero bytes
        std::uint64_t zeros = 0;
    };
    void push(Piece piece, std::size_t weight);
    void run();

    std::size_t max_pending_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Piece> pieces_;
    std::size_t pending_ = 0;
    bool done_ = false;
    Sha256 hash_;
    std::thread worker_;
};

} // namespace util
