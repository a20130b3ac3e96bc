// libarchive handles with RAII, tar entry path rules, and safe extraction of image archives.
#include "oci/archive.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/strings.h"

namespace edgeforge::oci {
namespace {

using util::FileDescriptor;

std::string join_components(const std::vector<std::string>& components, std::size_t count) {
    std::string joined;
    for (std::size_t i = 0; i < count; ++i) {
        if (i > 0) {
            joined += '/';
        }
        joined += components[i];
    }
    return joined;
}

[[noreturn]] void fail_system(std::string_view image, std::string_view what,
                              const std::filesystem::path& path) {
    throw build_failed("image {}: cannot {} {}: {}", image, what, path.string(),
                       std::strerror(errno));
}

// Removes whatever non-directory is at `path`, so that a later archive entry replaces an earlier
// one with the same name, as tar does.
void remove_non_directory(const std::filesystem::path& path, std::string_view image,
                          std::string_view entry) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0) {
        return;
    }
    if (S_ISDIR(info.st_mode)) {
        throw bad_input("image {}: archive entry '{}' replaces a directory; the archive is "
                        "malformed",
                        image, entry);
    }
    if (::unlink(path.c_str()) != 0) {
        fail_system(image, "replace", path);
    }
}

// Creates the parent directories of the entry, refusing to go through a symbolic link an earlier
// entry created (which could point anywhere on the host).
void create_parents(const std::filesystem::path& destination,
                    const std::vector<std::string>& components, std::string_view image,
                    std::string_view entry) {
    for (std::size_t count = 1; count < components.size(); ++count) {
        const auto parent = destination / join_components(components, count);
        struct stat info {};
        if (::lstat(parent.c_str(), &info) != 0) {
            if (errno != ENOENT || ::mkdir(parent.c_str(), 0755) != 0) {
                fail_system(image, "create", parent);
            }
            continue;
        }
        if (S_ISLNK(info.st_mode)) {
            throw bad_input("image {}: archive entry '{}' goes through the symbolic link '{}'; "
                            "the archive is malformed or malicious",
                            image, entry, join_components(components, count));
        }
        if (!S_ISDIR(info.st_mode)) {
            throw bad_input("image {}: archive entry '{}' is inside '{}', which is not a "
                            "directory; the archive is malformed",
                            image, entry, join_components(components, count));
        }
    }
}

void write_entry_data(archive* reader, int fd, const std::filesystem::path& path,
                      std::string_view image, const std::filesystem::path& file) {
    const void* block = nullptr;
    std::size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
        const int status = archive_read_data_block(reader, &block, &size, &offset);
        if (status == ARCHIVE_EOF) {
            return;
        }
        if (status < ARCHIVE_WARN) {
            throw build_failed("image {}: {} is truncated or corrupt: {}", image, file.string(),
                               archive_message(reader));
        }
        const auto* bytes = static_cast<const char*>(block);
        while (size > 0) {
            const ssize_t written = ::pwrite(fd, bytes, size, static_cast<off_t>(offset));
            if (written < 0) {
                if (errno == EINTR) {
                    continue;
                }
                fail_system(image, "write", path);
            }
            bytes += written;
            size -= static_cast<std::size_t>(written);
            offset += written;
        }
    }
}

} // namespace

void ArchiveReadDeleter::operator()(archive* handle) const {
    archive_read_free(handle);
}

ArchiveReader new_tar_reader() {
    ArchiveReader reader(archive_read_new());
    if (!reader) {
        throw std::bad_alloc();
    }
    archive_read_support_format_tar(reader.get());
    support_layer_filters(reader.get());
    return reader;
}

std::optional<std::string> decompressed_digest(const std::filesystem::path& file) {
    ArchiveReader reader(archive_read_new());
    if (!reader) {
        throw std::bad_alloc();
    }
    archive_read_support_format_raw(reader.get());
    support_layer_filters(reader.get());
    archive_entry* entry = nullptr;
    if (archive_read_open_filename(reader.get(), file.c_str(), 1 << 20) != ARCHIVE_OK ||
        archive_read_next_header(reader.get(), &entry) != ARCHIVE_OK) {
        return std::nullopt;
    }
    util::Sha256 hash;
    std::vector<char> buffer(1 << 20);
    for (;;) {
        const la_ssize_t got = archive_read_data(reader.get(), buffer.data(), buffer.size());
        if (got < 0) {
            return std::nullopt;
        }
        if (got == 0) {
            break;
        }
        hash.update(buffer.data(), static_cast<std::size_t>(got));
    }
    return "sha256:" + hash.finish_hex();
}

