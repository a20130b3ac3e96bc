// Test support: partitioned disks and filesystem images judged by sgdisk, e2fsprogs and dosfstools.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::testing {

// True when every program is installed; otherwise says which is missing, for a skipped test.
inline bool have_programs(std::initializer_list<const char*> programs) {
    for (const char* program : programs) {
        if (!util::find_program(program)) {
            MESSAGE("skipped: ", program, " is not installed");
            return false;
        }
    }
    return true;
}

// Runs a tool we did not write and returns its standard output, failing the test unless it exits
// 0.
inline std::string tool_output(const std::vector<std::string>& argv,
                               const util::ProcessOptions& options = {}) {
    const auto result = util::run_process(argv, options);
    INFO(util::join(argv, " "), ": ", result.standard_output, result.standard_error);
    REQUIRE(result.exit_code == 0);
    return result.standard_output;
}

// sgdisk -v must find the partition table sound: both headers, both entry arrays, their CRCs,
// the protective MBR, the backup GPT at the real end of the disk.
// A damaged primary GPT still ends in "No problems found." (sgdisk checks the backup it loaded
// instead), but sgdisk then exits 2 and explains on stderr: both must be clean.
inline void check_sgdisk_verify(const std::filesystem::path& disk) {
    const auto result = util::run_process({"sgdisk", "-v", disk.string()});
    INFO("sgdisk -v: ", result.standard_output, result.standard_error);
    CHECK(result.exit_code == 0);
    CHECK(result.standard_error.empty());
    CHECK(result.standard_output.find("No problems found.") != std::string::npos);
    CHECK(result.standard_output.find("Warning") == std::string::npos);
    CHECK(result.standard_output.find("Problem") == std::string::npos);
}

// What sgdisk -i N says about a partition: "Partition GUID code" -> "0FC63DAF-...
// (Linux filesystem)", "First sector" -> "2048 (at 1024.0 KiB)", "Partition name" -> "'COS_OEM'".
inline std::map<std::string, std::string> sgdisk_info(const std::filesystem::path& disk,
                                                      int number) {
    const std::string text = tool_output({"sgdisk", "-i", std::to_string(number), disk.string()});
    std::map<std::string, std::string> fields;
    for (const auto& line : util::split(text, '\n')) {
        const auto colon = line.find(": ");
        if (colon != std::string::npos) {
            fields[line.substr(0, colon)] = line.substr(colon + 2);
        }
    }
    return fields;
}

// The first word of a field ("2048 (at 1024.0 KiB)" -> "2048").
inline std::string first_word(const std::string& text) {
    return text.substr(0, text.find(' '));
}

// Bytes `size` at `offset` of a file.
inline std::string read_range(const std::filesystem::path& file, std::uint64_t offset,
                              std::size_t size) {
    util::FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.valid());
    std::string bytes(size, '\0');
    REQUIRE(util::pread_exact(fd.get(), bytes.data(), size, offset));
    return bytes;
}

// Copies `size` bytes at `offset` of `disk` into a new sparse file: a partition taken out of a
// disk image for a filesystem checker that reads whole files.
inline void extract_range(const std::filesystem::path& disk, std::uint64_t offset,
                          std::uint64_t size, const std::filesystem::path& out) {
    util::FileDescriptor in(::open(disk.c_str(), O_RDONLY | O_CLOEXEC));
    util::FileDescriptor fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(in.valid());
    REQUIRE(fd.valid());
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
    std::vector<char> buffer(1 << 20);
    for (std::uint64_t done = 0; done < size;) {
        const auto length =
            static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - done));
        REQUIRE(util::pread_exact(in.get(), buffer.data(), length, offset + done));
        for (std::size_t block = 0; block < length; block += 4096) {
            const std::size_t n = std::min<std::size_t>(4096, length - block);
            if (std::string_view(buffer.data() + block, n).find_first_not_of('\0') !=
                std::string_view::npos) {
                util::pwrite_exact(fd.get(), buffer.data() + block, n, done + block);
            }
        }
        done += length;
    }
}

// Bytes the file occupies on disk: far below its size when it is sparse.
inline std::uint64_t allocated_bytes(const std::filesystem::path& file) {
    struct stat info {};
    REQUIRE(::stat(file.c_str(), &info) == 0);
    return static_cast<std::uint64_t>(info.st_blocks) * 512;
}

// fsck.ext4 -fn must find nothing to fix (`image` may be "disk.img?offset=N").
inline void check_fsck_ext4(const std::string& image) {
    const auto result = util::run_process({"fsck.ext4", "-fn", image});
    INFO("fsck.ext4 -fn: ", result.standard_output, result.standard_error);
    CHECK(result.exit_code == 0);
}

// A path as one debugfs argument ("" stands for a quote inside quotes).
inline std::string debugfs_argument(const std::string& path) {
    std::string out = "\"";
    for (const char c : path) {
        out += c == '"' ? std::string("\"\"") : std::string(1, c);
    }
    return out + "\"";
}

// A file read back out of an ext4 image by debugfs. `image` may be "disk.img?offset=N": e2fsprogs
// then reads the filesystem at that offset of a whole disk.
inline std::string debugfs_cat(const std::string& image, const std::string& path) {
    return tool_output({"debugfs", "-R", "cat " + debugfs_argument(path), image});
}

// debugfs's "stat" of a path: owner, mode, times ("User:     0   Group:     0 ...").
inline std::string debugfs_stat(const std::string& image, const std::string& path) {
    return tool_output({"debugfs", "-R", "stat " + debugfs_argument(path), image});
}

// A field of dumpe2fs -h: "Filesystem UUID", "Filesystem volume name", "Filesystem created".
inline std::string dumpe2fs_field(const std::filesystem::path& image, const std::string& name) {
    const std::string text = tool_output({"dumpe2fs", "-h", image.string()});
    for (const auto& line : util::split(text, '\n')) {
        if (line.starts_with(name + ":")) {
            return std::string(util::trim(line.substr(name.size() + 1)));
        }
    }
    FAIL("dumpe2fs -h shows no ", name);
    return {};
}

} // namespace edgeforge::testing
