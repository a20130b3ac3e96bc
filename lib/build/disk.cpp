// `edgeforge build disk`: the Kairos raw disk and the formats that wrap it (qcow2, ova, ...).
#include "build/disk.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include <fcntl.h>

#include "base/templates.h"
#include "boot/bios_disk.h"
#include "boot/efi.h"
#include "boot/esp.h"
#include "boot/grub.h"
#include "build/compose.h"
#include "build/outputs.h"
#include "cloud/aws_credentials.h"
#include "cloud/ebs_upload.h"
#include "content/parts.h"
#include "formats/raw_disk.h"
#include "fs/ext4.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/flush.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/units.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

using util::k_mib;
using util::round_up;

constexpr std::uint64_t k_oem_size = 64 * k_mib;
constexpr std::uint64_t k_bios_boot_size = k_mib;
// The smallest COS_STATE / COS_PERSISTENT worth making: ext4 with its journal and some room.
constexpr std::uint64_t k_min_data_partition = 16 * k_mib;
// ext4 metadata, the journal and some room on COS_RECOVERY: a tenth more and 32 MiB.
constexpr std::uint64_t k_recovery_overhead = 32 * k_mib;
constexpr std::string_view k_recovery_label = "COS_RECOVERY";
// CanvOS's COS_CONTENT partition and where it keeps each kind of file.
constexpr std::string_view k_content_label = "COS_CONTENT";
constexpr std::string_view k_content_bundle_dir = "bundle-content/";
constexpr std::string_view k_content_cluster_config_dir = "spc-config/";
constexpr std::string_view k_content_edge_config = "edge-config/.edge_custom_config.yaml";

// An ext4 partition for `payload` bytes of files: a tenth more and 32 MiB, whole MiB.
std::uint64_t ext4_partition_size(std::uint64_t payload) {
    return round_up(payload + payload / 10 + k_recovery_overhead, k_mib);
}

SourceLocation where_set(const Config& config, std::string_view key) {
    const auto& value = config.get(key);
    return value.origin == Origin::default_value ? SourceLocation{fmt::format("{} (default)", key)}
                                                 : value.location;
}

// Links `source` to `target`, or copies it when they are on different file systems.
void place_file(const stdfs::path& source, const stdfs::path& target) {
    std::error_code ec;
    stdfs::create_directories(target.parent_path(), ec);
    stdfs::create_hard_link(source, target, ec);
    if (ec) {
        ec.clear();
        stdfs::copy_file(source, target, ec);
        if (ec) {
            throw build_failed("cannot copy {} to {}: {}", source.string(), target.string(),
                               ec.message());
        }
    }
}

// The partitions of the disk in their order, by size: what the raw disk writer places, each on
// the next 1 MiB boundary from 1 MiB, the backup GPT after the last.
std::vector<std::pair<std::string, std::uint64_t>>
disk_partition_sizes(const DiskPlan& plan, std::uint64_t esp, std::uint64_t recovery) {
    std::vector<std::pair<std::string, std::uint64_t>> sizes{
        {"COS_GRUB", esp}, {"COS_OEM", k_oem_size}, {std::string(k_recovery_label), recovery}};
    if (plan.bios) {
        sizes.emplace_back("BIOS", k_bios_boot_size);
    }
    if (plan.content_size != 0) {
        sizes.emplace_back(std::string(k_content_label), plan.content_size);
    }
    if (plan.state_size != 0) {
        sizes.emplace_back("COS_STATE", plan.state_size);
    }
    if (plan.persistent_size != 0) {
        sizes.emplace_back("COS_PERSISTENT", plan.persistent_size);
    }
    return sizes;
}

// The smallest disk (whole MiB) that holds partitions of these sizes and the backup GPT.
std::uint64_t minimum_disk_size(const std::vector<std::pair<std::string, std::uint64_t>>& sizes) {
    std::uint64_t next = k_mib;
    std::uint64_t end = next;
    for (const auto& [name, size] : sizes) {
        end = next + round_up(size, k_mib);
        next = round_up(end, k_mib);
    }
    return round_up(end + (fs::k_gpt_entry_array_sectors + 1) * fs::k_gpt_sector_size, k_mib);
}

std::string describe_sizes(const std::vector<std::pair<std::string, std::uint64_t>>& sizes) {
    std::vector<std::string> parts;
    for (const auto& [name, size] : sizes) {
        parts.push_back(fmt::format("{} {}", name, util::format_bytes(size)));
    }
    return util::join(parts, ", ");
}

