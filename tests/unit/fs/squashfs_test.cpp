// Unit tests for fs/squashfs, judged by squashfs-tools and squashfs-tools-ng (sqfsdiff, ...).
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/error.h"
#include "fs/squashfs.h"
#include "fs/squashfs_block_cache.h"
#include "fs/tree.h"
#include "squashfs_sample.h"
#include "util/fs.h"
#include "util/process.h"

TEST_CASE("squashfs: unsquashfs sees every type, mode, owner, time, device and link") {
    Sample sample;
    const auto stats =
        fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), sample.image());
    CHECK(pseudo_listing(sample.image()) == k_sample_listing);

    // The ls-style listing shows the same with the tool's own formatting.
    const auto listing =
        collapse_spaces(run_tool({"unsquashfs", "-n", "-lln", sample.image().string()}));
    CHECK(listing.find("crw-rw-rw- 0/0 1, 3 ") != std::string::npos);
    CHECK(listing.find("brw-rw---- 0/6 8, 0 ") != std::string::npos);
    CHECK(listing.find("-rwsr-xr-x 0/0 10 ") != std::string::npos);
    CHECK(listing.find("-rwxr-sr-x 0/50 5 ") != std::string::npos);
    CHECK(listing.find("-rw-r--r-- 1000/100 3150049 ") != std::string::npos);
    CHECK(listing.find("drwxrwxrwt 0/0 ") != std::string::npos);
    CHECK(listing.find("squashfs-root/lib/ping-link -> ../usr/bin/ping") != std::string::npos);

    // 30 names, one of them a second name of the same file.
    CHECK(stats.inodes == 29);
    CHECK(stats.bytes_in == sample.tree.stats().data_bytes);
    CHECK(stats.bytes_out == stdfs::file_size(sample.image()));
    CHECK(stats.bytes_out % 4096 == 0);
    CHECK(stats.compression_ratio > 0.0);
    CHECK(stats.compression_ratio < 1.0);
}

namespace {

// Writes the sample with `compressor` at its fastest level and 128 KiB blocks (so that the
// incompressible file fills whole blocks without making xz slow) and reads everything back.
void check_round_trip(fs::SquashfsCompressor compressor, int fastest_level) {
    Sample sample;
    const std::string name(fs::squashfs_compressor_name(compressor));
    auto options = fixed_time_options();
    options.compressor = compressor;
    options.level = fastest_level;
    options.block_size = 128 * 1024;
    const auto image = sample.image(name + ".squashfs");
    const auto stats = fs::write_squashfs(sample.tree, sample.spill, options, image);

    const auto superblock = run_tool({"unsquashfs", "-s", image.string()});
    CHECK(superblock.find("Compression " + name + "\n") != std::string::npos);
    CHECK(superblock.find("Block size 131072\n") != std::string::npos);
    CHECK(pseudo_listing(image) == k_sample_listing);
    CHECK(cat_file(image, "/home/user/big") == sample.big);
    CHECK(cat_file(image, "/var/random") == sample.random);
    CHECK(cat_file(image, "/var/zeros") == std::string(sample.zeros_size, '\0'));
    CHECK(cat_file(image, "/etc/hostname") == "edge\n");
    CHECK(cat_file(image, "/etc/empty").empty());
    CHECK(cat_file(image, "/etc/host-file") == sample.host_content);
    CHECK(cat_file(image, "/etc/blob") == "on the ");
    CHECK(cat_file(image, "/usr/bin/pair-b") == "one file, two names\n");
    CHECK(stats.data_blocks == 24 + 2); // full blocks of big and random
    CHECK(stats.sparse_blocks >= 16);   // those of zeros, left out
}

} // namespace

TEST_CASE("squashfs: zstd round-trips file contents byte for byte") {
    check_round_trip(fs::SquashfsCompressor::zstd, 1);
}

TEST_CASE("squashfs: gzip round-trips file contents byte for byte") {
    check_round_trip(fs::SquashfsCompressor::gzip, 1);
}

