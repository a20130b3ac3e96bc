// A build step cache shared through an OCI repository: steps as OCI artifacts, pushed after they
// are computed and pulled, verified, before computing them.
#include "build/remote_cache.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <system_error>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file_lock.h"
#include "base/version.h"
#include "build/step_cache.h"
#include "oci/archive.h"
#include "oci/blob_cache.h"
#include "oci/descriptor.h"
#include "oci/image.h"
#include "oci/layout_writer.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

// Bounds on what a cache repository may hand us: an artifact is a few blobs and small JSON.
constexpr std::uint64_t k_max_manifest_bytes = 1 << 20;
constexpr std::uint64_t k_max_config_bytes = 16 << 20;
constexpr std::uint64_t k_max_index_bytes = 64 << 20;
constexpr std::size_t k_max_layers = 64;
constexpr std::uint64_t k_max_layer_bytes = 1ULL << 40;
constexpr std::size_t k_max_tree_entries = 1'000'000;
constexpr std::string_view k_title_annotation = "org.opencontainers.image.title";
// Inside a pull's staging directory: the registry downloads, removed before the entry is stored.
constexpr std::string_view k_download_directory = ".download";

// A pulled artifact that must not be used: the message says why, and the step is computed.
struct Rejected {
    std::string reason;
};

// "docker://HOST/REPO" or "oci:DIR": the repository, without the "latest" a parse implies.
std::string repository_name(const oci::ImageReference& reference) {
    if (reference.is_registry()) {
        return fmt::format("docker://{}/{}", reference.registry, reference.repository);
    }
    return "oci:" + reference.path;
}

bool valid_title(std::string_view name) {
    if (name.empty() || name.size() > 128 || name.front() == '.' || name == "inputs.json") {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

// Opens a file of a cache repository for reading: a regular file, not a symbolic link, and never
// blocking (a FIFO planted in its place must not hang the build).
util::FileDescriptor open_regular(const stdfs::path& file, std::string_view what) {
    util::FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd.valid()) {
        throw Rejected{fmt::format("{} cannot be read: {}", what, std::strerror(errno))};
    }
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) {
        throw Rejected{fmt::format("{} is not a regular file", what)};
    }
    return fd;
}

// Reads `fd` to its end in 1 MiB pieces (util::read_some), handing each to `chunk`; a read
// error is a Rejected naming `what`.
void read_chunks(const util::FileDescriptor& fd, std::string_view what,
                 const std::function<void(const char*, std::size_t)>& chunk) {
    std::vector<char> buffer(1 << 20);
    for (;;) {
        std::size_t got = 0;
        try {
            got = util::read_some(fd.get(), buffer.data(), buffer.size());
        } catch (const std::system_error& error) {
            throw Rejected{fmt::format("{} cannot be read: {}", what, error.code().message())};
        }
        if (got == 0) {
            return;
        }
        chunk(buffer.data(), got);
    }
}

// Copies `from` to `to`, checking that it is `size` bytes hashing to `digest`.
void copy_verified(const stdfs::path& from, const stdfs::path& to, std::string_view digest,
                   std::uint64_t size, const std::function<void(std::uint64_t)>& on_bytes = {}) {
    const std::string what = fmt::format("blob {}", digest);
    const util::FileDescriptor in = open_regular(from, what);
    util::AtomicFile out(to);
    util::Sha256 hasher;
    std::uint64_t done = 0;
    read_chunks(in, what, [&](const char* data, std::size_t got) {
        done += got;
        if (done > size) {
            throw Rejected{
                fmt::format("blob {} is larger than its descriptor's {} bytes", digest, size)};
        }
        hasher.update(data, got);
        out.write(data, got);
        if (on_bytes) {
            on_bytes(got);
        }
    });
    if (done != size) {
        throw Rejected{
            fmt::format("blob {} is {} bytes, its descriptor says {}", digest, done, size)};
    }
    if ("sha256:" + hasher.finish_hex() != digest) {
        throw Rejected{fmt::format("blob {} does not match its digest", digest)};
    }
    out.commit();
}