// Legacy BIOS boot: a 1 MiB BIOS boot partition after the Kairos partitions (so that they keep
// their numbers) holding GRUB's core.img, and boot.img in the MBR pointing at it. Both are
// patched for where the partition lands, which planning the layout tells before anything is
// written; the resized copies (ami, vhd, gce) keep the partitions in place, so the patch holds.
void add_bios_boot(const fs::Tree& boot_tree, const fs::SpillFile& spill, Arch arch,
                   const boot::BootAssetOptions& assets, formats::RawDiskLayout& layout,
                   const Console& console) {
    const auto files = boot::prepare_bios_disk_boot_files(boot_tree, spill, arch, assets);
    if (!files) {
        throw bad_input("--bios: {} has no legacy BIOS boot", arch.name());
    }
    console.info("disk: adding BIOS boot (grub i386-pc from {})", files->origin);
    const stdfs::path core = assets.work_directory / "bios-boot.img";
    util::write_file_atomically(core, util::read_file(files->core_image));
    layout.partitions.push_back({"BIOS", fs::k_bios_boot_partition_type, k_bios_boot_size, core, 0,
                                 std::nullopt});
    const fs::GptLayout planned = formats::plan_raw_disk(layout);
    const std::uint64_t core_lba = planned.partitions.back().first_lba;
    const boot::BiosDiskBoot patched = boot::patch_bios_disk_boot(
        util::read_file(files->boot_image), util::read_file(files->core_image), core_lba,
        k_bios_boot_size);
    util::write_file_atomically(core, patched.core_image);
    layout.boot_code = patched.mbr_boot_code;
}

// Puts a split bundle back together at `target`, reading its parts in order through a 1 MiB
// buffer (never the whole bundle in memory), and checks the result against the parts index.
// Returns the archive's sha256.
std::string reassemble_bundle(const stdfs::path& index_file, const stdfs::path& target) {
    const content::PartsIndex index = content::PartsIndex::read(index_file);
    util::FileDescriptor out(
        ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out.valid()) {
        throw build_failed("cannot create {}: {}", target.string(), std::strerror(errno));
    }
    util::Sha256 whole;
    std::uint64_t total = 0;
    std::vector<char> buffer(k_mib);
    for (const auto& part : index.parts) {
        const stdfs::path file = index_file.parent_path() / part.name;
        util::FileDescriptor in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in.valid()) {
            throw bad_input("content bundle {}: cannot read its part {}: {}", index_file.string(),
                            file.string(), std::strerror(errno));
        }
        try {
            while (const std::size_t got =
                       util::read_some(in.get(), buffer.data(), buffer.size())) {
                whole.update(buffer.data(), got);
                util::pwrite_exact(out.get(), buffer.data(), got, total);
                total += got;
            }
        } catch (const std::system_error& error) {
            throw build_failed("cannot put {} back together at {}: {}", index_file.string(),
                               target.string(), error.what());
        }
    }
    const std::string sha256 = whole.finish_hex();
    if (total != index.size || sha256 != index.sha256) {
        throw bad_input("content bundle {}: its parts put back together are {} bytes with "
                        "sha256:{}, the parts index says {} bytes with sha256:{}; copy the parts "
                        "again (`edgeforge content verify {}` checks them)",
                        index_file.string(), total, sha256, index.size, index.sha256,
                        index_file.string());
    }
    return sha256;
}

// Stages the COS_CONTENT files under `tree` (whole bundles linked or copied, split ones put back
// together) and adds what they hold to `digest`: the path, size and sha256 of every file, so a
// changed bundle changes the disk's GUIDs and everything seeded from them. Each sha256 also goes
// to `content_ids`, for the ext4 image not to hash the files again.
void stage_content(const DiskPlan& plan, const stdfs::path& tree, util::Sha256& digest,
                   std::map<std::string, std::string>& content_ids) {
    for (const auto& file : plan.content_files) {
        const stdfs::path target = tree / file.path;
        std::error_code ec;
        stdfs::create_directories(target.parent_path(), ec);
        std::string sha256;
        if (file.split) {
            sha256 = reassemble_bundle(file.source, target);
        } else {
            place_file(file.source, target);
            sha256 = util::sha256_file_hex(target);
        }
        const std::uint64_t size = stdfs::file_size(target, ec);
        if (ec || size != file.size) {
            throw build_failed("{} changed while the disk was being built (planned {} bytes, now "
                               "{}); run the build again",
                               file.source.string(), file.size, ec ? 0 : size);
        }
        digest.update(fmt::format(" content {} {} {}", file.path, size, sha256));
        content_ids["/" + file.path] = "sha256:" + sha256;
    }
}

