// Unit tests for core/file_lock: exclusive and shared flocks, try_lock, and a lock file that
// `cache prune` removed while it was held.
#include <doctest/doctest.h>

#include <filesystem>

#include "base/file_lock.h"
#include "util/fs.h"

using namespace edgeforge;

TEST_CASE("file locks: shared locks coexist, an exclusive one excludes both kinds") {
    util::TempDir dir;
    const auto file = dir.path() / "blob.lock";
    {
        const FileLock first(file, FileLock::Mode::shared);
        const FileLock second(file, FileLock::Mode::shared); // would wait forever if exclusive
        CHECK_FALSE(FileLock::try_lock(file).has_value());
        CHECK(FileLock::try_lock(file, FileLock::Mode::shared).has_value());
    }
    {
        const auto exclusive = FileLock::try_lock(file);
        REQUIRE(exclusive.has_value());
        CHECK_FALSE(FileLock::try_lock(file, FileLock::Mode::shared).has_value());
        CHECK_FALSE(FileLock::try_lock(file).has_value());
    }
    CHECK(FileLock::try_lock(file).has_value());
}

TEST_CASE("file locks: make_shared lets readers in and keeps writers out") {
    util::TempDir dir;
    const auto file = dir.path() / "blob.lock";
    FileLock lock(file);
    lock.make_shared();
    CHECK(FileLock::try_lock(file, FileLock::Mode::shared).has_value());
    CHECK_FALSE(FileLock::try_lock(file).has_value());
}

TEST_CASE("file locks: a lock file removed while held is not what the next locker gets") {
    util::TempDir dir;
    const auto file = dir.path() / "blob.lock";
    auto pruned = FileLock::try_lock(file);
    REQUIRE(pruned.has_value());
    std::filesystem::remove(file); // what prune does before it lets go
    // The next locker makes a new file at the path and locks that, although the old one is
    // still held: a lock on the removed file would exclude nobody.
    const auto next = FileLock::try_lock(file);
    CHECK(next.has_value());
    CHECK(std::filesystem::exists(file));
    CHECK_FALSE(FileLock::try_lock(file).has_value());
}