// Whether a repository blob is a regular file of `size` bytes hashing to `digest`.
bool blob_matches(const stdfs::path& file, std::string_view digest, std::uint64_t size) {
    try {
        const util::FileDescriptor fd = open_regular(file, "blob");
        util::Sha256 hasher;
        std::uint64_t done = 0;
        read_chunks(fd, "blob", [&](const char* data, std::size_t got) {
            done += got;
            if (done > size) {
                throw Rejected{"larger than its descriptor"};
            }
            hasher.update(data, got);
        });
        return done == size && "sha256:" + hasher.finish_hex() == digest;
    } catch (const Rejected&) {
        return false;
    }
}

// Reads a small file whole from one descriptor, refusing more than `limit` bytes whatever the
// file claims its size is.
std::string read_bounded(const stdfs::path& file, std::uint64_t limit, std::string_view what) {
    const util::FileDescriptor fd = open_regular(file, what);
    std::string content;
    read_chunks(fd, what, [&](const char* data, std::size_t got) {
        if (content.size() + got > limit) {
            throw Rejected{fmt::format("{} is larger than the {} bytes allowed", what, limit)};
        }
        content.append(data, got);
    });
    return content;
}

struct ArchiveWriteDeleter {
    void operator()(archive* handle) const { archive_write_free(handle); }
};

// Writes `directory` as a reproducible tar: sorted names, mtime 0, owner 0:0, modes 0755 for
// directories and 0644 for files (what a pull extracts, so that a pulled entry pushed again
// gives the same bytes); regular files, directories and symbolic links.
void write_tree_tar(const stdfs::path& directory, const stdfs::path& tar_file) {
    std::unique_ptr<archive, ArchiveWriteDeleter> writer(archive_write_new());
    archive_write_set_format_pax_restricted(writer.get());
    archive_write_add_filter_none(writer.get());
    if (archive_write_open_filename(writer.get(), tar_file.c_str()) != ARCHIVE_OK) {
        throw build_failed("cannot write {}: {}", tar_file.string(),
                           oci::archive_message(writer.get()));
    }
    std::vector<stdfs::path> pending{directory};
    std::vector<char> buffer(1 << 20);
    while (!pending.empty()) {
        const stdfs::path current = pending.back();
        pending.pop_back();
        std::vector<stdfs::path> children;
        for (const auto& child : stdfs::directory_iterator(current)) {
            children.push_back(child.path());
        }
        std::sort(children.begin(), children.end());
        // Depth first in name order: push in reverse so the first name is written first.
        std::vector<stdfs::path> subdirectories;
        for (const auto& child : children) {
            struct stat info {};
            if (::lstat(child.c_str(), &info) != 0) {
                throw build_failed("cannot read {}: {}", child.string(), std::strerror(errno));
            }
            std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                                archive_entry_free);
            const std::string name = child.lexically_relative(directory).string();
            archive_entry_set_pathname(entry.get(), name.c_str());
            archive_entry_set_perm(entry.get(), S_ISDIR(info.st_mode) ? 0755 : 0644);
            archive_entry_set_mtime(entry.get(), 0, 0);
            archive_entry_set_uid(entry.get(), 0);
            archive_entry_set_gid(entry.get(), 0);
            if (S_ISDIR(info.st_mode)) {
                archive_entry_set_filetype(entry.get(), AE_IFDIR);
                subdirectories.push_back(child);
            } else if (S_ISLNK(info.st_mode)) {
                archive_entry_set_filetype(entry.get(), AE_IFLNK);
                archive_entry_set_symlink(entry.get(), stdfs::read_symlink(child).c_str());
            } else if (S_ISREG(info.st_mode)) {
                archive_entry_set_filetype(entry.get(), AE_IFREG);
                archive_entry_set_size(entry.get(), info.st_size);
            } else {
                continue; // a step entry holds no devices or sockets
            }
            if (archive_write_header(writer.get(), entry.get()) != ARCHIVE_OK) {
                throw build_failed("cannot write {}: {}", tar_file.string(),
                                   oci::archive_message(writer.get()));
            }
            if (S_ISREG(info.st_mode)) {
                util::FileDescriptor in(::open(child.c_str(), O_RDONLY | O_CLOEXEC));
                if (!in.valid()) {
                    throw build_failed("cannot read {}: {}", child.string(), std::strerror(errno));
                }
                std::uint64_t left = static_cast<std::uint64_t>(info.st_size);
                std::uint64_t offset = 0;
                while (left > 0) {
                    const auto chunk =
                        static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
                    if (!util::pread_exact(in.get(), buffer.data(), chunk, offset)) {
                        throw build_failed("{} changed while it was being read", child.string());
                    }
                    if (archive_write_data(writer.get(), buffer.data(), chunk) < 0) {
                        throw build_failed("cannot write {}: {}", tar_file.string(),
                                           oci::archive_message(writer.get()));
                    }
                    left -= chunk;
                    offset += chunk;
                }
            }
        }
        for (auto it = subdirectories.rbegin(); it != subdirectories.rend(); ++it) {
            pending.push_back(*it);
        }
    }
    if (archive_write_close(writer.get()) != ARCHIVE_OK) {
        throw build_failed("cannot write {}: {}", tar_file.string(),
                           oci::archive_message(writer.get()));
    }
}