struct RawResult {
    stdfs::path path;
    std::string digest; // of the inputs: seeds GUIDs and VMDK CIDs
    formats::RawDiskLayout layout;
    nlohmann::json rootfs; // the rootfs step's summary, for --json
    std::string sha256;    // of the raw disk, taken as it was written
};

// The Kairos layout: COS_GRUB (the ESP: shim + grub + a stub that finds /boot/kernel on
// COS_RECOVERY and loads its /boot/grub2/grub.cfg), COS_OEM (ext4: the user-data as
// /99_userdata.yaml, read on first boot), COS_RECOVERY (ext4: kernel, initrd, grub menu and the
// same rootfs.squashfs the ISO boots, in the live layout), then when planned COS_CONTENT (ext4:
// CanvOS's bundle-content/, spc-config/, edge-config/) and the empty COS_STATE, COS_PERSISTENT.
RawResult build_raw(const DiskPlan& plan, const Console& console, const stdfs::path& work,
                    const stdfs::path& output) {
    const IsoPlan& iso = plan.installer;
    const ComposedRootfs rootfs = compose_rootfs(iso, console);
    const std::string user_data = util::read_file(iso.user_data);
    util::Sha256 digest;
    digest.update(rootfs.key);
    digest.update(util::sha256_hex(user_data));
    digest.update(fmt::format("{} {} {}", plan.disk_size, plan.bios, iso.extra_cmdline));
    digest.update(fmt::format(" state {} persistent {}", plan.state_size, plan.persistent_size));
    digest.update(fmt::format(" content_size {}", plan.content_size));
    RawResult result{output, {}, {}, rootfs.summary, {}};

    fs::Tree boot_tree;
    oci::apply_directory(rootfs.bootfs, boot_tree);
    fs::SpillFile no_spill(work);
    const boot::KernelAndInitrd kernel = boot::find_kernel_and_initrd(boot_tree);
    boot::BootAssetOptions assets;
    assets.work_directory = work;
    const boot::EfiBootFiles efi = boot::prepare_efi_boot_files(boot_tree, no_spill, iso.arch, assets);

    console.info("disk: building COS_GRUB, COS_OEM and COS_RECOVERY");
    boot::LiveMenuOptions menu;
    menu.arch = iso.arch;
    menu.volume_id = std::string(k_recovery_label);
    menu.extra_cmdline = iso.extra_cmdline;
    const stdfs::path templates = templates_directory();
    const std::string stub = boot::render_grub_stub(templates);
    boot::EspOptions esp_options;
    esp_options.label = "COS_GRUB";
    esp_options.source_date_epoch = iso.source_date_epoch;
    const stdfs::path esp = work / "cos_grub.img";
    boot::build_esp_image(boot::live_esp_files(efi, stub), esp, esp_options);

    // Every partition is sized now that the (cached) rootfs step is done and the small ESP is
    // built: a --disk-size too small is reported before the big images are made.
    const std::uint64_t payload = stdfs::file_size(rootfs.squashfs) +
                                  kernel.kernel->data.size + kernel.initrd->data.size;
    const std::uint64_t recovery_size = ext4_partition_size(payload);
    if (plan.disk_size != 0) {
        const auto sizes = disk_partition_sizes(plan, stdfs::file_size(esp), recovery_size);
        const std::uint64_t minimum = minimum_disk_size(sizes);
        if (plan.disk_size < minimum) {
            throw bad_input("--disk-size {} is too small for this disk: it needs at least {} "
                            "({} bytes) for {} and the GPT (known once the rootfs step has run; "
                            "its result is cached, so the next build starts from here); give "
                            "--disk-size {}M or more, or leave it unset for the smallest that "
                            "fits",
                            util::format_bytes(plan.disk_size), util::format_bytes(minimum),
                            minimum, describe_sizes(sizes), minimum / k_mib);
        }
    }

    const stdfs::path oem_tree = work / "oem";
    stdfs::create_directories(oem_tree);
    util::write_file_atomically(oem_tree / "99_userdata.yaml", user_data);
    // Partition images are copied into the disk and removed: nothing to flush.
    fs::Ext4ImageOptions scratch;
    scratch.durability = util::Durability::scratch;
    const stdfs::path oem = work / "cos_oem.img";
    fs::make_ext4_image(oem_tree, k_oem_size, "COS_OEM", oem, iso.source_date_epoch, scratch);

    const stdfs::path recovery_tree = work / "recovery";
    for (const char* directory : {"boot/grub2", "boot/grub", ".disk"}) {
        stdfs::create_directories(recovery_tree / directory);
    }
    // The kernel and initrd are big too: placed like the squashfs, from outside the tree.
    const stdfs::path boot_files = work / "recovery-boot";
    stdfs::create_directories(boot_files);
    const auto host_file = [&](const fs::Inode& inode, const std::string& name) {
        // The boot tree was read from the step's exported boot files: placed from there.
        if (inode.data.kind == fs::DataRef::Kind::host_file) {
            return inode.data.path;
        }
        boot::extract_file(inode, no_spill, boot_files / name);
        return boot_files / name;
    };
    util::write_file_atomically(recovery_tree / "boot" / "grub2" / "grub.cfg",
                                boot::render_live_menu(menu, templates));
    util::write_file_atomically(recovery_tree / "boot" / "grub" / "grub.cfg", stub);
    util::write_file_atomically(recovery_tree / ".disk" / "info", "Kairos recovery\n");
    const stdfs::path recovery = work / "cos_recovery.img";
    // The big files are placed with libext2fs, not copied by mke2fs; the squashfs is what the
    // rootfs step's key names: no second hash of its bytes.
    fs::Ext4ImageOptions recovery_options = scratch;
    const std::string squashfs_path = "/" + std::string(boot::k_live_squashfs_name);
    recovery_options.placed_files[squashfs_path] = rootfs.squashfs;
    recovery_options.placed_files["/boot/kernel"] = host_file(*kernel.kernel, "kernel");
    recovery_options.placed_files["/boot/initrd"] = host_file(*kernel.initrd, "initrd");
    recovery_options.content_ids[squashfs_path] = "rootfs step " + rootfs.key;
    // Their bytes go straight from those files into the disk: not into the image first.
    recovery_options.placed_data = fs::PlacedData::returned;
    std::vector<util::FileExtent> recovery_files =
        fs::make_ext4_image(recovery_tree, recovery_size, k_recovery_label, recovery,
                            iso.source_date_epoch, recovery_options)
            .unwritten;

    std::optional<stdfs::path> content_image;
    if (plan.content_size != 0) {
        console.info("disk: building {} of {} ({} file(s))", k_content_label,
                     util::format_bytes(plan.content_size), plan.content_files.size());
        const stdfs::path content_tree = work / "content";
        stdfs::create_directories(content_tree);
        fs::Ext4ImageOptions content_options = scratch;
        stage_content(plan, content_tree, digest, content_options.content_ids);
        content_image = work / "cos_content.img";
        fs::make_ext4_image(content_tree, plan.content_size, k_content_label, *content_image,
                            iso.source_date_epoch, content_options);
        stdfs::remove_all(content_tree); // links or copies of the bundles: gone before the disk
    }
    result.digest = digest.finish_hex();

    formats::RawDiskLayout& layout = result.layout;
    layout.disk_size = plan.disk_size;
    layout.seed = iso.source_date_epoch ? result.digest : std::string();
    layout.partitions.push_back(
        {"COS_GRUB", fs::k_efi_system_partition_type, 0, esp, 0, std::nullopt});
    layout.partitions.push_back(
        {"COS_OEM", fs::k_linux_filesystem_partition_type, 0, oem, 0, std::nullopt});
    layout.partitions.push_back({std::string(k_recovery_label),
                                 fs::k_linux_filesystem_partition_type, 0, recovery, 0,
                                 std::nullopt, std::move(recovery_files)});
    if (plan.bios) {
        add_bios_boot(boot_tree, no_spill, iso.arch, assets, layout, console);
    }
    if (content_image) {
        layout.partitions.push_back({std::string(k_content_label),
                                     fs::k_linux_filesystem_partition_type, 0, *content_image, 0,
                                     std::nullopt});
    }
    // Empty, and after the others: COS_PERSISTENT last, where it can grow into a bigger disk.
    for (const auto& [label, size] : {std::pair<std::string, std::uint64_t>{"COS_STATE",
                                                                            plan.state_size},
                                      {"COS_PERSISTENT", plan.persistent_size}}) {
        if (size == 0) {
            continue;
        }
        console.info("disk: building an empty {} of {}", label, util::format_bytes(size));
        const stdfs::path image = work / (util::to_lower(label) + ".img");
        fs::make_ext4_image({}, size, label, image, iso.source_date_epoch, scratch);
        layout.partitions.push_back(
            {label, fs::k_linux_filesystem_partition_type, 0, image, 0, std::nullopt});
    }
    console.info("disk: writing {}", output.string());
    // Flushed by the caller, while the other formats are made from it, and only when it is kept.
    result.sha256 = formats::write_raw_disk(layout, output, util::Durability::scratch).sha256;
    return result;
}

} // namespace

