// Unit tests for inspect/detect: format detection by content and bad inputs naming the file.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "inspect/detect.h"
#include "support/errors.h"
#include "util/fs.h"
#include "support/bytes.h"

using namespace edgeforge;
using namespace edgeforge::inspect;
namespace stdfs = std::filesystem;

namespace {

using edgeforge::testing::zeros;
using edgeforge::testing::put;
using edgeforge::testing::put32;

// An MBR with one partition entry of `type` (boot signature included).
std::vector<std::uint8_t> mbr_with(std::uint8_t type, std::size_t size = 512) {
    auto bytes = zeros(size);
    bytes[446] = 0x80;
    bytes[446 + 4] = type;
    put32(bytes, 446 + 8, 2048);
    put32(bytes, 446 + 12, 4096);
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    return bytes;
}

stdfs::path write_temp(const util::TempDir& dir, const std::string& name,
                       const std::vector<std::uint8_t>& bytes) {
    const stdfs::path path = dir.path() / name;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return path;
}

} // namespace

TEST_CASE("detect_format tells artifacts apart by their content") {
    auto qcow2 = zeros(k_detect_bytes);
    put(qcow2, 0, "QFI\xfb");
    CHECK(detect_format(qcow2) == ArtifactFormat::qcow2);

    auto vmdk = zeros(1024);
    put(vmdk, 0, "KDMV");
    CHECK(detect_format(vmdk) == ArtifactFormat::vmdk);

    auto tar = zeros(1024);
    put(tar, 0, "disk.ovf");
    put(tar, 257, "ustar");
    CHECK(detect_format(tar) == ArtifactFormat::ova);

    // A hybrid ISO carries an MBR and a GPT as well: the ISO 9660 volume wins.
    auto iso = mbr_with(0xEE, k_detect_bytes);
    put(iso, 512, "EFI PART");
    put(iso, 0x8001, "CD001");
    CHECK(detect_format(iso) == ArtifactFormat::iso);

    auto gpt = mbr_with(0xEE, 1024);
    put(gpt, 512, "EFI PART");
    CHECK(detect_format(gpt) == ArtifactFormat::raw);

    auto gpt_4k = zeros(8192);
    put(gpt_4k, 4096, "EFI PART");
    CHECK(detect_format(gpt_4k) == ArtifactFormat::raw);

    CHECK(detect_format(mbr_with(0x83)) == ArtifactFormat::raw);
}

TEST_CASE("detect_format rejects what is not an artifact") {
    CHECK(detect_format({}) == ArtifactFormat::unknown);
    const std::string text = "#cloud-config\nhostname: edge\n";
    CHECK(detect_format({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}) ==
          ArtifactFormat::unknown);
    // A boot signature without any partition entry (a bare boot sector) is no disk.
    auto boot_sector = zeros(512);
    boot_sector[510] = 0x55;
    boot_sector[511] = 0xAA;
    CHECK(detect_format(boot_sector) == ArtifactFormat::unknown);
    // Garbage in the status bytes means the 55 AA was a coincidence.
    auto garbage = mbr_with(0x83);
    garbage[446] = 0x42;
    CHECK(detect_format(garbage) == ArtifactFormat::unknown);
    // Magic bytes cut short by the end of the file.
    const std::vector<std::uint8_t> short_qcow2 = {'Q', 'F', 'I'};
    CHECK(detect_format(short_qcow2) == ArtifactFormat::unknown);
    auto short_iso = zeros(0x8003);
    put(short_iso, 0x8001, "CD");
    CHECK(detect_format(short_iso) == ArtifactFormat::unknown);
}

TEST_CASE("detect_file_format: bad inputs name the file and the supported formats") {
    util::TempDir dir;
    const auto missing = (dir.path() / "missing.iso").string();
    const std::string gone =
        testing::error_of([&] { detect_file_format(missing); }, ExitCode::bad_input);
    CHECK(gone.starts_with("inspect: " + missing + ": cannot open it: No such file or directory"));
    CHECK(gone.find("supported are ISO 9660 images, raw disks") != std::string::npos);

    const std::string directory =
        testing::error_of([&] { detect_file_format(dir.path()); }, ExitCode::bad_input);
    CHECK(directory == "inspect: " + dir.path().string() +
                           ": is a directory; give the path of a built artifact (supported are "
                           "ISO 9660 images, raw disks with a GPT or MBR partition table, QCOW2, "
                           "VMDK (sparse) and OVA (tar with a VMDK), recognised by their content "
                           "whatever the file is called)");

    const std::string text_bytes = "#cloud-config\nhostname: edge\n";
    const auto text = write_temp(dir, "user-data.iso",
                                 std::vector<std::uint8_t>(text_bytes.begin(), text_bytes.end()));
    const std::string not_artifact =
        testing::error_of([&] { detect_file_format(text); }, ExitCode::bad_input);
    CHECK(not_artifact.starts_with("inspect: " + text.string() +
                                   ": not a built artifact (no ISO 9660 volume, partition table, "
                                   "QCOW2, VMDK or tar header found); supported are"));

    const auto empty = write_temp(dir, "empty.raw", {});
    CHECK(testing::error_of([&] { detect_file_format(empty); }, ExitCode::bad_input)
              .starts_with("inspect: " + empty.string() + ": the file is empty"));

    // The name does not matter: a qcow2 called .iso is a qcow2.
    auto qcow2 = zeros(4096);
    put(qcow2, 0, "QFI\xfb");
    CHECK(detect_file_format(write_temp(dir, "disguised.iso", qcow2)) == ArtifactFormat::qcow2);
}
