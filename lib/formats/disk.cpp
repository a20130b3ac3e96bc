// `edgeforge build disk`: the Kairos raw disk and the formats that wrap it (qcow2, ova, ...).
#include "formats/disk.h"

#include <algorithm>
#include <set>
#include <system_error>

#include "boot/efi.h"
#include "boot/esp.h"
#include "boot/grub.h"
#include "cloud/aws_credentials.h"
#include "cloud/ebs_upload.h"
#include "core/compose.h"
#include "core/templates.h"
#include "formats/output_formats.h"
#include "formats/raw_disk.h"
#include "fs/ext4.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr std::uint64_t k_mib = 1ULL << 20;
constexpr std::uint64_t k_oem_size = 64 * k_mib;
constexpr std::string_view k_recovery_label = "COS_RECOVERY";

std::uint64_t round_up(std::uint64_t value, std::uint64_t unit) {
    return (value + unit - 1) / unit * unit;
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

struct RawResult {
    stdfs::path path;
    std::string digest; // of the inputs: seeds GUIDs and VMDK CIDs
    formats::RawDiskLayout layout;
};

// The Kairos layout: COS_GRUB (the ESP: shim + grub + a stub that finds /boot/kernel on
// COS_RECOVERY and loads its /boot/grub2/grub.cfg), COS_OEM (ext4: the user-data as
// /99_userdata.yaml, read on first boot), COS_RECOVERY (ext4: kernel, initrd, grub menu and the
// same rootfs.squashfs the ISO boots, in the live layout).
RawResult build_raw(const DiskPlan& plan, const Console& console, const stdfs::path& work,
                    const stdfs::path& output) {
    const IsoPlan& iso = plan.rootfs;
    const ComposedRootfs rootfs = compose_rootfs(iso, console);
    const std::string user_data = util::read_file(iso.user_data);
    util::Sha256 digest;
    digest.update(rootfs.key);
    digest.update(util::sha256_hex(user_data));
    digest.update(fmt::format("{} {} {}", plan.disk_size, plan.bios, iso.extra_cmdline));
    RawResult result{output, digest.finish_hex(), {}};

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

    const stdfs::path oem_tree = work / "oem";
    stdfs::create_directories(oem_tree);
    util::write_file_atomically(oem_tree / "99_userdata.yaml", user_data);
    const stdfs::path oem = work / "cos_oem.img";
    fs::make_ext4_image(oem_tree, k_oem_size, "COS_OEM", oem, iso.source_date_epoch);

    const stdfs::path recovery_tree = work / "recovery";
    for (const char* directory : {"boot/grub2", "boot/grub", ".disk"}) {
        stdfs::create_directories(recovery_tree / directory);
    }
    place_file(rootfs.squashfs, recovery_tree / boot::k_live_squashfs_name);
    boot::extract_file(*kernel.kernel, no_spill, recovery_tree / "boot" / "kernel");
    boot::extract_file(*kernel.initrd, no_spill, recovery_tree / "boot" / "initrd");
    util::write_file_atomically(recovery_tree / "boot" / "grub2" / "grub.cfg",
                                boot::render_live_menu(menu, templates));
    util::write_file_atomically(recovery_tree / "boot" / "grub" / "grub.cfg", stub);
    util::write_file_atomically(recovery_tree / ".disk" / "info", "Kairos recovery\n");
    const std::uint64_t payload = stdfs::file_size(rootfs.squashfs) +
                                  kernel.kernel->data.size + kernel.initrd->data.size;
    // ext4 metadata, the journal and some room: a tenth more and 32 MiB.
    const std::uint64_t recovery_size = round_up(payload + payload / 10 + 32 * k_mib, k_mib);
    const stdfs::path recovery = work / "cos_recovery.img";
    fs::make_ext4_image(recovery_tree, recovery_size, k_recovery_label, recovery,
                        iso.source_date_epoch);

    formats::RawDiskLayout& layout = result.layout;
    layout.disk_size = plan.disk_size;
    layout.seed = iso.source_date_epoch ? result.digest : std::string();
    layout.partitions.push_back(
        {"COS_GRUB", fs::k_efi_system_partition_type, 0, esp, 0, std::nullopt});
    layout.partitions.push_back(
        {"COS_OEM", fs::k_linux_filesystem_partition_type, 0, oem, 0, std::nullopt});
    layout.partitions.push_back({std::string(k_recovery_label),
                                 fs::k_linux_filesystem_partition_type, 0, recovery, 0,
                                 std::nullopt});
    console.info("disk: writing {}", output.string());
    formats::write_raw_disk(layout, output);
    return result;
}


} // namespace