namespace {

// The sizes known before any work: COS_STATE and COS_PERSISTENT whole MiB and big enough for
// ext4, and a --disk-size that holds at least the partitions whose size does not depend on the
// rootfs (the rest is checked once the rootfs step has run, see build_raw).
void check_disk_sizes(DiskPlan& plan, const Config& config, Diagnostics& diagnostics) {
    for (const auto& [key, size] : {std::pair<std::string_view, std::uint64_t*>{
                                        "disk.state_size", &plan.state_size},
                                    {"disk.persistent_size", &plan.persistent_size}}) {
        if (*size == 0) {
            continue;
        }
        if (*size < k_min_data_partition) {
            diagnostics.error(where_set(config, key),
                              fmt::format("{} is {}; give 0 for no partition or at least {}",
                                          key, util::format_bytes(*size),
                                          util::format_bytes(k_min_data_partition)));
        }
        *size = round_up(*size, k_mib);
    }
    if (plan.disk_size == 0) {
        return;
    }
    // The ESP holds at least its boot loaders (over 1 MiB) and COS_RECOVERY its ext4 overhead;
    // the rootfs (squashfs, kernel, initrd) is only known once its step has run.
    const auto sizes = disk_partition_sizes(plan, k_mib, k_recovery_overhead);
    const std::uint64_t minimum = minimum_disk_size(sizes);
    if (plan.disk_size < minimum) {
        diagnostics.error(
            where_set(config, "disk.size"),
            fmt::format("{} is too small: even before the rootfs is added the disk needs more than "
                        "{} ({}); give a bigger --disk-size or leave it unset for the smallest "
                        "that fits",
                        util::format_bytes(plan.disk_size), util::format_bytes(minimum),
                        describe_sizes(sizes)));
    }
}

// disk.content_partition: the files of COS_CONTENT where CanvOS puts them, and its size. A
// split bundle goes there whole (put back together at build time): ext4 has no file size limit,
// and the device looks for NAME.tar.zst in bundle-content/, not for parts.
void plan_content_partition(DiskPlan& plan, const Config& config, Diagnostics& diagnostics) {
    const IsoPlan& iso = plan.installer;
    const bool has_content = !iso.content_bundles.empty() || !iso.pending_content_bundles.empty() ||
                             iso.cluster_config || iso.edge_custom_config;
    const auto wanted =
        wants_content_partition(config.string("disk.content_partition"), has_content);
    if (!wanted) {
        diagnostics.error(where_set(config, "disk.content_partition"),
                          "disk.content_partition is true, but there is nothing to put on "
                          "COS_CONTENT: no content bundle (content.bundles, content-*/*.zst), "
                          "cluster_config or edge_custom_config; add one, or set it to auto or "
                          "false");
        return;
    }
    if (!*wanted) {
        return;
    }
    std::map<std::string, stdfs::path> seen;
    const auto add = [&](const stdfs::path& source, std::string path, std::uint64_t size,
                         bool split) {
        const auto [it, inserted] = seen.emplace(path, source);
        if (!inserted) {
            diagnostics.error(where_set(config, "content.bundles"),
                              fmt::format("content bundles {} and {} would both be {} on "
                                          "COS_CONTENT; rename one of them",
                                          it->second.string(), source.string(), path));
            return;
        }
        plan.content_files.push_back({source, std::move(path), size, split});
    };
    for (const auto& bundle : iso.content_bundles) {
        const std::string name = content::archive_of_parts_index(bundle).filename().string();
        if (content::is_parts_index(bundle)) {
            try {
                const content::PartsIndex index = content::PartsIndex::read(bundle);
                add(bundle, std::string(k_content_bundle_dir) + name, index.size, true);
            } catch (const Error& error) {
                diagnostics.absorb(error);
            }
            continue;
        }
        std::error_code ec;
        const std::uint64_t size = stdfs::file_size(bundle, ec);
        if (!ec) { // plan_iso reported an unreadable one
            add(bundle, std::string(k_content_bundle_dir) + name, size, false);
        }
    }
    const auto add_config = [&](const stdfs::path& file, std::string path) {
        std::error_code ec;
        const std::uint64_t size = stdfs::file_size(file, ec);
        if (!ec) { // plan_iso reported an unreadable one
            plan.content_files.push_back({file, std::move(path), size, false});
        }
    };
    if (iso.cluster_config) {
        add_config(*iso.cluster_config, std::string(k_content_cluster_config_dir) +
                                            iso.cluster_config->filename().string());
    }
    if (iso.edge_custom_config) {
        add_config(*iso.edge_custom_config, std::string(k_content_edge_config));
    }
    std::vector<std::uint64_t> sizes;
    for (const auto& file : plan.content_files) {
        sizes.push_back(file.size);
    }
    plan.content_size = content_partition_size(sizes);
}

void check_upload(DiskPlan& plan, const Config& config, Diagnostics& diagnostics) {
    const bool ami = std::find(plan.formats.begin(), plan.formats.end(), "ami") != plan.formats.end();
    if (!ami) {
        diagnostics.error(SourceLocation{"--upload"},
                          "--upload uploads AMIs; add ami to --format (or outputs:)");
        return;
    }
    try {
        (void)cloud::load_aws_credentials();
        plan.aws_region = cloud::resolve_aws_region(config.string("ami.region"));
        cloud::RegisterImageOptions image;
        image.name = plan.ami_name.empty() ? plan.installer.name : plan.ami_name;
        image.description = plan.ami_description;
        image.arch = plan.installer.arch;
        cloud::validate_register_image_options(image);
    } catch (const Error& error) {
        diagnostics.absorb(error);
    }
}

} // namespace

