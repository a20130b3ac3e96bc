// What an installer medium carries besides its boot chain and root filesystem.
#include "build/medium.h"

#include <ctime>
#include <memory>

#include <fmt/format.h>

#include "build/step_cache.h"
#include "content/parts.h"
#include "fs/tree.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_content_dir = "/opt/spectrocloud/content/";
constexpr std::string_view k_cluster_config_dir = "/opt/spectrocloud/clusterconfig/";

// Bytes a content bundle puts on the ISO: the archive, or all its parts.
std::uint64_t bundle_bytes(const stdfs::path& bundle) {
    if (!content::is_parts_index(bundle)) {
        return stdfs::file_size(bundle);
    }
    return content::PartsIndex::read(bundle).size;
}

// A bundle larger than the split size goes on the ISO as NAME.part-000, -001, ... (slices of the
// host file, nothing is copied) plus NAME.parts.json, the parts index `edgeforge content build
// --split-size` writes too: the size and sha256 of every part and of the whole, so a site can
// check what it put back together (`edgeforge content verify NAME.parts.json`).
std::vector<formats::IsoFileEntry> split_bundle(const stdfs::path& bundle, std::uint64_t split_size,
                                                std::int64_t mtime, content::PartNaming naming) {
    std::vector<formats::IsoFileEntry> entries;
    const content::PartsIndex index = content::split_into_parts(
        bundle, split_size, {},
        [&](const content::BundlePart& part, std::uint64_t offset) {
            auto inode = std::make_shared<fs::Inode>();
            inode->type = fs::FileType::regular;
            inode->mode = 0644;
            inode->mtime = mtime;
            inode->data = fs::DataRef{fs::DataRef::Kind::blob, bundle, offset, part.size};
            entries.push_back(formats::IsoFileEntry{std::string(k_content_dir) + part.name,
                                                    formats::IsoTreeFile{inode, nullptr}});
        },
        naming);
    entries.push_back(formats::IsoFileEntry{std::string(k_content_dir) +
                                                content::parts_index_path(index.name).string(),
                                            formats::IsoBytes{index.text()}});
    return entries;
}

// A bundle split already (by `content build --split-size`): its parts and its index go on the
// ISO as they are.
std::vector<formats::IsoFileEntry> split_bundle_files(const stdfs::path& index_file) {
    std::vector<formats::IsoFileEntry> entries;
    for (const auto& part : content::PartsIndex::read(index_file).parts) {
        entries.push_back(
            formats::IsoFileEntry{std::string(k_content_dir) + part.name,
                                  formats::IsoHostFile{index_file.parent_path() / part.name}});
    }
    entries.push_back(
        formats::IsoFileEntry{std::string(k_content_dir) + index_file.filename().string(),
                              formats::IsoHostFile{index_file}});
    return entries;
}

} // namespace

std::uint64_t medium_payload_bytes(const IsoPlan& plan) {
    std::uint64_t bytes = 0;
    for (const auto& bundle : plan.content_bundles) {
        bytes += bundle_bytes(bundle);
    }
    return bytes;
}

std::vector<formats::IsoFileEntry> medium_payload_files(const IsoPlan& plan,
                                                        const Console& console) {
    std::vector<formats::IsoFileEntry> files;
    std::error_code ec;
    for (const auto& bundle : plan.content_bundles) {
        // The checksum and signature `content build` wrote travel with the bundle, so that
        // `content verify` works at the site too.
        const std::string archive = content::archive_of_parts_index(bundle).string();
        for (const char* suffix : {".sha256", ".sig"}) {
            const stdfs::path sidecar(archive + suffix);
            if (stdfs::is_regular_file(sidecar, ec)) {
                files.push_back(
                    formats::IsoFileEntry{std::string(k_content_dir) + sidecar.filename().string(),
                                          formats::IsoHostFile{sidecar}});
            }
        }
        if (content::is_parts_index(bundle)) {
            for (auto& file : split_bundle_files(bundle)) {
                files.push_back(std::move(file));
            }
            continue;
        }
        // --split-size: edgeforge's part names at that size. Otherwise a bundle over 3 GB
        // goes on the ISO as CanvOS stores it (NAME_part00, ... at 3,000,000,000 bytes), the
        // names the agent on the device looks for; the parts index goes next to them.
        const bool explicit_split = plan.split_size != 0;
        const std::uint64_t split_size =
            explicit_split ? plan.split_size : content::k_canvos_part_size;
        if (stdfs::file_size(bundle) > split_size) {
            console.info("iso: splitting {} into parts of at most {}{}", bundle.filename().string(),
                         util::format_bytes(split_size),
                         explicit_split ? "" : " (NAME_partNN, as CanvOS and the agent expect)");
            for (auto& part : split_bundle(bundle, split_size,
                                           plan.source_date_epoch.value_or(std::time(nullptr)),
                                           explicit_split ? content::PartNaming::edgeforge
                                                          : content::PartNaming::canvos)) {
                files.push_back(std::move(part));
            }
            continue;
        }
        files.push_back(formats::IsoFileEntry{
            std::string(k_content_dir) + bundle.filename().string(), formats::IsoHostFile{bundle}});
    }
    if (plan.cluster_config) {
        files.push_back(formats::IsoFileEntry{std::string(k_cluster_config_dir) +
                                                  plan.cluster_config->filename().string(),
                                              formats::IsoHostFile{*plan.cluster_config}});
    }
    if (plan.edge_custom_config) {
        // Where CanvOS puts it and the agent reads it, whatever the file is called here.
        files.push_back(formats::IsoFileEntry{"/.edge_custom_config.yaml",
                                              formats::IsoHostFile{*plan.edge_custom_config}});
    }
    return files;
}

void hash_medium_payload(const IsoPlan& plan, util::Sha256& hasher) {
    if (plan.iso_overlay) {
        hasher.update(hash_directory(*plan.iso_overlay));
    }
    for (const auto& bundle : plan.content_bundles) {
        hasher.update(fmt::format("{} {}", bundle.filename().string(), bundle_bytes(bundle)));
    }
    if (plan.cluster_config) {
        hasher.update(util::sha256_file_hex(*plan.cluster_config));
    }
    if (plan.edge_custom_config) {
        hasher.update("edge custom config " + util::sha256_file_hex(*plan.edge_custom_config));
    }
}

} // namespace edgeforge
