// Content-addressed cache of expensive build steps (rootfs.squashfs, ESP, converted disks).
#include "build/step_cache.h"

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "util/digest.h"
#include "util/fs.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

void create_directories_or_throw(const stdfs::path& directory) {
    std::error_code ec;
    stdfs::create_directories(directory, ec);
    if (ec) {
        throw build_failed("cannot create cache directory {}: {}; check --cache-dir",
                           directory.string(), ec.message());
    }
}

void hash_entry(util::Sha256& hasher, const stdfs::path& root, const stdfs::path& path) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0) {
        throw bad_input("cannot read {}: {}", path.string(),
                        std::generic_category().message(errno));
    }
    const std::string relative = path == root ? "." : path.lexically_relative(root).string();
    hasher.update(relative);
    hasher.update("\0", 1);
    const std::string meta = fmt::format("{:o} {} {}", info.st_mode, info.st_uid, info.st_gid);
    hasher.update(meta);
    hasher.update("\0", 1);
    if (S_ISLNK(info.st_mode)) {
        hasher.update(stdfs::read_symlink(path).string());
    } else if (S_ISREG(info.st_mode)) {
        hasher.update(util::sha256_file_hex(path));
    } else if (S_ISDIR(info.st_mode)) {
        std::vector<stdfs::path> children;
        for (const auto& child : stdfs::directory_iterator(path)) {
            children.push_back(child.path());
        }
        std::sort(children.begin(), children.end());
        for (const auto& child : children) {
            hash_entry(hasher, root, child);
        }
    } else {
        hasher.update(fmt::format("dev {}", info.st_rdev));
    }
    hasher.update("\n", 1);
}

} // namespace

StepCache::StepCache(stdfs::path root) : root_(std::move(root)) {}

StepCache::StepCache(stdfs::path root, const RemoteStepCache& remote)
    : root_(std::move(root)), remote_(&remote) {}

std::optional<StepCache::Found> StepCache::find_or_pull_directory(std::string_view step,
                                                                  std::string_view key,
                                                                  const StepLayout& layout) const {
    if (const auto directory = find_directory(step, key)) {
        return Found{*directory, false};
    }
    if (remote_ == nullptr || !remote_->settings().from) {
        return std::nullopt;
    }
    const stdfs::path parent = root_ / std::string(step);
    create_directories_or_throw(parent);
    util::TempDir staging(parent, "." + std::string(key.substr(0, 12)) + "-pull-");
    const PullResult pulled = remote_->pull(step, key, layout, staging.path());
    if (!pulled.inputs) {
        return std::nullopt;
    }
    // store_directory moves the staging directory into place; TempDir then has nothing left
    // to remove.
    StepCache local(root_);
    return Found{local.store_directory(step, key, staging.path(), *pulled.inputs), true};
}

PushOutcome StepCache::push_directory(std::string_view step, std::string_view key,
                                      const stdfs::path& directory, const StepLayout& layout,
                                      StepSharing sharing) const {
    return remote_ == nullptr ? PushOutcome::no_target
                              : remote_->push(step, key, directory, layout, sharing);
}

StepCache::Stored StepCache::store_and_push_directory(std::string_view step, std::string_view key,
                                                      const stdfs::path& produced,
                                                      const nlohmann::json& inputs,
                                                      const StepLayout& layout,
                                                      StepSharing sharing) {
    Stored stored{store_directory(step, key, produced, inputs), PushOutcome::no_target};
    stored.push = push_directory(step, key, stored.directory, layout, sharing);
    return stored;
}

std::string StepCache::key_of(const nlohmann::json& inputs) {
    // nlohmann::json objects keep keys sorted, so dump() is canonical for equal documents.
    return util::sha256_hex(inputs.dump());
}

stdfs::path StepCache::entry_dir(std::string_view step, std::string_view key) const {
    return root_ / std::string(step) / std::string(key);
}

stdfs::path StepCache::work_dir() const {
    const stdfs::path directory = root_ / "tmp";
    create_directories_or_throw(directory);
    return directory;
}

std::optional<stdfs::path> StepCache::find(std::string_view step, std::string_view key,
                                        std::string_view file_name) const {
    const stdfs::path file = entry_dir(step, key) / std::string(file_name);
    std::error_code ec;
    if (!stdfs::is_regular_file(file, ec)) {
        return std::nullopt;
    }
    stdfs::last_write_time(entry_dir(step, key), stdfs::file_time_type::clock::now(), ec);
    return file;
}

stdfs::path StepCache::store(std::string_view step, std::string_view key, const stdfs::path& produced,
                          std::string_view file_name, const nlohmann::json& inputs) {
    const stdfs::path final_dir = entry_dir(step, key);
    create_directories_or_throw(final_dir.parent_path());
    util::TempDir staging(final_dir.parent_path(), "." + std::string(key.substr(0, 12)) + "-");
    const stdfs::path staged = staging.path() / std::string(file_name);
    std::error_code ec;
    stdfs::rename(produced, staged, ec);
    if (ec) { // another filesystem: copy instead
        stdfs::copy_file(produced, staged, ec);
        if (ec) {
            throw build_failed("cannot store {} in the cache at {}: {}", produced.string(),
                               final_dir.string(), ec.message());
        }
        stdfs::remove(produced, ec);
    }
    util::write_file_atomically(staging.path() / "inputs.json", inputs.dump(2) + "\n");
    stdfs::remove_all(final_dir, ec); // a half-broken old entry (e.g. file missing) is replaced
    stdfs::rename(staging.path(), final_dir, ec);
    if (ec) {
        throw build_failed("cannot store the {} step in the cache at {}: {}", step,
                           final_dir.string(), ec.message());
    }
    return final_dir / std::string(file_name);
}

std::optional<stdfs::path> StepCache::find_directory(std::string_view step,
                                                  std::string_view key) const {
    const stdfs::path directory = entry_dir(step, key);
    std::error_code ec;
    // inputs.json is written last before the entry is renamed into place: it marks completion.
    if (!stdfs::is_regular_file(directory / "inputs.json", ec)) {
        return std::nullopt;
    }
    stdfs::last_write_time(directory, stdfs::file_time_type::clock::now(), ec);
    return directory;
}

stdfs::path StepCache::store_directory(std::string_view step, std::string_view key,
                                    const stdfs::path& produced, const nlohmann::json& inputs) {
    const stdfs::path final_dir = entry_dir(step, key);
    create_directories_or_throw(final_dir.parent_path());
    util::write_file_atomically(produced / "inputs.json", inputs.dump(2) + "\n");
    std::error_code ec;
    stdfs::remove_all(final_dir, ec);
    stdfs::rename(produced, final_dir, ec);
    if (ec) {
        throw build_failed("cannot store the {} step in the cache at {}: {} (is the work "
                           "directory on another filesystem?)",
                           step, final_dir.string(), ec.message());
    }
    return final_dir;
}

void StepCache::remove(std::string_view step, std::string_view key) const {
    const Lock held = lock(step, key);
    std::error_code ec;
    stdfs::remove_all(entry_dir(step, key), ec);
}

StepCache::Lock StepCache::lock(std::string_view step, std::string_view key) const {
    const stdfs::path directory = root_ / std::string(step);
    create_directories_or_throw(directory);
    return Lock(directory / ("." + std::string(key) + ".lock"));
}


std::string hash_directory(const stdfs::path& directory) {
    util::Sha256 hasher;
    hash_entry(hasher, directory, directory);
    return hasher.finish_hex();
}

} // namespace edgeforge
