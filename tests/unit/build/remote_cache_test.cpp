// Unit tests for build/remote_cache: steps pushed to and pulled from an OCI layout repository,
// and the artifacts a pull must refuse. (The registry side runs in tests/e2e/remote_cache_test.sh
// against docker-registry.)
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <vector>

#include <archive.h>
#include <archive_entry.h>

#include "build/remote_cache.h"
#include "build/step_cache.h"
#include "oci/layout_writer.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/json.h"

#include <sys/stat.h>

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

const StepLayout k_layout{{"bootfs", true}, {"rootfs.squashfs", false}};
constexpr const char* k_manifest_type = "application/vnd.oci.image.manifest.v1+json";

// One entry of a hand-made tar: a file (content), a directory, a symbolic link or a hard link
// (target).
struct TarEntry {
    std::string name;
    char type = 'f'; // f, d, l (symlink), h (hard link)
    std::string content;
    std::string target;
};

void write_tar(const stdfs::path& file, const std::vector<TarEntry>& entries) {
    std::unique_ptr<archive, decltype(&archive_write_free)> writer(archive_write_new(),
                                                                   archive_write_free);
    archive_write_set_format_pax_restricted(writer.get());
    REQUIRE(archive_write_open_filename(writer.get(), file.c_str()) == ARCHIVE_OK);
    for (const auto& item : entries) {
        std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                            archive_entry_free);
        archive_entry_set_pathname(entry.get(), item.name.c_str());
        archive_entry_set_perm(entry.get(), 0644);
        switch (item.type) {
        case 'd':
            archive_entry_set_filetype(entry.get(), AE_IFDIR);
            break;
        case 'l':
            archive_entry_set_filetype(entry.get(), AE_IFLNK);
            archive_entry_set_symlink(entry.get(), item.target.c_str());
            break;
        case 'h':
            archive_entry_set_filetype(entry.get(), AE_IFREG);
            archive_entry_set_hardlink(entry.get(), item.target.c_str());
            break;
        default:
            archive_entry_set_filetype(entry.get(), AE_IFREG);
            archive_entry_set_size(entry.get(), static_cast<la_int64_t>(item.content.size()));
        }
        REQUIRE(archive_write_header(writer.get(), entry.get()) == ARCHIVE_OK);
        if (item.type == 'f' && !item.content.empty()) {
            archive_write_data(writer.get(), item.content.data(), item.content.size());
        }
    }
    REQUIRE(archive_write_close(writer.get()) == ARCHIVE_OK);
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

nlohmann::json read_json(const stdfs::path& file) {
    return util::parse_json(util::read_file(file));
}

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
    const auto config_path =
        layout / "blobs" / "sha256" / manifest["config"]["digest"].get<std::string>().substr(7);
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

// Rewrites the manifest tagged `tag` with `edit` applied (its blobs as they are).
void rewrite_manifest(const stdfs::path& layout, const std::string& tag,
                      const std::function<void(nlohmann::json&, oci::LayoutWriter&)>& edit) {
    auto manifest = read_json(manifest_blob(layout, tag));
    oci::LayoutWriter writer(layout);
    edit(manifest, writer);
    writer.tag(writer.add_blob_bytes(manifest.dump(), k_manifest_type), tag);
    writer.commit();
}

// Replaces the artifact's bootfs tree layer with a tar of `entries`.
void replace_tree(const stdfs::path& layout, const std::string& tag,
                  const std::vector<TarEntry>& entries, const stdfs::path& scratch) {
    const auto tar = scratch / "hostile.tar";
    write_tar(tar, entries);
    rewrite_manifest(layout, tag, [&](nlohmann::json& manifest, oci::LayoutWriter& writer) {
        for (auto& layer : manifest["layers"]) {
            if (layer["annotations"]["org.opencontainers.image.title"] == "bootfs") {
                auto blob = writer.add_blob_file(tar, k_step_tree_type);
                blob.annotations["org.opencontainers.image.title"] = "bootfs";
                layer = blob.to_json();
            }
        }
    });
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
    REQUIRE(pusher.push("rootfs", key, entry, k_layout, StepSharing::shareable) ==
            PushOutcome::pushed);
    // A second push of the same step (another worker's) finds the very same artifact there.
    CHECK(pusher.push("rootfs", key, entry, k_layout, StepSharing::shareable) ==
          PushOutcome::present);

    // Another machine: its own cache directory, the step pulled through StepCache.
    const RemoteStepCache puller(settings_for(dir.path() / "shared"), dir.path() / "cache-b",
                                 quiet_console());
    StepCache cache(dir.path() / "cache-b" / "steps", puller);
    const auto found = cache.find_or_pull_directory("rootfs", key, k_layout);
    REQUIRE(found.has_value());
    CHECK(found->pulled);
    CHECK(util::read_file(found->directory / "rootfs.squashfs") == std::string(100000, 's'));
    CHECK(util::read_file(found->directory / "bootfs" / "boot" / "vmlinuz-6.1") == "kernel");
    CHECK(stdfs::read_symlink(found->directory / "bootfs" / "boot" / "vmlinuz") == "vmlinuz-6.1");
    CHECK(read_json(found->directory / "inputs.json") == inputs);
    // Found locally from now on.
    const auto again = cache.find_or_pull_directory("rootfs", key, k_layout);
    REQUIRE(again.has_value());
    CHECK_FALSE(again->pulled);

    // A step nobody pushed is a quiet miss.
    CHECK_FALSE(
        cache.find_or_pull_directory("rootfs", StepCache::key_of({{"other", 1}}), k_layout));
}