TEST_CASE("squashfs: xz round-trips file contents byte for byte") {
    check_round_trip(fs::SquashfsCompressor::xz, 1);
}

TEST_CASE("squashfs: lz4 round-trips file contents byte for byte") {
    check_round_trip(fs::SquashfsCompressor::lz4, 0);
}

TEST_CASE("squashfs: every compressor works at its default level; xz gets the arch's filter") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    fs::Tree tree;
    tree.root().mtime = k_time;
    const auto text = non_repeating_text(100000);
    tree.root().children["text"] = spilled_file(spill, text, 0644, k_time);
    for (const auto compressor : {fs::SquashfsCompressor::zstd, fs::SquashfsCompressor::gzip,
                                  fs::SquashfsCompressor::xz, fs::SquashfsCompressor::lz4}) {
        const std::string name(fs::squashfs_compressor_name(compressor));
        CAPTURE(name);
        auto options = fixed_time_options();
        options.compressor = compressor;
        const auto image = dir.path() / (name + ".squashfs");
        const auto stats = fs::write_squashfs(tree, spill, options, image);
        CHECK(stats.bytes_out < text.size());
        CHECK(cat_file(image, "/text") == text);
        const auto superblock = run_tool({"unsquashfs", "-s", image.string()});
        CHECK(superblock.find("Compression " + name + "\n") != std::string::npos);
        CHECK(superblock.find("Block size 1048576\n") != std::string::npos);
        if (compressor == fs::SquashfsCompressor::xz) {
            CHECK(superblock.find("Filters selected: x86") != std::string::npos);
        }
    }
    // arm64 code gets no filter: libsquashfs has none for AArch64 (its ARM one is 32-bit).
    auto options = fixed_time_options();
    options.compressor = fs::SquashfsCompressor::xz;
    options.arch = Arch(Arch::Id::arm64);
    fs::write_squashfs(tree, spill, options, dir.path() / "arm64.squashfs");
    const auto superblock =
        run_tool({"unsquashfs", "-s", (dir.path() / "arm64.squashfs").string()});
    CHECK(superblock.find("Compression xz\n") != std::string::npos);
    CHECK(superblock.find("Filters selected") == std::string::npos);

    // The level reaches the compressor: gzip 1 and 9 give different images.
    options.compressor = fs::SquashfsCompressor::gzip;
    options.level = 1;
    fs::write_squashfs(tree, spill, options, dir.path() / "gzip1.squashfs");
    CHECK(util::read_file(dir.path() / "gzip1.squashfs") !=
          util::read_file(dir.path() / "gzip.squashfs"));
}

TEST_CASE("squashfs: a hard link pair is one inode with link count 2") {
    Sample sample;
    fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), sample.image());
    const auto a = inode_fields(sample.image(), "/usr/bin/pair-a");
    const auto b = inode_fields(sample.image(), "/usr/bin/pair-b");
    CHECK(a.at("Inode number") == b.at("Inode number"));
    CHECK(a.at("Hard link count") == "2");
    CHECK(a.at("Inode type") == "extended file");
    // A file with one name keeps the basic inode, which has no link count field (it is 1).
    const auto single = inode_fields(sample.image(), "/usr/bin/sgid");
    CHECK(single.at("Inode type") == "file");
    CHECK(single.count("Hard link count") == 0);
    // Directories count "." , ".." and each subdirectory's "..".
    CHECK(inode_fields(sample.image(), "/usr").at("Hard link count") == "3");
    CHECK(inode_fields(sample.image(), "/").at("Hard link count") == "11");

    // unsquashfs recreates the pair as one file with two names.
    const auto out = sample.dir.path() / "unpacked";
    run_tool({"unsquashfs", "-n", "-no-xattrs", "-d", out.string(), sample.image().string(),
              "/usr/bin"});
    struct stat first {};
    struct stat second {};
    REQUIRE(::stat((out / "usr/bin/pair-a").c_str(), &first) == 0);
    REQUIRE(::stat((out / "usr/bin/pair-b").c_str(), &second) == 0);
    CHECK(first.st_ino == second.st_ino);
    CHECK(first.st_nlink == 2);
}

