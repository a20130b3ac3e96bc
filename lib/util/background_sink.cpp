// Bytes handed to a consumer on a thread of its own while the caller goes on.
#include "util/background_sink.h"

#include <algorithm>
#include <utility>

namespace util {

BackgroundSink::BackgroundSink(Consume consume, std::size_t max_pending)
    : consume_(std::move(consume)), max_pending_(std::max<std::size_t>(max_pending, 1)),
      worker_([this] { run(); }) {}

BackgroundSink::~BackgroundSink() {
    {
        const std::lock_guard lock(mutex_);
        done_ = true;
        pieces_.clear();
    }
    changed_.notify_all();
    if (worker_.joinable()) {
        worker_.join();
    }
}

void BackgroundSink::rethrow_failure() {
    if (failure_) {
        std::rethrow_exception(failure_);
    }
}

void BackgroundSink::push(Piece piece, std::size_t weight) {
    std::unique_lock lock(mutex_);
    // One piece may exceed the bound on its own; it then waits for an empty queue.
    changed_.wait(lock,
                  [&] { return failure_ || pending_ == 0 || pending_ + weight <= max_pending_; });
    rethrow_failure();
    pending_ += weight;
    pieces_.push_back(std::move(piece));
    lock.unlock();
    changed_.notify_all();
}

void BackgroundSink::update(const void* data, std::size_t size) {
    if (size == 0) {
        return;
    }
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    push(Piece{std::vector<std::uint8_t>(bytes, bytes + size), 0}, size);
}

void BackgroundSink::update_zeros(std::uint64_t count) {
    if (count != 0) {
        push(Piece{{}, count}, 1);
    }
}

void BackgroundSink::run() {
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
        try {
            if (!piece.bytes.empty()) {
                consume_(piece.bytes.data(), piece.bytes.size());
            }
            for (std::uint64_t left = piece.zeros; left > 0;) {
                const auto chunk =
                    static_cast<std::size_t>(std::min<std::uint64_t>(left, k_zeros.size()));
                consume_(k_zeros.data(), chunk);
                left -= chunk;
            }
        } catch (...) {
            {
                const std::lock_guard lock(mutex_);
                failure_ = std::current_exception();
                pieces_.clear();
                pending_ = 0;
            }
            changed_.notify_all();
            return;
        }
        {
            const std::lock_guard lock(mutex_);
            pending_ -= weight;
        }
        changed_.notify_all();
    }
}

void BackgroundSink::finish() {
    {
        const std::lock_guard lock(mutex_);
        done_ = true;
    }
    changed_.notify_all();
    if (worker_.joinable()) {
        worker_.join();
    }
    const std::lock_guard lock(mutex_);
    rethrow_failure();
}

} // namespace util
