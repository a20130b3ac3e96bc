// Unit tests for fs/ext4: partition images judged by fsck.ext4, debugfs and dumpe2fs,
// reproducibility with SOURCE_DATE_EPOCH, and bad input.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

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

const std::string k_config = "#cloud-config\nusers:\n  - name: kairos\n";

bool have_e2fsprogs() {
    return testing::have_programs({"mke2fs", "debugfs", "fsck.ext4", "dumpe2fs"});
}

void write(const stdfs::path& file, const std::string& content, stdfs::perms mode) {
    stdfs::create_directories(file.parent_path());
    util::write_file_atomically(file, content);
    stdfs::permissions(file, mode);
}

// Sets a host file's atime and mtime without following symlinks.
void set_times(const stdfs::path& file, std::int64_t seconds) {
    const timespec times[2] = {{seconds, 0}, {seconds, 0}};
    REQUIRE(::utimensat(AT_FDCWD, file.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

// An OEM-like tree, written in one order or the other, owned by someone other than root (when
// the tests run as root; otherwise it already is), with the given file times.
void make_tree(const stdfs::path& root, bool reversed, std::int64_t file_time) {
    stdfs::create_directories(root);
    const auto files = [&] {
        write(root / "config.yaml", k_config, stdfs::perms(0644));
        write(root / "etc/oem/90_custom.yaml", "stages: {}\n", stdfs::perms(0644));
        write(root / "with space/quote\"d", "quoted\n", stdfs::perms(0644));
        write(root / "secret", "s3cret\n", stdfs::perms(0600));
        stdfs::create_directories(root / "empty");
        stdfs::create_symlink("config.yaml", root / "link");
    };
    const auto big = [&] {
        write(root / "data/blob", testing::pseudo_random_bytes(300 * 1024, 9), stdfs::perms(0644));
    };
    if (reversed) {
        big();
        files();
    } else {
        files();
        big();
    }
    for (const auto& entry : stdfs::recursive_directory_iterator(root)) {
        if (::geteuid() == 0) {
            REQUIRE(::lchown(entry.path().c_str(), 1000, 1000) == 0);
        }
        set_times(entry.path(), file_time);
    }
}

std::string bad_input_of(const stdfs::path& tree, std::uint64_t size, std::string_view label,
                         const stdfs::path& out, std::optional<std::int64_t> epoch = {}) {
    return testing::error_of([&] { fs::make_ext4_image(tree, size, label, out, epoch); },
                             ExitCode::bad_input);
}

std::size_t entries_in(const stdfs::path& directory) {
    return static_cast<std::size_t>(
        std::distance(stdfs::directory_iterator(directory), stdfs::directory_iterator()));
}

} // namespace

TEST_CASE(
    "ext4 partition image: fsck.ext4 finds it clean and debugfs reads the tree back, root's") {
    if (!have_e2fsprogs()) {
        return;
    }
    util::TempDir dir;
    make_tree(dir.path() / "tree", false, 1600000000);
    const auto image = dir.path() / "oem.img";
    const fs::Ext4Image made =
        fs::make_ext4_image(dir.path() / "tree", 32 * k_mib, "COS_OEM", image, std::nullopt);
    CHECK(made.path == image);
    CHECK(made.unwritten.empty());
    CHECK(stdfs::file_size(image) == 32 * k_mib);
    testing::check_fsck_ext4(image.string());
    CHECK(testing::dumpe2fs_field(image, "Filesystem volume name") == "COS_OEM");
    CHECK(testing::dumpe2fs_field(image, "Block size") == "4096");
    CHECK(testing::dumpe2fs_field(image, "Inode size") == "256");
    CHECK(testing::dumpe2fs_field(image, "Filesystem features") ==
          "has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg "
          "sparse_super large_file huge_file dir_nlink extra_isize metadata_csum");

    const std::string img = image.string();
    CHECK(testing::debugfs_cat(img, "/config.yaml") == k_config);
    CHECK(testing::debugfs_cat(img, "/etc/oem/90_custom.yaml") == "stages: {}\n");
    CHECK(testing::debugfs_cat(img, "/with space/quote\"d") == "quoted\n");
    CHECK(testing::debugfs_cat(img, "/data/blob") == testing::pseudo_random_bytes(300 * 1024, 9));
    for (const std::string path : {"/", "/config.yaml", "/etc", "/etc/oem/90_custom.yaml",
                                   "/with space/quote\"d", "/secret", "/empty", "/link"}) {
        CAPTURE(path);
        const std::string stat = testing::debugfs_stat(img, path);
        CHECK(stat.find("User:     0   Group:     0 ") != std::string::npos);
    }
    CHECK(testing::debugfs_stat(img, "/secret").find("Mode:  0600") != std::string::npos);
    CHECK(testing::debugfs_stat(img, "/empty").find("Type: directory") != std::string::npos);
    CHECK(testing::debugfs_stat(img, "/link").find("Fast link dest: \"config.yaml\"") !=
          std::string::npos);
    // Without SOURCE_DATE_EPOCH the host's modification times are kept.
    CHECK(testing::debugfs_stat(img, "/config.yaml").find("mtime: 0x5f5e1000:") !=
          std::string::npos);

    // An empty filesystem when no directory is given.
    const auto empty = dir.path() / "empty.img";
    fs::make_ext4_image({}, 8 * k_mib, "", empty, std::nullopt);
    testing::check_fsck_ext4(empty.string());
    CHECK(testing::dumpe2fs_field(empty, "Filesystem volume name") == "<none>");
    CHECK(testing::tool_output({"debugfs", "-R", "ls -p /", empty.string()}).find("/lost+found/") !=
          std::string::npos);
}

TEST_CASE("ext4 partition image with SOURCE_DATE_EPOCH is byte-identical whatever the host files' "
          "times, owners and order") {
    if (!have_e2fsprogs()) {
        return;
    }
    util::TempDir dir;
    // Two copies of one tree, written in opposite orders with different times; their change
    // times are "now", which no user can set.
    make_tree(dir.path() / "a", false, 1600000000);
    make_tree(dir.path() / "b", true, 1650000000);
    if (::geteuid() == 0) {
        for (const auto& entry : stdfs::recursive_directory_iterator(dir.path() / "b")) {
            REQUIRE(::lchown(entry.path().c_str(), 1234, 4321) == 0);
        }
    }
    const auto a = dir.path() / "a.img";
    const auto b = dir.path() / "b.img";
    fs::make_ext4_image(dir.path() / "a", 32 * k_mib, "COS_OEM", a, k_epoch);
    fs::make_ext4_image(dir.path() / "b", 32 * k_mib, "COS_OEM", b, k_epoch);
    testing::check_fsck_ext4(a.string());
    CHECK(util::sha256_file_hex(a) == util::sha256_file_hex(b));

    // Every time of every inode is SOURCE_DATE_EPOCH, nanoseconds zero.
    for (const std::string path : {"/", "/lost+found", "/config.yaml", "/etc/oem", "/link",
                                   "/with space/quote\"d", "/data/blob"}) {
        CAPTURE(path);
        const std::string stat = testing::debugfs_stat(a.string(), path);
        for (const std::string field : {" ctime", " atime", " mtime", "crtime"}) {
            CHECK(stat.find(field + ": 0x6553f100:00000000") != std::string::npos);
        }
        CHECK(stat.find("User:     0   Group:     0 ") != std::string::npos);
    }

    // The superblock's times too, debugfs's last write included (dumpe2fs prints them in local
    // time, so they are compared with each other; the inode times above pin the value).
    const std::string created = testing::dumpe2fs_field(a, "Filesystem created");
    CHECK(testing::dumpe2fs_field(a, "Last write time") == created);
    CHECK(testing::dumpe2fs_field(a, "Last checked") == created);
    CHECK(created.find("2023") != std::string::npos);

    // The UUID and hash seed follow the content; without SOURCE_DATE_EPOCH they are random.
    const std::string uuid = testing::dumpe2fs_field(a, "Filesystem UUID");
    CHECK(testing::dumpe2fs_field(a, "Directory Hash Seed") != uuid);
    util::write_file_atomically(dir.path() / "b/config.yaml", "#cloud-config\n");
    fs::make_ext4_image(dir.path() / "b", 32 * k_mib, "COS_OEM", b, k_epoch);
    CHECK(testing::dumpe2fs_field(b, "Filesystem UUID") != uuid);
    fs::make_ext4_image(dir.path() / "a", 32 * k_mib, "COS_OEM", b, std::nullopt);
    const std::string random = testing::dumpe2fs_field(b, "Filesystem UUID");
    CHECK(random != uuid);
    fs::make_ext4_image(dir.path() / "a", 32 * k_mib, "COS_OEM", b, std::nullopt);
    CHECK(testing::dumpe2fs_field(b, "Filesystem UUID") != random);
}

TEST_CASE("ext4 partition image: bad input and failing tools leave nothing behind") {
    util::TempDir dir;
    const auto out = dir.path() / "oem.img";
    const auto tree = dir.path() / "tree";
    stdfs::create_directories(tree);

    CHECK(bad_input_of(tree, 0, "COS_OEM", out) ==
          "the ext4 image " + out.string() +
              " would be 0 bytes; give a size that is a positive multiple of 4 KiB");
    CHECK(bad_input_of(tree, k_mib + 512, "COS_OEM", out) ==
          "the ext4 image " + out.string() +
              " would be 1049088 bytes; give a size that is a positive multiple of 4 KiB");
    CHECK(bad_input_of(tree, k_mib, "COS_OEM_TOO_LONG_", out) ==
          "ext4 label 'COS_OEM_TOO_LONG_' is 17 bytes; an ext4 label holds at most 16");
    CHECK(bad_input_of(dir.path() / "missing", k_mib, "COS_OEM", out) ==
          "cannot copy " + (dir.path() / "missing").string() + " into the ext4 image " +
              out.string() + ": it is not a directory");
    CHECK(bad_input_of(tree, k_mib, "COS_OEM", out, -1) ==
          "SOURCE_DATE_EPOCH -1 is before 1970; give seconds since 1970-01-01");
    util::write_file_atomically(tree / "new\nline", "x");
    CHECK(bad_input_of(tree, k_mib, "COS_OEM", out) ==
          "cannot copy " + (tree / "new\nline").string() +
              " into an ext4 image: debugfs, which sets owners and times in the image, cannot "
              "name files with a newline in their name; rename it");
    stdfs::remove(tree / "new\nline");

    if (have_e2fsprogs()) {
        // More data than space: mke2fs's own words, naming the output, not its temporary name.
        util::write_file_atomically(tree / "blob", testing::pseudo_random_bytes(12 * k_mib, 1));
        CHECK(testing::error_of(
                  [&] { fs::make_ext4_image(tree, 8 * k_mib, "COS_OEM", out, std::nullopt); },
                  ExitCode::build_failed) ==
              "mke2fs failed on the ext4 image " + out.string() +
                  " (exit status 1): __populate_fs: Could not allocate block in ext2 filesystem "
                  "while writing file \"blob\"; mke2fs: Could not allocate block in ext2 "
                  "filesystem while populating file system");
        CHECK(testing::error_of(
                  [&] { fs::make_ext4_image({}, 64 * 1024, "COS_OEM", out, std::nullopt); },
                  ExitCode::build_failed) ==
              "mke2fs failed on the ext4 image " + out.string() +
                  " (exit status 1): " + out.string() +
                  ": Not enough space to build proposed filesystem while setting up superblock");
    }
    const auto nowhere = dir.path() / "no-such-dir" / "oem.img";
    if (have_e2fsprogs()) {
        CHECK(testing::error_of(
                  [&] { fs::make_ext4_image({}, k_mib, "COS_OEM", nowhere, std::nullopt); },
                  ExitCode::build_failed) ==
              "cannot write the ext4 image " + nowhere.string() +
                  ": No such file or directory; check that its directory exists, is writable "
                  "and has space");
    }
    // Only the tree is there: no image, no temporary, no debugfs script.
    CHECK_FALSE(stdfs::exists(out));
    CHECK(entries_in(dir.path()) == 1);
}
