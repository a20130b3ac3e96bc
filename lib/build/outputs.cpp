// The outputs table and the producers of the disk formats (raw is written by build_disk).
#include "build/outputs.h"

#include <algorithm>

#include <chrono>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "cloud/aws_credentials.h"
#include "cloud/ebs_upload.h"
#include "base/error.h"
#include "build/disk.h"
#include "formats/gce.h"
#include "formats/ova.h"
#include "formats/qcow2.h"
#include "formats/vhd.h"
#include "util/units.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {

namespace {

using util::k_gib;
using util::round_up;

using A = Arch::Id;

std::vector<Artifact> produce_raw(const FormatContext&) {
    return {}; // build_disk writes the raw disk itself, before every other format
}

std::vector<Artifact> produce_qcow2(const FormatContext& context) {
    const auto output = context.plan.artifact("qcow2");
    formats::Qcow2Options options;
    options.compute_sha256 = true;
    const formats::Qcow2Result qcow2 = formats::write_qcow2(context.raw, output, options);
    // The image was hashed as it was written: no second read.
    const Artifact artifact{output, qcow2.file_size, *qcow2.sha256};
    write_checksum_file(artifact);
    return {artifact};
}

std::vector<Artifact> produce_ova(const FormatContext& context) {
    const auto output = context.plan.artifact("ova");
    formats::OvaOptions options;
    options.name = context.plan.installer.name;
    options.arch = context.plan.installer.arch;
    options.cpus = context.plan.ova_cpus;
    options.memory_bytes = context.plan.ova_memory;
    options.hardware_version = context.plan.ova_hardware_version;
    options.content_digest = context.raw_digest;
    options.source_date_epoch = context.plan.installer.source_date_epoch;
    const formats::OvaResult ova = formats::write_ova(context.raw, output, options);
    // The OVA was hashed as it was written: no second read.
    const Artifact artifact{output, ova.size, ova.sha256};
    write_checksum_file(artifact);
    return {artifact};
}


// EC2 wants whole GiB volumes: the same partitions on a disk rounded up to GiB, the backup GPT
// at its end, plus ami.json with the RegisterImage parameters; with --upload the snapshot is
// written with the EBS direct APIs and the AMI registered, and ami.json gets their ids.
std::vector<Artifact> produce_ami(const FormatContext& context) {
    const DiskPlan& plan = context.plan;
    formats::RawDiskLayout layout = *context.layout;
    const std::uint64_t size = std::filesystem::file_size(context.raw);
    layout.disk_size = round_up(size, k_gib);
    const auto raw = plan.artifact("ami");
    const formats::RawDiskResult written = formats::write_raw_disk(layout, raw);

    cloud::RegisterImageOptions image;
    image.name = plan.ami_name.empty() ? plan.installer.name : plan.ami_name;
    image.description = plan.ami_description;
    image.arch = plan.installer.arch;
    nlohmann::json ebs{{"VolumeSize", layout.disk_size / k_gib},
                       {"VolumeType", image.volume_type},
                       {"DeleteOnTermination", image.delete_on_termination},
                       {"SnapshotId", nullptr}};
    nlohmann::json description{
        {"Name", image.name},
        {"Description", image.description},
        {"Architecture", std::string(plan.installer.arch.traits().aws_architecture)},
        {"BootMode", "uefi"},
        {"EnaSupport", true},
        {"VirtualizationType", "hvm"},
        {"ImdsSupport", "v2.0"},
        {"RootDeviceName", image.root_device_name},
        {"BlockDeviceMappings", nlohmann::json::array({{{"DeviceName", image.root_device_name},
                                                        {"Ebs", ebs}}})},
        {"Image", raw.filename().string()},
        {"ImageSize", layout.disk_size},
        {"ImageId", nullptr},
    };
    if (plan.upload) {
        cloud::AwsClientOptions aws;
        aws.credentials = cloud::load_aws_credentials();
        aws.region = plan.aws_region;
        if (const char* endpoint = std::getenv("AWS_ENDPOINT_URL"); endpoint != nullptr) {
            aws.endpoint_url = endpoint;
        }
        cloud::AmiUploadOptions upload;
        upload.snapshot.image = raw;
        upload.snapshot.description = fmt::format("edgeforge {} {}", image.name,
                                                  plan.installer.arch.name());
        upload.image = image;
        context.console.info("ami: uploading {} to EBS in {} ({})", raw.filename().string(),
                             aws.region, cloud::describe_credentials(aws.credentials));
        Progress progress(context.console, "ami upload", 0);
        const cloud::AmiUpload done =
            cloud::upload_ami(aws, upload, [&](const cloud::UploadProgress& state) {
                progress.set_total(state.blocks_total * 512 * 1024);
                progress.update(state.blocks_done * 512 * 1024);
            });
        progress.finish();
        description["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] = done.snapshot.snapshot_id;
        description["ImageId"] = done.image_id;
        context.console.info("ami: snapshot {}, image {} ({})", done.snapshot.snapshot_id,
                             done.image_id, aws.region);
        description["Region"] = aws.region;
    }
    const auto json_path = plan.installer.output_dir / (plan.installer.name + "-ami.json");
    util::write_file_atomically(json_path, description.dump(2) + "\n");
    const Artifact disk{raw, written.disk_size, written.sha256};
    write_checksum_file(disk);
    return {disk, artifact_with_checksum(json_path)};
}

// The raw disk again at `size` bytes, in the work directory (next to the outputs, so that a
// rename moves it into place): the same partitions, the backup GPT at the new end.
std::filesystem::path resized_raw(const FormatContext& context, std::uint64_t size,
                                  std::string_view name) {
    formats::RawDiskLayout layout = *context.layout;
    layout.disk_size = size;
    const auto path = context.work_directory / std::string(name);
    formats::write_raw_disk(layout, path);
    return path;
}

void rename_into_place(const std::filesystem::path& from, const std::filesystem::path& to) {
    std::error_code ec;
    std::filesystem::rename(from, to, ec);
    if (ec) {
        throw build_failed("cannot move {} to {}: {}", from.string(), to.string(), ec.message());
    }
}

// Azure: a fixed VHD, i.e. the raw disk rounded up to whole MiB (the backup GPT at the end of
// that) followed by the 512-byte footer. Timestamp and unique id come from SOURCE_DATE_EPOCH and
// the inputs when set, so the VHD is reproducible like the raw disk.
std::vector<Artifact> produce_vhd(const FormatContext& context) {
    const DiskPlan& plan = context.plan;
    const std::uint64_t size =
        round_up(std::filesystem::file_size(context.raw), formats::k_vhd_size_alignment);
    const auto output = plan.artifact("vhd");
    const auto temp = resized_raw(context, size, output.filename().string());
    formats::VhdFooterOptions footer;
    footer.disk_size = size;
    if (plan.installer.source_date_epoch) {
        footer.timestamp = *plan.installer.source_date_epoch;
        footer.unique_id = fs::guid_from_seed("edgeforge-vhd-id\n" + context.raw_digest);
    } else {
        footer.timestamp = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        footer.unique_id = fs::random_guid();
    }
    formats::append_vhd_footer(temp, footer);
    rename_into_place(temp, output);
    return {artifact_with_checksum(output)};
}

// GCE: the raw disk rounded up to whole GiB (the backup GPT at the end of that) as disk.raw in
// <name>-gce.tar.gz, the tarball `gcloud compute images create --source-uri` imports.
std::vector<Artifact> produce_gce(const FormatContext& context) {
    const DiskPlan& plan = context.plan;
    const std::uint64_t size =
        round_up(std::filesystem::file_size(context.raw), formats::k_gce_size_alignment);
    const auto raw = resized_raw(context, size, "gce-disk.raw");
    const auto output = plan.artifact("gce");
    const auto mtime = plan.installer.source_date_epoch.value_or(
        std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    const formats::GceTarballResult tarball = formats::write_gce_tarball(raw, output, mtime);
    std::error_code ignored;
    std::filesystem::remove(raw, ignored); // it can be as big as the disk
    const Artifact artifact{output, tarball.size, tarball.sha256};
    write_checksum_file(artifact);
    return {artifact};
}

using R = HostRequirement;

// What every bootable output needs: the ESP tools and GRUB fallbacks.
std::vector<R> bootable_requirements(const Arch& arch) {
    const auto& traits = arch.traits();
    std::vector<R> list{
        {R::Kind::program, "mkfs.fat", "dosfstools", "EFI system partition (FAT)", Need::required},
        {R::Kind::program, "mcopy", "mtools", "copying boot files into the ESP", Need::required},
        {R::Kind::program, "grub-mkimage", "grub-common",
         "GRUB images when the base image has no EFI/BIOS boot binaries, and the core.img of "
         "--bios disks",
         Need::fallback},
        {R::Kind::path, "/usr/lib/grub/" + std::string(traits.grub_efi_target),
         arch.id() == Arch::Id::amd64 ? "grub-efi-amd64-bin" : "grub-efi-arm64-bin",
         "GRUB EFI modules when the base image has none", Need::fallback},
    };
    if (arch.has_bios_boot()) {
        list.push_back({R::Kind::path, "/usr/lib/grub/" + std::string(traits.grub_bios_target),
                        "grub-pc-bin", "BIOS boot when the base image has no i386-pc modules",
                        Need::fallback});
    }
    list.push_back({R::Kind::program, "supermin", "supermin",
                    "'edgeforge inspect' of built disks (the libguestfs appliance)",
                    Need::fallback});
    return list;
}

// The raw disk and every format made from it: the bootable set plus ext4 partitions.
std::vector<R> disk_requirements(const Arch& arch) {
    auto list = bootable_requirements(arch);
    list.push_back({R::Kind::program, "mke2fs", "e2fsprogs",
                    "COS_OEM/COS_RECOVERY/COS_CONTENT ext4 partitions", Need::required});
    return list;
}

std::vector<R> no_requirements(const Arch&) {
    return {};
}

const std::vector<OutputFormat>& table() {
    using G = OutputGroup;
    static const std::vector<OutputFormat> rows = {
        {.name = "iso",
         .description = "bootable live installer ISO (BIOS + UEFI, hybrid for USB sticks)",
         .group = G::iso,
         .arches = {A::amd64, A::arm64},
         .file_suffix = ".iso",
         .settings = {"iso.extra_cmdline", "iso.split_size"},
         .host = bootable_requirements},
        {.name = "iso-disk-image",
         .description = "the ISO as a KubeVirt containerDisk OCI image (/disk/<name>.iso, "
                        "CanvOS's +iso-disk-image); --push sends it to REGISTRY/REPO/NAME:TAG",
         .group = G::iso_disk_image,
         .arches = {A::amd64, A::arm64},
         .wraps = "iso",
         .file_suffix = "-disk-image",
         .settings = {"provider.registry", "provider.repository", "provider.custom_tag",
                      "agent.version"},
         .host = bootable_requirements},
        {.name = "raw",
         .description = "GPT disk in the Kairos layout (COS_GRUB, COS_OEM, COS_RECOVERY; "
                        "optionally a BIOS boot partition, COS_CONTENT, COS_STATE, "
                        "COS_PERSISTENT)",
         .group = G::disk,
         .arches = {A::amd64, A::arm64},
         .file_suffix = ".raw",
         .settings = {"disk.size", "disk.bios", "disk.state_size", "disk.persistent_size",
                      "disk.content_partition"},
         .host = disk_requirements,
         .produce = produce_raw},
        {.name = "qcow2",
         .description = "QCOW2 v3 of the raw disk (zero clusters unallocated)",
         .group = G::disk,
         .arches = {A::amd64, A::arm64},
         .wraps = "raw",
         .file_suffix = ".qcow2",
         .host = disk_requirements,
         .produce = produce_qcow2},
        {.name = "ova",
         .description = "vSphere OVA: VMDK streamOptimized + OVF + manifest",
         .group = G::disk,
         .arches = {A::amd64, A::arm64},
         .wraps = "raw",
         .file_suffix = ".ova",
         .settings = {"ova.cpus", "ova.memory", "ova.hardware_version"},
         .host = disk_requirements,
         .produce = produce_ova},
        {.name = "ami",
         .description = "raw disk sized to whole GiB + ami.json; --upload registers it",
         .group = G::disk,
         .arches = {A::amd64, A::arm64},
         .wraps = "raw",
         .file_suffix = "-ami.raw",
         .settings = {"ami.name", "ami.description", "ami.region"},
         .host = disk_requirements,
         .produce = produce_ami,
         .produces_alone = true},
        {.name = "vhd",
         .description = "Azure fixed VHD: the raw disk at whole MiB + the VHD footer",
         .group = G::disk,
         .arches = {A::amd64, A::arm64},
         .wraps = "raw",
         .file_suffix = ".vhd",
         .host = disk_requirements,
         .produce = produce_vhd},
        {.name = "gce",
         .description = "GCE disk.raw (whole GiB) in a gzip'd GNU tar",
         .group = G::disk,
         .arches = {A::amd64, A::arm64},
         .wraps = "raw",
         .file_suffix = "-gce.tar.gz",
         .host = disk_requirements,
         .produce = produce_gce},
        {.name = "provider",
         .description = "OCI images: the OS with a Kubernetes distribution, one per version",
         .group = G::provider,
         .arches = {A::amd64, A::arm64},
         .file_suffix = "",
         .settings = {"kubernetes.distribution", "kubernetes.versions", "provider.arches",
                      "provider.registry", "provider.repository"},
         .host = no_requirements},
        {.name = "site-media",
         .description = "CIDATA seed ISO with one site's user-data (build site-media)",
         .group = G::site_media,
         .arches = {A::amd64, A::arm64},
         .file_suffix = "-cidata.iso",
         .in_build_all = false,
         .host = no_requirements},
        {.name = "content",
         .description =
             "air-gapped content bundles: one per file of content.manifests (content build "
             "for one)",
         .group = G::content,
         .arches = {A::amd64, A::arm64},
         .file_suffix = ".tar.zst",
         .host = no_requirements},
    };
    return rows;
}

} // namespace

std::string_view group_name(OutputGroup group) {
    switch (group) {
    case OutputGroup::iso:
        return "iso";
    case OutputGroup::iso_disk_image:
        return "iso-disk-image";
    case OutputGroup::disk:
        return "disk";
    case OutputGroup::provider:
        return "provider";
    case OutputGroup::site_media:
        return "site-media";
    case OutputGroup::content:
        return "content";
    }
    return "";
}

std::span<const OutputFormat> output_formats() {
    return table();
}

const OutputFormat* find_output_format(std::string_view name) {
    const auto& rows = table();
    const auto it = std::find_if(rows.begin(), rows.end(),
                                 [&](const OutputFormat& row) { return row.name == name; });
    return it == rows.end() ? nullptr : &*it;
}

std::vector<std::string_view> output_names(OutputGroup group) {
    std::vector<std::string_view> names;
    for (const auto& row : table()) {
        if (row.group == group) {
            names.push_back(row.name);
        }
    }
    return names;
}

std::string output_names_text(OutputGroup group) {
    return util::join(output_names(group), ", ");
}

std::vector<std::string_view> build_all_output_names() {
    std::vector<std::string_view> names;
    for (const auto& row : table()) {
        if (row.in_build_all) {
            names.push_back(row.name);
        }
    }
    return names;
}

std::vector<HostRequirement> host_requirements(const std::vector<std::string>& outputs,
                                               const Arch& arch) {
    std::vector<HostRequirement> list;
    for (const auto& row : table()) {
        if (std::find(outputs.begin(), outputs.end(), row.name) == outputs.end()) {
            continue;
        }
        for (auto& requirement : row.host(arch)) {
            const bool seen = std::any_of(list.begin(), list.end(), [&](const R& known) {
                return known.name == requirement.name;
            });
            if (!seen) {
                list.push_back(std::move(requirement));
            }
        }
    }
    return list;
}

} // namespace edgeforge
