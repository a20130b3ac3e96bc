// Unit tests for formats/image_output: the bytes and the hash come out right whatever the
// hashing mode, the number of writers and the way the bytes are handed in.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>

#include "formats/image_output.h"
#include "support/data.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

TEST_CASE("ImageOutput writes and hashes the bytes in order with every hashing mode") {
    util::TempDir dir;
    // Many buffers' worth, not a multiple of the direct-write alignment.
    const std::string bytes = testing::pseudo_random_bytes(5 * 65536 + 1234, 11);
    struct Mode {
        formats::ImageHash hash;
        std::size_t writers;
    };
    for (const Mode mode :
         {Mode{formats::ImageHash::writer, 1}, Mode{formats::ImageHash::producer, 3},
          Mode{formats::ImageHash::thread, 2}, Mode{formats::ImageHash::none, 2}}) {
        CAPTURE(static_cast<int>(mode.hash));
        CAPTURE(mode.writers);
        const auto path = dir.path() / "image";
        util::AtomicFile file(path);
        formats::ImageOutputOptions options;
        options.hash = mode.hash;
        options.writers = mode.writers;
        options.buffer_size = 65536;
        options.buffers = 3;
        formats::ImageOutput out(file, options);
        // Through put() in uneven pieces, then straight into space().
        std::size_t done = 0;
        for (std::size_t piece = 1000; done < bytes.size() / 2; piece += 7777) {
            const std::size_t size = std::min(piece, bytes.size() / 2 - done);
            out.put(bytes.data() + done, size);
            done += size;
        }
        while (done < bytes.size()) {
            const std::size_t size = std::min(out.room(), bytes.size() - done);
            std::memcpy(out.space(), bytes.data() + done, size);
            out.produced(size);
            done += size;
        }
        out.finish(bytes.size());
        const std::string hash = out.sha256();
        file.commit();
        CHECK(util::read_file(path) == bytes);
        if (mode.hash == formats::ImageHash::none) {
            CHECK(hash != util::sha256_hex(bytes));
        } else {
            CHECK(hash == util::sha256_hex(bytes));
        }
    }
}

TEST_CASE("ImageOutput refuses a hash on several writers and unaligned buffers") {
    util::TempDir dir;
    util::AtomicFile file(dir.path() / "image");
    formats::ImageOutputOptions options;
    options.writers = 2; // with ImageHash::writer, the default
    CHECK_THROWS_AS(formats::ImageOutput(file, options), std::invalid_argument);
    options.writers = 1;
    options.buffer_size = 1000;
    CHECK_THROWS_AS(formats::ImageOutput(file, options), std::invalid_argument);
}
