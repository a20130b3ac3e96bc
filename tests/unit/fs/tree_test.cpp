// Unit tests for fs/tree: lookups, walk order, counts, mount points, spill file, file data.
#include <doctest/doctest.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "fs/tree.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

std::shared_ptr<fs::Inode> file_inode(fs::SpillFile& spill, const std::string& content) {
    auto inode = std::make_shared<fs::Inode>();
    if (!content.empty()) {
        inode->data.kind = fs::DataRef::Kind::spill;
        inode->data.offset = spill.append(content);
        inode->data.size = content.size();
    }
    return inode;
}

std::shared_ptr<fs::Inode> symlink_inode(std::string target) {
    auto inode = std::make_shared<fs::Inode>();
    inode->type = fs::FileType::symlink;
    inode->mode = 0777;
    inode->symlink_target = std::move(target);
    return inode;
}

// /a/b.txt, /a/c/ (empty), /B, /link -> a/b.txt, /abs -> /a/c, /hard (same inode as /a/b.txt)
fs::Tree sample_tree(fs::SpillFile& spill) {
    fs::Tree tree;
    auto a = fs::make_directory(0755, 1);
    auto b = file_inode(spill, "bee");
    a->children["b.txt"] = b;
    a->children["c"] = fs::make_directory(0700, 2);
    tree.root().children["a"] = a;
    tree.root().children["B"] = file_inode(spill, "");
    tree.root().children["link"] = symlink_inode("a/b.txt");
    tree.root().children["abs"] = symlink_inode("/a/c");
    tree.root().children["hard"] = b;
    return tree;
}

} // namespace

TEST_CASE("lookup finds entries without following symbolic links") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    const auto tree = sample_tree(spill);
    CHECK(tree.lookup("/")->is_directory());
    CHECK(tree.lookup("") == tree.root_ptr());
    CHECK(tree.lookup("a/b.txt")->is_regular());
    CHECK(tree.lookup("/a/b.txt") == tree.lookup("./a//b.txt"));
    CHECK(tree.lookup("link")->is_symlink());
    CHECK(tree.lookup("abs/x") == nullptr);
    CHECK(tree.lookup("a/missing") == nullptr);
    CHECK(tree.lookup("a/b.txt/x") == nullptr);
    CHECK(tree.lookup("a/../a") == nullptr);
}

TEST_CASE("resolve follows symbolic links inside the tree, never out of it") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    auto tree = sample_tree(spill);
    CHECK(tree.resolve("link") == tree.lookup("a/b.txt"));
    CHECK(tree.resolve("abs") == tree.lookup("a/c"));
    CHECK(tree.resolve("/abs/../b.txt") == tree.lookup("a/b.txt"));
    tree.root().children["up"] = symlink_inode("../../../a");
    CHECK(tree.resolve("up/c") == tree.lookup("a/c"));
    tree.root().children["loop"] = symlink_inode("loop");
    CHECK(tree.resolve("loop") == nullptr);
    CHECK(tree.resolve("link/x") == nullptr);
}

TEST_CASE("walk visits names in bytewise order, parents first or children first") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    const auto tree = sample_tree(spill);
    std::vector<std::string> paths;
    tree.walk([&](const fs::WalkEntry& entry) { paths.emplace_back(entry.path); });
    CHECK(paths ==
          std::vector<std::string>{"/", "/B", "/a", "/a/b.txt", "/a/c", "/abs", "/hard", "/link"});
    paths.clear();
    std::vector<int> depths;
    tree.walk(
        [&](const fs::WalkEntry& entry) {
            paths.emplace_back(entry.path);
            depths.push_back(entry.depth);
        },
        fs::WalkOrder::children_first);
    CHECK(paths ==
          std::vector<std::string>{"/B", "/a/b.txt", "/a/c", "/a", "/abs", "/hard", "/link", "/"});
    CHECK(depths == std::vector<int>{1, 2, 2, 1, 1, 1, 1, 0});
}

TEST_CASE("stats count hard links once and link_counts count their names") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    const auto tree = sample_tree(spill);
    const auto stats = tree.stats();
    CHECK(stats.entries == 8);
    CHECK(stats.inodes == 7);
    CHECK(stats.directories == 3);
    CHECK(stats.regular_files == 2);
    CHECK(stats.symlinks == 2);
    CHECK(stats.special_files == 0);
    CHECK(stats.data_bytes == 3);
    const auto links = tree.link_counts();
    CHECK(links.at(tree.lookup("a/b.txt").get()) == 2);
    CHECK(links.at(tree.lookup("B").get()) == 1);
    CHECK(links.at(&tree.root()) == 3);
    CHECK(links.at(tree.lookup("a").get()) == 3);
    CHECK(links.at(tree.lookup("a/c").get()) == 2);
}