std::optional<bool> wants_content_partition(std::string_view setting, bool has_content) {
    if (setting == "false") {
        return false;
    }
    if (setting == "true" && !has_content) {
        return std::nullopt;
    }
    return has_content; // "auto", and "true" with something to hold
}

std::uint64_t content_partition_size(const std::vector<std::uint64_t>& file_sizes) {
    std::uint64_t payload = 0;
    for (const std::uint64_t size : file_sizes) {
        payload += round_up(size, fs::k_ext4_block_size);
    }
    return ext4_partition_size(payload);
}

nlohmann::json DiskPlan::to_json() const {
    nlohmann::json json = installer.to_json();
    json["kind"] = "disk";
    json["formats"] = formats;
    json["disk_size"] = disk_size;
    json["bios"] = bios;
    json["state_size"] = state_size;
    json["persistent_size"] = persistent_size;
    if (content_size == 0) {
        json["content_partition"] = nullptr;
    } else {
        nlohmann::json files = nlohmann::json::array();
        for (const auto& file : content_files) {
            files.push_back({{"source", file.source.string()},
                             {"path", file.path},
                             {"size", file.size},
                             {"split", file.split}});
        }
        json["content_partition"] = {
            {"label", k_content_label}, {"size", content_size}, {"files", files}};
    }
    nlohmann::json outputs = nlohmann::json::object();
    for (const auto& format : formats) {
        outputs[format] = artifact(format).string();
    }
    json["outputs"] = outputs;
    json.erase("output");
    json.erase("checksum");
    return json;
}

