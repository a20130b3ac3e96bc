// Deflate compression of independent blocks with zlib, one reusable stream per compressor.
#include "util/deflate.h"

#include <limits>
#include <stdexcept>
#include <string>

#include <zlib.h>

namespace util {

void Deflater::StreamDeleter::operator()(z_stream_s* stream) const {
    deflateEnd(stream);
    delete stream;
}

Deflater::Deflater(DeflateFormat format, int window_bits) {
    if (window_bits < 9 || window_bits > 15) {
        throw std::invalid_argument("deflate window bits must be 9 to 15");
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
    return deflateBound(stream_.get(), static_cast<uLong>(input_size));
}

} // namespace util