void support_layer_filters(archive* reader) {
    archive_read_support_filter_gzip(reader);
    archive_read_support_filter_zstd(reader);
    archive_read_support_filter_xz(reader);
    archive_read_support_filter_lzma(reader);
    archive_read_support_filter_bzip2(reader);
}

std::string archive_message(archive* handle) {
    const char* message = archive_error_string(handle);
    return message != nullptr ? std::string(message) : std::string("unknown error");
}

std::string entry_pathname(archive_entry* entry) {
    // The raw name comes first: with the "C" locale libarchive cannot convert non-ASCII pax
    // names to the locale (it warns) but still hands out the stored bytes here.
    const char* name = archive_entry_pathname(entry);
    if (name == nullptr) {
        name = archive_entry_pathname_utf8(entry);
    }
    return name != nullptr ? std::string(name) : std::string();
}

std::optional<std::string> entry_hardlink(archive_entry* entry) {
    const char* target = archive_entry_hardlink(entry);
    if (target == nullptr) {
        target = archive_entry_hardlink_utf8(entry);
    }
    if (target == nullptr) {
        return std::nullopt;
    }
    return std::string(target);
}

std::string entry_symlink(archive_entry* entry) {
    const char* target = archive_entry_symlink(entry);
    if (target == nullptr) {
        target = archive_entry_symlink_utf8(entry);
    }
    return target != nullptr ? std::string(target) : std::string();
}

std::optional<std::vector<std::string>> normalize_entry_path(std::string_view name) {
    std::vector<std::string> components;
    while (!name.empty()) {
        const auto slash = name.find('/');
        const auto component = name.substr(0, slash);
        if (component == "..") {
            return std::nullopt;
        }
        if (!component.empty() && component != ".") {
            components.emplace_back(component);
        }
        if (slash == std::string_view::npos) {
            break;
        }
        name.remove_prefix(slash + 1);
    }
    return components;
}

std::optional<std::string> entry_name_problem(std::string_view name) {
    if (name.size() >= k_max_entry_path) {
        return fmt::format("is {} bytes long; Linux allows {} (PATH_MAX)", name.size(),
                           k_max_entry_path - 1);
    }
    std::size_t start = 0;
    while (start <= name.size()) {
        const auto slash = name.find('/', start);
        const auto end = slash == std::string_view::npos ? name.size() : slash;
        if (end - start > k_max_entry_name) {
            return fmt::format("has a {}-byte component; Linux allows {} (NAME_MAX)", end - start,
                               k_max_entry_name);
        }
        if (slash == std::string_view::npos) {
            break;
        }
        start = slash + 1;
    }
    return std::nullopt;
}

std::string shown_entry(std::string_view name) { return util::printable_line(name, 160); }