DiskPlan plan_disk(const Config& config, const std::vector<std::string>& requested, bool upload) {
    DiskPlan plan;
    Diagnostics diagnostics;
    bool iso_planned = false;
    try {
        plan.installer = plan_iso(config);
        iso_planned = true;
    } catch (const Error& error) {
        diagnostics.absorb(error);
    }
    if (config.boolean("iso.uki")) {
        // Never a grub disk where Trusted Boot was asked for.
        diagnostics.error(where_set(config, "iso.uki"),
                          "build disk makes grub-booted Kairos disks only: a Trusted Boot (UKI) "
                          "install seals its disk encryption to each device's own TPM, so it "
                          "is installed from the UKI ISO (`build iso`, which honours IS_UKI; "
                          "write it to a USB stick or attach it to a VM as a disk); unset "
                          "iso.uki (IS_UKI) for a grub disk");
    }
    plan.disk_size = config.size("disk.size");
    plan.bios = config.boolean("disk.bios");
    plan.state_size = config.size("disk.state_size");
    plan.persistent_size = config.size("disk.persistent_size");
    plan.ova_cpus = static_cast<int>(config.integer("ova.cpus"));
    plan.ova_memory = config.size("ova.memory");
    plan.ova_hardware_version = static_cast<int>(config.integer("ova.hardware_version"));
    plan.ami_name = config.string("ami.name");
    plan.ami_description = config.string("ami.description");

    std::vector<std::string> names = requested;
    if (names.empty()) {
        for (const auto& output : config.list("outputs")) {
            const OutputFormat* row = find_output_format(output);
            if (row != nullptr && row->group == OutputGroup::disk) {
                names.push_back(output);
            }
        }
    }
    if (names.empty()) {
        diagnostics.error(where_set(config, "outputs"),
                          "no disk format to build: pass --format raw,qcow2,... or list them "
                          "under outputs: in edgeforge.yaml");
    }
    const std::vector<std::string_view> known = output_names(OutputGroup::disk);
    std::set<std::string> wanted;
    for (const auto& name : names) {
        const OutputFormat* format = find_output_format(name);
        if (format == nullptr || format->group != OutputGroup::disk) {
            const auto suggestion = util::closest_match(name, known);
            diagnostics.error(SourceLocation{"--format"},
                              fmt::format("unknown disk format '{}'{}; formats: {}", name,
                                          suggestion ? fmt::format(" (did you mean '{}'?)",
                                                                   *suggestion)
                                                     : std::string(),
                                          util::join(known, ", ")));
            continue;
        }
        const bool arch_ok = std::find(format->arches.begin(), format->arches.end(),
                                       config.arch().id()) != format->arches.end();
        if (!arch_ok) {
            diagnostics.error(SourceLocation{"--format"},
                              fmt::format("disk format '{}' does not support {}", name,
                                          config.arch().name()));
            continue;
        }
        wanted.insert(name);
        if (!format->wraps.empty()) {
            wanted.insert(std::string(format->wraps));
        }
    }
    for (const auto& format : output_formats()) {
        if (wanted.count(std::string(format.name)) != 0) {
            plan.formats.emplace_back(format.name);
        }
    }
    if (plan.bios && !config.arch().has_bios_boot()) {
        diagnostics.error(where_set(config, "disk.bios"),
                          fmt::format("{} machines boot through UEFI only: there is no legacy BIOS "
                                      "boot to add (drop --bios / disk.bios)",
                                      config.arch().name()));
    }
    if (iso_planned) {
        plan_content_partition(plan, config, diagnostics);
    }
    check_disk_sizes(plan, config, diagnostics);
    plan.upload = upload;
    if (upload) {
        check_upload(plan, config, diagnostics);
    }
    diagnostics.throw_if_any();
    return plan;
}

