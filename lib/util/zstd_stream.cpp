// Streaming zstd compression into a caller's sink, with libzstd worker threads.
#include "util/zstd_stream.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>

#include <zstd.h>

namespace util {
namespace {

void check(std::size_t result) {
    if (ZSTD_isError(result)) {
        throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(result));
    }
}

} // namespace

ZstdStream::ZstdStream(int level, unsigned workers, Sink sink) : sink_(std::move(sink)) {
    context_ = ZSTD_createCCtx();
    if (context_ == nullptr) {
        throw std::runtime_error("zstd: out of memory");
    }
    try {
        check(ZSTD_CCtx_setParameter(context_, ZSTD_c_compressionLevel, level));
        check(ZSTD_CCtx_setParameter(context_, ZSTD_c_checksumFlag, 1));
    } catch (...) {
        ZSTD_freeCCtx(context_);
        throw;
    }
    // Always at least one worker: multi-threaded output does not depend on the worker count.
    const unsigned wanted = workers == 0 ? std::max(1u, std::thread::hardware_concurrency()) : workers;
    if (!ZSTD_isError(
            ZSTD_CCtx_setParameter(context_, ZSTD_c_nbWorkers, static_cast<int>(wanted)))) {
        workers_ = wanted;
    }
    output_.resize(ZSTD_CStreamOutSize());
}

ZstdStream::~ZstdStream() { ZSTD_freeCCtx(context_); }

void ZstdStream::write(const void* data, std::size_t size) { pump(data, size, ZSTD_e_continue); }

void ZstdStream::finish() { pump(nullptr, 0, ZSTD_e_end); }

void ZstdStream::pump(const void* data, std::size_t size, int directive) {
    const auto mode = static_cast<ZSTD_EndDirective>(directive);
    ZSTD_inBuffer in{data, size, 0};
    for (;;) {
        ZSTD_outBuffer out{output_.data(), output_.size(), 0};
        const std::size_t remaining = ZSTD_compressStream2(context_, &out, &in, mode);
        check(remaining);
        if (out.pos > 0) {
            sink_(output_.data(), out.pos);
        }
        const bool done = mode == ZSTD_e_end ? remaining == 0 : in.pos == in.size;
        if (done) {
            return;
        }
    }
}

} // namespace util
