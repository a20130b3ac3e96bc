// Entries of the squashfs block cache (<cache_dir>/blocks): files anyone with access to the
// cache may have damaged. Input: an entry file's content; also used as the payload of a
// well-formed entry, which must read back as it was written.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fs/squashfs_block_cache.h"
#include "util/digest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fs = edgeforge::fs;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::string key = fs::block_key("fuzz block");
    (void)fs::parse_block_entry(input, key, 1u << 20);
    (void)fs::parse_block_entry(input, input.substr(0, 32), 4096);

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
        const std::size_t at = input.empty() ? 0 : static_cast<std::uint8_t>(input[0]) % content.size();
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
