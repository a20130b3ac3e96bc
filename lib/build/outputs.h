// Every output edgeforge produces (ISO, its containerDisk image, disk formats, provider images,
// site media, bundles), as one table: name, group, arches, artifact names, host requirements,
// settings, producer.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/arch.h"
#include "base/console.h"
#include "base/artifact.h"
#include "formats/raw_disk.h"

namespace edgeforge {
struct DiskPlan;
}

namespace edgeforge {

// What a format's producer gets: the plan, the raw disk (for formats that wrap it) and a work
// directory that lives until the build ends.
struct FormatContext {
    const DiskPlan& plan;
    const Console& console;
    std::filesystem::path raw;           // the composed raw disk (after the raw step)
    std::string raw_digest;              // identifies its content (for VMDK CIDs and GUIDs)
    // How the raw disk was laid out (its partition images live in the work directory), for
    // formats that need the same disk at another size.
    const formats::RawDiskLayout* layout = nullptr;
    std::filesystem::path work_directory;
};

// Which builder produces an output. `build all` runs the groups in this order, each once for
// every output of `outputs` that belongs to it (the disk formats share one raw disk).
enum class OutputGroup { iso, iso_disk_image, disk, provider, site_media, content };
std::string_view group_name(OutputGroup group); // "iso", "iso-disk-image", "disk", ...

enum class Need {
    required, // the build fails without it
    fallback, // used only when the base image lacks something (e.g. EFI binaries)
    testing,  // needed by the end-to-end tests and benchmarks, not by builds
};

// A host program or file an output needs (`edgeforge doctor` checks them).
struct HostRequirement {
    enum class Kind { program, path } kind;
    std::string name;    // "mkfs.fat", "/usr/lib/grub/i386-pc"
    std::string package; // Debian package that provides it
    std::string purpose; // why edgeforge needs it
    Need need = Need::required;
};

// One row per output edgeforge produces: adding an output is a writer and one row here.
struct OutputFormat {
    std::string_view name;
    std::string_view description;
    OutputGroup group;
    std::vector<Arch::Id> arches;
    // The output this one converts ("raw"), or empty.
    std::string_view wraps;
    // The main artifact: build/<name><file_suffix> (".iso", ".qcow2", "-gce.tar.gz"; a
    // directory for provider images and the iso-disk-image's OCI layout).
    std::string_view file_suffix;
    // May be listed under `outputs:` (what `build all` builds).
    bool in_build_all = true;
    // Settings keys the output reads (checked by its plan; listed in help).
    std::vector<std::string_view> settings;
    // Host programs and files it needs on `arch`.
    std::function<std::vector<HostRequirement>(const Arch& arch)> host;
    // Disk formats: writes the format from the raw disk. Other groups have their own builder.
    // Producers only read the raw disk and write their own files, so they run side by side;
    std::function<std::vector<Artifact>(const FormatContext&)> produce;
    // but one that talks to the console itself (the AMI upload's progress) runs alone, after them.
    bool produces_alone = false;
};

// Every output, in the order `build all` produces them.
std::span<const OutputFormat> output_formats();
const OutputFormat* find_output_format(std::string_view name);
// The names of one group's outputs ("raw, qcow2, ova, ..." for help texts and errors).
std::vector<std::string_view> output_names(OutputGroup group);
// The same names as one line of text for --help ("raw, qcow2, ova, ...").
std::string output_names_text(OutputGroup group);
// The values `outputs:` accepts.
std::vector<std::string_view> build_all_output_names();
// What the given outputs need on the host, each requirement once, in table order.
std::vector<HostRequirement> host_requirements(const std::vector<std::string>& outputs,
                                               const Arch& arch);

} // namespace edgeforge