TEST_CASE("squashfs: xattrs are stored, and prefixes squashfs cannot hold are reported") {
    Sample sample;
    const auto stats =
        fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), sample.image());
    const auto ping = run_tool({"rdsquashfs", "-x", "/usr/bin/ping", sample.image().string()});
    CHECK(ping.find("user.test=hello\n") != std::string::npos);
    CHECK(ping.find("security.capability=") != std::string::npos);
    CHECK(ping.find("system.") == std::string::npos);
    CHECK(run_tool({"rdsquashfs", "-x", "/etc", sample.image().string()}) == "user.dir=yes\n");
    CHECK(inode_fields(sample.image(), "/usr/bin/ping").at("Inode type") == "extended file");
    CHECK(inode_fields(sample.image(), "/etc").at("Inode type") == "extended directory");
    CHECK(inode_fields(sample.image(), "/bin").at("Inode type") == "directory");
    CHECK(stats.skipped_xattr_count == 1);
    CHECK(stats.skipped_xattrs ==
          std::vector<std::string>{"/usr/bin/ping: system.posix_acl_access"});

    // The capability's bytes come back exactly (unsquashfs restores xattrs when run as root;
    // otherwise compare through the tar stream of squashfs-tools-ng).
    if (::geteuid() == 0) {
        const auto out = sample.dir.path() / "unpacked";
        run_tool(
            {"unsquashfs", "-n", "-d", out.string(), sample.image().string(), "/usr/bin/ping"});
        std::string value(64, '\0');
        const auto size = ::getxattr((out / "usr/bin/ping").c_str(), "security.capability",
                                     value.data(), value.size());
        REQUIRE(size >= 0);
        value.resize(static_cast<std::size_t>(size));
        CHECK(value == k_capability);
    }
}

TEST_CASE(
    "squashfs: inodes are numbered like mksquashfs: a directory before its entries, root last") {
    Sample sample;
    const auto stats =
        fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), sample.image());
    const auto number = [&](const std::string& path) {
        return std::stoul(inode_fields(sample.image(), path).at("Inode number"));
    };
    CHECK(number("/abs") == 1);
    CHECK(number("/bin") == 2);
    CHECK(number("/bin/su") == 3);
    CHECK(number("/dev") == 4);
    CHECK(number("/usr") < number("/usr/bin"));
    CHECK(number("/usr/bin") < number("/usr/bin/pair-a"));
    CHECK(number("/usr/bin/pair-b") == number("/usr/bin/pair-a"));
    CHECK(number("/usr/bin/pair-a") + 1 == number("/usr/bin/ping"));
    CHECK(number("/var/zeros") == stats.inodes - 1);
    const auto root = inode_fields(sample.image(), "/");
    CHECK(root.at("Inode number") == std::to_string(stats.inodes));
    CHECK(root.at("Parent inode") == std::to_string(stats.inodes + 1)); // as mksquashfs writes it
    CHECK(inode_fields(sample.image(), "/usr/bin").at("Parent inode") ==
          std::to_string(number("/usr")));

    const auto superblock = run_tool({"unsquashfs", "-s", sample.image().string()});
    CHECK(superblock.find("Number of inodes 29\n") != std::string::npos);
    CHECK(superblock.find("Filesystem is exportable via NFS") != std::string::npos);
    CHECK(superblock.find("Duplicates are removed") != std::string::npos);
}

