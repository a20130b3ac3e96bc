// Deflate compression of independent blocks with zlib or ISA-L, one reusable stream per
// compressor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

struct z_stream_s;

namespace util {

// Raw deflate (RFC 1951) or deflate wrapped in the zlib format (RFC 1950, header + Adler-32).
enum class DeflateFormat { raw, zlib };

// Which deflater makes the bytes.
enum class DeflateEngine {
    // zlib at its default level (6): any window size (9..15 bits).
    zlib,
    // ISA-L's igzip at level 1: several times faster than zlib (about 1 GB/s a core against
    // 60 MB/s on data that does not compress, such as a squashfs), at a few percent in size; a
    // 32 KiB window only. Its bytes are the same on every x86-64 with SSE4.2 (its one code path
    // from there up), so outputs stay reproducible.
    isal,
};

// Compresses blocks one at a time, each into a complete, independent deflate stream. The
// output depends only on the input, the settings and the zlib version, so it is reproducible.
class Deflater {
  public:
    // `window_bits` 9..15: decompressors must be given at least this window, so a format
    // that fixes the window (qcow2 inflates with 4 KiB, i.e. 12) needs it here too.
    explicit Deflater(DeflateFormat format, int window_bits = 15,
                      DeflateEngine engine = DeflateEngine::zlib);
    ~Deflater();
    Deflater(const Deflater&) = delete;
    Deflater& operator=(const Deflater&) = delete;

    // Compresses `input` into `output`. Returns the compressed size, or nullopt when the result
    // would not fit (for incompressible data, when `output` is smaller than the input).
    std::optional<std::size_t> compress(std::span<const std::uint8_t> input,
                                        std::span<std::uint8_t> output);

    // An output size that always suffices for `input_size` bytes with these settings.
    std::size_t bound(std::size_t input_size) const;

  private:
    struct StreamDeleter {
        void operator()(z_stream_s* stream) const;
    };
    std::unique_ptr<z_stream_s, StreamDeleter> stream_;
    struct Isal;
    std::unique_ptr<Isal> isal_; // set for DeflateEngine::isal (then stream_ is not)
    DeflateFormat format_;
};

} // namespace util