Compression sniff_compression(const std::filesystem::path& file) {
    std::array<unsigned char, 6> magic{};
    std::ifstream in(file, std::ios::binary);
    in.read(reinterpret_cast<char*>(magic.data()), static_cast<std::streamsize>(magic.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    const auto starts_with = [&](std::initializer_list<unsigned char> prefix) {
        return got >= prefix.size() && std::equal(prefix.begin(), prefix.end(), magic.begin());
    };
    if (starts_with({0x1f, 0x8b})) {
        return Compression::gzip;
    }
    if (starts_with({0x28, 0xb5, 0x2f, 0xfd})) {
        return Compression::zstd;
    }
    if (starts_with({0xfd, '7', 'z', 'X', 'Z', 0x00})) {
        return Compression::xz;
    }
    if (starts_with({'B', 'Z', 'h'})) {
        return Compression::bzip2;
    }
    return Compression::none;
}

namespace {

// One entry of extract_archive().
void extract_entry(archive* reader, archive_entry* entry, const std::filesystem::path& file,
                   const std::filesystem::path& destination, std::string_view image) {
    const std::string name = entry_pathname(entry);
    if (const auto problem = entry_name_problem(name)) {
        throw bad_input("image {}: archive entry '{}' {}; the archive is malformed or malicious",
                        image, shown_entry(name), *problem);
    }
    if (name.starts_with('/')) {
        throw bad_input("image {}: archive entry '{}' is an absolute path; the archive is "
                        "malformed or malicious",
                        image, name);
    }
    const auto components = normalize_entry_path(name);
    if (!components) {
        throw bad_input("image {}: archive entry '{}' escapes the extraction directory; the "
                        "archive is malformed or malicious",
                        image, name);
    }
    if (components->empty()) {
        return; // "./" itself
    }
    create_parents(destination, *components, image, name);
    const auto path = destination / join_components(*components, components->size());

    if (const auto link = entry_hardlink(entry)) {
        const auto target = normalize_entry_path(*link);
        if (link->starts_with('/') || !target || target->empty()) {
            throw bad_input("image {}: archive entry '{}' is a hard link to '{}', outside the "
                            "archive; the archive is malformed or malicious",
                            image, name, *link);
        }
        create_parents(destination, *target, image, name);
        remove_non_directory(path, image, name);
        const auto target_path = destination / join_components(*target, target->size());
        if (::link(target_path.c_str(), path.c_str()) != 0) {
            throw bad_input("image {}: archive entry '{}' is a hard link to '{}', which the "
                            "archive does not hold before it: {}",
                            image, name, *link, std::strerror(errno));
        }
        return;
    }
    switch (archive_entry_filetype(entry)) {
    case AE_IFDIR: {
        struct stat info {};
        if (::lstat(path.c_str(), &info) == 0 && !S_ISDIR(info.st_mode)) {
            remove_non_directory(path, image, name);
        }
        if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
            fail_system(image, "create", path);
        }
        break;
    }
    case AE_IFREG: {
        remove_non_directory(path, image, name);
        const FileDescriptor fd(
            ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (fd.get() < 0) {
            fail_system(image, "create", path);
        }
        write_entry_data(reader, fd.get(), path, image, file);
        if (::ftruncate(fd.get(), static_cast<off_t>(archive_entry_size(entry))) != 0) {
            fail_system(image, "write", path);
        }
        break;
    }
    case AE_IFLNK:
        remove_non_directory(path, image, name);
        if (::symlink(entry_symlink(entry).c_str(), path.c_str()) != 0) {
            fail_system(image, "create", path);
        }
        break;
    default:
        break; // devices, fifos and sockets have no business in an image archive
    }
}

} // namespace

void for_each_tar_entry(const std::filesystem::path& file, const TarFileErrors& errors,
                        const std::function<bool(archive* reader, archive_entry* entry)>& visit) {
    auto reader = new_tar_reader();
    if (archive_read_open_filename(reader.get(), file.c_str(), 1 << 16) != ARCHIVE_OK) {
        throw errors.cannot_open(archive_message(reader.get()));
    }
    archive_entry* entry = nullptr;
    for (;;) {
        const int status = archive_read_next_header(reader.get(), &entry);
        if (status == ARCHIVE_EOF) {
            return;
        }
        if (status < ARCHIVE_WARN) {
            throw errors.corrupt(archive_message(reader.get()));
        }
        if (!visit(reader.get(), entry)) {
            return;
        }
    }
}

void extract_archive(const std::filesystem::path& file, const std::filesystem::path& destination,
                     std::string_view image) {
    const TarFileErrors errors{
        [&](const std::string& reason) {
            return build_failed("image {}: cannot read {}: {}", image, file.string(), reason);
        },
        [&](const std::string& reason) {
            return build_failed("image {}: {} is truncated or corrupt: {}", image, file.string(),
                                reason);
        }};
    for_each_tar_entry(file, errors, [&](archive* reader, archive_entry* entry) {
        extract_entry(reader, entry, file, destination, image);
        return true;
    });
}

std::optional<std::filesystem::path> resolve_inside(const std::filesystem::path& root,
                                                    std::string_view relative) {
    if (relative.empty() || relative.starts_with('/')) {
        return std::nullopt;
    }
    std::error_code error;
    const auto canonical_root = std::filesystem::canonical(root, error);
    if (error) {
        return std::nullopt;
    }
    const auto resolved = std::filesystem::canonical(canonical_root / relative, error);
    if (error) {
        return std::nullopt;
    }
    const auto inside = resolved.lexically_relative(canonical_root);
    if (inside.empty() || *inside.begin() == "..") {
        return std::nullopt;
    }
    return resolved;
}

} // namespace edgeforge::oci
