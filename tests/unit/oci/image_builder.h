// Test helpers: tar layers written with libarchive (pax) and OCI layouts built from them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <nlohmann/json.hpp>

#include "util/digest.h"
#include "util/fs.h"

namespace test_images {

inline constexpr std::int64_t k_mtime = 1700000000;

enum class TarCompression { none, gzip, zstd, xz };

// One tar entry; the fields that matter depend on `type`.
struct TarEntry {
    std::string path;
    unsigned type = AE_IFREG; // AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFBLK, AE_IFIFO
    std::string content;      // regular files
    std::string link;         // symlink target
    std::string hardlink;     // hard link target (type ignored)
    unsigned mode = 0644;
    std::int64_t uid = 0;
    std::int64_t gid = 0;
    std::int64_t mtime = k_mtime;
    unsigned rdev_major = 0;
    unsigned rdev_minor = 0;
    std::map<std::string, std::string> xattrs;
    // Sparse files: (offset, length) data regions; `content` holds the full logical bytes.
    std::vector<std::pair<std::int64_t, std::int64_t>> sparse;
};

// Builds a tar stream in the pax format, as image builders write layers.
class TarBuilder {
  public:
    TarBuilder& add(TarEntry entry) {
        entries_.push_back(std::move(entry));
        return *this;
    }
    TarBuilder& dir(std::string path, unsigned mode = 0755) {
        return add({.path = std::move(path), .type = AE_IFDIR, .mode = mode});
    }
    TarBuilder& file(std::string path, std::string content, unsigned mode = 0644) {
        return add({.path = std::move(path), .content = std::move(content), .mode = mode});
    }
    TarBuilder& symlink(std::string path, std::string target) {
        return add(
            {.path = std::move(path), .type = AE_IFLNK, .link = std::move(target), .mode = 0777});
    }
    TarBuilder& hardlink(std::string path, std::string target) {
        return add({.path = std::move(path), .hardlink = std::move(target)});
    }

    std::string build(TarCompression compression = TarCompression::none) const {
        std::string out;
        archive* writer = archive_write_new();
        archive_write_set_format_pax(writer);
        if (compression == TarCompression::gzip) {
            archive_write_add_filter_gzip(writer);
        } else if (compression == TarCompression::zstd) {
            archive_write_add_filter_zstd(writer);
        } else if (compression == TarCompression::xz) {
            archive_write_add_filter_xz(writer);
        }
        archive_write_set_bytes_in_last_block(writer, 1);
        archive_write_open(writer, &out, nullptr, &TarBuilder::append, nullptr);
        for (const auto& item : entries_) {
            archive_entry* entry = archive_entry_new();
            archive_entry_set_pathname(entry, item.path.c_str());
            archive_entry_set_mode(entry,
                                   (item.hardlink.empty() ? item.type : AE_IFREG) | item.mode);
            archive_entry_set_uid(entry, item.uid);
            archive_entry_set_gid(entry, item.gid);
            archive_entry_set_mtime(entry, item.mtime, 0);
            for (const auto& [name, value] : item.xattrs) {
                archive_entry_xattr_add_entry(entry, name.c_str(), value.data(), value.size());
            }
            if (!item.hardlink.empty()) {
                archive_entry_set_hardlink(entry, item.hardlink.c_str());
                archive_entry_set_size(entry, 0);
            } else if (item.type == AE_IFREG) {
                archive_entry_set_size(entry, static_cast<la_int64_t>(item.content.size()));
                for (const auto& [offset, length] : item.sparse) {
                    archive_entry_sparse_add_entry(entry, offset, length);
                }
            } else if (item.type == AE_IFLNK) {
                archive_entry_set_symlink(entry, item.link.c_str());
            } else if (item.type == AE_IFCHR || item.type == AE_IFBLK) {
                archive_entry_set_rdevmajor(entry, item.rdev_major);
                archive_entry_set_rdevminor(entry, item.rdev_minor);
            }
            if (archive_write_header(writer, entry) < ARCHIVE_WARN) {
                throw std::runtime_error(archive_error_string(writer));
            }
            if (item.hardlink.empty() && item.type == AE_IFREG) {
                // Sparse entries too get the whole logical content: the writer drops the holes.
                archive_write_data(writer, item.content.data(), item.content.size());
            }
            archive_entry_free(entry);
        }
        archive_write_close(writer);
        archive_write_free(writer);
        return out;
    }

  private:
    static la_ssize_t append(archive*, void* out, const void* data, std::size_t size) {
        static_cast<std::string*>(out)->append(static_cast<const char*>(data), size);
        return static_cast<la_ssize_t>(size);
    }

