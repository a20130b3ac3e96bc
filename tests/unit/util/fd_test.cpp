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