TEST_CASE("ensure_directories adds missing mount points and leaves the image's entries alone") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    auto tree = sample_tree(spill);
    tree.root().children["run"] = symlink_inode("/var/run");
    const std::vector<std::string> mounts{"/proc", "/sys", "/dev", "/run", "/tmp", "/a/c", "x/y"};
    tree.ensure_directories(mounts, 42);
    for (const auto* path : {"proc", "sys", "dev", "tmp", "x", "x/y"}) {
        const auto inode = tree.lookup(path);
        REQUIRE(inode);
        CHECK(inode->is_directory());
        CHECK(inode->mode == 0755);
        CHECK(inode->uid == 0);
        CHECK(inode->gid == 0);
        CHECK(inode->mtime == 42);
    }
    CHECK(tree.lookup("run")->is_symlink());
    CHECK(tree.lookup("a/c")->mode == 0700);
    CHECK(tree.lookup("a/c")->mtime == 2);
}

TEST_CASE("the spill file reads back what was appended, buffered or not, and leaves no name") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    CHECK(spill.append("hello") == 0);
    const std::string big(3 << 20, 'x');
    CHECK(spill.append(big) == 5);
    spill.append_zeros(7);
    CHECK(spill.append("tail") == 5 + big.size() + 7);
    CHECK(spill.size() == 5 + big.size() + 11);

    std::string buffer(9, '?');
    spill.read(0, buffer.data(), 5);
    CHECK(buffer.substr(0, 5) == "hello");
    spill.read(5 + big.size() - 2, buffer.data(), 9); // file, zeros and buffered bytes at once
    CHECK(buffer == std::string("xx") + std::string(7, '\0'));
    spill.read(spill.size() - 4, buffer.data(), 4);
    CHECK(buffer.substr(0, 4) == "tail");
    CHECK_THROWS_AS(spill.read(spill.size() - 2, buffer.data(), 3), std::out_of_range);
    spill.flush();
    spill.read(spill.size() - 4, buffer.data(), 4);
    CHECK(buffer.substr(0, 4) == "tail");
    CHECK(stdfs::is_empty(dir.path()));
}

TEST_CASE("the spill file keeps many appends of every size in order") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    std::vector<std::pair<std::uint64_t, std::string>> pieces;
    std::uint64_t expected_offset = 0;
    for (std::size_t i = 0; i < 3000; ++i) {
        const std::size_t size = (i * 7919) % (i % 50 == 0 ? 3000000 : 5000);
        std::string piece(size, static_cast<char>('a' + i % 26));
        if (!piece.empty()) {
            piece.front() = static_cast<char>(i % 251);
        }
        CHECK(spill.append(piece) == expected_offset);
        expected_offset += size;
        pieces.emplace_back(expected_offset - size, std::move(piece));
    }
    CHECK(spill.size() == expected_offset);
    for (int pass = 0; pass < 2; ++pass) {
        for (const auto& [offset, piece] : pieces) {
            std::string back(piece.size(), '?');
            spill.read(offset, back.data(), back.size());
            REQUIRE(back == piece);
        }
        spill.flush();
    }
}

TEST_CASE("read_data streams every kind of data reference") {
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    fs::Inode empty;
    CHECK(fs::read_data(empty, spill).empty());

    const auto spilled = file_inode(spill, std::string(2 << 20, 's') + "end");
    std::size_t chunks = 0;
    fs::read_data(*spilled, spill, [&](const char*, std::size_t size) {
        CHECK(size <= (1U << 20));
        ++chunks;
    });
    CHECK(chunks == 3);
    CHECK(fs::read_data(*spilled, spill).ends_with("send"));

    const auto host = dir.path() / "host.txt";
    util::write_file_atomically(host, "from the host");
    fs::Inode host_file;
    host_file.data = {fs::DataRef::Kind::host_file, host, 0, 13};
    CHECK(fs::read_data(host_file, spill) == "from the host");

    fs::Inode blob;
    blob.data = {fs::DataRef::Kind::blob, host, 5, 3};
    CHECK(fs::read_data(blob, spill) == "the");

    util::write_file_atomically(host, "edited");
    try {
        fs::read_data(host_file, spill);
        FAIL("expected an error");
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::build_failed);
        CHECK(std::string(error.what()) ==
              host.string() + " changed while the image was being built (it was 13 bytes, now 6); "
                              "run the build again");
    }
    host_file.data.path = dir.path() / "gone";
    CHECK_THROWS_WITH_AS(
        fs::read_data(host_file, spill),
        ("cannot read " + (dir.path() / "gone").string() + ": No such file or directory").c_str(),
        Error);
}