TEST_CASE("squashfs: mksquashfs makes the same file system from the same tree") {
    Sample sample;
    // unsquashfs -pf does not carry xattrs (squashfs-tools 4.5), so leave them out here.
    sample.tree.lookup("/etc")->xattrs.clear();
    sample.tree.lookup("/usr/bin/ping")->xattrs.clear();
    // A directory big enough for mksquashfs to give it an extended inode with a lookup index.
    auto many = fs::make_directory(0755, k_time);
    for (int i = 0; i < 300; ++i) {
        many->children[fmt::format("entry-{:03}", i)] =
            spilled_file(sample.spill, fmt::format("{}\n", i), 0644, k_time);
    }
    sample.tree.root().children["many"] = many;
    sample.spill.flush();
    fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), sample.image());
    CHECK(inode_fields(sample.image(), "/many").at("Inode type") == "extended directory");

    // Rebuild the image with mksquashfs from unsquashfs' description of it, then compare the
    // two with sqfsdiff: entries, types (basic or extended), contents, owners, modes, times
    // and inode numbers.
    const auto pseudo = sample.dir.path() / "sample.pf";
    const auto rebuilt = sample.image("mksquashfs.squashfs");
    run_tool({"unsquashfs", "-n", "-pf", pseudo.string(), sample.image().string()});
    run_tool({"mksquashfs", "-", rebuilt.string(), "-pf", pseudo.string(), "-noappend", "-quiet",
              "-no-progress", "-comp", "zstd", "-b", "1M", "-mkfs-time", "1700000100"});
    const auto difference = util::run_process({"sqfsdiff", "--timestamps", "--inode-num", "--old",
                                               sample.image().string(), "--new", rebuilt.string()});
    INFO(difference.standard_output << difference.standard_error);
    CHECK(difference.exit_code == 0);
}

TEST_CASE("squashfs: output is byte-identical across runs and thread counts") {
    Sample sample;
    std::vector<std::string> images;
    for (const unsigned threads : {1U, 4U, 0U, 4U}) {
        auto options = fixed_time_options();
        options.threads = threads;
        const auto image = sample.image("t" + std::to_string(images.size()) + ".squashfs");
        const auto stats = fs::write_squashfs(sample.tree, sample.spill, options, image);
        CHECK(stats.threads >= 1);
        images.push_back(util::read_file(image));
    }
    for (const auto& image : images) {
        CHECK(image == images.front());
    }
    CHECK(run_tool({"unsquashfs", "-mkfs-time", sample.image("t0.squashfs").string()}) ==
          "1700000100\n");
}

TEST_CASE("squashfs: duplicate and all-zero blocks are not stored twice") {
    Sample sample;
    // A second copy of the big file under another name (a different inode, not a hard link).
    auto copy = spilled_file(sample.spill, sample.big, 0644, k_time);
    sample.tree.root().children["big-copy"] = copy;
    const auto stats =
        fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), sample.image());
    CHECK(stats.sparse_blocks >= 2);    // the two full zero blocks of /var/zeros
    CHECK(stats.duplicate_blocks >= 3); // the copy's three full blocks
    CHECK(stats.duplicate_fragments >= 1);
    CHECK(stats.bytes_out < sample.big.size()); // one compressed copy, not two
    CHECK(cat_file(sample.image(), "/big-copy") == sample.big);
    CHECK(inode_fields(sample.image(), "/var/zeros").at("Inode type") == "extended file");
}

TEST_CASE("squashfs: blocks nothing shrinks are stored as they are, a block that shrinks only "
          "whole is compressed") {
    // The writer skips the real compressor for a block zstd level 1 cannot shrink, looking at
    // samples (start, middle, end) first. A block whose samples are all incompressible but whose
    // whole shrinks must still be compressed, by every compressor the trial runs before.
    constexpr std::uint32_t k_block = 128 * 1024;
    const std::string random = incompressible_data(3 * k_block);
    std::string mixed = non_repeating_text(3 * k_block);
    for (std::uint32_t block = 0; block < 3; ++block) {
        for (const std::uint32_t at : {0U, k_block / 2 - 8192, k_block - 16384}) {
            mixed.replace(block * k_block + at, 16384, incompressible_data(16384 + block + at), 0,
                          16384);
        }
    }
    for (const auto compressor :
         {fs::SquashfsCompressor::zstd, fs::SquashfsCompressor::gzip, fs::SquashfsCompressor::xz}) {
        CAPTURE(fs::squashfs_compressor_name(compressor));
        util::TempDir dir;
        fs::SpillFile spill(dir.path());
        fs::Tree tree;
        tree.root().children["random"] = spilled_file(spill, random, 0644, k_time);
        tree.root().children["mixed"] = spilled_file(spill, mixed, 0644, k_time);
        auto options = fixed_time_options();
        options.compressor = compressor;
        options.block_size = k_block;
        const auto image = dir.path() / "image.squashfs";
        const auto stats = fs::write_squashfs(tree, spill, options, image);
        CHECK(cat_file(image, "/random") == random);
        CHECK(cat_file(image, "/mixed") == mixed);
        // The random blocks as they are, the mixed ones compressed (to well under half).
        CHECK(stats.data_bytes_out >= random.size());
        CHECK(stats.data_bytes_out < random.size() + mixed.size() / 2);
    }
}

