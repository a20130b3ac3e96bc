// Unit tests for core/step_cache.
#include <doctest/doctest.h>

#include <filesystem>

#include "build/step_cache.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

TEST_CASE("keys follow the inputs, not their spelling order") {
    const auto a = nlohmann::json{{"layers", {"sha256:1", "sha256:2"}}, {"level", 3}};
    const auto b = nlohmann::json{{"level", 3}, {"layers", {"sha256:1", "sha256:2"}}};
    const auto c = nlohmann::json{{"level", 4}, {"layers", {"sha256:1", "sha256:2"}}};
    CHECK(StepCache::key_of(a) == StepCache::key_of(b));
    CHECK(StepCache::key_of(a) != StepCache::key_of(c));
    CHECK(StepCache::key_of(a).size() == 64);
}

TEST_CASE("a stored output is found by its key and only by its key") {
    util::TempDir dir;
    StepCache cache(dir.path() / "steps");
    const auto inputs = nlohmann::json{{"x", 1}};
    const auto key = StepCache::key_of(inputs);
    CHECK_FALSE(cache.find("squashfs", key, "rootfs.squashfs").has_value());
    {
        auto lock = cache.lock("squashfs", key);
        const auto produced = cache.work_dir() / "out";
        util::write_file_atomically(produced, "squashfs bytes");
        const auto stored = cache.store("squashfs", key, produced, "rootfs.squashfs", inputs);
        CHECK(util::read_file(stored) == "squashfs bytes");
        CHECK_FALSE(stdfs::exists(produced));
    }
    const auto found = cache.find("squashfs", key, "rootfs.squashfs");
    REQUIRE(found.has_value());
    CHECK(util::read_file(*found) == "squashfs bytes");
    CHECK(util::read_file(found->parent_path() / "inputs.json").find("\"x\": 1") !=
          std::string::npos);
    CHECK_FALSE(cache.find("squashfs", StepCache::key_of({{"x", 2}}), "rootfs.squashfs"));
    // No staging leftovers next to the entry.
    std::size_t entries = 0;
    for (const auto& entry : stdfs::directory_iterator(dir.path() / "steps" / "squashfs")) {
        entries += entry.is_directory() ? 1u : 0u;
    }
    CHECK(entries == 1);
}

TEST_CASE("directory hashes see content, names and modes but not mtimes") {
    util::TempDir dir;
    const auto root = dir.path() / "overlay";
    stdfs::create_directories(root / "etc");
    util::write_file_atomically(root / "etc" / "motd", "hello\n");
    const auto first = hash_directory(root);
    stdfs::last_write_time(root / "etc" / "motd",
                           stdfs::file_time_type::clock::now() - std::chrono::hours(5));
    CHECK(hash_directory(root) == first);
    util::write_file_atomically(root / "etc" / "motd", "hellO\n");
    const auto changed = hash_directory(root);
    CHECK(changed != first);
    stdfs::permissions(root / "etc" / "motd", stdfs::perms::owner_exec, stdfs::perm_options::add);
    CHECK(hash_directory(root) != changed);
    stdfs::create_symlink("motd", root / "etc" / "link");
    CHECK(hash_directory(root) != changed);
}