TEST_CASE("artifacts that are foreign, altered or corrupt are never used") {
    util::TempDir dir;
    const auto shared = dir.path() / "shared";
    const auto inputs = nlohmann::json{{"step", "rootfs"}, {"images", {"sha256:1"}}};
    const auto key = StepCache::key_of(inputs);
    const RemoteStepCache remote(settings_for(shared), dir.path() / "cache", quiet_console());
    const auto entry = make_entry(dir.path() / "entry", inputs);
    REQUIRE(remote.push("rootfs", key, entry, k_layout, StepSharing::shareable) ==
            PushOutcome::pushed);
    const auto tag = step_artifact_tag("rootfs", key);
    const auto staging = dir.path() / "staging";
    stdfs::create_directories(staging);

    SUBCASE("pushed under another step's tag") {
        const auto other_key = StepCache::key_of({{"step", "rootfs"}, {"images", {"sha256:2"}}});
        const auto manifest = read_json(manifest_blob(shared, tag));
        oci::LayoutWriter writer(shared);
        writer.tag(
            writer.add_blob_bytes(manifest.dump(), "application/vnd.oci.image.manifest.v1+json"),
            step_artifact_tag("rootfs", other_key));
        writer.commit();
        const auto pulled = remote.pull("rootfs", other_key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem == "its config names another step or key");
        CHECK(is_empty_directory(staging));
        // A build of that step pushing finds the foreign artifact and replaces it.
        const auto other_entry =
            make_entry(dir.path() / "other-entry", {{"step", "rootfs"}, {"images", {"sha256:2"}}});
        CHECK(remote.push("rootfs", other_key, other_entry, k_layout, StepSharing::shareable) ==
              PushOutcome::pushed);
        CHECK(remote.pull("rootfs", other_key, k_layout, staging).inputs);
    }
    SUBCASE("inputs that do not hash to the key") {
        rewrite_config(shared, tag, [](nlohmann::json& config) {
            config["inputs"]["images"] = {"sha256:evil"};
        });
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem == "the inputs it records do not hash to its key");
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
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem.find("does not match its digest") != std::string::npos);
        CHECK(is_empty_directory(staging));
        // The next push of the step finds the damaged blobs and writes them again.
        CHECK(remote.push("rootfs", key, entry, k_layout, StepSharing::shareable) ==
              PushOutcome::pushed);
        CHECK(remote.pull("rootfs", key, k_layout, staging).inputs);
    }
    SUBCASE("a layer whose title would leave the entry") {
        auto manifest = read_json(manifest_blob(shared, tag));
        manifest["layers"][0]["annotations"]["org.opencontainers.image.title"] = "../escape";
        oci::LayoutWriter writer(shared);
        writer.tag(
            writer.add_blob_bytes(manifest.dump(), "application/vnd.oci.image.manifest.v1+json"),
            tag);
        writer.commit();
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem == "layers[0] has a missing, repeated or unsafe title");
        CHECK(is_empty_directory(staging));
        CHECK_FALSE(stdfs::exists(dir.path() / "escape"));
    }
    SUBCASE("a manifest whose fields have the wrong types") {
        rewrite_manifest(shared, tag, [](nlohmann::json& manifest, oci::LayoutWriter&) {
            manifest["mediaType"] = 1;
        });
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem.find("not an edgeforge step") != std::string::npos);
    }
    SUBCASE("an artifact without the step's files, or with one of the wrong kind") {
        rewrite_manifest(shared, tag, [](nlohmann::json& manifest, oci::LayoutWriter&) {
            manifest["layers"] = nlohmann::json::array();
        });
        auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem == "it holds 0 files and directories; the rootfs step has 2");
    }
    SUBCASE("an artifact with a file where the step has a directory") {
        rewrite_manifest(shared, tag, [](nlohmann::json& manifest, oci::LayoutWriter&) {
            for (auto& layer : manifest["layers"]) {
                if (layer["annotations"]["org.opencontainers.image.title"] == "bootfs") {
                    layer["mediaType"] = "application/vnd.edgeforge.step.file.v1";
                }
            }
        });
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem == "it has no directory bootfs");
    }
    SUBCASE("a damaged or missing manifest under the tag is replaced by the next push") {
        const auto blob = manifest_blob(shared, tag);
        stdfs::remove(blob);
        CHECK_FALSE(remote.pull("rootfs", key, k_layout, staging).inputs);
        CHECK(remote.push("rootfs", key, entry, k_layout, StepSharing::shareable) ==
              PushOutcome::pushed);
        CHECK(remote.pull("rootfs", key, k_layout, staging).inputs);
    }
    SUBCASE("tree layers that climb out, follow links or lie about their size") {
        const std::vector<std::pair<std::vector<TarEntry>, std::string>> hostile{
            {{{"../escape", 'f', "x"}}, "escapes the extraction directory"},
            {{{"/tmp/escape", 'f', "x"}}, "absolute path"},
            {{{"link", 'l', "", "/tmp"}, {"link/escape", 'f', "x"}}, "link"},
            {{{"inside", 'f', "x"}, {"hard", 'h', "", "../../escape"}}, "hard link"},
        };
        for (const auto& item : hostile) {
            const auto& entries = item.first;
            const std::string& reason = item.second;
            CAPTURE(reason);
            replace_tree(shared, tag, entries, dir.path());
            const auto pulled = remote.pull("rootfs", key, k_layout, staging);
            CHECK_FALSE(pulled.inputs);
            CHECK(pulled.problem.find(reason) != std::string::npos);
            CHECK(is_empty_directory(staging));
        }
        CHECK_FALSE(stdfs::exists("/tmp/escape"));
        CHECK_FALSE(stdfs::exists(dir.path() / "escape"));
    }
    SUBCASE("a FIFO in place of a blob does not hang the pull") {
        const auto manifest = read_json(manifest_blob(shared, tag));
        const auto blob = shared / "blobs" / "sha256" /
                          manifest["layers"][1]["digest"].get<std::string>().substr(7);
        stdfs::remove(blob);
        REQUIRE(::mkfifo(blob.c_str(), 0644) == 0);
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        CHECK_FALSE(pulled.inputs);
        CHECK(pulled.problem.find("is not a regular file") != std::string::npos);
    }
    SUBCASE("the untouched artifact is used") {
        const auto pulled = remote.pull("rootfs", key, k_layout, staging);
        REQUIRE(pulled.inputs.has_value());
        CHECK(*pulled.inputs == inputs);
        CHECK(pulled.problem.empty());
    }
}

