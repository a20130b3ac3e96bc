// SHA-256 taken on a thread of its own while the caller goes on (writing what it hashes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/background_sink.h"
#include "util/digest.h"

namespace util {

// Bytes given in order with update() are copied and hashed on a worker thread, so a copy loop
// does not wait for SHA-256 (about 1.8 GB/s on one core) between its reads and writes. At most
// `max_pending` bytes wait at a time (update() blocks until there is room), so memory stays
// bounded whatever is hashed.
class BackgroundSha256 {
  public:
    explicit BackgroundSha256(std::size_t max_pending = std::size_t{16} << 20)
        : sink_([this](const std::uint8_t* data, std::size_t size) { hash_.update(data, size); },
                max_pending) {}

    void update(const void* data, std::size_t size) { sink_.update(data, size); }
    // `count` zero bytes, without a buffer of them.
    void update_zeros(std::uint64_t count) { sink_.update_zeros(count); }
    // Waits for everything given and returns the digest; call once.
    std::string finish_hex() {
        sink_.finish();
        return hash_.finish_hex();
    }

  private:
    Sha256 hash_;
    BackgroundSink sink_; // last: its worker uses hash_
};

} // namespace util
