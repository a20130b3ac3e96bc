// Content-addressed cache of expensive build steps (rootfs.squashfs, ESP, converted disks).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/file_lock.h"
#include "build/remote_cache.h"

namespace edgeforge {

// Stores each step's output under <root>/<step>/<key>/<file>, where the key is the SHA-256 of
// a canonical JSON document of everything the step reads (input digests and options). A
// changed input changes the key, so stale output is never reused; an unchanged one is found
// and the step is skipped. Entries appear atomically (a temporary directory renamed into
// place) and an exclusive lock per key keeps two edgeforge processes from producing the same
// entry at once.
class StepCache {
  public:
    explicit StepCache(std::filesystem::path root);
    // With a remote cache: steps missing here are pulled from it, and stored steps pushed to it.
    StepCache(std::filesystem::path root, const RemoteStepCache& remote);

    // The cache key for a step's inputs: sha256 of the JSON with sorted keys.
    static std::string key_of(const nlohmann::json& inputs);

    // The cached output, if present; refreshes its modification time so pruning by age keeps
    // what is in use.
    std::optional<std::filesystem::path> find(std::string_view step, std::string_view key,
                                              std::string_view file_name) const;

    // Moves `produced` (a file the step wrote, ideally inside work_dir() so the move is a
    // rename) into the cache with the inputs recorded next to it, and returns its final path.
    std::filesystem::path store(std::string_view step, std::string_view key,
                                const std::filesystem::path& produced, std::string_view file_name,
                                const nlohmann::json& inputs);

    // The entry directory of a step that produces several files, if complete.
    std::optional<std::filesystem::path> find_directory(std::string_view step,
                                                        std::string_view key) const;
    // Moves the directory `produced` into the cache as the entry, with the inputs recorded in
    // it, and returns the entry directory.
    std::filesystem::path store_directory(std::string_view step, std::string_view key,
                                          const std::filesystem::path& produced,
                                          const nlohmann::json& inputs);

    // find_directory(), else the step pulled from the remote cache (verified) into a local
    // entry. Call it holding lock(step, key).
    struct Found {
        std::filesystem::path directory;
        bool pulled = false; // from the remote cache, by this call
    };
    std::optional<Found> find_or_pull_directory(std::string_view step, std::string_view key,
                                                const StepLayout& layout) const;
    // store_directory(), then the entry pushed to the remote cache as `sharing` allows (a
    // failed push is a warning).
    struct Stored {
        std::filesystem::path directory;
        PushOutcome push = PushOutcome::no_target;
    };
    Stored store_and_push_directory(std::string_view step, std::string_view key,
                                    const std::filesystem::path& produced,
                                    const nlohmann::json& inputs, const StepLayout& layout,
                                    StepSharing sharing);

    // Pushes an entry found here to the remote cache (unless it is there already), as
    // store_and_push_directory() pushes a new one: a build whose step was cached locally still
    // fills the shared cache.
    PushOutcome push_directory(std::string_view step, std::string_view key,
                               const std::filesystem::path& directory, const StepLayout& layout,
                               StepSharing sharing) const;

    // Removes an entry (under its lock) that will never be found again, rather than leaving it
    // for `cache prune`.
    void remove(std::string_view step, std::string_view key) const;

    // A scratch directory on the cache's filesystem for producing outputs.
    std::filesystem::path work_dir() const;

    // Holds an exclusive lock on one entry while it is produced; a second process waits, then
    // finds the entry with find().
    using Lock = FileLock;
    Lock lock(std::string_view step, std::string_view key) const;

    const std::filesystem::path& root() const { return root_; }

  private:
    std::filesystem::path entry_dir(std::string_view step, std::string_view key) const;
    std::filesystem::path root_;
    const RemoteStepCache* remote_ = nullptr;
};

// A digest of a host directory tree's content and metadata (names, types, modes, owners,
// symlink targets, file bytes), for cache keys of overlays. Modification times are left out
// on purpose: a fresh checkout of the same overlay must hit the cache.
std::string hash_directory(const std::filesystem::path& directory);

} // namespace edgeforge