TEST_CASE("a pulled entry pushed again is the same artifact, and an incomplete one is not pushed") {
    util::TempDir dir;
    const auto inputs = nlohmann::json{{"step", "rootfs"}, {"images", {"sha256:3"}}};
    const auto key = StepCache::key_of(inputs);
    const auto entry = make_entry(dir.path() / "entry", inputs);
    // An executable file: the tar of a tree records 0644 whatever the mode, as a pull recreates.
    util::write_file_atomically(entry / "bootfs" / "boot" / "grub-install", "#!/bin/sh\n");
    stdfs::permissions(entry / "bootfs" / "boot" / "grub-install", stdfs::perms::owner_exec,
                       stdfs::perm_options::add);
    const RemoteStepCache remote(settings_for(dir.path() / "shared"), dir.path() / "cache",
                                 quiet_console());
    REQUIRE(remote.push("rootfs", key, entry, k_layout, StepSharing::shareable) ==
            PushOutcome::pushed);
    StepCache other(dir.path() / "other-cache" / "steps", remote);
    const auto pulled = other.find_or_pull_directory("rootfs", key, k_layout);
    REQUIRE(pulled.has_value());
    CHECK(remote.push("rootfs", key, pulled->directory, k_layout, StepSharing::shareable) ==
          PushOutcome::present);

    stdfs::remove(pulled->directory / "rootfs.squashfs");
    CHECK(remote.push("rootfs", key, pulled->directory, k_layout, StepSharing::shareable) ==
          PushOutcome::failed);
    // The good artifact stays in the repository.
    const auto staging = dir.path() / "staging";
    stdfs::create_directories(staging);
    CHECK(remote.pull("rootfs", key, k_layout, staging).inputs);
}

TEST_CASE("steps holding private data are pushed only when the user opts in") {
    util::TempDir dir;
    const auto inputs = nlohmann::json{{"step", "site"}, {"user_data", "sha"}};
    const auto key = StepCache::key_of(inputs);
    const auto entry = make_entry(dir.path() / "entry", inputs);
    auto settings = settings_for(dir.path() / "shared");
    {
        const RemoteStepCache remote(settings, dir.path() / "cache", quiet_console());
        CHECK(remote.push("site", key, entry, k_layout, StepSharing::private_data) ==
              PushOutcome::not_shared);
        CHECK_FALSE(stdfs::exists(dir.path() / "shared" / "index.json"));
    }
    settings.push_private = true;
    const RemoteStepCache remote(settings, dir.path() / "cache", quiet_console());
    CHECK(remote.push("site", key, entry, k_layout, StepSharing::private_data) ==
          PushOutcome::pushed);
    CHECK_FALSE(manifest_blob(dir.path() / "shared", step_artifact_tag("site", key)).empty());
}
