// SHA-256 taken on a thread of its own while the caller goes on (writing what it hashes).
#include "util/background_hash.h"

#include <algorithm>

namespace util {

BackgroundSha256::BackgroundSha256(std::size_t max_pending)
    : max_pending_(std::max<std::size_t>(max_pending, 1)), worker_([this] { run(); }) {}

BackgroundSha256::~BackgroundSha256() {
    {
        const std::lock_guard lock(mutex_);
        done_ = true;
    }
    changed_.notify_all();
    if (worker_.joinable()) {
        worker_.join();
    }
}

void BackgroundSha256::push(Piece piece, std::size_t weight) {
    std::unique_lock lock(mutex_);
    // One piece may exceed the bound on its own; it then waits for an empty queue.
    changed_.wait(lock, [&] { return pending_ == 0 || pending_ + weight <= max_pending_; });
    pending_ += weight;
    pieces_.push_back(std::move(piece));
    lock.unlock();
    changed_.notify_all();
}

void BackgroundSha256::update(const void* data, std::size_t size) {
    if (size == 0) {
        return;
    }
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    push(Piece{std::vector<std::uint8_t>(bytes, bytes + size), 0}, size);
}

void BackgroundSha256::update_zeros(std::uint64_t count) {
    if (count != 0) {
        push(Piece{{}, count}, 1);
    }
}

void BackgroundSha256::run() {
    static const std::vector<std::uint8_t> k_zeros(std::size_t{1} << 16);
    for (;;) {
        Piece piece;
        std::size_t weight = 0;
        {
            std::unique_lock lock(mutex_);
            changed_.wait(lock, [&] { return !pieces_.empty() || done_; });
            if (pieces_.empty()) {
                return;
            }
            piece = std::move(pieces_.front());
            pieces_.pop_front();
            weight = piece.bytes.empty() ? 1 : piece.bytes.size();
        }
        if (!piece.bytes.empty()) {
            hash_.update(piece.bytes.data(), piece.bytes.size());
        }
        for (std::uint64_t left = piece.zeros; left > 0;) {
            const auto chunk =
                static_cast<std::size_t>(std::min<std::uint64_t>(left, k_zeros.size()));
            hash_.update(k_zeros.data(), chunk);
            left -= chunk;
        }
        {
            const std::lock_guard lock(mutex_);
            pending_ -= weight;
        }
        changed_.notify_all();
    }
}

std::string BackgroundSha256::finish_hex() {
    {
        const std::lock_guard lock(mutex_);
        done_ = true;
    }
    changed_.notify_all();
    worker_.join();
    return hash_.finish_hex();
}

} // namespace util
