// Unit tests for formats/vmdk: streamOptimized images judged by qemu-img, the stream layout,
// the descriptor, determinism and bad input.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "base/error.h"
#include "formats/vmdk.h"
#include "support/data.h"
#include "support/disk_images.h"
#include "support/errors.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::RawDisk;
namespace stdfs = std::filesystem;

namespace {

constexpr std::uint64_t k_kib = 1024;
constexpr std::uint64_t k_mib = 1024 * k_kib;
constexpr std::uint64_t k_gib = 1024 * k_mib;

std::uint32_t le32(const std::string& bytes, std::size_t offset) {
    std::uint32_t value = 0;
    for (int i = 3; i >= 0; --i) {
        value = value << 8 | static_cast<std::uint8_t>(bytes[offset + static_cast<std::size_t>(i)]);
    }
    return value;
}

std::uint64_t le64(const std::string& bytes, std::size_t offset) {
    return static_cast<std::uint64_t>(le32(bytes, offset + 4)) << 32 | le32(bytes, offset);
}

// Converts, then lets qemu-img judge the result against the raw image.
formats::VmdkResult convert_and_judge(const stdfs::path& raw, const stdfs::path& out,
                                      const formats::VmdkOptions& options = {}) {
    const auto result = formats::write_vmdk_stream_optimized(raw, out, options);
    CHECK(result.capacity == stdfs::file_size(raw));
    CHECK(result.file_size == stdfs::file_size(out));
    CHECK(result.sha256 == util::sha256_file_hex(out));
    const auto info = testing::qemu_img_info(out, "vmdk");
    CHECK(info["format"] == "vmdk");
    CHECK(info["virtual-size"] == stdfs::file_size(raw));
    const auto& details = info["format-specific"]["data"];
    CHECK(details["create-type"] == "streamOptimized");
    CHECK(details["cid"] == result.content_id);
    REQUIRE(details["extents"].size() == 1);
    CHECK(details["extents"][0]["compressed"] == true);
    testing::check_image(out, "vmdk");
    testing::check_same_disk(raw, out, "vmdk");
    return result;
}

} // namespace

