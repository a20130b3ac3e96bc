// Reading and gzip (ISA-L's igzip) or zstd decompression on a background thread.
#include "util/background_reader.h"

#include <memory>

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <fmt/format.h>

namespace util {

bool looks_like_gzip(std::string_view head) {
    return head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f &&
           static_cast<unsigned char>(head[1]) == 0x8b;
}

bool looks_like_zstd(std::string_view head) {
    return head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
           static_cast<unsigned char>(head[1]) == 0xB5 &&
           static_cast<unsigned char>(head[2]) == 0x2F &&
           static_cast<unsigned char>(head[3]) == 0xFD;
}

BackgroundReader::BackgroundReader(Source source, Decode decode, std::size_t block_size,
                                   std::size_t blocks)
    : source_(std::move(source)), decode_(decode), block_size_(block_size) {
    for (std::size_t i = 0; i < blocks; ++i) {
        free_.emplace_back(block_size_);
    }
    worker_ = std::thread([this] { run(); });
}

BackgroundReader::~BackgroundReader() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_all();
    worker_.join();
}

std::vector<char> BackgroundReader::take_free_block() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return !free_.empty() || stopping_; });
    if (stopping_) {
        return {};
    }
    std::vector<char> block = std::move(free_.back());
    free_.pop_back();
    block.resize(block_size_);
    return block;
}

void BackgroundReader::publish(std::vector<char> block) {
    {
        const std::lock_guard lock(mutex_);
        ready_.push_back(std::move(block));
    }
    changed_.notify_all();
}

void BackgroundReader::run() {
    std::string error;
    std::exception_ptr exception;
    try {
        if (decode_ == Decode::gzip) {
            inflate(error);
        } else if (decode_ == Decode::zstd) {
            decompress_zstd(error);
        } else {
            pass_through();
        }
    } catch (...) {
        exception = std::current_exception();
    }
    {
        const std::lock_guard lock(mutex_);
        error_ = std::move(error);
        exception_ = exception;
        done_ = true;
    }
    changed_.notify_all();
}

void BackgroundReader::pass_through() {
    for (;;) {
        std::vector<char> block = take_free_block();
        if (block.empty()) {
            return; // the consumer is gone
        }
        const std::size_t got = source_(block.data(), block.size());
        if (got == 0) {
            return;
        }
        block.resize(got);
        publish(std::move(block));
    }
}

void BackgroundReader::inflate(std::string& error) {
    inflate_state state{};
    isal_inflate_init(&state);
    state.crc_flag = ISAL_GZIP;
    std::vector<char> input(block_size_);
    bool end_of_input = false;
    bool member_finished = false;
    std::vector<char> output = take_free_block();
    if (output.empty()) {
        return;
    }
    state.next_out = reinterpret_cast<std::uint8_t*>(output.data());
    state.avail_out = static_cast<std::uint32_t>(output.size());
    const auto flush_output = [&](bool final_block) -> bool {
        const std::size_t filled = output.size() - state.avail_out;
        if (filled == 0 && !final_block) {
            return true;
        }
        output.resize(filled);
        if (filled > 0) {
            publish(std::move(output));
        }
        if (final_block) {
            return true;
        }
        output = take_free_block();
        if (output.empty()) {
            return false; // the consumer is gone
        }
        state.next_out = reinterpret_cast<std::uint8_t*>(output.data());
        state.avail_out = static_cast<std::uint32_t>(output.size());
        return true;
    };
    for (;;) {
        if (state.avail_in == 0 && !end_of_input) {
            const std::size_t got = source_(input.data(), input.size());
            end_of_input = got == 0;
            state.next_in = reinterpret_cast<std::uint8_t*>(input.data());
            state.avail_in = static_cast<std::uint32_t>(got);
        }
        if (member_finished) {
            if (state.avail_in == 0) {
                if (end_of_input) {
                    break;
                }
                continue;
            }
            if (static_cast<unsigned char>(*state.next_in) != 0x1f) {
                state.avail_in = 0; // bytes after the last member (padding): read, ignored
                continue;
            }
            // Another member (concatenated gzip, as pigz and `cat a.gz b.gz` make).
            std::uint8_t* next_in = state.next_in;
            const std::uint32_t avail_in = state.avail_in;
            isal_inflate_reset(&state);
            state.crc_flag = ISAL_GZIP;
            state.next_in = next_in;
            state.avail_in = avail_in;
            member_finished = false;
        }
        const std::uint32_t out_before = state.avail_out;
        const std::uint32_t in_before = state.avail_in;
        const int status = isal_inflate(&state);
        if (status < 0) {
            error = status == ISAL_INCORRECT_CHECKSUM
                        ? "gzip CRC mismatch (the layer is corrupt)"
                        : fmt::format("invalid gzip data (igzip error {})", status);
            break;
        }
        if (state.block_state == ISAL_BLOCK_FINISH) {
            member_finished = true;
        }
        if (state.avail_out == 0 && !flush_output(false)) {
            return;
        }
        const bool stalled = state.avail_out == out_before && state.avail_in == in_before;
        if (end_of_input && state.avail_in == 0 && !member_finished && stalled) {
            error = "truncated gzip input";
            break;
        }
    }
    flush_output(true);
}

