// The sample tree and the tools the squashfs unit tests judge images with (shared by
// squashfs_test.cpp and squashfs_cache_test.cpp).
#pragma once

#include <doctest/doctest.h>

#include "base/error.h"
#include "fs/squashfs.h"
#include "fs/squashfs_block_cache.h"
#include "fs/tree.h"
#include "util/fs.h"
#include "util/process.h"
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fmt/format.h>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <vector>

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

constexpr std::int64_t k_time = 1700000000;
constexpr std::uint32_t k_mib = 1U << 20;

// Text in which no line repeats (so deduplication cannot shorten it, and a block written in the
// wrong place shows), cheap for every compressor to squeeze.
inline std::string non_repeating_text(std::size_t size) {
    std::string data;
    data.reserve(size + 32);
    for (std::size_t line = 0; data.size() < size; ++line) {
        fmt::format_to(std::back_inserter(data), "line {:08} of a file that never repeats\n", line);
    }
    data.resize(size);
    return data;
}

// Bytes no compressor can shrink (a xorshift sequence): blocks that must be stored as they are.
inline std::string incompressible_data(std::size_t size) {
    std::string data;
    data.reserve(size + 4);
    std::uint32_t state = 2463534242U;
    while (data.size() < size) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        for (int shift = 0; shift < 32; shift += 8) {
            data.push_back(static_cast<char>((state >> shift) & 0xFFU));
        }
    }
    data.resize(size);
    return data;
}

inline std::shared_ptr<fs::Inode> make_inode(fs::FileType type, std::uint32_t mode,
                                             std::int64_t mtime, std::uint32_t uid = 0,
                                             std::uint32_t gid = 0) {
    auto inode = std::make_shared<fs::Inode>();
    inode->type = type;
    inode->mode = mode;
    inode->mtime = mtime;
    inode->uid = uid;
    inode->gid = gid;
    return inode;
}

inline std::shared_ptr<fs::Inode> spilled_file(fs::SpillFile& spill, const std::string& content,
                                               std::uint32_t mode, std::int64_t mtime,
                                               std::uint32_t uid = 0, std::uint32_t gid = 0) {
    auto inode = make_inode(fs::FileType::regular, mode, mtime, uid, gid);
    if (!content.empty()) {
        inode->data.kind = fs::DataRef::Kind::spill;
        inode->data.offset = spill.append(content);
        inode->data.size = content.size();
    }
    return inode;
}

inline std::shared_ptr<fs::Inode> symlink_to(std::string target, std::int64_t mtime) {
    auto inode = make_inode(fs::FileType::symlink, 0777, mtime);
    inode->symlink_target = std::move(target);
    return inode;
}

// A capability set granting cap_net_raw (bit 13), effective: what setcap cap_net_raw+ep writes.
const std::string k_capability("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00"
                               "\x00\x00\x00\x00\x00\x00\x00\x00",
                               20);

// The sample tree every test writes: each file type, odd modes and owners, a hard link pair,
// xattrs, a file several blocks long, an all-zero file, incompressible data and data from each
// kind of DataRef.
struct Sample {
    util::TempDir dir;
    fs::SpillFile spill{dir.path()};
    fs::Tree tree;
    std::string big = non_repeating_text(3 * k_mib + 4321);
    std::string random = incompressible_data(256 * 1024 + 7);
    std::string host_content = "written on the host\n";
    std::uint64_t zeros_size = 2 * k_mib + 17;

