// Unit tests for util/fs.
#include <doctest/doctest.h>

#include <filesystem>
#include <stdexcept>

#include "util/fs.h"

#include <csignal>

#include <sys/wait.h>
#include <unistd.h>

namespace stdfs = std::filesystem;

TEST_CASE("AtomicFile appears under its final name only after commit") {
    util::TempDir dir;
    const auto target = dir.path() / "out.iso";
    {
        util::AtomicFile file(target);
        file.write("partial");
        CHECK_FALSE(stdfs::exists(target));
        CHECK(stdfs::exists(file.temp_path()));
        file.commit();
    }
    CHECK(util::read_file(target) == "partial");
    CHECK(std::distance(stdfs::directory_iterator(dir.path()), stdfs::directory_iterator()) == 1);
}

TEST_CASE("AtomicFile abandoned by an exception leaves nothing behind") {
    util::TempDir dir;
    const auto target = dir.path() / "out.iso";
    try {
        util::AtomicFile file(target);
        file.write("half");
        throw std::runtime_error("build failed");
    } catch (const std::runtime_error&) {
    }
    CHECK_FALSE(stdfs::exists(target));
    CHECK(stdfs::is_empty(dir.path()));
}

TEST_CASE("AtomicFile replaces an existing file whole") {
    util::TempDir dir;
    const auto target = dir.path() / "x";
    util::write_file_atomically(target, "old");
    util::write_file_atomically(target, "new content");
    CHECK(util::read_file(target) == "new content");
}

TEST_CASE("TempDir removes its tree") {
    stdfs::path kept;
    {
        util::TempDir dir;
        kept = dir.path();
        stdfs::create_directories(kept / "a" / "b");
        util::write_file_atomically(kept / "a" / "b" / "c", "x");
    }
    CHECK_FALSE(stdfs::exists(kept));
}

TEST_CASE("read_file names the missing file") {
    CHECK_THROWS_WITH_AS(util::read_file("/nonexistent/edgeforge"),
                         doctest::Contains("/nonexistent/edgeforge"), std::system_error);
}

TEST_CASE("SIGINT removes registered temporary files and directories") {
    util::TempDir outer;
    const auto marker = outer.path() / "paths";
    const pid_t child = ::fork();
    if (child == 0) {
        // The child inherited the registration of `outer`; only its own temporaries are tested.
        util::unregister_temporary(outer.path());
        util::install_interrupt_cleanup();
        util::TempDir dir(outer.path(), "work-");
        stdfs::create_directories(dir.path() / "nested");
        util::AtomicFile file(outer.path() / "final.iso");
        file.write("partial");
        util::write_file_atomically(marker, dir.path().string() + "\n" + file.temp_path().string());
        ::raise(SIGINT);
        ::_exit(0); // not reached: the handler exits 128 + SIGINT, as a shell reports Ctrl-C
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + SIGINT);
    const std::string paths = util::read_file(marker);
    const auto newline = paths.find('\n');
    CHECK_FALSE(stdfs::exists(paths.substr(0, newline)));
    CHECK_FALSE(stdfs::exists(paths.substr(newline + 1)));
    CHECK_FALSE(stdfs::exists(outer.path() / "final.iso"));
}