// Checks a pulled tree tar before it is extracted: its entries are bounded in number, and the
// bytes they would write by the tar's own size (no sparse or otherwise inflating entries).
void check_tree_tar(const stdfs::path& tar_file, std::uint64_t tar_size) {
    const oci::TarFileErrors errors{
        [](const std::string& reason) { return build_failed("unreadable tree: {}", reason); },
        [](const std::string& reason) { return build_failed("corrupt tree: {}", reason); }};
    std::size_t entries = 0;
    std::uint64_t bytes = 0;
    try {
        oci::for_each_tar_entry(tar_file, errors, [&](archive*, archive_entry* entry) {
            if (++entries > k_max_tree_entries) {
                throw Rejected{
                    fmt::format("a tree layer holds more than {} entries", k_max_tree_entries)};
            }
            if (archive_entry_sparse_count(entry) > 0) {
                throw Rejected{"a tree layer holds a sparse file"};
            }
            const auto size = archive_entry_size(entry);
            bytes += size > 0 ? static_cast<std::uint64_t>(size) : 0;
            if (bytes > tar_size) {
                throw Rejected{"a tree layer's files are larger than the layer"};
            }
            return true;
        });
    } catch (const Error& error) {
        throw Rejected{error.what()};
    }
}

// One cache repository: a registry's, or an OCI layout directory.
class Store {
  public:
    Store(const oci::ImageReference& reference, const oci::RegistryOptions& options,
          std::function<void(const std::string&)> on_progress = {})
        : reference_(reference), options_(options), on_progress_(std::move(on_progress)) {
        if (reference_.is_registry()) {
            client_ = std::make_unique<oci::RegistryClient>(reference_.registry, options_);
        }
    }

    std::string name() const { return repository_name(reference_); }