    Sample() {
        const auto host_file = dir.path() / "host.txt";
        util::write_file_atomically(host_file, host_content);

        auto& root = tree.root();
        root.mtime = k_time;
        auto dir_at = [&](fs::Inode& parent, const std::string& name, std::uint32_t mode,
                          std::int64_t mtime, std::uint32_t uid = 0,
                          std::uint32_t gid = 0) -> fs::Inode& {
            auto inode = fs::make_directory(mode, mtime, uid, gid);
            parent.children[name] = inode;
            return *inode;
        };

        root.children["abs"] = symlink_to("/etc/hostname", k_time + 1);

        auto& bin = dir_at(root, "bin", 0755, k_time + 2);
        bin.children["su"] = spilled_file(spill, "su-binary\n", 04755, k_time + 3);

        auto& dev = dir_at(root, "dev", 0755, k_time + 4);
        auto null = make_inode(fs::FileType::char_device, 0666, k_time + 5);
        null->rdev = {1, 3};
        dev.children["null"] = null;
        auto sda = make_inode(fs::FileType::block_device, 0660, k_time + 6, 0, 6);
        sda->rdev = {8, 0};
        dev.children["sda"] = sda;

        auto& etc = dir_at(root, "etc", 0755, k_time + 7);
        etc.xattrs["user.dir"] = "yes";
        auto blob = make_inode(fs::FileType::regular, 0644, k_time + 8);
        blob->data = {fs::DataRef::Kind::blob, host_file, 8, 7}; // "on the "
        etc.children["blob"] = blob;
        etc.children["empty"] = spilled_file(spill, "", 0644, k_time + 9);
        auto host = make_inode(fs::FileType::regular, 0600, k_time + 10);
        host->data = {fs::DataRef::Kind::host_file, host_file, 0, host_content.size()};
        etc.children["host-file"] = host;
        etc.children["hostname"] = spilled_file(spill, "edge\n", 0644, k_time + 11, 1000, 100);

        auto& home = dir_at(root, "home", 0755, k_time + 12);
        auto& user = dir_at(home, "user", 0750, k_time + 13, 1000, 100);
        user.children["big"] = spilled_file(spill, big, 0644, k_time + 14, 1000, 100);

        auto& lib = dir_at(root, "lib", 0755, k_time + 15);
        lib.children["ping-link"] = symlink_to("../usr/bin/ping", k_time + 16);

        auto& run = dir_at(root, "run", 0755, k_time + 17);
        run.children["initctl"] = make_inode(fs::FileType::fifo, 0600, k_time + 18);
        run.children["sock"] = make_inode(fs::FileType::socket, 0755, k_time + 19);

        dir_at(root, "tmp", 01777, k_time + 20);

        auto& usr = dir_at(root, "usr", 0755, k_time + 21);
        auto& usr_bin = dir_at(usr, "bin", 0755, k_time + 22);
        auto pair = spilled_file(spill, "one file, two names\n", 0755, k_time + 23);
        usr_bin.children["pair-a"] = pair;
        usr_bin.children["pair-b"] = pair;
        auto ping = spilled_file(spill, "ping-binary\n", 0755, k_time + 24);
        ping->xattrs["security.capability"] = k_capability;
        ping->xattrs["user.test"] = "hello";
        ping->xattrs["system.posix_acl_access"] = std::string("\x02\x00\x00\x00", 4);
        usr_bin.children["ping"] = ping;
        usr_bin.children["sgid"] = spilled_file(spill, "sgid\n", 02755, k_time + 25, 0, 50);

        auto& var = dir_at(root, "var", 0755, k_time + 26);
        var.children["random"] = spilled_file(spill, random, 0644, k_time + 28);
        auto zeros = make_inode(fs::FileType::regular, 0644, k_time + 27);
        zeros->data.kind = fs::DataRef::Kind::spill;
        zeros->data.offset = spill.size();
        zeros->data.size = zeros_size;
        spill.append_zeros(zeros_size);
        var.children["zeros"] = zeros;
        spill.flush();
    }

    stdfs::path image(const std::string& name = "rootfs.squashfs") const {
        return dir.path() / name;
    }
};

