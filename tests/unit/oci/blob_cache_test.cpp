// Unit tests for oci/blob_cache: verified writes, resume, corrupt data kept out, list and prune.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "oci/blob_cache.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

std::string digest_of(std::string_view bytes) {
    return "sha256:" + util::sha256_hex(bytes);
}

bool directory_empty(const stdfs::path& directory) {
    std::error_code error;
    return !stdfs::exists(directory, error) || stdfs::is_empty(directory, error);
}

} // namespace

TEST_CASE("blob cache: a verified blob appears under blobs/sha256/<hex>, and find() touches it") {
    util::TempDir dir;
    const oci::BlobCache cache(dir.path());
    const std::string bytes = "layer bytes";
    const std::string digest = digest_of(bytes);
    CHECK_FALSE(cache.find(digest));
    const auto path = cache.store_bytes(digest, bytes);
    CHECK(path == dir.path() / "blobs" / "sha256" / digest.substr(7));
    CHECK(util::read_file(path) == bytes);

    const auto old = stdfs::file_time_type::clock::now() - std::chrono::hours(48);
    stdfs::last_write_time(path, old);
    REQUIRE(cache.find(digest));
    CHECK(stdfs::last_write_time(path) > old + std::chrono::hours(47));
    CHECK_FALSE(cache.find(digest, bytes.size() + 1)); // another size cannot be this blob
}

TEST_CASE("blob cache: corrupt or truncated data is rejected and leaves nothing behind") {
    util::TempDir dir;
    const oci::BlobCache cache(dir.path());
    const std::string good = "the real layer";
    const std::string digest = digest_of(good);
    {
        oci::BlobWriter writer(cache, digest, good.size());
        CHECK(writer.write("the fake layer", 14));
        try {
            writer.commit();
            FAIL("expected BlobCorrupt");
        } catch (const oci::BlobCorrupt& error) {
            CHECK(error.code() == ExitCode::build_failed);
            CHECK(error.actual() == digest_of("the fake layer"));
            CHECK(std::string(error.what()) ==
                  "blob " + digest + " is corrupt: its content hashes to " +
                      digest_of("the fake layer") + "; nothing was stored");
        }
    }
    {
        oci::BlobWriter writer(cache, digest, good.size());
        CHECK(writer.write(good.data(), 5));
        CHECK_THROWS_WITH_AS(
            writer.commit(),
            ("blob " + digest + " is 5 bytes, but its descriptor says 14; " + "nothing was stored")
                .c_str(),
            oci::BlobCorrupt);
    }
    {
        oci::BlobWriter writer(cache, digest, good.size());
        CHECK_FALSE(writer.write("far more bytes than the descriptor says", 39));
        CHECK(writer.size() == 0);
    }
    CHECK_THROWS_AS(cache.store_bytes(digest, "tampered bytes"), oci::BlobCorrupt);
    CHECK_FALSE(cache.find(digest));
    CHECK(directory_empty(dir.path() / "blobs" / "sha256"));
    CHECK(directory_empty(dir.path() / "blobs" / "tmp"));
}

TEST_CASE("blob cache: an interrupted download resumes from its partial file") {
    util::TempDir dir;
    const oci::BlobCache cache(dir.path());
    const std::string bytes = "0123456789abcdefghij";
    const std::string digest = digest_of(bytes);
    {
        oci::BlobWriter writer(cache, digest, bytes.size());
        CHECK(writer.write(bytes.data(), 8)); // then the connection drops
    }
    CHECK(stdfs::file_size(cache.partial_path(digest)) == 8);
    oci::BlobWriter writer(cache, digest, bytes.size());
    CHECK(writer.resumed_from() == 8);
    CHECK(writer.write(bytes.data() + 8, bytes.size() - 8));
    const auto path = writer.commit();
    CHECK(util::read_file(path) == bytes);
    CHECK_FALSE(stdfs::exists(cache.partial_path(digest)));

    // A server that ignores Range sends everything again: restart() drops what was there.
    const std::string other = "another blob";
    const std::string other_digest = digest_of(other);
    {
        oci::BlobWriter first(cache, other_digest, other.size());
        CHECK(first.write(other.data(), 4));
    }
    oci::BlobWriter again(cache, other_digest, other.size());
    CHECK(again.resumed_from() == 4);
    again.restart();
    CHECK(again.write(other.data(), other.size()));
    CHECK(util::read_file(again.commit()) == other);
}

