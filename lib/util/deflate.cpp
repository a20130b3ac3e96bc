// Deflate compression of independent blocks with zlib, one reusable stream per compressor.
#include "util/deflate.h"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <isa-l/igzip_lib.h>
#include <zlib.h>

namespace util {

void Deflater::StreamDeleter::operator()(z_stream_s* stream) const {
    deflateEnd(stream);
    delete stream;
}

// ISA-L's stream and the working memory its level needs.
struct Deflater::Isal {
    isal_zstream stream{};
    std::vector<std::uint8_t> level_buffer = std::vector<std::uint8_t>(ISAL_DEF_LVL1_DEFAULT);
};

Deflater::Deflater(DeflateFormat format, int window_bits, DeflateEngine engine) : format_(format) {
    if (window_bits < 9 || window_bits > 15) {
        throw std::invalid_argument("deflate window bits must be 9 to 15");
    }
    if (engine == DeflateEngine::isal) {
        if (window_bits != 15) {
            throw std::invalid_argument("ISA-L deflate takes a 32 KiB window only");
        }
        isal_ = std::make_unique<Isal>();
        return;
    }
    auto stream = std::make_unique<z_stream_s>();
    const int bits = format == DeflateFormat::raw ? -window_bits : window_bits;
    const int result =
        deflateInit2(stream.get(), Z_DEFAULT_COMPRESSION, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY);
    if (result != Z_OK) {
        throw std::runtime_error("zlib: cannot initialise deflate: " + std::to_string(result));
    }
    stream_.reset(stream.release());
}

Deflater::~Deflater() = default;

std::optional<std::size_t> Deflater::compress(std::span<const std::uint8_t> input,
                                              std::span<std::uint8_t> output) {
    constexpr std::size_t k_max = std::numeric_limits<uInt>::max();
    if (input.size() > k_max || output.size() > k_max) {
        throw std::invalid_argument("deflate blocks must be smaller than 4 GiB");
    }
    if (isal_) {
        isal_zstream& stream = isal_->stream;
        isal_deflate_stateless_init(&stream);
        stream.level = 1;
        stream.level_buf = isal_->level_buffer.data();
        stream.level_buf_size = static_cast<std::uint32_t>(isal_->level_buffer.size());
        stream.gzip_flag = format_ == DeflateFormat::zlib ? IGZIP_ZLIB : IGZIP_DEFLATE;
        stream.end_of_stream = 1;
        stream.flush = NO_FLUSH;
        // ISA-L never writes through next_in either.
        stream.next_in = const_cast<std::uint8_t*>(input.data());
        stream.avail_in = static_cast<std::uint32_t>(input.size());
        stream.next_out = output.data();
        stream.avail_out = static_cast<std::uint32_t>(output.size());
        const int result = isal_deflate_stateless(&stream);
        if (result == COMP_OK) {
            return output.size() - stream.avail_out;
        }
        if (result == STATELESS_OVERFLOW) {
            return std::nullopt;
        }
        throw std::runtime_error("ISA-L: deflate failed: " + std::to_string(result));
    }
    z_stream_s& stream = *stream_;
    if (deflateReset(&stream) != Z_OK) {
        throw std::runtime_error("zlib: deflateReset failed");
    }
    // zlib never writes through next_in; its API just predates const.
    stream.next_in = const_cast<Bytef*>(input.data());
    stream.avail_in = static_cast<uInt>(input.size());
    stream.next_out = output.data();
    stream.avail_out = static_cast<uInt>(output.size());
    const int result = deflate(&stream, Z_FINISH);
    if (result == Z_STREAM_END) {
        return output.size() - stream.avail_out;
    }
    if (result == Z_OK || result == Z_BUF_ERROR) {
        return std::nullopt; // the output filled up before the stream ended
    }
    throw std::runtime_error("zlib: deflate failed: " + std::to_string(result));
}

std::size_t Deflater::bound(std::size_t input_size) const {
    if (isal_) {
        // Stored blocks at worst (5 bytes per 64 KiB less one), a zlib header and trailer, and
        // room for the final block's header: what ISA-L falls back to when it cannot shrink.
        return input_size + (input_size / 65535 + 1) * 5 + 6 + 64;
    }
    return deflateBound(stream_.get(), static_cast<uLong>(input_size));
}

} // namespace util
