// Unit tests for fs/cpio, judged by GNU cpio (listing and extraction).
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>

#include <sys/stat.h>

#include "base/error.h"
#include "fs/cpio.h"
#include "fs/tree.h"
#include "support/errors.h"
#include "support/partition_tools.h"
#include "util/fs.h"
#include "util/process.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

constexpr std::int64_t k_time = 1700000000;

std::shared_ptr<fs::Inode> node(fs::FileType type, std::uint32_t mode, std::uint32_t uid = 0,
                                std::uint32_t gid = 0) {
    auto inode = std::make_shared<fs::Inode>();
    inode->type = type;
    inode->mode = mode;
    inode->mtime = k_time;
    inode->uid = uid;
    inode->gid = gid;
    return inode;
}

std::shared_ptr<fs::Inode> file(fs::SpillFile& spill, const std::string& content,
                                std::uint32_t mode = 0644, std::uint32_t uid = 0) {
    auto inode = node(fs::FileType::regular, mode, uid, uid);
    if (!content.empty()) {
        inode->data.kind = fs::DataRef::Kind::spill;
        inode->data.offset = spill.append(content);
        inode->data.size = content.size();
    }
    return inode;
}

struct Sample {
    util::TempDir dir;
    fs::SpillFile spill{dir.path()};
    fs::Tree tree;

    Sample() {
        auto& root = tree.root();
        root.mode = 0755;
        root.mtime = k_time;
        auto etc = fs::make_directory(0755, k_time);
        root.children["etc"] = etc;
        auto hostname = file(spill, "edge-01\n", 0640, 1000);
        etc->children["hostname"] = hostname;
        etc->children["hostname.link"] = hostname; // a hard link
        auto capped = file(spill, "ping\n", 04755);
        capped->xattrs["security.capability"] = std::string("\x01\x00\x00\x02", 4);
        etc->children["ping"] = capped;
        auto init = node(fs::FileType::symlink, 0777);
        init->symlink_target = "/usr/bin/immucore";
        root.children["init"] = init;
        auto dev = fs::make_directory(0755, k_time);
        root.children["dev"] = dev;
        auto console = node(fs::FileType::char_device, 0600);
        console->rdev = {5, 1};
        dev->children["console"] = console;
        auto boot = fs::make_directory(0755, k_time);
        root.children["boot"] = boot;
        boot->children["vmlinuz"] = file(spill, "kernel");
        spill.flush();
    }

    stdfs::path write(const fs::CpioOptions& options, fs::CpioStats* stats = nullptr) {
        const stdfs::path archive = dir.path() / "initrd.cpio";
        util::AtomicFile out(archive);
        const auto result = fs::write_cpio(tree, spill, options, [&](const char* data, std::size_t size) {
            out.write(data, size);
        });
        out.commit();
        if (stats != nullptr) {
            *stats = result;
        }
        return archive;
    }
};

std::string list(const stdfs::path& archive) {
    util::ProcessOptions options;
    options.standard_input = util::read_file(archive);
    return testing::tool_output({"cpio", "-itv", "--numeric-uid-gid", "--quiet"}, options);
}

} // namespace

TEST_CASE("cpio: GNU cpio lists every member with its type, mode, owner, links and target") {
    if (!testing::have_programs({"cpio"})) {
        return;
    }
    Sample sample;
    fs::CpioOptions options;
    options.emptied_directories = {"/boot"};
    fs::CpioStats stats;
    const auto archive = sample.write(options, &stats);
    const std::string listing = list(archive);
    INFO(listing);
    CHECK(listing.find("drwxr-xr-x   5 0        0               0 Nov 14  2023 .\n") !=
          std::string::npos);
    CHECK(listing.find("-rw-r-----   2 1000     1000            8 Nov 14  2023 etc/hostname") !=
          std::string::npos);
    CHECK(listing.find("etc/hostname.link") != std::string::npos);
    CHECK(listing.find("-rwsr-xr-x   1 0        0               5 Nov 14  2023 etc/ping") !=
          std::string::npos);
    CHECK(listing.find("crw-------   1 0        0          5,   1 Nov 14  2023 dev/console") !=
          std::string::npos);
    CHECK(listing.find("init -> /usr/bin/immucore") != std::string::npos);
    CHECK(listing.find("drwxr-xr-x   2 0        0               0 Nov 14  2023 boot") !=
          std::string::npos);
    CHECK(listing.find("vmlinuz") == std::string::npos);
    CHECK(stats.skipped_xattr_count == 1);
    REQUIRE(stats.skipped_xattrs.size() == 1);
    CHECK(stats.skipped_xattrs[0] == "/etc/ping: security.capability");
    CHECK(stats.data_bytes == 8 + 5);
    CHECK(stats.bytes_out == stdfs::file_size(archive));
    CHECK(stats.bytes_out % 4 == 0);
}

TEST_CASE("cpio: GNU cpio extracts file data once for hard links, and the same tree gives the same bytes") {
    if (!testing::have_programs({"cpio"})) {
        return;
    }
    Sample sample;
    const auto archive = sample.write({});
    const std::string first = util::read_file(archive);
    CHECK(util::read_file(sample.write({})) == first);

    util::TempDir out;
    util::ProcessOptions options;
    options.standard_input = util::read_file(archive);
    options.working_directory = out.path();
    testing::tool_output({"cpio", "-id", "--quiet", "--no-absolute-filenames", "etc/*", "boot/*"},
                         options);
    CHECK(util::read_file(out.path() / "etc/hostname") == "edge-01\n");
    CHECK(util::read_file(out.path() / "etc/hostname.link") == "edge-01\n");
    CHECK(stdfs::equivalent(out.path() / "etc/hostname", out.path() / "etc/hostname.link"));
    CHECK(util::read_file(out.path() / "etc/ping") == "ping\n");
    CHECK(util::read_file(out.path() / "boot/vmlinuz") == "kernel");
}

TEST_CASE("cpio: a file of 4 GiB or more is bad input naming it") {
    Sample sample;
    auto huge = node(fs::FileType::regular, 0644);
    huge->data = {fs::DataRef::Kind::spill, {}, 0, 0x100000000ULL};
    sample.tree.root().children["huge.img"] = huge;
    const std::string message = testing::error_of([&] { sample.write({}); }, ExitCode::bad_input);
    CHECK(message.find("/huge.img") != std::string::npos);
    CHECK(message.find("4 GiB") != std::string::npos);
}
