// Unit tests for content/parts: the parts index of split bundles.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "content/parts.h"
#include "base/error.h"
#include "support/errors.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::error_of;

TEST_CASE("parts index: what to_json writes, read() gives back") {
    util::TempDir dir;
    const content::PartsIndex written{"apps.tar.zst", 5, std::string(64, 'a'), 4,
                                      {{"apps.tar.zst.part-000", 4, std::string(64, 'b')},
                                       {"apps.tar.zst.part-001", 1, std::string(64, 'c')}}};
    const auto file = content::parts_index_path(dir.path() / "apps.tar.zst");
    CHECK(file.filename() == "apps.tar.zst.parts.json");
    util::write_file_atomically(file, written.text());
    const auto read = content::PartsIndex::read(file);
    CHECK(read.to_json() == written.to_json());
    CHECK(written.to_json()["reassemble"] == "cat apps.tar.zst.part-* > apps.tar.zst");
    CHECK(content::is_parts_index(file));
    CHECK(content::archive_of_parts_index(file) == dir.path() / "apps.tar.zst");
    // A reference to the missing archive means its index; to an index, itself.
    CHECK(content::split_bundle_index(dir.path() / "apps.tar.zst") == file);
    CHECK(content::split_bundle_index(file) == file);
    CHECK_FALSE(content::split_bundle_index(dir.path() / "other.tar.zst").has_value());
}

TEST_CASE("parts index: malformed files and part names outside the directory are bad input") {
    util::TempDir dir;
    const auto file = dir.path() / "x.tar.zst.parts.json";
    util::write_file_atomically(file, "{\"name\": \"x.tar.zst\"}");
    CHECK(error_of([&] { content::PartsIndex::read(file); }, ExitCode::bad_input)
              .find("is not a parts index") != std::string::npos);
    util::write_file_atomically(
        file, R"({"name":"x.tar.zst","size":1,"sha256":"a","parts":[{"name":"../etc/passwd","size":1,"sha256":"a"}]})");
    CHECK(error_of([&] { content::PartsIndex::read(file); }, ExitCode::bad_input)
              .find("'../etc/passwd' is not a file name") != std::string::npos);
    CHECK(error_of([&] { content::PartsIndex::read(dir.path() / "missing.parts.json"); },
                   ExitCode::bad_input)
              .find("cannot read the parts index") != std::string::npos);
}

TEST_CASE("CanvOS part names follow GNU split --numeric-suffixes, in lexical order") {
    using content::PartNaming;
    CHECK(content::part_name("b.zst", 0, PartNaming::canvos) == "b.zst_part00");
    CHECK(content::part_name("b.zst", 1, PartNaming::canvos) == "b.zst_part01");
    CHECK(content::part_name("b.zst", 89, PartNaming::canvos) == "b.zst_part89");
    CHECK(content::part_name("b.zst", 90, PartNaming::canvos) == "b.zst_part9000");
    CHECK(content::part_name("b.zst", 989, PartNaming::canvos) == "b.zst_part9899");
    CHECK(content::part_name("b.zst", 990, PartNaming::canvos) == "b.zst_part990000");
    CHECK(content::part_name("b.zst", 7, PartNaming::edgeforge) == "b.zst.part-007");
    std::string previous;
    for (std::uint64_t number = 0; number < 2000; ++number) {
        const std::string name = content::part_name("b.zst", number, PartNaming::canvos);
        CHECK(previous < name); // `cat NAME_part*` reassembles in order
        previous = name;
    }
}

TEST_CASE("split_into_parts with CanvOS names: the parts and an index that reads back") {
    util::TempDir dir;
    const auto archive = dir.path() / "big.zst";
    util::write_file_atomically(archive, std::string(10, 'x') + std::string(5, 'y'));
    std::vector<std::string> seen;
    const auto index = content::split_into_parts(
        archive, 4, {},
        [&](const content::BundlePart& part, std::uint64_t offset) {
            seen.push_back(part.name + "@" + std::to_string(offset));
        },
        content::PartNaming::canvos);
    CHECK(seen == std::vector<std::string>{"big.zst_part00@0", "big.zst_part01@4",
                                           "big.zst_part02@8", "big.zst_part03@12"});
    CHECK(index.to_json()["reassemble"] == "cat big.zst_part* > big.zst");
    const auto file = content::parts_index_path(archive);
    util::write_file_atomically(file, index.text());
    CHECK(content::PartsIndex::read(file).to_json() == index.to_json());
}
