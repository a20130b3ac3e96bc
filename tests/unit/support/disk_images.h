// Test support: sparse raw disk images with data at chosen places, and qemu-img as their judge.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "util/fd.h"
#include "util/process.h"

namespace edgeforge::testing {

// A raw disk image under construction: a sparse file of the given size (all holes), with bytes
// written where a test wants data or explicit zeros.
class RawDisk {
  public:
    RawDisk(std::filesystem::path path, std::uint64_t size) : path_(std::move(path)) {
        util::FileDescriptor fd(
            ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        REQUIRE(fd.valid());
        REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
    }

    const std::filesystem::path& path() const { return path_; }

    RawDisk& write(std::uint64_t offset, std::string_view bytes) {
        util::FileDescriptor fd(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
        REQUIRE(fd.valid());
        util::pwrite_exact(fd.get(), bytes.data(), bytes.size(), offset);
        return *this;
    }

    // Zeros written as data, not left as a hole: the converters must skip them all the same.
    RawDisk& write_zeros(std::uint64_t offset, std::uint64_t size) {
        return write(offset, std::string(size, '\0'));
    }

  private:
    std::filesystem::path path_;
};

// Compressible bytes that are not zero: text repeated over and over.
inline std::string compressible_bytes(std::size_t size) {
    static constexpr std::string_view k_text = "edgeforge compressible test data 0123456789\n";
    std::string out;
    out.reserve(size);
    while (out.size() < size) {
        out.append(k_text.substr(0, std::min(k_text.size(), size - out.size())));
    }
    return out;
}

// The number of `chunk`-sized pieces of the file that hold a non-zero byte.
inline std::uint64_t count_data_chunks(const std::filesystem::path& file, std::size_t chunk) {
    util::FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.valid());
    const auto size = std::filesystem::file_size(file);
    std::vector<char> buffer(chunk);
    std::uint64_t count = 0;
    for (std::uint64_t offset = 0; offset < size; offset += chunk) {
        const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - offset));
        if (!util::pread_exact(fd.get(), buffer.data(), length, offset)) {
            FAIL("short read in ", file.string());
        }
        for (std::size_t i = 0; i < length; ++i) {
            if (buffer[i] != 0) {
                ++count;
                break;
            }
        }
    }
    return count;
}

inline bool have_qemu_img() {
    if (util::find_program("qemu-img")) {
        return true;
    }
    MESSAGE("skipped: qemu-img (qemu-utils) is not installed");
    return false;
}

// Runs qemu-img with the arguments and returns what it printed, failing the test unless it
// exits 0.
inline std::string qemu_img(const std::vector<std::string>& arguments) {
    std::vector<std::string> argv{"qemu-img"};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    const auto result = util::run_process(argv);
    INFO("qemu-img ", arguments.front(), ": ", result.standard_output, result.standard_error);
    REQUIRE(result.exit_code == 0);
    return result.standard_output;
}

inline nlohmann::json qemu_img_info(const std::filesystem::path& image, const std::string& format) {
    return nlohmann::json::parse(qemu_img({"info", "--output=json", "-f", format, image.string()}));
}

// qemu-img check must find the image consistent: no errors, no leaked clusters.
inline void check_image(const std::filesystem::path& image, const std::string& format) {
    const std::string report = qemu_img({"check", "-f", format, image.string()});
    INFO(report);
    CHECK(report.find("No errors were found on the image.") != std::string::npos);
    CHECK(report.find("leaked") == std::string::npos);
}

// qemu-img compare must read the image as the same disk as the raw. Without -s it only warns
// about a size mismatch (and compares the excess with zeros), so that warning fails the test
// too; strict mode cannot be used, as it also fails zeros stored in the raw image that the image
// leaves unallocated.
inline void check_same_disk(const std::filesystem::path& raw, const std::filesystem::path& image,
                            const std::string& format) {
    const auto result = util::run_process(
        {"qemu-img", "compare", "-f", "raw", "-F", format, raw.string(), image.string()});
    const std::string report = result.standard_output + result.standard_error;
    INFO("qemu-img compare: ", report);
    CHECK(result.exit_code == 0);
    CHECK(report.find("Images are identical.") != std::string::npos);
    CHECK(report.find("mismatch") == std::string::npos);
}

} // namespace edgeforge::testing
