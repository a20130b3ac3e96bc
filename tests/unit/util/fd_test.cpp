// Unit tests for util/fd: exact positional reads and writes.
#include <doctest/doctest.h>

#include <string>

#include <fcntl.h>

#include "util/fd.h"
#include "util/fs.h"

TEST_CASE("pwrite_exact and pread_exact work at any offset, and reads past the end say so") {
    util::TempDir dir;
    const auto file = dir.path() / "f";
    util::FileDescriptor fd(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    REQUIRE(fd.valid());
    util::pwrite_exact(fd.get(), "world", 5, 6);
    util::pwrite_exact(fd.get(), "hello ", 6, 0);
    std::string buffer(11, '\0');
    CHECK(util::pread_exact(fd.get(), buffer.data(), buffer.size(), 0));
    CHECK(buffer == "hello world");
    CHECK_FALSE(util::pread_exact(fd.get(), buffer.data(), 2, 10));
}

TEST_CASE("copy_range copies between offsets of two files and says when the source ends first") {
    util::TempDir dir;
    const auto source_path = dir.path() / "in";
    std::string content;
    for (int i = 0; i < 100000; ++i) {
        content += static_cast<char>('a' + i % 26);
    }
    util::write_file_atomically(source_path, content);
    const util::FileDescriptor in(::open(source_path.c_str(), O_RDONLY | O_CLOEXEC));
    const auto target = dir.path() / "out";
    const util::FileDescriptor out(
        ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    REQUIRE(in.valid());
    REQUIRE(out.valid());
    CHECK(util::copy_range(in.get(), 1000, out.get(), 5000, 50000));
    const std::string copied = util::read_file(target);
    REQUIRE(copied.size() == 55000);
    CHECK(copied.substr(0, 5000) == std::string(5000, '\0'));
    CHECK(copied.substr(5000) == content.substr(1000, 50000));
    // 10 bytes more than the source has after its offset.
    CHECK_FALSE(util::copy_range(in.get(), 99990, out.get(), 0, 20));
}
