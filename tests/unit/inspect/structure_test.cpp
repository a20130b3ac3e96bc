// Unit tests for inspect/structure: damaged or cut-short artifacts are bad input before anything
// is reported, and real images (qemu-img's own QCOW2 and VMDK) pass.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "inspect/structure.h"
#include "support/bytes.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using namespace edgeforge::inspect;
namespace stdfs = std::filesystem;

namespace {

using edgeforge::testing::put;
using edgeforge::testing::put_be32;
using edgeforge::testing::put_be64;
using edgeforge::testing::put16;
using edgeforge::testing::put32;
using edgeforge::testing::zeros;

// An ISO 9660 image of `blocks` 2048-byte blocks with a primary volume descriptor.
std::vector<std::uint8_t> iso_image(std::uint32_t blocks) {
    auto bytes = zeros(std::size_t{blocks} * 2048);
    const std::size_t pvd = 16 * 2048;
    bytes[pvd] = 1;
    put(bytes, pvd + 1, "CD001");
    put(bytes, pvd + 40, "COS_LIVE");
    put32(bytes, pvd + 80, blocks);
    put16(bytes, pvd + 128, 2048);
    return bytes;
}

std::vector<std::string> problems_of(ArtifactFormat format, const std::vector<std::uint8_t>& bytes) {
    return structure_problems(format, bytes.size(), [&](std::uint64_t offset, std::size_t size) {
        std::vector<std::uint8_t> out;
        if (offset < bytes.size()) {
            const auto end = std::min<std::uint64_t>(bytes.size(), offset + size);
            out.assign(bytes.begin() + static_cast<std::ptrdiff_t>(offset),
                       bytes.begin() + static_cast<std::ptrdiff_t>(end));
        }
        return out;
    });
}

std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& line : lines) {
        out += line + "\n";
    }
    return out;
}

} // namespace

TEST_CASE("an ISO whose volume fits the file passes; cut short, 0xFF or zero sizes do not") {
    auto iso = iso_image(24);
    CHECK(problems_of(ArtifactFormat::iso, iso).empty());

    auto cut = iso;
    cut.resize(34 * 1024);
    const auto cut_problems = problems_of(ArtifactFormat::iso, cut);
    REQUIRE(cut_problems.size() == 1);
    CHECK(cut_problems[0] == "the volume descriptor declares a volume larger than the file, which "
                             "holds 34.0 KiB (34816 bytes): it is cut short or its header is "
                             "damaged");

    auto huge = iso;
    put32(huge, 16 * 2048 + 80, 0xFFFFFFFF);
    put16(huge, 16 * 2048 + 128, 0xFFFF);
    // The impossible values themselves are never repeated as facts.
    const auto block_size = joined(problems_of(ArtifactFormat::iso, huge));
    CHECK(block_size.find("logical block size other than 2048 bytes") != std::string::npos);
    CHECK(block_size.find("65535") == std::string::npos);
    put16(huge, 16 * 2048 + 128, 2048);
    const auto volume_size = joined(problems_of(ArtifactFormat::iso, huge));
    CHECK(volume_size.find("declares a volume larger than the file") != std::string::npos);
    CHECK(volume_size.find("TiB") == std::string::npos);
    CHECK(volume_size.find("8796093020160") == std::string::npos);

    auto root = iso;
    put32(root, 16 * 2048 + 156 + 2, 18);
    put32(root, 16 * 2048 + 156 + 10, 2048);
    CHECK(problems_of(ArtifactFormat::iso, root).empty());
    put32(root, 16 * 2048 + 156 + 2, 0xFFFFFFFF);
    CHECK(joined(problems_of(ArtifactFormat::iso, root)) ==
          "the root directory record points outside the volume\n");
    put32(root, 16 * 2048 + 156 + 2, 23);
    put32(root, 16 * 2048 + 156 + 10, 4096); // starts in the last block, ends past it
    CHECK_FALSE(problems_of(ArtifactFormat::iso, root).empty());

    auto empty = iso;
    put32(empty, 16 * 2048 + 80, 0);
    CHECK(joined(problems_of(ArtifactFormat::iso, empty)).find("volume size of 0 blocks") !=
          std::string::npos);
}

