// Unit tests for build/remote_cache: steps pushed to and pulled from an OCI layout repository,
// and the artifacts a pull must refuse. (The registry side runs in tests/e2e/remote_cache_test.sh
// against docker-registry.)
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "build/remote_cache.h"
#include "build/step_cache.h"
#include "oci/layout_writer.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/json.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

const Console& quiet_console() {
    static const Console console{ConsoleOptions{Verbosity::quiet, false, false, false}};
    return console;
}

// A step entry as StepCache stores it: a file, a directory tree with a symbolic link, and
// inputs.json.
stdfs::path make_entry(const stdfs::path& directory, const nlohmann::json& inputs) {
    stdfs::create_directories(directory / "bootfs" / "boot");
    util::write_file_atomically(directory / "rootfs.squashfs", std::string(100000, 's'));
    util::write_file_atomically(directory / "bootfs" / "boot" / "vmlinuz-6.1", "kernel");
    stdfs::create_symlink("vmlinuz-6.1", directory / "bootfs" / "boot" / "vmlinuz");
    util::write_file_atomically(directory / "inputs.json", inputs.dump(2) + "\n");
    return directory;
}

RemoteCacheSettings settings_for(const stdfs::path& repository) {
    RemoteCacheSettings settings;
    settings.from = parse_cache_reference("oci:" + repository.string());
    settings.to = settings.from;
    return settings;
}

bool is_empty_directory(const stdfs::path& directory) {
    return stdfs::is_directory(directory) && stdfs::is_empty(directory);
}

nlohmann::json read_json(const stdfs::path& file) { return util::parse_json(util::read_file(file)); }

// The blob path of the descriptor of `tag` in the layout's index.
stdfs::path manifest_blob(const stdfs::path& layout, const std::string& tag) {
    const auto index = read_json(layout / "index.json");
    for (const auto& entry : index["manifests"]) {
        if (entry["annotations"]["org.opencontainers.image.ref.name"] == tag) {
            return layout / "blobs" / "sha256" / entry["digest"].get<std::string>().substr(7);
        }
    }
    return {};
}

// Rewrites the artifact tagged `tag` with `edit` applied to its config, keeping its layers.
void rewrite_config(const stdfs::path& layout, const std::string& tag,
                    const std::function<void(nlohmann::json&)>& edit) {
    auto manifest = read_json(manifest_blob(layout, tag));
    const auto config_path = layout / "blobs" / "sha256" /
                             manifest["config"]["digest"].get<std::string>().substr(7);
    auto config = read_json(config_path);
    edit(config);
    oci::LayoutWriter writer(layout);
    const auto config_blob = writer.add_blob_bytes(config.dump(), k_step_config_type);
    manifest["config"] = config_blob.to_json();
    const auto manifest_blob_descriptor =
        writer.add_blob_bytes(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
    writer.tag(manifest_blob_descriptor, tag);
    writer.commit();
}

} // namespace

TEST_CASE("cache repositories are registry repositories or OCI layouts, without a tag") {
    CHECK(parse_cache_reference("docker://127.0.0.1:5000/cache").is_registry());
    CHECK(parse_cache_reference("registry.example.com/team/cache").is_registry());
    CHECK(parse_cache_reference("oci:/srv/cache").transport == oci::Transport::oci_layout);
    CHECK_THROWS_WITH_AS(parse_cache_reference("docker://127.0.0.1:5000/cache:v1"),
                         doctest::Contains("names a tag or digest"), Error);
    CHECK_THROWS_WITH_AS(parse_cache_reference("dir:/srv/cache"),
                         doctest::Contains("not a cache repository"), Error);
    CHECK(step_artifact_tag("rootfs", std::string(64, 'a')) == "rootfs-" + std::string(64, 'a'));
}

TEST_CASE("a step pushed to an OCI layout is pulled back whole on another machine") {
    util::TempDir dir;
    const auto inputs = nlohmann::json{{"step", "rootfs"}, {"images", {"sha256:1"}}};
    const auto key = StepCache::key_of(inputs);
    const RemoteStepCache pusher(settings_for(dir.path() / "shared"), dir.path() / "cache-a",
                                 quiet_console());
    const auto entry = make_entry(dir.path() / "entry", inputs);
    REQUIRE(pusher.push("rootfs", key, entry, StepSharing::shareable));
    // A second push of the same step (another worker's) finds it there and succeeds.
    CHECK(pusher.push("rootfs", key, entry, StepSharing::shareable));

    // Another machine: its own cache directory, the step pulled through StepCache.
    const RemoteStepCache puller(settings_for(dir.path() / "shared"), dir.path() / "cache-b",
                                 quiet_console());
    StepCache cache(dir.path() / "cache-b" / "steps", puller);
    const auto found = cache.find_or_pull_directory("rootfs", key);
    REQUIRE(found.has_value());
    CHECK(found->pulled);
    CHECK(util::read_file(found->directory / "rootfs.squashfs") == std::string(100000, 's'));
    CHECK(util::read_file(found->directory / "bootfs" / "boot" / "vmlinuz-6.1") == "kernel");
    CHECK(stdfs::read_symlink(found->directory / "bootfs" / "boot" / "vmlinuz") == "vmlinuz-6.1");
    CHECK(read_json(found->directory / "inputs.json") == inputs);
    // Found locally from now on.
    const auto again = cache.find_or_pull_directory("rootfs", key);
    REQUIRE(again.has_value());
    CHECK_FALSE(again->pulled);

    // A step nobody pushed is a quiet miss.
    CHECK_FALSE(cache.find_or_pull_directory("rootfs", StepCache::key_of({{"other", 1}})));
}

