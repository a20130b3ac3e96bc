// Unit tests for util/flush: flushing a finished file apart from writing it, a durable rename.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "util/flush.h"
#include "util/fs.h"

namespace stdfs = std::filesystem;

TEST_CASE("flush_file and rename_durably: the file under its new name, errors name the paths") {
    util::TempDir dir;
    const auto from = dir.path() / "work" / "disk.raw";
    const auto to = dir.path() / "out" / "bench.raw";
    stdfs::create_directories(from.parent_path());
    stdfs::create_directories(to.parent_path());
    util::write_file_atomically(from, "disk bytes");
    CHECK_NOTHROW(util::flush_file(from));
    util::rename_durably(from, to);
    CHECK_FALSE(stdfs::exists(from));
    CHECK(util::read_file(to) == "disk bytes");

    try {
        util::flush_file(from);
        FAIL("flushing a missing file succeeded");
    } catch (const std::system_error& error) {
        CHECK(std::string(error.what()).find("cannot flush " + from.string()) == 0);
    }
    try {
        util::rename_durably(from, to);
        FAIL("renaming a missing file succeeded");
    } catch (const std::system_error& error) {
        CHECK(std::string(error.what()).find("cannot rename " + from.string() + " to " +
                                             to.string()) == 0);
    }
    CHECK(util::read_file(to) == "disk bytes");
}