    // The manifest body tagged `tag`, its digest checked; nullopt when there is none.
    std::optional<std::string> manifest(const std::string& tag) {
        if (client_) {
            const auto found = client_->find_manifest(reference_.repository, tag);
            if (!found) {
                return std::nullopt;
            }
            return found->body;
        }
        const stdfs::path layout = reference_.path;
        std::error_code error;
        if (!stdfs::is_regular_file(layout / "index.json", error)) {
            return std::nullopt;
        }
        const auto index = util::parse_json(
            read_bounded(layout / "index.json", k_max_index_bytes, "index.json"), false);
        if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
            throw Rejected{"index.json has no manifests list"};
        }
        for (const auto& entry : index["manifests"]) {
            const auto read = oci::read_descriptor(entry, "index.json entry");
            if (!read.descriptor || read.descriptor->ref_name() != tag) {
                continue;
            }
            if (read.descriptor->size > k_max_manifest_bytes) {
                throw Rejected{"its manifest is larger than 1 MiB"};
            }
            const auto& descriptor = *read.descriptor;
            const stdfs::path blob = layout / "blobs" / "sha256" / descriptor.digest.substr(7);
            const std::string body = read_bounded(blob, k_max_manifest_bytes, "its manifest");
            if ("sha256:" + util::sha256_hex(body) != descriptor.digest) {
                throw Rejected{
                    fmt::format("manifest {} does not match its digest", descriptor.digest)};
            }
            return body;
        }
        return std::nullopt;
    }

    // The blob, verified, as the file `destination` (on the cache's filesystem).
    // `on_bytes` (optional) is told how many new bytes arrived, for a progress bar.
    void fetch(const oci::Descriptor& blob, const stdfs::path& destination, std::string_view what,
               const std::function<void(std::uint64_t)>& on_bytes = {}) {
        if (!client_) {
            copy_verified(stdfs::path(reference_.path) / "blobs" / "sha256" / blob.digest.substr(7),
                          destination, blob.digest, blob.size, on_bytes);
            return;
        }
        // The registry client verifies while it downloads, into a blob store private to this
        // pull (next to the destination, removed with the staging directory): no other build
        // shares or locks these files. The entry then takes the file over by rename.
        const oci::BlobCache blobs(destination.parent_path() / k_download_directory);
        oci::BlobRequest request;
        request.digest = blob.digest;
        request.size = blob.size;
        request.what = std::string(what);
        request.image = repository_name(reference_);
        const stdfs::path fetched =
            client_->fetch_blobs(reference_.repository, {request}, blobs, on_bytes).front();
        std::error_code error;
        stdfs::rename(fetched, destination, error);
        if (error) {
            throw build_failed("cannot move {} to {}: {}", fetched.string(), destination.string(),
                               error.message());
        }
    }

    // Whether the repository holds every blob: a registry says so (HEAD); a layout's files
    // must hash to their digests.
    bool has_blobs(const std::vector<oci::BlobDescriptor>& blobs) {
        for (const auto& blob : blobs) {
            const bool present = client_ ? client_->blob_exists(reference_.repository, blob.digest)
                                         : blob_matches(stdfs::path(reference_.path) / "blobs" /
                                                            "sha256" / blob.digest.substr(7),
                                                        blob.digest, blob.size);
            if (!present) {
                return false;
            }
        }
        return true;
    }

    // Pushes the artifact tagged `tag` in the scratch layout `layout`.
    void push(const stdfs::path& layout, const std::string& tag,
              const std::vector<oci::BlobDescriptor>& blobs, const oci::BlobDescriptor& manifest) {
        if (client_) {
            oci::ImageReference destination = reference_;
            destination.tag = tag;
            destination.tag_implied = false;
            oci::PushOptions push;
            push.on_progress = on_progress_;
            (void)oci::push_layout(layout, tag, destination, options_, push);
            return;
        }
        // Blobs first (each appears whole, by rename), then the tag, under a lock so that two
        // builds tagging at once do not lose each other's entries.
        // Copies, never hard links: the repository's blobs must not share an inode with this
        // machine's cache entries.
        const stdfs::path index = stdfs::path(reference_.path) / "index.json";
        std::error_code missing;
        if (stdfs::exists(stdfs::symlink_status(index, missing))) {
            (void)read_bounded(index, k_max_index_bytes,
                               "index.json"); // before LayoutWriter reads it
        }
        oci::LayoutWriter target{stdfs::path(reference_.path)};
        const oci::LayoutWriter source(layout);
        std::vector<oci::BlobDescriptor> all = blobs;
        all.push_back(manifest);
        for (const auto& blob : all) {
            const stdfs::path present = target.blob_path(blob.digest);
            if (blob_matches(present, blob.digest, blob.size)) {
                continue;
            }
            // Missing or damaged: the verified copy is renamed over it (an atomic replace, so a
            // second writer repairing the same blob never removes the first one's good copy).
            const stdfs::path temporary = target.temporary_blob_path();
            copy_verified(source.blob_path(blob.digest), temporary, blob.digest, blob.size);
            std::error_code error;
            stdfs::rename(temporary, present, error);
            if (error) {
                stdfs::remove(temporary, error);
                throw build_failed("cannot store blob {} in {}: {}", blob.digest, reference_.path,
                                   error.message());
            }
        }
        const FileLock lock(stdfs::path(reference_.path) / ".edgeforge-index.lock");
        if (stdfs::exists(stdfs::symlink_status(index, missing))) {
            (void)read_bounded(index, k_max_index_bytes, "index.json");
        }
        oci::LayoutWriter fresh{stdfs::path(reference_.path)}; // the index as it is now
        fresh.tag(manifest, tag);
        fresh.commit();
    }

  private:
    oci::ImageReference reference_;
    oci::RegistryOptions options_;
    std::function<void(const std::string&)> on_progress_; // one line per pushed blob
    std::unique_ptr<oci::RegistryClient> client_;
};

