// `edgeforge build iso`: the live installer ISO from a plan, end to end.
#include "formats/iso.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <system_error>

#include <fcntl.h>

#include "core/compose.h"
#include "core/step_cache.h"
#include "formats/iso_writer.h"
#include "fs/tree.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge::formats {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_content_dir = "/opt/spectrocloud/content/";
constexpr std::string_view k_cluster_config_dir = "/opt/spectrocloud/clusterconfig/";

// A digest of everything on the ISO besides the cached rootfs, for the reproducible GPT GUIDs.
// Bundles are identified by name and size: hashing gigabytes only to seed a GUID is not worth it.
std::string layout_digest(const IsoPlan& plan, const ComposedRootfs& rootfs) {
    util::Sha256 hasher;
    hasher.update(rootfs.key);
    hasher.update(util::sha256_file_hex(plan.user_data));
    if (plan.iso_overlay) {
        hasher.update(hash_directory(*plan.iso_overlay));
    }
    for (const auto& bundle : plan.content_bundles) {
        hasher.update(fmt::format("{} {}", bundle.filename().string(), stdfs::file_size(bundle)));
    }
    if (plan.cluster_config) {
        hasher.update(util::sha256_file_hex(*plan.cluster_config));
    }
    hasher.update(plan.extra_cmdline);
    return hasher.finish_hex();
}

// A bundle larger than the split size goes on the ISO as NAME.part-000, -001, ... (slices of the
// host file, nothing is copied) plus NAME.parts: the reassembly command and the size and sha256
// of every part and of the whole, so a site can check what it put back together.
std::vector<IsoFileEntry> split_bundle(const stdfs::path& bundle, std::uint64_t split_size,
                                       std::int64_t mtime) {
    const std::string name = bundle.filename().string();
    const std::uint64_t size = stdfs::file_size(bundle);
    std::vector<IsoFileEntry> entries;
    std::vector<std::string> part_names;
    std::string index_lines;
    util::Sha256 whole;
    util::FileDescriptor fd(::open(bundle.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        throw build_failed("cannot read content bundle {}: {}", bundle.string(),
                           std::strerror(errno));
    }
    std::vector<char> buffer(1u << 20);
    for (std::uint64_t offset = 0, index = 0; offset < size; offset += split_size, ++index) {
        const std::uint64_t part_size = std::min(split_size, size - offset);
        const std::string part_name = fmt::format("{}.part-{:03}", name, index);
        util::Sha256 part;
        for (std::uint64_t done = 0; done < part_size;) {
            const auto chunk =
                static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), part_size - done));
            if (!util::pread_exact(fd.get(), buffer.data(), chunk, offset + done)) {
                throw build_failed("content bundle {} shrank while it was being split",
                                   bundle.string());
            }
            part.update(buffer.data(), chunk);
            whole.update(buffer.data(), chunk);
            done += chunk;
        }
        auto inode = std::make_shared<fs::Inode>();
        inode->type = fs::FileType::regular;
        inode->mode = 0644;
        inode->mtime = mtime;
        inode->data = fs::DataRef{fs::DataRef::Kind::blob, bundle, offset, part_size};
        entries.push_back(
            IsoFileEntry{std::string(k_content_dir) + part_name, IsoTreeFile{inode, nullptr}});
        part_names.push_back(part_name);
        index_lines += fmt::format("{} {} sha256:{}\n", part_name, part_size, part.finish_hex());
    }
    const std::string index =
        fmt::format("# {} split into {} parts of at most {} bytes by edgeforge.\n"
                    "# Reassemble: cat {} > {}\n"
                    "{} {} sha256:{}\n{}",
                    name, part_names.size(), split_size, util::join(part_names, " "), name, name,
                    size, whole.finish_hex(), index_lines);
    entries.push_back(IsoFileEntry{std::string(k_content_dir) + name + ".parts", IsoBytes{index}});
    return entries;
}

} // namespace