namespace {

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
        image.name = plan.ami_name.empty() ? plan.rootfs.name : plan.ami_name;
        image.description = plan.ami_description;
        image.arch = plan.rootfs.arch;
        cloud::validate_register_image_options(image);
    } catch (const Error& error) {
        diagnostics.absorb(error);
    }
}

} // namespace

nlohmann::json DiskPlan::to_json() const {
    nlohmann::json json = rootfs.to_json();
    json["kind"] = "disk";
    json["formats"] = formats;
    json["disk_size"] = disk_size;
    json["bios"] = bios;
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
    try {
        plan.rootfs = plan_iso(config);
    } catch (const Error& error) {
        diagnostics.absorb(error);
    }
    plan.disk_size = config.size("disk.size");
    plan.bios = config.boolean("disk.bios");
    plan.ova_cpus = static_cast<int>(config.integer("ova.cpus"));
    plan.ova_memory = config.size("ova.memory");
    plan.ova_hardware_version = static_cast<int>(config.integer("ova.hardware_version"));
    plan.ami_name = config.string("ami.name");
    plan.ami_description = config.string("ami.description");

    std::vector<std::string> names = requested;
    if (names.empty()) {
        for (const auto& output : config.list("outputs")) {
            if (output != "iso" && output != "provider") {
                names.push_back(output);
            }
        }
    }
    if (names.empty()) {
        diagnostics.error(where_set(config, "outputs"),
                          "no disk format to build: pass --format raw,qcow2,... or list them "
                          "under outputs: in edgeforge.yaml");
    }
    std::vector<std::string_view> known;
    for (const auto& format : formats::output_formats()) {
        known.push_back(format.name);
    }
    std::set<std::string> wanted;
    for (const auto& name : names) {
        const formats::OutputFormat* format = formats::find_output_format(name);
        if (format == nullptr) {
            const auto suggestion = util::closest_match(name, known);
            diagnostics.error(SourceLocation{"--format"},
                              fmt::format("unknown disk format '{}'{}; formats: {}", name,
                                          suggestion ? fmt::format(" (did you mean '{}'?)",
                                                                   *suggestion)
                                                     : std::string(),
                                          util::join(known, ", ")));
            continue;
        }
        if (!format->produce) {
            diagnostics.error(SourceLocation{"--format"},
                              fmt::format("disk format '{}' has not landed in this version yet; "
                                          "available now: raw, qcow2, ova, ami",
                                          name));
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
    for (const auto& format : formats::output_formats()) {
        if (wanted.count(std::string(format.name)) != 0) {
            plan.formats.emplace_back(format.name);
        }
    }
    plan.upload = upload;
    if (upload) {
        check_upload(plan, config, diagnostics);
    }
    diagnostics.throw_if_any();
    return plan;
}

std::string render_disk_plan(const DiskPlan& plan) {
    std::string out = fmt::format("plan: build {} disk image(s) for {}\n", plan.formats.size(),
                                  plan.rootfs.arch.name());
    for (const auto& format : plan.formats) {
        out += fmt::format("  {:<6}          {}\n", format, plan.artifact(format).string());
    }
    const std::string iso = render_iso_plan(plan.rootfs);
    out += iso.substr(iso.find('\n') + 1);
    return out;
}

std::vector<formats::Artifact> build_disk(const DiskPlan& plan, const Console& console) {
    std::error_code ec;
    stdfs::create_directories(plan.rootfs.output_dir, ec);
    if (ec) {
        throw build_failed("cannot create the output directory {}: {}",
                           plan.rootfs.output_dir.string(), ec.message());
    }
    util::TempDir work(plan.rootfs.output_dir, ".edgeforge-disk-");
    const bool keep_raw =
        std::find(plan.formats.begin(), plan.formats.end(), "raw") != plan.formats.end();
    // Every format here wraps the raw disk; a build without "raw" keeps it in the work directory.
    const stdfs::path raw_path = work.path() / "disk.raw";
    const RawResult raw = build_raw(plan, console, work.path(), raw_path);
    formats::FormatContext context{plan, console, raw.path, raw.digest, &raw.layout, work.path()};
    std::vector<formats::Artifact> artifacts;
    for (const auto& name : plan.formats) {
        if (name == "raw") {
            continue;
        }
        console.info("disk: writing {}", plan.artifact(name).string());
        for (auto& artifact : formats::find_output_format(name)->produce(context)) {
            artifacts.push_back(std::move(artifact));
        }
    }
    if (keep_raw) {
        // Last, so that the others could read it from the work directory: renamed into place.
        const stdfs::path final_raw = plan.artifact("raw");
        stdfs::rename(raw_path, final_raw, ec);
        if (ec) {
            throw build_failed("cannot move the raw disk to {}: {}", final_raw.string(),
                               ec.message());
        }
        artifacts.insert(artifacts.begin(), formats::artifact_with_checksum(final_raw));
    }
    return artifacts;
}

} // namespace edgeforge
