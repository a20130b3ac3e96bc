// The output formats of `edgeforge build disk`, as one table: name, arches, what each wraps.
#include "formats/output_formats.h"

#include <algorithm>

#include "formats/disk.h"
#include "formats/ova.h"
#include "formats/qcow2.h"

namespace edgeforge::formats {

// Defined in disk.cpp: the artifact with its sha256, and the .sha256 file next to it.
Artifact disk_artifact_with_checksum(const std::filesystem::path& path);

namespace {

using A = Arch::Id;

std::vector<Artifact> produce_raw(const FormatContext&) {
    return {}; // build_disk writes the raw disk itself, before every other format
}

std::vector<Artifact> produce_qcow2(const FormatContext& context) {
    const auto output = context.plan.artifact("qcow2");
    write_qcow2(context.raw, output, Qcow2Options{});
    return {disk_artifact_with_checksum(output)};
}

std::vector<Artifact> produce_ova(const FormatContext& context) {
    const auto output = context.plan.artifact("ova");
    OvaOptions options;
    options.name = context.plan.rootfs.name;
    options.arch = context.plan.rootfs.arch;
    options.cpus = context.plan.ova_cpus;
    options.memory_bytes = context.plan.ova_memory;
    options.hardware_version = context.plan.ova_hardware_version;
    options.content_digest = context.raw_digest;
    options.source_date_epoch = context.plan.rootfs.source_date_epoch;
    write_ova(context.raw, output, context.work_directory, options);
    return {disk_artifact_with_checksum(output)};
}

const std::vector<OutputFormat>& table() {
    static const std::vector<OutputFormat> rows = {
        {"raw", "GPT disk in the Kairos layout (COS_GRUB, COS_OEM, COS_RECOVERY)",
         {A::amd64, A::arm64}, "", {"disk.size", "disk.bios"}, produce_raw},
        {"qcow2", "QCOW2 v3 of the raw disk (zero clusters unallocated)", {A::amd64, A::arm64},
         "raw", {}, produce_qcow2},
        {"ova", "vSphere OVA: VMDK streamOptimized + OVF + manifest", {A::amd64, A::arm64}, "raw",
         {"ova.cpus", "ova.memory", "ova.hardware_version"}, produce_ova},
        {"ami", "raw disk sized to whole GiB + ami.json; --upload registers it",
         {A::amd64, A::arm64}, "raw", {"ami.name", "ami.description", "ami.region"}, nullptr},
        {"vhd", "Azure fixed VHD", {A::amd64, A::arm64}, "raw", {}, nullptr},
        {"gce", "GCE disk.raw in a gzip'd tar", {A::amd64, A::arm64}, "raw", {}, nullptr},
    };
    return rows;
}

} // namespace

std::span<const OutputFormat> output_formats() {
    return table();
}

const OutputFormat* find_output_format(std::string_view name) {
    const auto& rows = table();
    const auto it = std::find_if(rows.begin(), rows.end(),
                                 [&](const OutputFormat& row) { return row.name == name; });
    return it == rows.end() ? nullptr : &*it;
}

} // namespace edgeforge::formats