TEST_CASE("a partition table must be intact and fit the disk") {
    auto disk = zeros(64 * 512);
    disk[446 + 4] = 0x83;
    put32(disk, 446 + 8, 2048); // starts at 1 MiB of a 32 KiB file
    put32(disk, 446 + 12, 100);
    disk[510] = 0x55;
    disk[511] = 0xAA;
    CHECK(joined(problems_of(ArtifactFormat::raw, disk))
              .find("partition 1 (51200 bytes at offset 1048576) ends past the end of the") !=
          std::string::npos);
    put32(disk, 446 + 8, 1);
    put32(disk, 446 + 12, 50);
    CHECK(problems_of(ArtifactFormat::raw, disk).empty());

    // A GPT header whose CRC does not match (an absurd entry count written over it).
    auto gpt = zeros(64 * 512);
    gpt[446 + 4] = 0xEE;
    put32(gpt, 446 + 8, 1);
    put32(gpt, 446 + 12, 63);
    gpt[510] = 0x55;
    gpt[511] = 0xAA;
    put(gpt, 512, "EFI PART");
    put32(gpt, 512 + 12, 92);
    put32(gpt, 512 + 80, 0xFFFFFFFF);
    const auto gpt_problems = joined(problems_of(ArtifactFormat::raw, gpt));
    CHECK_MESSAGE(gpt_problems.find("partition table: the GPT partition entry array is invalid") !=
                      std::string::npos,
                  gpt_problems);
    CHECK(gpt_problems.find("4294967295") == std::string::npos);

    auto entry_size = gpt;
    put32(entry_size, 512 + 80, 128);
    put32(entry_size, 512 + 84, 0x80000000);
    const auto entry_problems = joined(problems_of(ArtifactFormat::raw, entry_size));
    CHECK(entry_problems.find("GPT partition entry array is invalid") != std::string::npos);
    CHECK(entry_problems.find("2147483648") == std::string::npos);

    auto header_size = gpt;
    put32(header_size, 512 + 12, 0xFFFFFFFF);
    CHECK(joined(problems_of(ArtifactFormat::raw, header_size)) ==
          "partition table: the GPT header size is outside 92 to 512 bytes\n");
}

TEST_CASE("QCOW2 and VMDK headers are checked against the file") {
    auto qcow = zeros(4 * 65536);
    put(qcow, 0, "QFI\xfb");
    put_be32(qcow, 4, 3);
    put_be32(qcow, 20, 16);            // 64 KiB clusters
    put_be64(qcow, 24, 1 << 20);       // 1 MiB virtual
    put_be32(qcow, 36, 1);             // one L1 entry
    put_be64(qcow, 40, 3 * 65536);     // L1 table
    put_be64(qcow, 48, 65536);         // refcount table
    put_be32(qcow, 56, 1);
    put_be32(qcow, 100, 104);
    CHECK(problems_of(ArtifactFormat::qcow2, qcow).empty());

    auto absurd = qcow;
    put_be64(absurd, 24, std::uint64_t{1} << 62);
    CHECK(joined(problems_of(ArtifactFormat::qcow2, absurd)) ==
          "the header declares a virtual disk larger than 32 PiB, which no real disk is\n");
    absurd = qcow;
    put_be64(absurd, 40, std::uint64_t{1} << 40);
    CHECK(joined(problems_of(ArtifactFormat::qcow2, absurd)).find("the L1 table (1 entries") !=
          std::string::npos);
    absurd = qcow;
    put_be64(absurd, 8, 512);
    CHECK(joined(problems_of(ArtifactFormat::qcow2, absurd)).find("names a backing file") !=
          std::string::npos);
    absurd = qcow;
    put_be32(absurd, 20, 40);
    CHECK(joined(problems_of(ArtifactFormat::qcow2, absurd)).find("cluster bits 40") !=
          std::string::npos);

    auto vmdk = zeros(4096);
    put(vmdk, 0, "KDMV");
    put32(vmdk, 4, 3);
    put32(vmdk, 12, 2048); // capacity, sectors
    put32(vmdk, 20, 128);  // grain
    put32(vmdk, 28, 1);    // descriptor at sector 1
    put32(vmdk, 36, 1);
    put32(vmdk, 44, 512);
    for (std::size_t i = 56; i < 64; ++i) {
        vmdk[i] = 0xFF; // grain directory at the end (stream-optimized)
    }
    CHECK(problems_of(ArtifactFormat::vmdk, vmdk).empty());
    auto bad = vmdk;
    put32(bad, 20, 100);
    put32(bad, 28, 0x7FFFFFFF);
    const auto text = joined(problems_of(ArtifactFormat::vmdk, bad));
    CHECK(text.find("grain size 100 sectors") != std::string::npos);
    CHECK(text.find("the embedded descriptor (1 sectors at sector 2147483647)") !=
          std::string::npos);
}

TEST_CASE("qemu-img's own QCOW2 and VMDK images pass; check_structure names the file") {
    REQUIRE_MESSAGE(std::system("command -v qemu-img >/dev/null 2>&1") == 0,
                    "qemu-img is not installed: run make deps");
    util::TempDir dir(stdfs::temp_directory_path(), "structure-test-");
    const auto qcow = dir.path() / "disk.qcow2";
    const auto vmdk = dir.path() / "disk.vmdk";
    REQUIRE(std::system(("qemu-img create -q -f qcow2 " + qcow.string() + " 3G").c_str()) == 0);
    REQUIRE(std::system(("qemu-img create -q -f vmdk -o subformat=streamOptimized " +
                         vmdk.string() + " 1G")
                            .c_str()) == 0);
    check_structure(qcow, ArtifactFormat::qcow2);
    check_structure(vmdk, ArtifactFormat::vmdk);

    stdfs::resize_file(qcow, 1024); // cut short: the refcount table is gone
    const std::string message = edgeforge::testing::error_of(
        [&] { check_structure(qcow, ArtifactFormat::qcow2); }, ExitCode::bad_input);
    CHECK(message.starts_with("inspect: " + qcow.string() + ": not a readable qcow2: "));
    CHECK(message.find("It is damaged or was cut short") != std::string::npos);
}
