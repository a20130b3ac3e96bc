// Unit tests for formats/qcow2: images judged by qemu-img check/compare/map, layout, determinism
// and bad input.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "base/error.h"
#include "formats/qcow2.h"
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

// Converts, then lets qemu-img judge the result against the raw image.
formats::Qcow2Result convert_and_judge(const stdfs::path& raw, const stdfs::path& out,
                                       const formats::Qcow2Options& options) {
    const auto result = formats::write_qcow2(raw, out, options);
    CHECK(result.virtual_size == stdfs::file_size(raw));
    CHECK(result.file_size == stdfs::file_size(out));
    const auto info = testing::qemu_img_info(out, "qcow2");
    CHECK(info["format"] == "qcow2");
    CHECK(info["virtual-size"] == stdfs::file_size(raw));
    CHECK(info["cluster-size"] == options.cluster_size);
    CHECK(info["format-specific"]["data"]["compat"] == "1.1"); // version 3
    testing::check_image(out, "qcow2");
    testing::check_same_disk(raw, out, "qcow2");
    return result;
}

std::size_t entries_in(const stdfs::path& directory) {
    return static_cast<std::size_t>(
        std::distance(stdfs::directory_iterator(directory), stdfs::directory_iterator()));
}

} // namespace

TEST_CASE("write_qcow2 output passes qemu-img check and compare, with and without compression") {
    if (!testing::have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    // Not a whole number of clusters; incompressible data across a cluster boundary,
    // compressible data, zeros written as data, and a last byte that is not zero.
    const std::uint64_t size = 3 * k_mib + 3 * 512;
    RawDisk raw(dir.path() / "disk.raw", size);
    raw.write(70000, testing::pseudo_random_bytes(200000, 1))
        .write(k_mib + 4096, testing::compressible_bytes(300 * k_kib))
        .write_zeros(2 * k_mib, 256 * k_kib)
        .write(size - 1, "Z");
    const auto data_clusters = testing::count_data_chunks(raw.path(), 65536);

    SUBCASE("uncompressed") {
        const auto result = convert_and_judge(raw.path(), dir.path() / "disk.qcow2", {});
        CHECK(result.allocated_clusters == data_clusters);
        CHECK(result.compressed_clusters == 0);
    }
    SUBCASE("compressed") {
        formats::Qcow2Options options;
        options.compress = true;
        const auto result = convert_and_judge(raw.path(), dir.path() / "disk.qcow2", options);
        CHECK(result.allocated_clusters == data_clusters);
        // The random clusters do not shrink and are stored as they are.
        CHECK(result.compressed_clusters > 0);
        CHECK(result.compressed_clusters < result.allocated_clusters);
        const auto plain = formats::write_qcow2(raw.path(), dir.path() / "plain.qcow2", {});
        CHECK(result.file_size < plain.file_size);
    }
}

TEST_CASE("write_qcow2 maps a sparse 2 GiB disk with several L2 tables and stays small") {
    if (!testing::have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    // With 64 KiB clusters one L2 table maps 512 MiB: these blocks fall under all four.
    RawDisk raw(dir.path() / "disk.raw", 2 * k_gib);
    raw.write(0, testing::pseudo_random_bytes(4096, 2))
        .write(700 * k_mib + 12345 * 512, testing::compressible_bytes(4096))
        .write(k_gib + 64 * k_kib - 512, testing::pseudo_random_bytes(1024, 3)) // 2 clusters
        .write(2 * k_gib - 4096, testing::pseudo_random_bytes(4096, 4));        // the very end

    for (const bool compress : {false, true}) {
        CAPTURE(compress);
        formats::Qcow2Options options;
        options.compress = compress;
        const auto out = dir.path() / (compress ? "compressed.qcow2" : "plain.qcow2");
        const auto result = convert_and_judge(raw.path(), out, options);
        CHECK(result.allocated_clusters == 5);
        // Header, 5 data clusters, 4 L2 tables, L1, one refcount block, refcount table.
        CHECK(result.file_size <= 13 * 64 * k_kib);
        const auto info = testing::qemu_img_info(out, "qcow2");
        CHECK(info["actual-size"].get<std::uint64_t>() < k_mib);
    }
}

TEST_CASE("write_qcow2 with small clusters spreads refcounts over many blocks") {
    if (!testing::have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    // 512-byte clusters: a refcount block covers 128 KiB of the file and an L2 table 32 KiB of
    // the disk, so blocks and tables are written all along the stream; 4 KiB clusters: 8 MiB.
    const std::uint64_t size = 12 * k_mib;
    RawDisk raw(dir.path() / "disk.raw", size);
    for (std::uint64_t offset = 0; offset < size; offset += 1536 * k_kib) {
        raw.write(offset, testing::pseudo_random_bytes(700 * k_kib, static_cast<unsigned>(offset)));
        raw.write(offset + 800 * k_kib, testing::compressible_bytes(500 * k_kib));
    }
    for (const std::uint32_t cluster_size : {512U, 4096U, 2U << 20}) {
        for (const bool compress : {false, true}) {
            CAPTURE(cluster_size);
            CAPTURE(compress);
            formats::Qcow2Options options;
            options.cluster_size = cluster_size;
            options.compress = compress;
            const auto result = convert_and_judge(raw.path(), dir.path() / "disk.qcow2", options);
            CHECK(result.allocated_clusters ==
                  testing::count_data_chunks(raw.path(), cluster_size));
        }
    }
}

TEST_CASE("write_qcow2 leaves zero clusters unallocated, holes or written zeros alike") {
    if (!testing::have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    RawDisk raw(dir.path() / "disk.raw", 8 * k_mib);
    raw.write_zeros(0, 8 * k_mib).write(3 * k_mib + 100, "data");
    const auto out = dir.path() / "disk.qcow2";
    const auto result = convert_and_judge(raw.path(), out, {});
    CHECK(result.allocated_clusters == 1);
    // Header, the data cluster, one L2 table, the L1 table, a refcount block, the refcount table.
    CHECK(result.file_size == 6 * 64 * k_kib);

    // qemu-img map lists the only stored data where the raw image has it.
    const auto map = nlohmann::json::parse(
        testing::qemu_img({"map", "--output=json", "-f", "qcow2", out.string()}));
    std::vector<std::pair<std::uint64_t, std::uint64_t>> data;
    for (const auto& extent : map) {
        if (extent["data"].get<bool>()) {
            data.emplace_back(extent["start"].get<std::uint64_t>(),
                              extent["length"].get<std::uint64_t>());
        }
    }
    CHECK(data == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{3 * k_mib, 64 * k_kib}});
}

TEST_CASE("write_qcow2 gives the same bytes for the same content") {
    util::TempDir dir;
    const std::uint64_t size = 5 * k_mib;
    // The same disk twice: once sparse, once with its zeros written out.
    RawDisk sparse(dir.path() / "sparse.raw", size);
    RawDisk dense(dir.path() / "dense.raw", size);
    dense.write_zeros(0, size);
    for (RawDisk* raw : {&sparse, &dense}) {
        raw->write(k_mib, testing::pseudo_random_bytes(200 * k_kib, 7))
            .write(3 * k_mib, testing::compressible_bytes(k_mib));
    }
    formats::Qcow2Options options;
    options.compress = true;
    options.compute_sha256 = true;
    const auto first = formats::write_qcow2(sparse.path(), dir.path() / "a.qcow2", options);
    const auto second = formats::write_qcow2(sparse.path(), dir.path() / "b.qcow2", options);
    const auto from_dense = formats::write_qcow2(dense.path(), dir.path() / "c.qcow2", options);
    const std::string bytes = util::read_file(dir.path() / "a.qcow2");
    CHECK(bytes == util::read_file(dir.path() / "b.qcow2"));
    CHECK(bytes == util::read_file(dir.path() / "c.qcow2"));
    REQUIRE(first.sha256.has_value());
    CHECK(*first.sha256 == util::sha256_hex(bytes));
    CHECK(second.sha256 == first.sha256);
    CHECK(from_dense.sha256 == first.sha256);
    CHECK_FALSE(formats::write_qcow2(sparse.path(), dir.path() / "d.qcow2", {}).sha256);
}

TEST_CASE("write_qcow2 hashes what it writes: several MiB of data through several buffers") {
    util::TempDir dir;
    // Enough data for several of the writer's 4 MiB buffers, in runs broken by holes and zero
    // clusters, and a partial last cluster.
    const std::uint64_t size = 40 * k_mib + 1024;
    RawDisk raw(dir.path() / "disk.raw", size);
    raw.write(0, testing::pseudo_random_bytes(9 * k_mib + 512, 21))
        .write_zeros(9 * k_mib + 64 * k_kib, 192 * k_kib)
        .write(12 * k_mib, testing::pseudo_random_bytes(5 * k_mib, 22))
        .write(size - 3000, testing::pseudo_random_bytes(3000, 23));
    formats::Qcow2Options options;
    options.compute_sha256 = true;
    const auto out = dir.path() / "disk.qcow2";
    const auto hashed = formats::write_qcow2(raw.path(), out, options);
    REQUIRE(hashed.sha256.has_value());
    const std::string bytes = util::read_file(out);
    CHECK(*hashed.sha256 == util::sha256_hex(bytes));
    CHECK(hashed.allocated_clusters == testing::count_data_chunks(raw.path(), 65536));
    // Hashing or not, the same bytes.
    const auto plain = formats::write_qcow2(raw.path(), dir.path() / "plain.qcow2", {});
    CHECK(plain.file_size == hashed.file_size);
    CHECK(util::read_file(dir.path() / "plain.qcow2") == bytes);
    if (testing::have_qemu_img()) {
        testing::check_image(out, "qcow2");
        testing::check_same_disk(raw.path(), out, "qcow2");
    }
}

TEST_CASE("write_qcow2 names the file on bad input and leaves no output") {
    util::TempDir dir;
    const auto out = dir.path() / "disk.qcow2";
    const auto missing = dir.path() / "missing.raw";
    const auto error_of = [](auto&& action, ExitCode code = ExitCode::bad_input) {
        return testing::error_of(action, code);
    };

    CHECK(error_of([&] { formats::write_qcow2(missing, out, {}); }) ==
          "cannot open the raw disk image " + missing.string() +
              ": No such file or directory; check the path and its permissions");

    RawDisk odd(dir.path() / "odd.raw", 1000);
    CHECK(error_of([&] { formats::write_qcow2(odd.path(), out, {}); }) ==
          "the raw disk image " + odd.path().string() +
              " is 1000 bytes, not a whole number of 512-byte sectors; pad it to whole sectors "
              "(truncate -s %512 FILE)");

    RawDisk empty(dir.path() / "empty.raw", 0);
    CHECK(error_of([&] { formats::write_qcow2(empty.path(), out, {}); }) ==
          "the raw disk image " + empty.path().string() +
              " is empty; a disk image holds at least one 512-byte sector");

    CHECK(error_of([&] { formats::write_qcow2(dir.path(), out, {}); }) ==
          "the raw disk image " + dir.path().string() +
              " is not a regular file; give the path of a raw image file");

    RawDisk good(dir.path() / "good.raw", k_mib);
    good.write(0, "x");
    formats::Qcow2Options bad_cluster;
    bad_cluster.cluster_size = 3000;
    CHECK(error_of([&] { formats::write_qcow2(good.path(), out, bad_cluster); }) ==
          "qcow2 cluster size 3000 is not a power of two from 512 bytes to 2 MiB");

    CHECK(error_of([&] { formats::write_qcow2(good.path(), good.path(), {}); }) ==
          "the qcow2 output " + good.path().string() +
              " is the raw disk image itself; choose another path");

    const auto nowhere = dir.path() / "no-such-dir" / "disk.qcow2";
    CHECK(
        error_of([&] { formats::write_qcow2(good.path(), nowhere, {}); }, ExitCode::build_failed) ==
        "cannot write the qcow2 image " + nowhere.string() +
            ": No such file or directory; check that its directory exists, is writable and has "
            "space");

    // Only the inputs are there: no output, no temporary.
    CHECK_FALSE(stdfs::exists(out));
    CHECK(entries_in(dir.path()) == 3);
}
