// Reads raw disk images chunk by chunk for the image converters, skipping holes and zero chunks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "util/fd.h"

namespace edgeforge::formats {

// Disk images are made of 512-byte sectors, whatever the format around them.
inline constexpr std::uint64_t k_sector_size = 512;

// A chunk of a raw image that holds at least one non-zero byte.
struct RawChunk {
    std::uint64_t index = 0;             // the chunk starts at index * chunk size
    std::span<const std::uint8_t> bytes; // chunk size bytes; the image's last chunk zero-padded
};

// Reads a raw disk image in chunks of one size, in order, and yields only the chunks that hold
// data. Holes are skipped with SEEK_DATA/SEEK_HOLE without reading them, and chunks read from
// data regions that are all zero are skipped too, so the chunks depend only on the content of
// the image, never on how sparse the file happens to be. Memory: one chunk.
class RawImageReader {
  public:
    // Error (bad input) naming the file when it cannot be opened, is not a regular file, is
    // empty, or its size is not a multiple of 512 bytes.
    RawImageReader(std::filesystem::path path, std::size_t chunk_size);

    const std::filesystem::path& path() const { return path_; }
    std::uint64_t size() const { return size_; }
    std::size_t chunk_size() const { return buffer_.size(); }
    // Chunks covering the image, the last one possibly partial.
    std::uint64_t chunk_count() const { return chunk_count_; }

    // The next chunk holding data, or nullopt after the last one. The bytes stay valid until the
    // next call. Error (build failed) when reading fails or the file shrinks meanwhile.
    std::optional<RawChunk> next_data_chunk();

    // Reads out.size() bytes at `offset` (a multiple of 512 inside the image) into `out`; what
    // lies past the end of the image reads as zeros. Error (build failed) naming the file when
    // reading fails or the file has shrunk.
    void read(std::uint64_t offset, std::span<std::uint8_t> out) const;

  private:
    // Moves next_chunk_ to the first chunk of the next data region and sets data_end_chunk_ past
    // its last chunk; false when no data is left.
    bool find_next_data_region();

    std::filesystem::path path_;
    util::FileDescriptor fd_;
    std::uint64_t size_ = 0;
    std::uint64_t chunk_count_ = 0;
    std::uint64_t next_chunk_ = 0;     // the next chunk to look at
    std::uint64_t data_end_chunk_ = 0; // chunks before this one overlap a known data region
    std::vector<std::uint8_t> buffer_;
};

} // namespace edgeforge::formats