    std::vector<TarEntry> entries_;
};

inline std::string digest_of(const std::string& bytes) {
    return "sha256:" + util::sha256_hex(bytes);
}

// The diff_id of a layer: the digest of its tar once decompressed (gzip, zstd, xz or none).
inline std::string diff_id_of(const std::string& layer) {
    archive* reader = archive_read_new();
    archive_read_support_filter_gzip(reader);
    archive_read_support_filter_zstd(reader);
    archive_read_support_filter_xz(reader);
    archive_read_support_format_raw(reader);
    std::string tar;
    archive_entry* entry = nullptr;
    if (archive_read_open_memory(reader, layer.data(), layer.size()) != ARCHIVE_OK ||
        archive_read_next_header(reader, &entry) != ARCHIVE_OK) {
        archive_read_free(reader);
        return digest_of(layer); // empty, or not a layer at all: as it is
    }
    char buffer[16384];
    for (la_ssize_t got; (got = archive_read_data(reader, buffer, sizeof buffer)) > 0;) {
        tar.append(buffer, static_cast<std::size_t>(got));
    }
    archive_read_free(reader);
    return digest_of(tar);
}

inline std::string media_type_for(TarCompression compression) {
    switch (compression) {
    case TarCompression::gzip:
        return "application/vnd.oci.image.layer.v1.tar+gzip";
    case TarCompression::zstd:
        return "application/vnd.oci.image.layer.v1.tar+zstd";
    default:
        return "application/vnd.oci.image.layer.v1.tar";
    }
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
    std::filesystem::create_directories(path.parent_path());
    util::write_file_atomically(path, bytes);
}

// An OCI image layout under construction.
class LayoutBuilder {
  public:
    explicit LayoutBuilder(std::filesystem::path directory) : directory_(std::move(directory)) {
        write_bytes(directory_ / "oci-layout", R"({"imageLayoutVersion": "1.0.0"})");
    }

    const std::filesystem::path& directory() const { return directory_; }

    // Stores a blob and returns its descriptor.
    nlohmann::json blob(const std::string& bytes, const std::string& media_type) {
        const auto digest = digest_of(bytes);
        write_bytes(directory_ / "blobs" / "sha256" / digest.substr(7), bytes);
        return {{"mediaType", media_type}, {"digest", digest}, {"size", bytes.size()}};
    }

    // Stores config + manifest for the given layers (tar bytes with their media types) and
    // returns the manifest descriptor with its platform.
    nlohmann::json image(const std::string& architecture, const std::string& variant,
                         const std::vector<std::pair<std::string, std::string>>& layers) {
        nlohmann::json config = {
            {"architecture", architecture},
            {"os", "linux"},
            {"config", {{"Env", {"PATH=/usr/bin:/bin"}}}},
            {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}}};
        if (!variant.empty()) {
            config["variant"] = variant;
        }
        nlohmann::json layer_descriptors = nlohmann::json::array();
        for (const auto& [bytes, media_type] : layers) {
            layer_descriptors.push_back(blob(bytes, media_type));
            config["rootfs"]["diff_ids"].push_back(diff_id_of(bytes));
        }
        const auto config_descriptor =
            blob(config.dump(), "application/vnd.oci.image.config.v1+json");
        const nlohmann::json manifest = {
            {"schemaVersion", 2},
            {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
            {"config", config_descriptor},
            {"layers", layer_descriptors}};
        auto descriptor = blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
        descriptor["platform"] = {{"architecture", architecture}, {"os", "linux"}};
        if (!variant.empty()) {
            descriptor["platform"]["variant"] = variant;
        }
        return descriptor;
    }

    // An image index over the given manifest descriptors, stored as a blob.
    nlohmann::json
    index(const std::vector<nlohmann::json>& manifests,
          const std::string& media_type = "application/vnd.oci.image.index.v1+json") {
        const nlohmann::json index = {
            {"schemaVersion", 2}, {"mediaType", media_type}, {"manifests", manifests}};
        return blob(index.dump(), media_type);
    }

    static nlohmann::json tagged(nlohmann::json descriptor, const std::string& tag) {
        descriptor["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
        return descriptor;
    }

    // Writes index.json listing the given descriptors.
    void write_index(const std::vector<nlohmann::json>& manifests) {
        const nlohmann::json index = {{"schemaVersion", 2},
                                      {"mediaType", "application/vnd.oci.image.index.v1+json"},
                                      {"manifests", manifests}};
        write_bytes(directory_ / "index.json", index.dump(2));
    }

  private:
    std::filesystem::path directory_;
};

// A tar archive (oci-archive or docker-archive) of the files under `directory`.
inline std::string tar_of_directory(const std::filesystem::path& directory) {
    TarBuilder builder;
    std::vector<std::filesystem::path> paths;
    for (const auto& item : std::filesystem::recursive_directory_iterator(directory)) {
        paths.push_back(item.path());
    }
    std::sort(paths.begin(), paths.end());
    for (const auto& path : paths) {
        const auto relative = path.lexically_relative(directory).string();
        if (std::filesystem::is_symlink(path)) {
            builder.symlink(relative, std::filesystem::read_symlink(path).string());
        } else if (std::filesystem::is_directory(path)) {
            builder.dir(relative);
        } else {
            builder.file(relative, util::read_file(path));
        }
    }
    return builder.build();
}

} // namespace test_images