// The items of a layout in name order (the order of the artifact's layers).
StepLayout layout_items(StepLayout layout) {
    std::sort(layout.begin(), layout.end(),
              [](const StepItem& a, const StepItem& b) { return a.name < b.name; });
    return layout;
}

std::string title_of(const oci::Descriptor& layer) {
    return layer.annotations.at(std::string(k_title_annotation));
}

void clear_directory(const stdfs::path& directory) {
    std::error_code error;
    for (const auto& child : stdfs::directory_iterator(directory, error)) {
        stdfs::remove_all(child.path(), error);
    }
}

} // namespace

StepManifest parse_step_manifest(std::string_view body) {
    const auto document = util::parse_json(body, false);
    if (!document.is_object()) {
        throw bad_input("its manifest is not a JSON object");
    }
    const auto text = [&](const char* name) {
        return document.contains(name) && document[name].is_string()
                   ? document[name].get<std::string>()
                   : std::string();
    };
    if (text("mediaType") != oci::media_type::oci_manifest ||
        text("artifactType") != k_step_artifact_type) {
        throw bad_input("it is not an edgeforge step (artifactType is not {})",
                        k_step_artifact_type);
    }
    if (!document.contains("config") || !document.contains("layers") ||
        !document["layers"].is_array()) {
        throw bad_input("its manifest has no config or no layers list");
    }
    StepManifest manifest;
    const auto config = oci::read_descriptor(document["config"], "config");
    if (!config.descriptor) {
        throw bad_input("{}", config.problem);
    }
    if (config.descriptor->media_type != k_step_config_type ||
        config.descriptor->size > k_max_config_bytes) {
        throw bad_input("its config is not an edgeforge step config of at most {} bytes",
                        k_max_config_bytes);
    }
    manifest.config = *config.descriptor;
    if (document["layers"].size() > k_max_layers) {
        throw bad_input("it has more than {} layers", k_max_layers);
    }
    std::set<std::string> titles;
    for (std::size_t i = 0; i < document["layers"].size(); ++i) {
        const auto layer =
            oci::read_descriptor(document["layers"][i], fmt::format("layers[{}]", i));
        if (!layer.descriptor) {
            throw bad_input("{}", layer.problem);
        }
        const auto& descriptor = *layer.descriptor;
        if (descriptor.media_type != k_step_file_type &&
            descriptor.media_type != k_step_tree_type) {
            throw bad_input("layers[{}] has media type '{}'", i, descriptor.media_type);
        }
        if (descriptor.size > k_max_layer_bytes) {
            throw bad_input("layers[{}] is larger than {} bytes", i, k_max_layer_bytes);
        }
        const auto title = descriptor.annotations.find(std::string(k_title_annotation));
        if (title == descriptor.annotations.end() || !valid_title(title->second) ||
            !titles.insert(title->second).second) {
            throw bad_input("layers[{}] has a missing, repeated or unsafe title", i);
        }
        manifest.layers.push_back(descriptor);
    }
    return manifest;
}