// What `unsquashfs -pf` must print for the sample (file data offsets left out): paths, types,
// times, modes, owners, sizes, device numbers, link targets and the hard link.
const std::vector<std::string> k_sample_listing = {
    "/ D 1700000000 755 0 0",
    "abs S 1700000001 777 0 0 /etc/hostname",
    "bin D 1700000002 755 0 0",
    "bin/su R 1700000003 4755 0 0 10",
    "dev D 1700000004 755 0 0",
    "dev/null C 1700000005 666 0 0 1 3",
    "dev/sda B 1700000006 660 0 6 8 0",
    "etc D 1700000007 755 0 0",
    "etc/blob R 1700000008 644 0 0 7",
    "etc/empty R 1700000009 644 0 0 0",
    "etc/host-file R 1700000010 600 0 0 20",
    "etc/hostname R 1700000011 644 1000 100 5",
    "home D 1700000012 755 0 0",
    "home/user D 1700000013 750 1000 100",
    "home/user/big R 1700000014 644 1000 100 3150049",
    "lib D 1700000015 755 0 0",
    "lib/ping-link S 1700000016 777 0 0 ../usr/bin/ping",
    "run D 1700000017 755 0 0",
    "run/initctl I 1700000018 600 0 0 f",
    "run/sock I 1700000019 755 0 0 s",
    "tmp D 1700000020 1777 0 0",
    "usr D 1700000021 755 0 0",
    "usr/bin D 1700000022 755 0 0",
    "usr/bin/pair-a R 1700000023 755 0 0 20",
    "usr/bin/pair-b L usr/bin/pair-a",
    "usr/bin/ping R 1700000024 755 0 0 12",
    "usr/bin/sgid R 1700000025 2755 0 50 5",
    "var D 1700000026 755 0 0",
    "var/random R 1700000028 644 0 0 262151",
    "var/zeros R 1700000027 644 0 0 2097169",
};

inline std::string run_tool(const std::vector<std::string>& argv) {
    REQUIRE_MESSAGE(util::find_program(argv.front()).has_value(),
                    argv.front() << " is needed to judge squashfs images (squashfs-tools, "
                                    "squashfs-tools-ng)");
    const auto result = util::run_process(argv);
    INFO(argv.front() << " " << argv.at(1) << ": " << result.standard_error);
    REQUIRE(result.exit_code == 0);
    return result.standard_output;
}

// `unsquashfs -pf`: one line per entry, without the offsets of file data in the pseudo file.
inline std::vector<std::string> pseudo_listing(const stdfs::path& image) {
    const auto pseudo = image.parent_path() / (image.filename().string() + ".pf");
    run_tool({"unsquashfs", "-n", "-pf", pseudo.string(), image.string()});
    std::istringstream lines(util::read_file(pseudo));
    stdfs::remove(pseudo);
    std::vector<std::string> listing;
    for (std::string line; std::getline(lines, line) && !line.starts_with('#');) {
        std::istringstream words(line);
        std::vector<std::string> fields;
        for (std::string word; words >> word;) {
            fields.push_back(word);
        }
        if (fields.size() > 1 && fields[1] == "R") {
            fields.pop_back(); // the data's offset inside the pseudo file
        }
        std::string joined;
        for (const auto& field : fields) {
            joined += (joined.empty() ? "" : " ") + field;
        }
        listing.push_back(joined);
    }
    return listing;
}

// Runs of spaces as one, so that listings can be matched whatever the column widths.
inline std::string collapse_spaces(const std::string& text) {
    std::string result;
    for (const char c : text) {
        if (c != ' ' || result.empty() || result.back() != ' ') {
            result.push_back(c);
        }
    }
    return result;
}

inline std::string cat_file(const stdfs::path& image, const std::string& path) {
    return run_tool({"unsquashfs", "-cat", image.string(), path});
}

// `rdsquashfs -s PATH`: the inode's fields as "Name: value" pairs.
inline std::map<std::string, std::string> inode_fields(const stdfs::path& image,
                                                       const std::string& path) {
    std::istringstream lines(run_tool({"rdsquashfs", "-s", path, image.string()}));
    std::map<std::string, std::string> fields;
    for (std::string line; std::getline(lines, line);) {
        const auto colon = line.find(": ");
        if (colon != std::string::npos) {
            fields[line.substr(0, colon)] = line.substr(colon + 2);
        }
    }
    return fields;
}

inline std::vector<std::string> directory_entries(const stdfs::path& directory) {
    std::vector<std::string> names;
    for (const auto& entry : stdfs::directory_iterator(directory)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

// The image time (SOURCE_DATE_EPOCH) sits after every time of the sample, so none is clamped.
constexpr std::int64_t k_image_time = k_time + 100;

inline fs::SquashfsOptions fixed_time_options() {
    fs::SquashfsOptions options;
    options.modification_time = k_image_time;
    return options;
}

} // namespace
