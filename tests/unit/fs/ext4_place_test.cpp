// Unit tests for the big files make_ext4_image places with libext2fs (fs/ext4_place): judged by
// fsck.ext4 and debugfs, byte-identical rebuilds, and bad input.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include <sys/stat.h>

#include "base/error.h"
#include "fs/ext4.h"
#include "support/data.h"
#include "support/errors.h"
#include "support/partition_tools.h"
#include "util/digest.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

constexpr std::uint64_t k_mib = 1024 * 1024;
constexpr std::int64_t k_epoch = 1700000000; // 0x6553f100

bool have_e2fsprogs() {
    return testing::have_programs({"mke2fs", "debugfs", "fsck.ext4", "dumpe2fs"});
}

struct Inputs {
    util::TempDir dir;
    stdfs::path tree = dir.path() / "tree";
    stdfs::path big = dir.path() / "big.bin";
    std::string big_bytes = testing::pseudo_random_bytes(9 * k_mib + 123, 4);

    Inputs() {
        stdfs::create_directories(tree / "boot");
        util::write_file_atomically(tree / "boot" / "kernel", "kernel\n");
        util::write_file_atomically(big, big_bytes);
        stdfs::permissions(big, stdfs::perms(0640));
    }

    fs::Ext4ImageOptions options(std::string path = "/rootfs.squashfs") const {
        fs::Ext4ImageOptions placed;
        placed.placed_files[std::move(path)] = big;
        return placed;
    }
};

} // namespace

TEST_CASE("ext4 placed file: fsck.ext4 finds the image clean and debugfs reads the file back") {
    if (!have_e2fsprogs()) {
        return;
    }
    Inputs inputs;
    const auto image = inputs.dir.path() / "recovery.img";
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", image, k_epoch, inputs.options());
    testing::check_fsck_ext4(image.string());
    CHECK(testing::debugfs_cat(image.string(), "/rootfs.squashfs") == inputs.big_bytes);
    CHECK(testing::debugfs_cat(image.string(), "/boot/kernel") == "kernel\n");
    const std::string stat = testing::debugfs_stat(image.string(), "/rootfs.squashfs");
    CHECK(stat.find("Mode:  0640") != std::string::npos);
    CHECK(stat.find("User:     0   Group:     0 ") != std::string::npos);
    CHECK(stat.find(" mtime: 0x6553f100:00000000") != std::string::npos);
    CHECK(stat.find("crtime: 0x6553f100:00000000") != std::string::npos);

    // Without SOURCE_DATE_EPOCH the host file's modification time is kept, as for the tree.
    struct stat host {};
    REQUIRE(::stat(inputs.big.c_str(), &host) == 0);
    const auto kept = inputs.dir.path() / "kept.img";
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", kept, std::nullopt,
                        inputs.options());
    CHECK(testing::debugfs_stat(kept.string(), "/rootfs.squashfs")
              .find(fmt::format(" mtime: 0x{:08x}:", static_cast<std::uint32_t>(host.st_mtime))) !=
          std::string::npos);

    // In a directory of the tree too.
    const auto nested = inputs.dir.path() / "nested.img";
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", nested, k_epoch,
                        inputs.options("/boot/big"));
    testing::check_fsck_ext4(nested.string());
    CHECK(testing::debugfs_cat(nested.string(), "/boot/big") == inputs.big_bytes);
}