TEST_CASE("squashfs: progress counts each file's bytes once, up to the total") {
    Sample sample;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> reports;
    const auto stats = fs::write_squashfs(
        sample.tree, sample.spill, fixed_time_options(), sample.image(),
        [&](std::uint64_t done, std::uint64_t total) { reports.emplace_back(done, total); });
    const auto total = sample.tree.stats().data_bytes;
    REQUIRE_FALSE(reports.empty());
    CHECK(reports.front() == std::pair<std::uint64_t, std::uint64_t>{0, total});
    CHECK(reports.back() == std::pair<std::uint64_t, std::uint64_t>{total, total});
    CHECK(std::is_sorted(reports.begin(), reports.end()));
    CHECK(stats.bytes_in == total);
}

TEST_CASE("squashfs: a tree with nothing but the root is a valid image") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    fs::Tree tree;
    tree.root().mtime = k_time;
    const auto stats = fs::write_squashfs(tree, spill, fixed_time_options(), dir.path() / "x.img");
    CHECK(stats.inodes == 1);
    CHECK(pseudo_listing(dir.path() / "x.img") ==
          std::vector<std::string>{"/ D 1700000000 755 0 0"});
}

TEST_CASE("squashfs: bad options are bad input, found before anything is written") {
    Sample sample;
    struct Case {
        fs::SquashfsOptions options;
        std::string message;
    };
    std::vector<Case> cases;
    auto options = [](fs::SquashfsCompressor compressor, int level) {
        fs::SquashfsOptions result;
        result.compressor = compressor;
        result.level = level;
        return result;
    };
    cases.push_back({options(fs::SquashfsCompressor::gzip, 10),
                     "squashfs: level 10 does not fit the gzip compressor: gzip takes 1 to 9 (0 "
                     "picks its default)"});
    cases.push_back({options(fs::SquashfsCompressor::zstd, 23),
                     "squashfs: level 23 does not fit the zstd compressor: zstd takes 1 to 22 (0 "
                     "picks its default)"});
    cases.push_back({options(fs::SquashfsCompressor::xz, -1),
                     "squashfs: level -1 does not fit the xz compressor: xz takes 1 to 9 (0 "
                     "picks its default)"});
    cases.push_back(
        {options(fs::SquashfsCompressor::lz4, 3),
         "squashfs: level 3 does not fit the lz4 compressor: lz4 has no levels; use 0"});
    auto block = fs::SquashfsOptions{};
    block.block_size = 3000;
    cases.push_back({block, "squashfs: block size 3000 is not a power of two from 4 KiB to 1 MiB"});
    block.block_size = 2 * k_mib;
    cases.push_back(
        {block, "squashfs: block size 2097152 is not a power of two from 4 KiB to 1 MiB"});
    auto time = fs::SquashfsOptions{};
    time.modification_time = -1;
    cases.push_back(
        {time, "squashfs: modification time -1 is outside what squashfs stores (0 to 4294967295)"});

    const auto out = sample.dir.path() / "out";
    stdfs::create_directory(out);
    for (const auto& bad : cases) {
        CAPTURE(bad.message);
        try {
            fs::write_squashfs(sample.tree, sample.spill, bad.options, out / "rootfs.squashfs");
            FAIL("expected an error");
        } catch (const Error& error) {
            CHECK(error.code() == ExitCode::bad_input);
            CHECK(std::string(error.what()) == bad.message);
        }
        CHECK_THROWS_AS(fs::validate_squashfs_options(bad.options), Error);
    }
    CHECK(directory_entries(out).empty());

    // Levels within range, and the boundaries, are fine.
    CHECK_NOTHROW(fs::validate_squashfs_options(options(fs::SquashfsCompressor::gzip, 1)));
    CHECK_NOTHROW(fs::validate_squashfs_options(options(fs::SquashfsCompressor::zstd, 22)));
    CHECK_NOTHROW(fs::validate_squashfs_options(options(fs::SquashfsCompressor::xz, 9)));
    CHECK_NOTHROW(fs::validate_squashfs_options(options(fs::SquashfsCompressor::lz4, 0)));
}