nlohmann::json parse_step_config(std::string_view body, std::string_view step,
                                 std::string_view key) {
    const auto config = util::parse_json(body, false);
    if (!config.is_object() || !config.contains("inputs") || !config["inputs"].is_object()) {
        throw bad_input("its config records no inputs");
    }
    const auto text = [&](const char* name) {
        return config.contains(name) && config[name].is_string() ? config[name].get<std::string>()
                                                                 : std::string();
    };
    if (text("step") != step || text("key") != key) {
        throw bad_input("its config names another step or key");
    }
    // The key this build computed from its own inputs must be the digest of the inputs the
    // artifact was built from: an artifact pushed under a tag it does not belong to is not used.
    if (StepCache::key_of(config["inputs"]) != key) {
        throw bad_input("the inputs it records do not hash to its key");
    }
    return config["inputs"];
}

nlohmann::json RemoteCacheSettings::to_json() const {
    return {{"from", from ? nlohmann::json(repository_name(*from)) : nlohmann::json(nullptr)},
            {"to", to ? nlohmann::json(repository_name(*to)) : nlohmann::json(nullptr)},
            {"push_private", push_private}};
}

oci::ImageReference parse_cache_reference(std::string_view text) {
    const oci::ImageReference reference = oci::parse_reference(text);
    if (reference.transport != oci::Transport::registry &&
        reference.transport != oci::Transport::oci_layout) {
        throw bad_input("'{}' is not a cache repository; use docker://HOST/REPO (a registry) or "
                        "oci:DIR (an OCI layout on a shared filesystem)",
                        text);
    }
    if (!reference.unversioned()) {
        throw bad_input("'{}' names a tag or digest; a cache repository is given without one "
                        "(each step is stored under its own tag), e.g. "
                        "docker://registry.example.com/edgeforge-cache",
                        text);
    }
    return reference;
}

std::string step_artifact_tag(std::string_view step, std::string_view key) {
    return fmt::format("{}-{}", step, key);
}

RemoteStepCache::RemoteStepCache(RemoteCacheSettings settings, stdfs::path cache_dir,
                                 const Console& console)
    : settings_(std::move(settings)), cache_dir_(std::move(cache_dir)), console_(console) {}

