// libarchive handles with RAII, tar entry path rules, and safe extraction of image archives.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

struct archive;
struct archive_entry;

namespace edgeforge::oci {

struct ArchiveReadDeleter {
    void operator()(archive* handle) const;
};
// A libarchive read handle, freed (and its input closed) when it goes out of scope.
using ArchiveReader = std::unique_ptr<archive, ArchiveReadDeleter>;

// A reader for tar streams in any compression libarchive knows (it detects which).
ArchiveReader new_tar_reader();
// The decompressors layers and rootfs tarballs use (gzip, zstd, xz, lzma, bzip2), all built into
// libarchive. Never archive_read_support_filter_all(): its lrzip, grzip and lzop readers run
// external programs on whatever bytes an image holds.
void support_layer_filters(archive* reader);

// libarchive's message for the last error on `handle`, or "unknown error".
std::string archive_message(archive* handle);

// The entry's name as the archive stores it (raw bytes; pax names are UTF-8), whatever the
// process locale is.
std::string entry_pathname(archive_entry* entry);
// The hard link target of the entry, or nullopt when it is not a hard link.
std::optional<std::string> entry_hardlink(archive_entry* entry);
std::string entry_symlink(archive_entry* entry);

// The components of a tar entry name with leading "/" and "./", empty and "." components
// removed; nullopt when a ".." component appears (the entry could escape the root).
std::optional<std::vector<std::string>> normalize_entry_path(std::string_view name);

// Linux's PATH_MAX and NAME_MAX: an entry whose name (or link target) is longer, or has a longer
// component, cannot exist on the booted system, and a hostile one would cost memory and time.
inline constexpr std::size_t k_max_entry_path = 4096;
inline constexpr std::size_t k_max_entry_name = 255;
// What makes `name` (an entry name or link target) impossible on Linux, or nullopt. Linear.
std::optional<std::string> entry_name_problem(std::string_view name);
// An entry name as messages show it: control characters dropped, cut after 160 characters.
std::string shown_entry(std::string_view name);

// How for_each_tar_entry() words its failures: each gets libarchive's reason and returns the
// error to throw (bad input or build failed, naming what the caller knows the file as).
struct TarFileErrors {
    std::function<Error(const std::string& reason)> cannot_open;
    std::function<Error(const std::string& reason)> corrupt; // a damaged or truncated header
};

// Opens the tar archive `file` (plain or compressed) and calls `visit` with each entry in
// order, until it returns false. `visit` may read the entry's data from the reader.
void for_each_tar_entry(const std::filesystem::path& file, const TarFileErrors& errors,
                        const std::function<bool(archive* reader, archive_entry* entry)>& visit);

// "sha256:<hex>" of `file` once decompressed (any of the layer filters, or as it is), or nullopt
// when it cannot be read or decompressed. A second pass over a layer whose compression the merge
// leaves to libarchive (xz, bzip2, lzma), to check its diff_id.
std::optional<std::string> decompressed_digest(const std::filesystem::path& file);

enum class Compression { none, gzip, zstd, xz, bzip2 };
// Looks at the first bytes of a file; files too short to tell count as uncompressed.
Compression sniff_compression(const std::filesystem::path& file);

// Extracts the regular files, directories, symbolic links and hard links of the tar archive
// `file` (plain or compressed) into the existing directory `destination`. Absolute names, ".."
// and entries whose parent is a symbolic link are rejected with edgeforge::Error (bad input)
// naming `image` and the entry; other entry types are skipped. Symbolic links are created as
// they are: whoever opens an extracted path must check it with resolve_inside().
void extract_archive(const std::filesystem::path& file, const std::filesystem::path& destination,
                     std::string_view image);

// `relative` (a path read from inside an extracted archive) resolved with symbolic links
// followed; nullopt when it is absolute, does not exist, or resolves outside `root`.
std::optional<std::filesystem::path> resolve_inside(const std::filesystem::path& root,
                                                    std::string_view relative);

} // namespace edgeforge::oci