std::filesystem::path DiskPlan::artifact(std::string_view format) const {
    const OutputFormat* row = find_output_format(format);
    if (row == nullptr) {
        throw std::logic_error("no output format " + std::string(format));
    }
    return installer.output_dir / (installer.name + std::string(row->file_suffix));
}

std::string render_disk_plan(const DiskPlan& plan) {
    std::string out = fmt::format("plan: build {} disk image(s) for {}\n", plan.formats.size(),
                                  plan.installer.arch.name());
    for (const auto& format : plan.formats) {
        out += fmt::format("  {:<6}          {}\n", format, plan.artifact(format).string());
    }
    std::string partitions = "COS_GRUB, COS_OEM, COS_RECOVERY";
    if (plan.bios) {
        partitions += ", BIOS boot";
    }
    if (plan.content_size != 0) {
        partitions +=
            fmt::format(", {} {}", k_content_label, util::format_bytes(plan.content_size));
    }
    for (const auto& [label, size] :
         {std::pair<std::string_view, std::uint64_t>{"COS_STATE", plan.state_size},
          {"COS_PERSISTENT", plan.persistent_size}}) {
        if (size != 0) {
            partitions += fmt::format(", {} {}", label, util::format_bytes(size));
        }
    }
    out += fmt::format("  partitions      {}; disk size {}\n", partitions,
                       plan.disk_size == 0 ? std::string("the smallest that fits")
                                           : util::format_bytes(plan.disk_size));
    for (const auto& file : plan.content_files) {
        out += fmt::format("  {:<15} {} -> {}:/{}{}\n", file.split ? "split bundle" : "content",
                           file.source.string(), k_content_label, file.path,
                           file.split ? " (its parts put back together)" : "");
    }
    // The ISO's lines, but for where bundles and configs go on the ISO: on the disk they are on
    // COS_CONTENT (listed above), or nowhere.
    const std::string iso = render_iso_plan(plan.installer);
    for (const auto& line : util::split(iso.substr(iso.find('\n') + 1), '\n')) {
        if (line.empty() || line.starts_with("  content bundle ") ||
            line.starts_with("  cluster config ") || line.starts_with("  edge config ")) {
            continue;
        }
        out += line + "\n";
    }
    if (plan.content_size == 0 &&
        (!plan.installer.content_bundles.empty() || plan.installer.cluster_config ||
         plan.installer.edge_custom_config)) {
        out += "  content         not on the disk (disk.content_partition is false)\n";
    }
    return out;
}