TEST_CASE("squashfs: an output directory that cannot be written is a build error") {
    Sample sample;
    const auto check_fails = [&](const stdfs::path& output) {
        CAPTURE(output);
        try {
            fs::write_squashfs(sample.tree, sample.spill, {}, output);
            FAIL("expected an error");
        } catch (const Error& error) {
            CHECK(error.code() == ExitCode::build_failed);
            CHECK(std::string(error.what())
                      .starts_with("squashfs: cannot create " + output.string() + ": "));
        }
        CHECK_FALSE(stdfs::exists(output));
    };
    check_fails(sample.dir.path() / "missing" / "rootfs.squashfs");
    util::write_file_atomically(sample.dir.path() / "a-file", "x");
    check_fails(sample.dir.path() / "a-file" / "rootfs.squashfs");
    if (::geteuid() != 0) { // root writes into read-only directories anyway
        const auto read_only = sample.dir.path() / "read-only";
        stdfs::create_directory(read_only);
        stdfs::permissions(read_only, stdfs::perms::owner_read | stdfs::perms::owner_exec);
        check_fails(read_only / "rootfs.squashfs");
        CHECK(directory_entries(read_only).empty());
        stdfs::permissions(read_only, stdfs::perms::owner_all);
    }
}

namespace {

// Limits the size of files this process may write (RLIMIT_FSIZE) and ignores SIGXFSZ, so that
// writes past the limit fail with EFBIG: a disk filling up, without a disk.
class FileSizeLimit {
  public:
    explicit FileSizeLimit(rlim_t bytes) {
        ::getrlimit(RLIMIT_FSIZE, &saved_);
        saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
        rlimit limit = saved_;
        limit.rlim_cur = bytes;
        ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    ~FileSizeLimit() {
        ::setrlimit(RLIMIT_FSIZE, &saved_);
        std::signal(SIGXFSZ, saved_handler_);
    }
    FileSizeLimit(const FileSizeLimit&) = delete;
    FileSizeLimit& operator=(const FileSizeLimit&) = delete;

  private:
    rlimit saved_{};
    void (*saved_handler_)(int) = nullptr;
};

} // namespace

TEST_CASE("squashfs: a failing write names the step and the output, and leaves nothing") {
    Sample sample;
    const auto out = sample.dir.path() / "out";
    stdfs::create_directory(out);
    const auto output = out / "rootfs.squashfs";
    const auto failure = [&](rlim_t limit) {
        std::string message;
        const FileSizeLimit size_limit(limit);
        try {
            fs::write_squashfs(sample.tree, sample.spill, fixed_time_options(), output);
        } catch (const Error& error) {
            CHECK(error.code() == ExitCode::build_failed);
            message = error.what();
        }
        return message;
    };
    const std::string reason = " failed: cannot write " + output.string() + ": File too large";
    // Small files only go to fragment blocks, so the first full data block written is one of
    // /home/user/big: it does not fit in 4 KiB.
    CHECK(failure(4096) == "squashfs: writing the data of /home/user/big" + reason);
    // With 64 KiB the compressed blocks of /home/user/big fit; the fragment block that then
    // holds the tail ends of the small files and /var/random does not.
    CHECK(failure(64 * 1024) ==
          "squashfs: writing a fragment block (tail ends of small files)" + reason);
    CHECK(directory_entries(out).empty());
}

TEST_CASE("squashfs: a source file that cannot be read stops the build and leaves nothing") {
    Sample sample;
    const auto vanished = sample.dir.path() / "vanished.txt";
    auto inode = make_inode(fs::FileType::regular, 0644, k_time);
    inode->data = {fs::DataRef::Kind::host_file, vanished, 0, 10};
    sample.tree.root().children["vanished"] = inode;
    const auto out = sample.dir.path() / "out";
    stdfs::create_directory(out);
    try {
        fs::write_squashfs(sample.tree, sample.spill, {}, out / "rootfs.squashfs");
        FAIL("expected an error");
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::build_failed);
        CHECK(std::string(error.what()).find(vanished.string()) != std::string::npos);
    }
    CHECK(directory_entries(out).empty());
}

