// Builds the FAT EFI system partition image of live media (uefi.img) with mkfs.fat and mtools.
#include "boot/esp.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <system_error>

#include <fmt/format.h>
#include <unistd.h>

#include "base/error.h"
#include "util/units.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::boot {
namespace {

using util::k_mib;
using util::round_up;

constexpr std::uint64_t k_cluster = 4096;
// Reserved sectors, two FATs and the root directory of a FAT16 image of a few MiB take well
// under this; the rest is slack so that the estimate never depends on mkfs.fat's choices.
constexpr std::uint64_t k_fat_overhead = std::uint64_t{256} * 1024;

void check_label(const std::string& label) {
    const bool valid_chars = std::all_of(label.begin(), label.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
    if (label.empty() || label.size() > 11 || !valid_chars) {
        throw bad_input("FAT volume label '{}': use 1 to 11 characters A-Z, 0-9, '_' or '-'",
                        label);
    }
}

// "/EFI/BOOT/grub.cfg" -> {"EFI", "BOOT", "grub.cfg"}; rejects what FAT or mtools cannot hold.
std::vector<std::string> check_path(const std::string& path) {
    const auto parts = util::split(path, '/');
    bool valid = path.size() > 1 && path.front() == '/' && parts.size() >= 2;
    for (std::size_t i = 1; valid && i < parts.size(); ++i) {
        const auto& part = parts[i];
        valid = !part.empty() && part != "." && part != ".." &&
                std::none_of(part.begin(), part.end(), [](char c) {
                    return static_cast<unsigned char>(c) < 0x20 ||
                           std::string_view("\"*:<>?\\|").find(c) != std::string_view::npos;
                });
    }
    if (!valid) {
        throw bad_input("ESP path '{}' is not an absolute path with valid FAT names", path);
    }
    return {parts.begin() + 1, parts.end()};
}

std::uint64_t host_file_size(const std::filesystem::path& path) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    if (error) {
        throw build_failed("cannot read {}: {}", path.string(), error.message());
    }
    return size;
}

std::string tool_path(const std::string& name, std::string_view package) {
    const auto program = util::find_program(name);
    if (!program) {
        throw build_failed("{} is needed to build the EFI system partition image but is not "
                           "installed (install the Debian package {})",
                           name, package);
    }
    return program->string();
}

// Runs a FAT tool through env(1) so that TZ and SOURCE_DATE_EPOCH replace inherited values
// (an inherited variable would otherwise shadow one added to the environment).
void run_fat_tool(std::vector<std::string> argv, const EspOptions& options,
                  const std::filesystem::path& image) {
    std::vector<std::string> command{"env", "TZ=UTC0", "LC_ALL=C", "MTOOLS_SKIP_CHECK=1",
                                     "MTOOLSRC=/dev/null"};
    if (options.source_date_epoch) {
        command.push_back(fmt::format("SOURCE_DATE_EPOCH={}", *options.source_date_epoch));
    } else {
        command.insert(command.begin() + 1, {"-u", "SOURCE_DATE_EPOCH"});
    }
    const std::string tool = std::filesystem::path(argv.front()).filename().string();
    command.insert(command.end(), argv.begin(), argv.end());
    const auto result = util::run_process(command);
    if (result.exit_code != 0) {
        std::string message(util::trim(result.standard_error));
        if (message.empty()) {
            message = std::string(util::trim(result.standard_output));
        }
        throw build_failed("{} failed on the EFI system partition image {} (exit status {}): {}",
                           tool, image.string(), result.exit_code, message);
    }
}

std::uint32_t derive_volume_id(std::span<const EspFile> files, const EspOptions& options) {
    util::Sha256 seed;
    seed.update("edgeforge-esp-volume-id\n");
    seed.update(options.label);
    seed.update("\n");
    if (options.source_date_epoch) {
        seed.update(std::to_string(*options.source_date_epoch));
    }
    seed.update("\n");
    for (const auto& file : files) {
        seed.update(file.path);
        seed.update("\n");
        seed.update(file.content ? util::sha256_hex(*file.content)
                                 : util::sha256_file_hex(file.host_path));
        seed.update("\n");
    }
    const auto digest = seed.finish();
    return (std::uint32_t{digest[0]} << 24) | (std::uint32_t{digest[1]} << 16) |
           (std::uint32_t{digest[2]} << 8) | std::uint32_t{digest[3]};
}

} // namespace

