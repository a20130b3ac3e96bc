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
namespace fs = std::filesystem;

namespace {

void create_directories_or_throw(const fs::path& directory) {
    std::error_code ec;
    fs::create_directories(directory, ec);
    if (ec) {
        throw build_failed("cannot create cache directory {}: {}; check --cache-dir",
                           directory.string(), ec.message());
    }
}

void hash_entry(util::Sha256& hasher, const fs::path& root, const fs::path& path) {
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
        hasher.update(fs::read_symlink(path).string());
    } else if (S_ISREG(info.st_mode)) {
        hasher.update(util::sha256_file_hex(path));
    } else if (S_ISDIR(info.st_mode)) {
        std::vector<fs::path> children;
        for (const auto& child : fs::directory_iterator(path)) {
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

StepCache::StepCache(fs::path root) : root_(std::move(root)) {}

std::string StepCache::key_of(const nlohmann::json& inputs) {
    // nlohmann::json objects keep keys sorted, so dump() is canonical for equal documents.
    return util::sha256_hex(inputs.dump());
}

fs::path StepCache::entry_dir(std::string_view step, std::string_view key) const {
    return root_ / std::string(step) / std::string(key);
}

fs::path StepCache::work_dir() const {
    const fs::path directory = root_ / "tmp";
    create_directories_or_throw(directory);
    return directory;
}

std::optional<fs::path> StepCache::find(std::string_view step, std::string_view key,
                                        std::string_view file_name) const {
    const fs::path file = entry_dir(step, key) / std::string(file_name);
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
        return std::nullopt;
    }
    fs::last_write_time(entry_dir(step, key), fs::file_time_type::clock::now(), ec);
    return file;
}

fs::path StepCache::store(std::string_view step, std::string_view key, const fs::path& produced,
                          std::string_view file_name, const nlohmann::json& inputs) {
    const fs::path final_dir = entry_dir(step, key);
    create_directories_or_throw(final_dir.parent_path());
    util::TempDir staging(final_dir.parent_path(), "." + std::string(key.substr(0, 12)) + "-");
    const fs::path staged = staging.path() / std::string(file_name);
    std::error_code ec;
    fs::rename(produced, staged, ec);
    if (ec) { // another filesystem: copy instead
        fs::copy_file(produced, staged, ec);
        if (ec) {
            throw build_failed("cannot store {} in the cache at {}: {}", produced.string(),
                               final_dir.string(), ec.message());
        }
        fs::remove(produced, ec);
    }
    util::write_file_atomically(staging.path() / "inputs.json", inputs.dump(2) + "\n");
    fs::remove_all(final_dir, ec); // a half-broken old entry (e.g. file missing) is replaced
    fs::rename(staging.path(), final_dir, ec);
    if (ec) {
        throw build_failed("cannot store the {} step in the cache at {}: {}", step,
                           final_dir.string(), ec.message());
    }
    return final_dir / std::string(file_name);
}

std::optional<fs::path> StepCache::find_directory(std::string_view step,
                                                  std::string_view key) const {
    const fs::path directory = entry_dir(step, key);
    std::error_code ec;
    // inputs.json is written last before the entry is renamed into place: it marks completion.
    if (!fs::is_regular_file(directory / "inputs.json", ec)) {
        return std::nullopt;
    }
    fs::last_write_time(directory, fs::file_time_type::clock::now(), ec);
    return directory;
}

fs::path StepCache::store_directory(std::string_view step, std::string_view key,
                                    const fs::path& produced, const nlohmann::json& inputs) {
    const fs::path final_dir = entry_dir(step, key);
    create_directories_or_throw(final_dir.parent_path());
    util::write_file_atomically(produced / "inputs.json", inputs.dump(2) + "\n");
    std::error_code ec;
    fs::remove_all(final_dir, ec);
    fs::rename(produced, final_dir, ec);
    if (ec) {
        throw build_failed("cannot store the {} step in the cache at {}: {} (is the work "
                           "directory on another filesystem?)",
                           step, final_dir.string(), ec.message());
    }
    return final_dir;
}

StepCache::Lock StepCache::lock(std::string_view step, std::string_view key) const {
    const fs::path directory = root_ / std::string(step);
    create_directories_or_throw(directory);
    return Lock(directory / ("." + std::string(key) + ".lock"));
}


std::string hash_directory(const fs::path& directory) {
    util::Sha256 hasher;
    hash_entry(hasher, directory, directory);
    return hasher.finish_hex();
}

} // namespace edgeforge
