// Entries of the squashfs block cache (<cache_dir>/blocks), block entries and the indexes of kept
// base regions: files anyone with access to the cache may have damaged. Input: an entry file's
// content or a region index; also used as the payload of a well-formed entry, which must read
// back as it was written.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fs/squashfs_block_cache.h"
#include "fs/squashfs_region.h"
#include "util/digest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fs = edgeforge::fs;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string key = fs::block_key("fuzz block");
    (void)fs::parse_block_entry(input, key, 1u << 20);
    (void)fs::parse_block_entry(input, input.substr(0, 32), 4096);
    // The index of a kept base region, for any file count.
    for (const std::size_t files : {std::size_t{0}, std::size_t{1}, std::size_t{18000}}) {
        if (const auto index = fs::parse_region_index(input, files)) {
            if (index->inodes.size() != files ||
                fs::parse_region_index(fs::format_region_index(*index), files)->inodes !=
                    index->inodes) {
                std::abort();
            }
        }
    }

    // A well-formed entry round-trips; with one byte changed or cut short it is refused.
    const auto block_size = static_cast<std::uint32_t>(input.size() + 1);
    const fs::SquashfsBlockEntry written{std::string(input), input.empty()};
    const std::string content = fs::format_block_entry(key, block_size, written);
    const auto read = fs::parse_block_entry(content, key, block_size);
    if (!read || read->stored_raw != written.stored_raw ||
        read->compressed != (written.stored_raw ? std::string() : written.compressed)) {
        std::abort();
    }
    if (!content.empty()) {
        std::string damaged = content;
        const std::size_t at =
            input.empty() ? 0 : static_cast<std::uint8_t>(input[0]) % content.size();
        damaged[at] = static_cast<char>(damaged[at] ^ 0x01);
        if (fs::parse_block_entry(damaged, key, block_size)) {
            std::abort();
        }
        if (fs::parse_block_entry(std::string_view(content).substr(0, content.size() - 1), key,
                                  block_size)) {
            std::abort();
        }
    }
    return 0;
}