TEST_CASE("blob cache: digests must be sha256") {
    util::TempDir dir;
    const oci::BlobCache cache(dir.path());
    CHECK_THROWS_WITH_AS(cache.blob_path("sha512:abc"),
                         "'sha512:abc' is not a sha256 digest (sha256: and 64 lowercase hex "
                         "digits)",
                         Error);
    CHECK_THROWS_AS(cache.blob_path("sha256:../../etc/passwd"), Error);
}

TEST_CASE("cache listing and prune by last use, blobs and build steps alike") {
    util::TempDir dir;
    const oci::BlobCache cache(dir.path());
    const auto fresh = cache.store_bytes(digest_of("fresh"), "fresh");
    const auto stale = cache.store_bytes(digest_of("stale!"), "stale!");
    const auto step = dir.path() / "steps" / "rootfs" / "0123abcd";
    stdfs::create_directories(step / "bootfs");
    util::write_file_atomically(step / "rootfs.squashfs", std::string(100, 'x'));
    util::write_file_atomically(step / "bootfs" / "kernel", std::string(20, 'k'));
    stdfs::create_directories(dir.path() / "steps" / "tmp" / "rootfs-running"); // not an entry
    const auto ten_days_ago = stdfs::file_time_type::clock::now() - std::chrono::hours(240);
    stdfs::last_write_time(stale, ten_days_ago);
    stdfs::last_write_time(step, ten_days_ago);

    const auto listing = oci::list_cache(dir.path());
    REQUIRE(listing.entries.size() == 3);
    CHECK(listing.blob_bytes == 11);
    CHECK(listing.step_bytes == 120);
    CHECK(listing.total_bytes() == 131);
    CHECK(listing.entries[2].kind == oci::CacheEntry::Kind::step);
    CHECK(listing.entries[2].name == "rootfs/0123abcd");

    const auto week = oci::prune_cache(dir.path(), std::chrono::hours(24 * 7));
    CHECK(week.removed.size() == 2);
    CHECK(week.removed_bytes == 126);
    CHECK(week.kept == 1);
    CHECK(stdfs::exists(fresh));
    CHECK_FALSE(stdfs::exists(stale));
    CHECK_FALSE(stdfs::exists(step));
    CHECK(stdfs::exists(dir.path() / "steps" / "tmp" / "rootfs-running"));

    // A blob another process is downloading (its lock is held) is left alone.
    {
        const auto lock = cache.lock(digest_of("fresh"));
        const auto busy = oci::prune_cache(dir.path(), std::nullopt);
        CHECK(busy.busy == 1);
        CHECK(stdfs::exists(fresh));
    }
    const auto all = oci::prune_cache(dir.path(), std::nullopt);
    CHECK(all.removed.size() == 1);
    CHECK(oci::list_cache(dir.path()).entries.empty());
}

TEST_CASE("blob cache: prune skips a blob a build holds, and takes it once released") {
    util::TempDir dir;
    const oci::BlobCache cache(dir.path());
    const std::string bytes = "held layer";
    const auto path = cache.store_bytes(digest_of(bytes), bytes);
    CHECK_FALSE(cache.hold(digest_of("not cached")).has_value());
    {
        const auto held = cache.hold(digest_of(bytes), bytes.size());
        REQUIRE(held.has_value());
        CHECK(held->path == path);
        const auto pruned = oci::prune_cache(dir.path(), std::nullopt);
        CHECK(pruned.busy == 1);
        CHECK(pruned.removed.empty());
        CHECK(stdfs::exists(path));
        // Two holders at once: shared locks.
        CHECK(cache.hold(digest_of(bytes)).has_value());
    }
    const auto pruned = oci::prune_cache(dir.path(), std::nullopt);
    CHECK(pruned.removed.size() == 1);
    CHECK_FALSE(stdfs::exists(path));
    CHECK_FALSE(cache.hold(digest_of(bytes)).has_value());
}