std::uint64_t esp_image_size(std::span<const std::uint64_t> file_sizes, std::size_t directories) {
    std::uint64_t data = directories * k_cluster;
    for (const auto size : file_sizes) {
        data += round_up(std::max<std::uint64_t>(size, 1), k_cluster);
    }
    // FAT16 needs 2 bytes per cluster per FAT; 1/64 covers two FATs even for 512-byte clusters.
    return round_up(data + data / 64 + k_fat_overhead, k_mib);
}

EspImage build_esp_image(std::span<const EspFile> files, const std::filesystem::path& output,
                         const EspOptions& options) {
    check_label(options.label);
    // Sorted by path, so that mtools allocates clusters in the same order every time.
    std::vector<EspFile> sorted(files.begin(), files.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const EspFile& a, const EspFile& b) { return a.path < b.path; });
    std::set<std::string> directories;
    std::set<std::string> seen;
    std::vector<std::uint64_t> sizes;
    for (const auto& file : sorted) {
        const auto parts = check_path(file.path);
        if (!seen.insert(util::to_lower(file.path)).second) {
            throw bad_input("ESP path '{}' is given twice (FAT names ignore case)", file.path);
        }
        std::string directory;
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            directory += "/" + parts[i];
            directories.insert(directory);
        }
        sizes.push_back(file.content ? file.content->size() : host_file_size(file.host_path));
    }
    for (const auto& directory : directories) {
        if (seen.contains(util::to_lower(directory))) {
            throw bad_input("ESP path '{}' is both a file and a directory", directory);
        }
    }
    const std::string mkfs = tool_path("mkfs.fat", "dosfstools");
    const std::string mmd = tool_path("mmd", "mtools");
    const std::string mcopy = tool_path("mcopy", "mtools");

    EspImage image;
    image.size = esp_image_size(sizes, directories.size());
    image.volume_id = derive_volume_id(sorted, options);

    std::filesystem::path parent = output.parent_path();
    if (parent.empty()) {
        parent = ".";
    }
    try {
        // In-memory contents become files next to the output, removed when done.
        util::TempDir staging(parent, ".edgeforge-esp-");
        util::AtomicFile file(output);
        if (::ftruncate(file.fd(), static_cast<off_t>(image.size)) != 0) {
            throw build_failed("cannot size {}: {}", file.temp_path().string(),
                               std::strerror(errno));
        }
        const std::string target = file.temp_path().string();

        std::vector<std::string> mkfs_argv{mkfs};
        if (options.source_date_epoch) {
            // --invariant fixes the time-based fields; -i afterwards overrides its constant volume
            // id.
            mkfs_argv.emplace_back("--invariant");
        }
        mkfs_argv.insert(mkfs_argv.end(), {"-i", fmt::format("{:08x}", image.volume_id), "-n",
                                           options.label, target});
        run_fat_tool(mkfs_argv, options, output);

        if (!directories.empty()) {
            std::vector<std::string> argv{mmd, "-i", target};
            for (const auto& directory : directories) { // std::set order: parents before children
                argv.push_back("::" + directory);
            }
            run_fat_tool(argv, options, output);
        }
        std::size_t staged = 0;
        for (const auto& entry : sorted) {
            std::filesystem::path source = entry.host_path;
            if (entry.content) {
                source = staging.path() / std::to_string(staged++);
                util::write_file_atomically(source, *entry.content);
            }
            run_fat_tool({mcopy, "-i", target, "-D", "o", source.string(), "::" + entry.path},
                         options, output);
        }
        file.commit();
    } catch (const std::system_error& error) {
        throw build_failed("cannot build the EFI system partition image {}: {}", output.string(),
                           error.what());
    }
    return image;
}

std::vector<EspFile> live_esp_files(const EfiBootFiles& efi, const std::string& grub_stub) {
    std::vector<EspFile> files;
    for (const auto& boot_file : efi.files) {
        files.push_back({"/EFI/BOOT/" + boot_file.name, boot_file.host_path, std::nullopt});
    }
    files.push_back({"/EFI/BOOT/grub.cfg", {}, grub_stub});
    return files;
}

} // namespace edgeforge::boot
