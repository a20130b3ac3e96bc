// Unit tests for formats/gce: the tarball's one member, its header fields, the gzip header, the
// data (holes as zeros), reproducibility and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include <archive.h>
#include <archive_entry.h>

#include "base/error.h"
#include "formats/gce.h"
#include "support/disk_images.h"
#include "support/errors.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

// Small, to keep the test fast: the function takes any whole-sector size (GCE wants GiB, which
// produce_gce sees to).
constexpr std::uint64_t k_disk = 8ULL << 20;

struct ArchiveReadDeleter {
    void operator()(archive* handle) const { archive_read_free(handle); }
};

} // namespace

TEST_CASE("gce: disk.raw alone in a reproducible gzip'd GNU tar, holes stored as zeros") {
    util::TempDir dir;
    const auto raw = dir.path() / "disk.raw";
    const std::string head = testing::compressible_bytes(8192);
    const std::string tail(512, 't');
    testing::RawDisk(raw, k_disk).write(0, head).write(k_disk - 512, tail);
    const auto output = dir.path() / "image.tar.gz";
    const auto result = formats::write_gce_tarball(raw, output, 1700000000);
    CHECK(result.size == stdfs::file_size(output));
    CHECK(result.sha256 == util::sha256_hex(util::read_file(output)));

    // gzip header: magic, deflate, no flags (no name), mtime 0, XFL 0 (default level), OS Unix.
    const std::string bytes = util::read_file(output);
    CHECK(bytes.substr(0, 10) == std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10));

    std::unique_ptr<archive, ArchiveReadDeleter> reader(archive_read_new());
    archive_read_support_filter_gzip(reader.get());
    archive_read_support_format_tar(reader.get());
    REQUIRE(archive_read_open_filename(reader.get(), output.c_str(), 1 << 16) == ARCHIVE_OK);
    archive_entry* entry = nullptr;
    REQUIRE(archive_read_next_header(reader.get(), &entry) == ARCHIVE_OK);
    CHECK(archive_format(reader.get()) == ARCHIVE_FORMAT_TAR_GNUTAR);
    CHECK(std::string(archive_entry_pathname(entry)) == "disk.raw");
    CHECK(static_cast<std::uint64_t>(archive_entry_size(entry)) == k_disk);
    CHECK(archive_entry_mtime(entry) == 1700000000);
    CHECK(archive_entry_uid(entry) == 0);
    CHECK(archive_entry_gid(entry) == 0);
    CHECK((archive_entry_perm(entry) & 07777) == 0644);
    util::Sha256 content;
    std::string buffer(1 << 20, '\0');
    std::uint64_t total = 0;
    for (;;) {
        const auto got = archive_read_data(reader.get(), buffer.data(), buffer.size());
        REQUIRE(got >= 0);
        if (got == 0) {
            break;
        }
        content.update(buffer.data(), static_cast<std::size_t>(got));
        total += static_cast<std::uint64_t>(got);
    }
    CHECK(total == k_disk);
    util::Sha256 expected;
    expected.update(head);
    const std::string zeros(1 << 20, '\0');
    for (std::uint64_t left = k_disk - head.size() - tail.size(); left > 0;) {
        const auto chunk = std::min<std::uint64_t>(left, zeros.size());
        expected.update(zeros.data(), static_cast<std::size_t>(chunk));
        left -= chunk;
    }
    expected.update(tail);
    CHECK(content.finish_hex() == expected.finish_hex());
    CHECK(archive_read_next_header(reader.get(), &entry) == ARCHIVE_EOF);

    const auto again = dir.path() / "again.tar.gz";
    CHECK(formats::write_gce_tarball(raw, again, 1700000000).sha256 == result.sha256);
}

TEST_CASE("gce: a raw disk that is not whole sectors is refused, nothing written") {
    util::TempDir dir;
    const auto raw = dir.path() / "disk.raw";
    testing::RawDisk(raw, (1 << 20) + 100);
    const auto output = dir.path() / "image.tar.gz";
    const auto message =
        testing::error_of([&] { formats::write_gce_tarball(raw, output, 0); }, ExitCode::bad_input);
    CHECK(message.find("not a whole number of 512-byte sectors") != std::string::npos);
    CHECK_FALSE(stdfs::exists(output));
}