TEST_CASE("ext4 placed file: the same inputs give the same bytes, another file another UUID") {
    if (!have_e2fsprogs()) {
        return;
    }
    Inputs inputs;
    const auto a = inputs.dir.path() / "a.img";
    const auto b = inputs.dir.path() / "b.img";
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", a, k_epoch, inputs.options());
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", b, k_epoch, inputs.options());
    CHECK(util::sha256_file_hex(a) == util::sha256_file_hex(b));
    // The superblock's write time is SOURCE_DATE_EPOCH after libext2fs wrote it back.
    CHECK(testing::dumpe2fs_field(a, "Last write time") ==
          testing::dumpe2fs_field(a, "Filesystem created"));

    const std::string uuid = testing::dumpe2fs_field(a, "Filesystem UUID");
    std::string changed = inputs.big_bytes;
    changed[5 * k_mib] ^= 1;
    util::write_file_atomically(inputs.big, changed);
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", b, k_epoch, inputs.options());
    CHECK(testing::dumpe2fs_field(b, "Filesystem UUID") != uuid);
    CHECK(testing::debugfs_cat(b.string(), "/rootfs.squashfs") == changed);
    // A content id the caller gives stands for the file's bytes.
    auto identified = inputs.options();
    identified.content_ids["/rootfs.squashfs"] = "step 1";
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", a, k_epoch, identified);
    util::write_file_atomically(inputs.big, inputs.big_bytes);
    fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", b, k_epoch, identified);
    CHECK(testing::dumpe2fs_field(a, "Filesystem UUID") ==
          testing::dumpe2fs_field(b, "Filesystem UUID"));
}

TEST_CASE("ext4 placed file left to the caller: holes in the image, and where its bytes go") {
    if (!have_e2fsprogs()) {
        return;
    }
    Inputs inputs;
    const auto copied = inputs.dir.path() / "copied.img";
    const auto left = inputs.dir.path() / "left.img";
    const fs::Ext4Image whole = fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", copied,
                                                    k_epoch, inputs.options());
    CHECK(whole.unwritten.empty());
    auto options = inputs.options();
    options.placed_data = fs::PlacedData::returned;
    const fs::Ext4Image made =
        fs::make_ext4_image(inputs.tree, 32 * k_mib, "COS_RECOVERY", left, k_epoch, options);
    REQUIRE_FALSE(made.unwritten.empty());
    std::string image = util::read_file(left);
    const std::string full = util::read_file(copied);
    REQUIRE(image.size() == full.size());
    CHECK(image != full); // the file's bytes are not in it
    std::uint64_t total = 0;
    for (const util::FileExtent& extent : made.unwritten) {
        CHECK(extent.file == inputs.big);
        CHECK(extent.offset % 4096 == 0);
        REQUIRE(extent.file_offset + extent.length <= inputs.big_bytes.size());
        REQUIRE(extent.offset + extent.length <= image.size());
        CHECK(image.substr(extent.offset, extent.length) == std::string(extent.length, '\0'));
        image.replace(extent.offset, extent.length,
                      inputs.big_bytes.substr(extent.file_offset, extent.length));
        total += extent.length;
    }
    CHECK(total == inputs.big_bytes.size());
    // Filled in, it is the image that has them copied in, byte for byte.
    CHECK(image == full);
}

TEST_CASE("ext4 placed file: a missing directory, a name the tree has, no room: errors, no image") {
    if (!have_e2fsprogs()) {
        return;
    }
    Inputs inputs;
    const auto image = inputs.dir.path() / "recovery.img";
    const auto make = [&](const fs::Ext4ImageOptions& options, std::uint64_t size, ExitCode code) {
        return testing::error_of(
            [&] {
                fs::make_ext4_image(inputs.tree, size, "COS_RECOVERY", image, k_epoch, options);
            },
            code);
    };
    CHECK(make(inputs.options("/nowhere/big"), 32 * k_mib, ExitCode::bad_input) ==
          "cannot add /nowhere/big to the ext4 image " + image.string() +
              ": its directory /nowhere is not in it");
    CHECK(make(inputs.options("/boot/kernel"), 32 * k_mib, ExitCode::bad_input) ==
          "cannot add /boot/kernel to the ext4 image " + image.string() +
              ": the tree copied into it already has it");
    CHECK(make(inputs.options(), 8 * k_mib, ExitCode::build_failed) ==
          "the ext4 image " + image.string() + " has no room for /rootfs.squashfs (" +
              std::to_string(inputs.big_bytes.size()) + " bytes); it needs a bigger partition");
    CHECK_FALSE(stdfs::exists(image));
    CHECK(std::distance(stdfs::directory_iterator(inputs.dir.path()),
                        stdfs::directory_iterator()) == 2); // tree and big.bin: no temporary left
}
