// Streaming zstd compression into a caller's sink, with libzstd worker threads.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

struct ZSTD_CCtx_s;

namespace util {

// Compresses a stream of bytes into one zstd frame (content checksum on) and hands the
// compressed bytes to `sink` as they come. With at least one worker the output depends only on
// the input, the level and the zstd version, never on the worker count, so it is reproducible.
// Throws std::runtime_error ("zstd: REASON") when libzstd fails; what `sink` throws passes
// through.
class ZstdStream {
  public:
    using Sink = std::function<void(const char* data, std::size_t size)>;

    // `workers` 0: one per available core. A libzstd built without threads compresses on the
    // calling thread (workers() is then 0).
    ZstdStream(int level, unsigned workers, Sink sink);
    ~ZstdStream();
    ZstdStream(const ZstdStream&) = delete;
    ZstdStream& operator=(const ZstdStream&) = delete;

    void write(const void* data, std::size_t size);
    // Ends the frame; nothing may be written after it.
    void finish();
    unsigned workers() const { return workers_; }

  private:
    void pump(const void* data, std::size_t size, int directive);

    ZSTD_CCtx_s* context_ = nullptr;
    std::vector<char> output_;
    Sink sink_;
    unsigned workers_ = 0;
};

} // namespace util