namespace {

// Produces `formats` from the raw disk, two at a time: each conversion is mostly reading, hashing
// and writing some 300 MB (the OVA deflates on every core too), so one waiting on memory leaves
// room for another. Their artifacts in the order of `formats`; the first failure is rethrown once
// every running conversion has stopped (each removes its own temporaries).
std::vector<Artifact> produce_side_by_side(const std::vector<const OutputFormat*>& formats,
                                           const FormatContext& context) {
    constexpr std::size_t k_at_once = 2;
    std::vector<std::vector<Artifact>> produced(formats.size());
    std::mutex mutex; // the next format to start, the first failure, and the console
    std::size_t next = 0;
    std::exception_ptr failure;
    const auto work = [&] {
        for (;;) {
            // Nothing may leave a helper thread: every failure is kept for the caller.
            try {
                std::size_t index = 0;
                {
                    const std::lock_guard lock(mutex);
                    if (next == formats.size() || failure) {
                        return;
                    }
                    index = next++;
                    context.console.info("disk: writing {}",
                                         context.plan.artifact(formats[index]->name).string());
                }
                const auto start = std::chrono::steady_clock::now();
                produced[index] = formats[index]->produce(context);
                const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
                const std::lock_guard lock(mutex);
                context.console.detail("disk: wrote {} in {:.2f} s",
                                       context.plan.artifact(formats[index]->name).string(),
                                       took.count());
            } catch (...) {
                const std::lock_guard lock(mutex);
                if (!failure) {
                    failure = std::current_exception();
                }
            }
        }
    };
    {
        std::vector<std::jthread> helpers;
        for (std::size_t i = 1; i < std::min(k_at_once, formats.size()); ++i) {
            helpers.emplace_back(work);
        }
        work(); // the helpers are joined when they go out of scope, whatever happens here
    }
    if (failure) {
        std::rethrow_exception(failure);
    }
    std::vector<Artifact> artifacts;
    for (auto& list : produced) {
        for (auto& artifact : list) {
            artifacts.push_back(std::move(artifact));
        }
    }
    return artifacts;
}

} // namespace

DiskBuildResult build_disk(const DiskPlan& plan, const Console& console) {
    std::error_code ec;
    stdfs::create_directories(plan.installer.output_dir, ec);
    if (ec) {
        throw build_failed("cannot create the output directory {}: {}",
                           plan.installer.output_dir.string(), ec.message());
    }
    util::TempDir work(plan.installer.output_dir, ".edgeforge-disk-");
    const bool keep_raw =
        std::find(plan.formats.begin(), plan.formats.end(), "raw") != plan.formats.end();
    // Every format here wraps the raw disk; a build without "raw" keeps it in the work directory.
    const stdfs::path raw_path = work.path() / "disk.raw";
    const RawResult raw = build_raw(plan, console, work.path(), raw_path);
    // A kept raw disk goes to the storage device while the other formats read it from memory.
    std::future<void> raw_flushed;
    if (keep_raw) {
        raw_flushed = std::async(std::launch::async, [&] { util::flush_file(raw_path); });
    }
    FormatContext context{plan, console, raw.path, raw.digest, &raw.layout, work.path()};
    std::vector<const OutputFormat*> side_by_side;
    std::vector<const OutputFormat*> alone;
    for (const auto& name : plan.formats) {
        if (name != "raw") {
            const OutputFormat* format = find_output_format(name);
            (format->produces_alone ? alone : side_by_side).push_back(format);
        }
    }
    std::vector<Artifact> artifacts = produce_side_by_side(side_by_side, context);
    for (const OutputFormat* format : alone) {
        console.info("disk: writing {}", plan.artifact(format->name).string());
        for (auto& artifact : format->produce(context)) {
            artifacts.push_back(std::move(artifact));
        }
    }
    if (keep_raw) {
        // Last, so that the others could read it from the work directory: renamed into place.
        const stdfs::path final_raw = plan.artifact("raw");
        try {
            raw_flushed.get();
            util::rename_durably(raw_path, final_raw);
        } catch (const std::system_error& error) {
            throw build_failed("cannot write the raw disk {}: {}; check that its directory is "
                               "writable and has space",
                               final_raw.string(), error.what());
        }
        const Artifact artifact{final_raw, stdfs::file_size(final_raw), raw.sha256};
        write_checksum_file(artifact);
        artifacts.insert(artifacts.begin(), artifact);
    }
    return {std::move(artifacts), {{"rootfs", raw.rootfs}}};
}

} // namespace edgeforge