IsoBuildResult build_iso(const IsoPlan& plan, const Console& console) {
    const auto started = std::chrono::steady_clock::now();
    std::error_code ec;
    stdfs::create_directories(plan.output_dir, ec);
    if (ec) {
        throw build_failed("cannot create the output directory {}: {}", plan.output_dir.string(),
                           ec.message());
    }

    // Everything on the ISO but the root filesystem is known now; check for it before the
    // root filesystem step too, so a full disk is reported before minutes of compression.
    std::uint64_t payload = 64u << 20; // kernel, initrd, boot images, ISO metadata
    for (const auto& bundle : plan.content_bundles) {
        payload += stdfs::file_size(bundle);
    }
    check_free_space(plan.output_dir, payload, "the ISO", "--output-dir");
    const ComposedRootfs rootfs = compose_rootfs(plan, console);
    check_free_space(plan.output_dir, payload + stdfs::file_size(rootfs.squashfs), "the ISO",
                     "--output-dir");

    // The boot files of the rootfs as a small tree of host files: the same lookups the full
    // tree would answer, without merging the layers again on a cache hit.
    fs::Tree boot_tree;
    oci::apply_directory(rootfs.bootfs, boot_tree);
    util::TempDir work(plan.output_dir, ".edgeforge-iso-");
    fs::SpillFile no_spill(work.path());

    LiveIsoInputs inputs;
    inputs.arch = plan.arch;
    inputs.rootfs = &boot_tree;
    inputs.spill = &no_spill;
    inputs.squashfs = rootfs.squashfs;
    inputs.user_data = util::read_file(plan.user_data);
    if (plan.iso_overlay) {
        inputs.overlay_directories.push_back(*plan.iso_overlay);
    }
    inputs.menu.arch = plan.arch;
    inputs.menu.extra_cmdline = plan.extra_cmdline;
    inputs.source_date_epoch = plan.source_date_epoch;
    inputs.work_directory = work.path();
    console.info("iso: preparing boot loaders and the EFI system partition");
    LiveIsoPlan live = prepare_live_iso(inputs);

    for (const auto& bundle : plan.content_bundles) {
        if (plan.split_size != 0 && stdfs::file_size(bundle) > plan.split_size) {
            console.info("iso: splitting {} into parts of at most {}", bundle.filename().string(),
                         util::format_bytes(plan.split_size));
            for (auto& part : split_bundle(bundle, plan.split_size,
                                           plan.source_date_epoch.value_or(std::time(nullptr)))) {
                live.description.files.push_back(std::move(part));
            }
            continue;
        }
        live.description.files.push_back(IsoFileEntry{
            std::string(k_content_dir) + bundle.filename().string(), IsoHostFile{bundle}});
    }
    if (plan.cluster_config) {
        live.description.files.push_back(IsoFileEntry{std::string(k_cluster_config_dir) +
                                                          plan.cluster_config->filename().string(),
                                                      IsoHostFile{*plan.cluster_config}});
    }
    live.description.content_digest = layout_digest(plan, rootfs);

    console.info("iso: writing {}", plan.iso_path().string());
    IsoWriteResult written;
    {
        Progress progress(console, "iso", 0);
        written = write_iso(live.description, plan.iso_path(),
                            [&](std::uint64_t done, std::uint64_t total) {
                                progress.set_total(total);
                                progress.update(done);
                            });
        progress.finish();
    }
    for (const auto& warning : written.warnings) {
        console.detail("libisofs: {}", warning);
    }

    IsoBuildResult result;
    result.iso.path = plan.iso_path();
    result.iso.size = written.size;
    result.iso.sha256 = written.sha256;
    const std::string checksum_line =
        fmt::format("{}  {}\n", result.iso.sha256, plan.iso_path().filename().string());
    util::write_file_atomically(plan.checksum_path(), checksum_line);
    result.checksum.path = plan.checksum_path();
    result.checksum.size = checksum_line.size();
    result.checksum.sha256 = util::sha256_hex(checksum_line);

    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    result.summary = {{"rootfs", rootfs.summary},
                      {"secure_boot_chain", live.efi.signed_chain},
                      {"bios_boot", live.bios.has_value()},
                      {"seconds", seconds}};
    console.info("iso: {} ({}) in {}{}", plan.iso_path().string(), util::format_bytes(written.size),
                 util::format_duration(seconds), rootfs.cache_hit ? " (rootfs from cache)" : "");
    return result;
}

nlohmann::json artifacts_to_json(const std::vector<Artifact>& artifacts,
                                 const nlohmann::json& summary) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& artifact : artifacts) {
        list.push_back({{"path", artifact.path.string()},
                        {"size", artifact.size},
                        {"sha256", artifact.sha256}});
    }
    return {{"artifacts", list}, {"summary", summary}};
}

} // namespace edgeforge::formats