TEST_CASE("write_vmdk_stream_optimized output reads back identical in qemu-img") {
    if (!testing::have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    const auto out = dir.path() / "disk.vmdk";

    SUBCASE("an empty disk") {
        RawDisk raw(dir.path() / "disk.raw", 10 * k_mib);
        const auto result = convert_and_judge(raw.path(), out);
        CHECK(result.grains == 0);
        CHECK(result.file_size < 80 * k_kib);
    }
    SUBCASE("data at the very end, in a partial grain") {
        const std::uint64_t size = 5 * k_mib + 3 * 512;
        RawDisk raw(dir.path() / "disk.raw", size);
        raw.write(12345, testing::pseudo_random_bytes(200 * k_kib, 1))
            .write(2 * k_mib, testing::compressible_bytes(k_mib))
            .write_zeros(4 * k_mib, 512 * k_kib)
            .write(size - 1, "Z");
        const auto result = convert_and_judge(raw.path(), out);
        CHECK(result.grains == testing::count_data_chunks(raw.path(), 65536));
    }
    SUBCASE("several grain tables, one range without data") {
        // One grain table maps 32 MiB: data in the first, second and fourth.
        RawDisk raw(dir.path() / "disk.raw", 100 * k_mib);
        raw.write(0, testing::pseudo_random_bytes(64 * k_kib, 2))
            .write(40 * k_mib - 100, testing::compressible_bytes(300))
            .write(100 * k_mib - 512, testing::pseudo_random_bytes(512, 3));
        const auto result = convert_and_judge(raw.path(), out);
        CHECK(result.grains == 4);
    }
    SUBCASE("a sparse 2 GiB disk") {
        RawDisk raw(dir.path() / "disk.raw", 2 * k_gib);
        raw.write(k_gib + 7 * 512, testing::pseudo_random_bytes(100 * k_kib, 4))
            .write(2 * k_gib - 4096, testing::compressible_bytes(4096));
        const auto result = convert_and_judge(raw.path(), out);
        CHECK(result.grains == 3);
        CHECK(result.file_size < 256 * k_kib);
    }
}

TEST_CASE("write_vmdk_stream_optimized writes header, descriptor, markers and footer in order") {
    util::TempDir dir;
    const std::uint64_t size = 40 * k_mib;
    RawDisk raw(dir.path() / "disk.raw", size);
    raw.write(k_mib, testing::compressible_bytes(100 * k_kib));
    const auto result =
        formats::write_vmdk_stream_optimized(raw.path(), dir.path() / "disk.vmdk", {});
    const std::string file = util::read_file(dir.path() / "disk.vmdk");
    REQUIRE(file.size() % 512 == 0);
    REQUIRE(file.size() >= 64 * k_kib + 5 * 512);

    // The header: magic, version 3, valid-newline-test + compressed + markers, the capacity in
    // sectors, 128-sector grains, the descriptor at sector 1, grain directory at the end.
    CHECK(file.substr(0, 4) == "KDMV");
    CHECK(le32(file, 4) == 3);
    CHECK(le32(file, 8) == 0x30001);
    CHECK(le64(file, 12) == size / 512);
    CHECK(le64(file, 20) == 128);
    CHECK(le64(file, 28) == 1);
    CHECK(le32(file, 44) == 512);
    CHECK(le64(file, 56) == 0xffffffffffffffff);
    CHECK(le64(file, 64) == 128); // the first grain starts at 64 KiB
    CHECK(file.substr(73, 4) == "\n \r\n");
    CHECK(static_cast<std::uint8_t>(file[77]) == 1); // deflate

    const std::string descriptor = file.substr(512, file.find('\0', 512) - 512);
    CHECK(descriptor == fmt::format("# Disk DescriptorFile\n"
                                    "version=1\n"
                                    "encoding=\"UTF-8\"\n"
                                    "CID={:08x}\n"
                                    "parentCID=ffffffff\n"
                                    "createType=\"streamOptimized\"\n"
                                    "\n"
                                    "# Extent description\n"
                                    "RW 81920 SPARSE \"disk.vmdk\"\n"
                                    "\n"
                                    "# The Disk Data Base\n"
                                    "#DDB\n"
                                    "\n"
                                    "ddb.adapterType = \"lsilogic\"\n"
                                    "ddb.geometry.cylinders = \"5\"\n"
                                    "ddb.geometry.heads = \"255\"\n"
                                    "ddb.geometry.sectors = \"63\"\n"
                                    "ddb.longContentID = \"{}\"\n"
                                    "ddb.virtualHWVersion = \"4\"\n",
                                    result.content_id,
                                    descriptor.substr(descriptor.find("ID = \"") + 6, 32)));
    CHECK(descriptor.find(fmt::format("{:08x}\"", result.content_id)) != std::string::npos);

    // The two grains, each behind a marker with its LBA and compressed size.
    const std::size_t grain = 128 * 512;
    CHECK(le64(file, grain) == 2048); // 1 MiB
    const std::uint32_t compressed = le32(file, grain + 8);
    CHECK(compressed > 0);
    CHECK(compressed < 4096);
    CHECK(static_cast<std::uint8_t>(file[grain + 12]) == 0x78); // a zlib stream
    const std::size_t second = grain + (12 + compressed + 511) / 512 * 512;
    CHECK(le64(file, second) == 2048 + 128);

    // Then: grain table marker and table, directory marker and directory, footer marker and
    // footer, end-of-stream marker.
    const std::size_t table_marker = second + (12 + le32(file, second + 8) + 511) / 512 * 512;
    CHECK(le64(file, table_marker) == 4);
    CHECK(le32(file, table_marker + 8) == 0);
    CHECK(le32(file, table_marker + 12) == 1);
    const std::size_t table = table_marker + 512;
    CHECK(le32(file, table + 16 * 4) == grain / 512);
    CHECK(le32(file, table + 17 * 4) == second / 512);
    CHECK(le32(file, table + 18 * 4) == 0);
    const std::size_t directory_marker = table + 4 * 512;
    CHECK(le64(file, directory_marker) == 1);
    CHECK(le32(file, directory_marker + 12) == 2);
    const std::size_t directory = directory_marker + 512;
    CHECK(le32(file, directory) == table / 512);
    CHECK(le32(file, directory + 4) == 0); // the second 32 MiB have no data: no table
    const std::size_t footer_marker = directory + 512;
    CHECK(footer_marker == file.size() - 3 * 512);
    CHECK(le64(file, footer_marker) == 1);
    CHECK(le32(file, footer_marker + 12) == 3);
    // The footer is the header with the directory's real place.
    const std::string footer = file.substr(footer_marker + 512, 512);
    CHECK(le64(footer, 56) == directory / 512);
    std::string header = file.substr(0, 512);
    header.replace(56, 8, footer.substr(56, 8));
    CHECK(footer == header);
    CHECK(file.substr(file.size() - 512) == std::string(512, '\0')); // end of stream
}

TEST_CASE("write_vmdk_stream_optimized is deterministic and derives the CID from the content") {
    util::TempDir dir;
    const std::uint64_t size = 6 * k_mib;
    RawDisk sparse(dir.path() / "sparse.raw", size);
    RawDisk dense(dir.path() / "dense.raw", size);
    dense.write_zeros(0, size);
    for (RawDisk* raw : {&sparse, &dense}) {
        raw->write(k_mib, testing::pseudo_random_bytes(300 * k_kib, 8))
            .write(4 * k_mib, testing::compressible_bytes(k_mib));
    }
    formats::VmdkOptions options;
    options.extent_file_name = "disk.vmdk";
    const auto first =
        formats::write_vmdk_stream_optimized(sparse.path(), dir.path() / "a.vmdk", options);
    const auto second =
        formats::write_vmdk_stream_optimized(sparse.path(), dir.path() / "b.vmdk", options);
    const auto from_dense =
        formats::write_vmdk_stream_optimized(dense.path(), dir.path() / "c.vmdk", options);
    const std::string bytes = util::read_file(dir.path() / "a.vmdk");
    CHECK(bytes == util::read_file(dir.path() / "b.vmdk"));
    CHECK(bytes == util::read_file(dir.path() / "c.vmdk"));
    CHECK(first.sha256 == util::sha256_hex(bytes));
    CHECK(second.sha256 == first.sha256);
    CHECK(from_dense.sha256 == first.sha256);

    // Other content, other CID; a given content digest decides the CID alone.
    sparse.write(5 * k_mib, "changed");
    const auto changed =
        formats::write_vmdk_stream_optimized(sparse.path(), dir.path() / "d.vmdk", options);
    CHECK(changed.content_id != first.content_id);
    options.content_digest = "sha256:0123";
    const auto given =
        formats::write_vmdk_stream_optimized(sparse.path(), dir.path() / "e.vmdk", options);
    const auto given_again =
        formats::write_vmdk_stream_optimized(dense.path(), dir.path() / "f.vmdk", options);
    CHECK(given.content_id == given_again.content_id);
    CHECK(given.content_id != changed.content_id);
}

TEST_CASE("write_vmdk_stream_optimized puts the adapter and its geometry in the descriptor") {
    util::TempDir dir;
    RawDisk raw(dir.path() / "disk.raw", 4 * k_gib);
    formats::VmdkOptions options;
    options.adapter_type = formats::VmdkAdapterType::ide;
    options.hardware_version = 7;
    options.extent_file_name = "edge-disk1.vmdk";
    formats::write_vmdk_stream_optimized(raw.path(), dir.path() / "out.vmdk", options);
    const std::string head = util::read_file(dir.path() / "out.vmdk").substr(512, 1024);
    CHECK(head.find("RW 8388608 SPARSE \"edge-disk1.vmdk\"\n") != std::string::npos);
    CHECK(head.find("ddb.adapterType = \"ide\"\n") != std::string::npos);
    CHECK(head.find("ddb.geometry.cylinders = \"8322\"\n") != std::string::npos);
    CHECK(head.find("ddb.geometry.heads = \"16\"\n") != std::string::npos);
    CHECK(head.find("ddb.virtualHWVersion = \"7\"\n") != std::string::npos);
}

TEST_CASE("write_vmdk_stream_optimized names the file on bad input and leaves no output") {
    util::TempDir dir;
    const auto out = dir.path() / "disk.vmdk";
    const auto missing = dir.path() / "missing.raw";
    const auto error_of = [](auto&& action, ExitCode code = ExitCode::bad_input) {
        return testing::error_of(action, code);
    };

    CHECK(error_of([&] { formats::write_vmdk_stream_optimized(missing, out, {}); }) ==
          "cannot open the raw disk image " + missing.string() +
              ": No such file or directory; check the path and its permissions");

    RawDisk odd(dir.path() / "odd.raw", 4097);
    CHECK(error_of([&] { formats::write_vmdk_stream_optimized(odd.path(), out, {}); }) ==
          "the raw disk image " + odd.path().string() +
              " is 4097 bytes, not a whole number of 512-byte sectors; pad it to whole sectors "
              "(truncate -s %512 FILE)");

    RawDisk good(dir.path() / "good.raw", k_mib);
    formats::VmdkOptions quoted;
    quoted.extent_file_name = "a\"b.vmdk";
    CHECK(error_of([&] { formats::write_vmdk_stream_optimized(good.path(), out, quoted); }) ==
          "VMDK extent file name 'a\"b.vmdk' cannot go into a descriptor: it must be non-empty, "
          "without quotes or control characters");

    const auto nowhere = dir.path() / "no-such-dir" / "disk.vmdk";
    CHECK(error_of([&] { formats::write_vmdk_stream_optimized(good.path(), nowhere, {}); },
                   ExitCode::build_failed) ==
          "cannot write the VMDK image " + nowhere.string() +
              ": No such file or directory; check that its directory exists, is writable and has "
              "space");

    CHECK_FALSE(stdfs::exists(out));
    CHECK(std::distance(stdfs::directory_iterator(dir.path()), stdfs::directory_iterator()) == 2);
}
