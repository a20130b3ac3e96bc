// Unit tests for inspect/artifact: bad inputs stop inspect_artifact before libguestfs starts.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/console.h"
#include "base/error.h"
#include "inspect/artifact.h"
#include "support/errors.h"
#include "util/fs.h"
#include "support/bytes.h"

using namespace edgeforge;
using namespace edgeforge::inspect;
namespace stdfs = std::filesystem;

namespace {

using edgeforge::testing::zeros;
using edgeforge::testing::put;

stdfs::path write_temp(const util::TempDir& dir, const std::string& name,
                       const std::vector<std::uint8_t>& bytes) {
    const stdfs::path path = dir.path() / name;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    return path;
}

} // namespace

TEST_CASE("inspect_artifact stops at bad input before starting libguestfs") {
    util::TempDir dir;
    const std::string text = "not a disk\n";
    const auto file =
        write_temp(dir, "notes.txt", std::vector<std::uint8_t>(text.begin(), text.end()));
    const Console console(ConsoleOptions{Verbosity::quiet, false, false, false});
    CHECK(testing::error_of([&] { inspect_artifact(file, console); }, ExitCode::bad_input)
              .starts_with("inspect: " + file.string() + ": not a built artifact"));

    // A tar without a .vmdk is no OVA.
    auto tar = zeros(2048);
    put(tar, 0, "readme.txt");
    put(tar, 100, "0000644");
    put(tar, 124, "00000000000");
    put(tar, 136, "00000000000");
    put(tar, 156, "0");
    put(tar, 257, "ustar");
    put(tar, 263, "00");
    put(tar, 148, "        ");
    unsigned sum = 0;
    for (std::size_t i = 0; i < 512; ++i) {
        sum += tar[i];
    }
    const std::string checksum = fmt::format("{:06o}", sum);
    put(tar, 148, checksum);
    tar[154] = 0;
    const auto plain_tar = write_temp(dir, "plain.ova", tar);
    CHECK(testing::error_of([&] { inspect_artifact(plain_tar, console); }, ExitCode::bad_input) ==
          "inspect: " + plain_tar.string() +
              ": a tar archive without a .vmdk member, so not an OVA; supported are ISO 9660 "
              "images, raw disks with a GPT or MBR partition table, QCOW2, VMDK (sparse) and OVA "
              "(tar with a VMDK), recognised by their content whatever the file is called");
}