TEST_CASE("squashfs: names and device numbers squashfs cannot store are build errors") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    {
        fs::Tree tree;
        tree.root().children[std::string(257, 'n')] = make_inode(fs::FileType::fifo, 0644, 0);
        CHECK_THROWS_WITH_AS(
            fs::write_squashfs(tree, spill, {}, dir.path() / "a.img"),
            doctest::Contains("is 257 bytes long; squashfs names hold at most 256"), Error);
    }
    {
        fs::Tree tree;
        auto device = make_inode(fs::FileType::char_device, 0600, 0);
        device->rdev = {4096, 1};
        tree.root().children["dev"] = device;
        CHECK_THROWS_WITH_AS(fs::write_squashfs(tree, spill, {}, dir.path() / "b.img"),
                             "squashfs: /dev has device number 4096:1, which squashfs cannot store "
                             "(the major is at most 4095, the minor at most 1048575)",
                             Error);
    }
    CHECK(directory_entries(dir.path()).empty());
}

TEST_CASE("squashfs: compressor names parse and print") {
    CHECK(fs::parse_squashfs_compressor("zstd") == fs::SquashfsCompressor::zstd);
    CHECK(fs::parse_squashfs_compressor("gzip") == fs::SquashfsCompressor::gzip);
    CHECK(fs::parse_squashfs_compressor("xz") == fs::SquashfsCompressor::xz);
    CHECK(fs::parse_squashfs_compressor("lz4") == fs::SquashfsCompressor::lz4);
    CHECK_FALSE(fs::parse_squashfs_compressor("lzo").has_value());
    CHECK(fs::squashfs_compressor_name(fs::SquashfsCompressor::xz) == "xz");
}

TEST_CASE("squashfs: with SOURCE_DATE_EPOCH no inode time is later than it") {
    Sample sample;
    // A checkout's files are newer than SOURCE_DATE_EPOCH: their times are clamped to it, older
    // ones are kept (the reproducible-builds convention).
    auto options = fixed_time_options();
    options.modification_time = k_time + 10;
    fs::write_squashfs(sample.tree, sample.spill, options, sample.image("clamped.squashfs"));
    const auto listing = pseudo_listing(sample.image("clamped.squashfs"));
    REQUIRE(listing.size() == k_sample_listing.size());
    // "PATH TYPE TIME ...": hard links ("PATH L TARGET") carry no time of their own.
    const auto time_of = [](const std::string& line) -> std::optional<std::int64_t> {
        std::istringstream words(line);
        std::string path;
        std::string type;
        std::int64_t time = 0;
        if (!(words >> path >> type) || type == "L" || !(words >> time)) {
            return std::nullopt;
        }
        return time;
    };
    std::size_t clamped = 0;
    for (std::size_t i = 0; i < listing.size(); ++i) {
        const auto expected = time_of(k_sample_listing[i]);
        if (!expected) {
            continue;
        }
        CHECK_MESSAGE(time_of(listing[i]) == std::min<std::int64_t>(*expected, k_time + 10),
                      listing[i]);
        if (*expected > k_time + 10) {
            ++clamped;
        }
    }
    CHECK(clamped > 10); // the check above saw clamped times, not only old ones
}