PullResult RemoteStepCache::pull(std::string_view step, std::string_view key,
                                 const StepLayout& expected, const stdfs::path& staging) const {
    PullResult result;
    if (!settings_.from) {
        return result;
    }
    const std::string tag = step_artifact_tag(step, key);
    const std::string short_key(key.substr(0, 12));
    const auto rejected = [](const auto& parse) {
        try {
            return parse();
        } catch (const Error& error) {
            throw Rejected{error.what()};
        }
    };
    try {
        Store store(*settings_.from, settings_.registry);
        const auto body = store.manifest(tag);
        if (!body) {
            console_.detail("remote cache {}: no {} step {}", store.name(), step, short_key);
            return result;
        }
        const StepManifest manifest = rejected([&] { return parse_step_manifest(*body); });
        // Exactly the files and directories this step's entry has: nothing missing, nothing
        // else, each of its kind.
        if (manifest.layers.size() != expected.size()) {
            throw Rejected{fmt::format("it holds {} files and directories; the {} step has {}",
                                       manifest.layers.size(), step, expected.size())};
        }
        for (const auto& item : expected) {
            const auto found = std::find_if(
                manifest.layers.begin(), manifest.layers.end(),
                [&](const oci::Descriptor& layer) { return title_of(layer) == item.name; });
            const std::string_view type = item.directory ? k_step_tree_type : k_step_file_type;
            if (found == manifest.layers.end() || found->media_type != type) {
                throw Rejected{fmt::format("it has no {} {}", item.directory ? "directory" : "file",
                                           item.name)};
            }
        }

        std::uint64_t total = manifest.config.size;
        for (const auto& layer : manifest.layers) {
            total += layer.size;
        }
        // Room for the files and, for trees, the tar next to its extracted copy.
        if (util::available_space(staging) < total * 2) {
            throw Rejected{fmt::format("it needs {} and {} has {} free", util::format_bytes(total),
                                       staging.string(),
                                       util::format_bytes(util::available_space(staging)))};
        }
        const stdfs::path config_file = staging / ".config.json";
        store.fetch(manifest.config, config_file, "config");
        const std::string config_text = read_bounded(config_file, k_max_config_bytes, "its config");
        stdfs::remove(config_file);
        const nlohmann::json inputs =
            rejected([&] { return parse_step_config(config_text, step, key); });
        console_.info("remote cache {}: pulling {} step {} ({})", store.name(), step, short_key,
                      util::format_bytes(total));
        Progress progress(console_, fmt::format("pull {}", step), total - manifest.config.size);
        const auto on_bytes = [&](std::uint64_t bytes) { progress.advance(bytes); };
        for (const auto& layer : manifest.layers) {
            const stdfs::path target = staging / title_of(layer);
            if (layer.media_type == k_step_file_type) {
                store.fetch(layer, target, "file", on_bytes);
                continue;
            }
            const stdfs::path tar = staging / (".tree-" + title_of(layer) + ".tar");
            store.fetch(layer, tar, "tree", on_bytes);
            check_tree_tar(tar, layer.size);
            stdfs::create_directory(target);
            rejected([&] {
                oci::extract_archive(tar, target, store.name());
                return 0;
            });
            stdfs::remove(tar);
        }
        progress.finish();
        std::error_code error;
        stdfs::remove_all(staging / k_download_directory, error);
        result.inputs = inputs;
        return result;
    } catch (const Rejected& rejection) {
        clear_directory(staging);
        result.problem = rejection.reason;
        console_.warning("remote cache {}: the {} step {} there is not used: {}; computing it "
                         "here (whoever can push to the cache repository should replace it)",
                         repository_name(*settings_.from), step, short_key, rejection.reason);
    } catch (const std::exception& error) {
        clear_directory(staging);
        result.problem = error.what();
        console_.warning("remote cache {}: cannot pull the {} step {}: {}; computing it here",
                         repository_name(*settings_.from), step, short_key, error.what());
    }
    return result;
}

