// Unit tests for boot/esp: the FAT image's contents (checked with mtools and fsck.fat),
// reproducibility and input checks.
#include <doctest/doctest.h>

#include "support/data.h"

#include <filesystem>
#include <string>
#include <vector>

#include "boot/esp.h"
#include "base/error.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

bool have_fat_tools() {
    for (const char* tool : {"mkfs.fat", "mcopy", "mmd", "mdir", "mtype", "fsck.fat"}) {
        if (!util::find_program(tool)) {
            MESSAGE("skipped: " << tool << " is not installed (dosfstools, mtools)");
            return false;
        }
    }
    return true;
}

util::ProcessResult mtool(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"env", "MTOOLS_SKIP_CHECK=1", "TZ=UTC0"});
    return util::run_process(argv);
}

// Deterministic pseudo-random bytes, so that files are not trivially compressible or equal.
struct EspInputs {
    util::TempDir dir;
    std::vector<boot::EspFile> files;

    EspInputs() {
        util::write_file_atomically(dir.path() / "shim",
                                    edgeforge::testing::pseudo_random_bytes(900 * 1024, 1));
        util::write_file_atomically(
            dir.path() / "grub", edgeforge::testing::pseudo_random_bytes(2 * 1024 * 1024 + 17, 2));
        boot::EfiBootFiles efi;
        efi.files.push_back({"BOOTX64.EFI", dir.path() / "shim", "test"});
        efi.files.push_back({"grubx64.efi", dir.path() / "grub", "test"});
        files = boot::live_esp_files(efi, "search --no-floppy --file --set=root /boot/kernel\n");
    }
};

} // namespace

TEST_CASE("esp image size rounds files to clusters and the image to MiB") {
    const std::vector<std::uint64_t> none;
    CHECK(boot::esp_image_size(none, 0) == 1024 * 1024);
    const std::vector<std::uint64_t> sizes{1, 4096, 4097, 3 * 1024 * 1024};
    const std::uint64_t data = 4096 + 4096 + 8192 + 3 * 1024 * 1024 + 2 * 4096;
    const std::uint64_t expected =
        (data + data / 64 + 256 * 1024 + 1024 * 1024 - 1) / (1024 * 1024) * (1024 * 1024);
    CHECK(boot::esp_image_size(sizes, 2) == expected);
}

TEST_CASE("esp image holds the EFI files and the stub, labelled EFI_LIVE, and passes fsck.fat") {
    if (!have_fat_tools()) {
        return;
    }
    EspInputs inputs;
    const auto image = inputs.dir.path() / "uefi.img";
    boot::EspOptions options;
    options.source_date_epoch = 1700000000; // 2023-11-14 22:13:20 UTC
    const auto built = boot::build_esp_image(inputs.files, image, options);
    CHECK(stdfs::file_size(image) == built.size);
    CHECK(built.size % (1024 * 1024) == 0);

    const auto fsck =
        util::run_process({util::find_program("fsck.fat")->string(), "-n", image.string()});
    CHECK_MESSAGE(fsck.exit_code == 0, fsck.standard_output, fsck.standard_error);

    const auto listing = mtool({"mdir", "-i", image.string(), "::/EFI/BOOT"});
    REQUIRE(listing.exit_code == 0);
    CAPTURE(listing.standard_output);
    CHECK(listing.standard_output.find("Volume in drive : is EFI_LIVE") != std::string::npos);
    char serial[16];
    std::snprintf(serial, sizeof serial, "%04X-%04X", built.volume_id >> 16,
                  built.volume_id & 0xffff);
    CHECK(listing.standard_output.find(std::string("Volume Serial Number is ") + serial) !=
          std::string::npos);
    CHECK(listing.standard_output.find("BOOTX64  EFI    921600 2023-11-14  22:13") !=
          std::string::npos);
    CHECK(listing.standard_output.find("grubx64  efi") != std::string::npos);
    CHECK(listing.standard_output.find("grub     cfg") != std::string::npos);

    const auto root = mtool({"mdir", "-b", "-/", "-i", image.string(), "::/"});
    // Files are copied in sorted path order, so directory entries are in that order too.
    CHECK(root.standard_output == "::/EFI/\n::/EFI/BOOT/\n::/EFI/BOOT/BOOTX64.EFI\n"
                                  "::/EFI/BOOT/grub.cfg\n::/EFI/BOOT/grubx64.efi\n");

    const auto stub = mtool({"mtype", "-i", image.string(), "::/EFI/BOOT/grub.cfg"});
    CHECK(stub.standard_output == "search --no-floppy --file --set=root /boot/kernel\n");
    const auto extracted = inputs.dir.path() / "grub.out";
    REQUIRE(mtool({"mcopy", "-i", image.string(), "::/EFI/BOOT/grubx64.efi", extracted.string()})
                .exit_code == 0);
    CHECK(util::sha256_file_hex(extracted) == util::sha256_file_hex(inputs.dir.path() / "grub"));
}

TEST_CASE("esp image is byte-for-byte reproducible with SOURCE_DATE_EPOCH") {
    if (!have_fat_tools()) {
        return;
    }
    EspInputs inputs;
    boot::EspOptions options;
    options.source_date_epoch = 1700000000;
    const auto first = boot::build_esp_image(inputs.files, inputs.dir.path() / "a.img", options);
    // Reversed input order and another output directory must not matter.
    std::vector<boot::EspFile> reversed(inputs.files.rbegin(), inputs.files.rend());
    stdfs::create_directories(inputs.dir.path() / "other");
    const auto second =
        boot::build_esp_image(reversed, inputs.dir.path() / "other" / "b.img", options);
    CHECK(first.volume_id == second.volume_id);
    CHECK(util::sha256_file_hex(inputs.dir.path() / "a.img") ==
          util::sha256_file_hex(inputs.dir.path() / "other" / "b.img"));

    // Another time gives another image (timestamps, volume id).
    options.source_date_epoch = 1700000002;
    const auto third = boot::build_esp_image(inputs.files, inputs.dir.path() / "c.img", options);
    CHECK(third.volume_id != first.volume_id);
    CHECK(util::sha256_file_hex(inputs.dir.path() / "a.img") !=
          util::sha256_file_hex(inputs.dir.path() / "c.img"));
    // Only the outputs are left: staging directories and temporaries are gone.
    std::vector<std::string> names;
    for (const auto& entry : stdfs::directory_iterator(inputs.dir.path())) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"a.img", "c.img", "grub", "other", "shim"});
}

TEST_CASE("esp image rejects bad labels and paths before running any tool") {
    util::TempDir dir;
    const auto out = dir.path() / "x.img";
    boot::EspOptions options;
    options.label = "efi live";
    CHECK_THROWS_WITH_AS(boot::build_esp_image({}, out, options),
                         "FAT volume label 'efi live': use 1 to 11 characters A-Z, 0-9, '_' or '-'",
                         Error);
    const std::vector<boot::EspFile> relative{{"EFI/BOOT/x", {}, std::string("x")}};
    CHECK_THROWS_WITH_AS(boot::build_esp_image(relative, out),
                         "ESP path 'EFI/BOOT/x' is not an absolute path with valid FAT names",
                         Error);
    const std::vector<boot::EspFile> twice{{"/EFI/a.efi", {}, std::string("1")},
                                           {"/efi/A.EFI", {}, std::string("2")}};
    CHECK_THROWS_WITH_AS(boot::build_esp_image(twice, out),
                         "ESP path '/efi/A.EFI' is given twice (FAT names ignore case)", Error);
    CHECK_FALSE(stdfs::exists(out));
}
