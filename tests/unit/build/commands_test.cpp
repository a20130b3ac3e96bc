// Unit tests for build/commands: the CLI's entry points that are not builds (inspect dispatch,
// cache listing and pruning), run on real files.
#include <doctest/doctest.h>

#include <filesystem>

#include "build/commands.h"
#include "support/project.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::Project;
namespace stdfs = std::filesystem;

TEST_CASE("inspect: a path or an existing file is an artifact, anything else an image") {
    util::TempDir dir;
    CHECK(is_artifact_target("build/edge.iso"));
    CHECK(is_artifact_target("edge.qcow2"));
    CHECK(!is_artifact_target("docker://registry.example.com/edge/os:v1"));
    CHECK(!is_artifact_target("oci:images/base:latest"));
    // A file whose name has a ':' is still the file.
    const auto odd = dir.path() / "edge:v1.iso";
    util::write_file_atomically(odd, "x");
    CHECK(is_artifact_target(odd.string()));
}

TEST_CASE("cache ls and prune: totals, JSON, and an --older-than that is no duration") {
    Project project;
    project.write("edgeforge.yaml", "name: t\ncache_dir: cache\n");
    project.write("cache/steps/rootfs-abc/rootfs.squashfs", std::string(4096, 'x'));
    const Config config = project.resolve();

    const CommandOutcome listed = run_cache_ls(config);
    CHECK(listed.code == 0);
    CHECK(listed.text.starts_with("KIND"));
    CHECK(listed.document["cache_dir"] == (project.dir.path() / "cache").string());
    CHECK(listed.document["entries"].is_array());

    const Console console;
    const CommandOutcome pruned = run_cache_prune(config, "", console);
    CHECK(pruned.code == 0);
    CHECK(pruned.document["kept"].is_number());
    CHECK(project.error_of([&] { (void)run_cache_prune(config, "soon", console); }) ==
          "--older-than: 'soon' is not a duration; write a number and a unit s, m, h, d or w "
          "(e.g. 7d, 12h)");
}