TEST_CASE("artifacts that are foreign, altered or corrupt are never used") {
    util::TempDir dir;
    const auto shared = dir.path() / "shared";
    const auto inputs = nlohmann::json{{"step", "rootfs"}, {"images", {"sha256:1"}}};
    const auto key = StepCache::key_of(inputs);
    const RemoteStepCache remote(settings_for(shared), dir.path() / "cache", quiet_console());
    REQUIRE(remote.push("rootfs", key, make_entry(dir.path() / "entry", inputs),
                        StepSharing::shareable));
    const auto tag = step_artifact_tag("rootfs", key);
    const auto staging = dir.path() / "staging";
    stdfs::create_directories(staging);

    SUBCASE("pushed under another step's tag") {
        const auto other_key = StepCache::key_of({{"step", "rootfs"}, {"images", {"sha256:2"}}});
        const auto manifest = read_json(manifest_blob(shared, tag));
        oci::LayoutWriter writer(shared);
        writer.tag(writer.add_blob_bytes(manifest.dump(),
                                         "application/vnd.oci.image.manifest.v1+json"),
                   step_artifact_tag("rootfs", other_key));
        writer.commit();
        CHECK_FALSE(remote.pull("rootfs", other_key, staging));
        CHECK(is_empty_directory(staging));
    }
    SUBCASE("inputs that do not hash to the key") {
        rewrite_config(shared, tag, [](nlohmann::json& config) {
            config["inputs"]["images"] = {"sha256:evil"};
        });
        CHECK_FALSE(remote.pull("rootfs", key, staging));
        CHECK(is_empty_directory(staging));
    }
    SUBCASE("a file blob whose bytes were changed") {
        const auto manifest = read_json(manifest_blob(shared, tag));
        for (const auto& layer : manifest["layers"]) {
            const auto blob =
                shared / "blobs" / "sha256" / layer["digest"].get<std::string>().substr(7);
            stdfs::permissions(blob, stdfs::perms::owner_write, stdfs::perm_options::add);
            std::ofstream(blob, std::ios::binary | std::ios::in) << "X";
        }
        CHECK_FALSE(remote.pull("rootfs", key, staging));
        CHECK(is_empty_directory(staging));
    }
    SUBCASE("a layer whose title would leave the entry") {
        auto manifest = read_json(manifest_blob(shared, tag));
        manifest["layers"][0]["annotations"]["org.opencontainers.image.title"] = "../escape";
        oci::LayoutWriter writer(shared);
        writer.tag(writer.add_blob_bytes(manifest.dump(),
                                         "application/vnd.oci.image.manifest.v1+json"),
                   tag);
        writer.commit();
        CHECK_FALSE(remote.pull("rootfs", key, staging));
        CHECK(is_empty_directory(staging));
        CHECK_FALSE(stdfs::exists(dir.path() / "escape"));
    }
    SUBCASE("the untouched artifact is used") {
        const auto pulled = remote.pull("rootfs", key, staging);
        REQUIRE(pulled.has_value());
        CHECK(*pulled == inputs);
    }
}

TEST_CASE("steps holding private data are pushed only when the user opts in") {
    util::TempDir dir;
    const auto inputs = nlohmann::json{{"step", "site"}, {"user_data", "sha"}};
    const auto key = StepCache::key_of(inputs);
    const auto entry = make_entry(dir.path() / "entry", inputs);
    auto settings = settings_for(dir.path() / "shared");
    {
        const RemoteStepCache remote(settings, dir.path() / "cache", quiet_console());
        CHECK_FALSE(remote.push("site", key, entry, StepSharing::private_data));
        CHECK_FALSE(stdfs::exists(dir.path() / "shared" / "index.json"));
    }
    settings.push_private = true;
    const RemoteStepCache remote(settings, dir.path() / "cache", quiet_console());
    CHECK(remote.push("site", key, entry, StepSharing::private_data));
    CHECK_FALSE(manifest_blob(dir.path() / "shared", step_artifact_tag("site", key)).empty());
}
