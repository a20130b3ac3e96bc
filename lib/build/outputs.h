// The output formats of `edgeforge build disk`, as one table: name, arches, what each wraps.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/arch.h"
#include "base/console.h"
#include "build/iso.h"
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

struct OutputFormat {
    std::string_view name;
    std::string_view description;
    std::vector<Arch::Id> arches;
    // The format this one converts ("raw"), or empty for the raw disk itself.
    std::string_view wraps;
    // Settings keys the format reads (for `config show` and help).
    std::vector<std::string_view> settings;
    // Null while the format has not landed: planning rejects it with a clear message.
    std::function<std::vector<Artifact>(const FormatContext&)> produce;
};

// Every format, in the order `build disk` produces them.
std::span<const OutputFormat> output_formats();
const OutputFormat* find_output_format(std::string_view name);

} // namespace edgeforge