PushOutcome RemoteStepCache::push(std::string_view step, std::string_view key,
                                  const stdfs::path& entry, const StepLayout& expected,
                                  StepSharing sharing) const {
    if (!settings_.to) {
        return PushOutcome::no_target;
    }
    const std::string short_key(key.substr(0, 12));
    if (sharing == StepSharing::private_data && !settings_.push_private) {
        console_.info("remote cache {}: the {} step {} holds user-data, keys or credentials and "
                      "is not pushed (set cache.push_private or --cache-push-private to share "
                      "it with everyone who can pull from the cache)",
                      repository_name(*settings_.to), step, short_key);
        return PushOutcome::not_shared;
    }
    const std::string tag = step_artifact_tag(step, key);
    try {
        Store store(*settings_.to, settings_.registry, [&](const std::string& line) {
            console_.detail("remote cache {}: {}", repository_name(*settings_.to), line);
        });
        const stdfs::path work = StepCache(cache_dir_ / "steps").work_dir();
        const util::TempDir scratch(work, "push-");
        const stdfs::path layout_dir = scratch.path() / "layout";
        oci::LayoutWriter layout(layout_dir);
        std::vector<stdfs::path> items;
        for (const auto& item : layout_items(expected)) {
            const stdfs::path path = entry / item.name;
            std::error_code error;
            const auto status = stdfs::symlink_status(path, error);
            if (item.directory ? !stdfs::is_directory(status) : !stdfs::is_regular_file(status)) {
                throw Rejected{fmt::format("the entry {} has no {} {}", entry.string(),
                                           item.directory ? "directory" : "file", item.name)};
            }
            items.push_back(path);
        }
        std::vector<oci::BlobDescriptor> blobs;
        nlohmann::json files = nlohmann::json::array();
        std::uint64_t total = 0;
        for (const auto& item : items) {
            const std::string title = item.filename().string();
            oci::BlobDescriptor blob;
            if (stdfs::is_directory(stdfs::symlink_status(item))) {
                const stdfs::path tar = scratch.path() / (title + ".tar");
                write_tree_tar(item, tar);
                blob = layout.add_blob_file(tar, k_step_tree_type);
            } else if (stdfs::is_regular_file(stdfs::symlink_status(item))) {
                blob = layout.add_blob_file(item, k_step_file_type);
            } else {
                continue;
            }
            blob.annotations[std::string(k_title_annotation)] = title;
            files.push_back({{"title", title}, {"digest", blob.digest}, {"size", blob.size}});
            total += blob.size;
            blobs.push_back(blob);
        }
        const std::string inputs_text = util::read_file(entry / "inputs.json");
        const nlohmann::json config{{"step", step},
                                    {"key", key},
                                    {"inputs", util::parse_json(inputs_text)},
                                    {"files", files},
                                    {"created_by", fmt::format("edgeforge {}", k_version)}};
        const oci::BlobDescriptor config_blob =
            layout.add_blob_bytes(config.dump(), k_step_config_type);
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& blob : blobs) {
            layers.push_back(blob.to_json());
        }
        const nlohmann::json manifest_json{{"schemaVersion", 2},
                                           {"mediaType", oci::media_type::oci_manifest},
                                           {"artifactType", k_step_artifact_type},
                                           {"config", config_blob.to_json()},
                                           {"layers", layers}};
        const oci::BlobDescriptor manifest =
            layout.add_blob_bytes(manifest_json.dump(), oci::media_type::oci_manifest);
        layout.tag(manifest, tag);
        layout.commit();
        blobs.push_back(config_blob);
        // The same inputs give the same bytes, so an artifact another build pushed first has
        // this very manifest; any other one under the tag (damaged, planted, from another
        // edgeforge) is replaced.
        const std::string ours = manifest_json.dump();
        // Whatever is under the tag now: a damaged, missing or oversized manifest is replaced
        // like a foreign one.
        std::optional<std::string> theirs;
        try {
            theirs = store.manifest(tag);
        } catch (const Rejected& rejected) {
            console_.detail("remote cache {}: the {} step {} there is replaced: {}", store.name(),
                            step, short_key, rejected.reason);
        } catch (const Error& error) {
            console_.detail("remote cache {}: the {} step {} there is replaced: {}", store.name(),
                            step, short_key, error.what());
        }
        if (theirs && *theirs == ours && store.has_blobs(blobs)) {
            console_.detail("remote cache {}: {} step {} is there already", store.name(), step,
                            short_key);
            return PushOutcome::present;
        }
        console_.info("remote cache {}: pushing {} step {} ({})", store.name(), step, short_key,
                      util::format_bytes(total));
        store.push(layout_dir, tag, blobs, manifest);
        return PushOutcome::pushed;
    } catch (const Rejected& rejected) {
        console_.warning("remote cache {}: cannot push the {} step {}: {}",
                         repository_name(*settings_.to), step, short_key, rejected.reason);
    } catch (const std::exception& error) {
        console_.warning("remote cache {}: cannot push the {} step {}: {}; the build goes on "
                         "without it (other builds compute the step themselves)",
                         repository_name(*settings_.to), step, short_key, error.what());
    }
    return PushOutcome::failed;
}

} // namespace edgeforge