void BackgroundReader::decompress_zstd(std::string& error) {
    const std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(),
                                                                       &ZSTD_freeDCtx);
    if (!context) {
        throw std::bad_alloc();
    }
    // zstd's own default, stated: a frame asking for a larger window (memory) is refused.
    ZSTD_DCtx_setParameter(context.get(), ZSTD_d_windowLogMax, 27);
    std::vector<char> input(block_size_);
    ZSTD_inBuffer in{input.data(), 0, 0};
    bool end_of_input = false;
    bool ignoring = false;    // bytes after the last frame (padding): read, not decoded
    std::size_t pending = 0;  // ZSTD_decompressStream's last answer: 0 at a frame's end
    bool output_full = false; // the decoder may hold more output for the same input
    std::vector<char> output = take_free_block();
    if (output.empty()) {
        return;
    }
    ZSTD_outBuffer out{output.data(), output.size(), 0};
    for (;;) {
        if (in.pos == in.size && !output_full) {
            if (end_of_input) {
                break;
            }
            const std::size_t got = source_(input.data(), input.size());
            end_of_input = got == 0;
            in = ZSTD_inBuffer{input.data(), got, 0};
            if (got == 0 || ignoring) {
                in.pos = in.size;
                continue;
            }
        }
        if (pending == 0 && in.pos < in.size && !output_full) {
            // Between frames: another frame (a zstd or a skippable one) or trailing bytes.
            const auto first = static_cast<unsigned char>(input[in.pos]);
            if (first != 0x28 && (first & 0xF0) != 0x50) {
                ignoring = true;
                in.pos = in.size;
                continue;
            }
        }
        pending = ZSTD_decompressStream(context.get(), &out, &in);
        if (ZSTD_isError(pending)) {
            error = fmt::format("invalid zstd data ({})", ZSTD_getErrorName(pending));
            break;
        }
        output_full = out.pos == out.size;
        if (output_full) {
            output.resize(out.pos);
            publish(std::move(output));
            output = take_free_block();
            if (output.empty()) {
                return; // the consumer is gone
            }
            out = ZSTD_outBuffer{output.data(), output.size(), 0};
        }
    }
    if (error.empty() && pending != 0) {
        error = "truncated zstd input";
    }
    if (out.pos > 0) {
        output.resize(out.pos);
        publish(std::move(output));
    }
}

std::string_view BackgroundReader::next() {
    std::unique_lock lock(mutex_);
    if (!current_.empty() || current_.capacity() > 0) {
        free_.push_back(std::move(current_));
        current_ = {};
        changed_.notify_all();
    }
    changed_.wait(lock, [this] { return !ready_.empty() || done_; });
    if (!ready_.empty()) {
        current_ = std::move(ready_.front());
        ready_.pop_front();
        return {current_.data(), current_.size()};
    }
    if (exception_) {
        std::rethrow_exception(exception_);
    }
    return {};
}

} // namespace util
