// A range of a host file that belongs at an offset of an image.
#pragma once

#include <cstdint>
#include <filesystem>

namespace util {

// `length` bytes of the host file `file` from `file_offset`, that belong at `offset` of an image
// (a filesystem image whose blocks for a big file were allocated and left for whoever copies the
// image to fill from the file itself).
struct FileExtent {
    std::uint64_t offset = 0;
    std::filesystem::path file;
    std::uint64_t file_offset = 0;
    std::uint64_t length = 0;
};

} // namespace util
