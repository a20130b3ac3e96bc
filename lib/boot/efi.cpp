// Finds the kernel, initrd and EFI/BIOS boot loaders of a merged rootfs, or builds grub images.
#include "boot/efi.h"

#include <array>
#include <fstream>
#include <span>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "base/error.h"
#include "boot/grub.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::boot {
namespace {

constexpr std::array<std::string_view, 4> k_kernel_prefixes{"vmlinuz", "Image", "zImage", "uImage"};
constexpr std::array<std::string_view, 2> k_initrd_prefixes{"initrd", "initramfs"};

// Built into every grub image we make, because nothing is loaded from the medium later: the
// live ISO carries no module directory. Modules a grub version lacks are left out (see
// available_modules); the required ones below must exist.
constexpr std::array<std::string_view, 27> k_efi_modules{
    "part_gpt",       "part_msdos",     "fat",          "iso9660",    "normal",    "search",
    "search_fs_file", "search_fs_uuid", "search_label", "configfile", "linux",     "echo",
    "test",           "true",           "sleep",        "ls",         "cat",       "halt",
    "reboot",         "serial",         "terminal",     "gzio",       "all_video", "efi_gop",
    "efi_uga",        "loopback",       "squash4"};
constexpr std::array<std::string_view, 22> k_bios_modules{
    "biosdisk", "iso9660",        "part_gpt",       "part_msdos",   "fat",        "normal",
    "search",   "search_fs_file", "search_fs_uuid", "search_label", "configfile", "linux",
    "echo",     "test",           "true",           "sleep",        "ls",         "cat",
    "halt",     "reboot",         "serial",         "terminal"};
constexpr std::array<std::string_view, 8> k_required_efi_modules{
    "part_gpt", "fat", "iso9660", "normal", "search", "search_fs_file", "configfile", "linux"};
constexpr std::array<std::string_view, 8> k_required_bios_modules{
    "biosdisk", "iso9660", "part_gpt", "normal", "search", "search_fs_file", "configfile", "linux"};

struct TreeFile {
    std::string path;
    std::shared_ptr<const fs::Inode> inode;
};

std::optional<TreeFile> first_in_boot(const fs::Tree& rootfs,
                                      std::span<const std::string_view> prefixes) {
    const auto boot = rootfs.resolve("/boot");
    if (!boot || !boot->is_directory()) {
        return std::nullopt;
    }
    for (const auto prefix : prefixes) {
        // children are sorted bytewise, so the first match is the first name in sorted order
        for (const auto& [name, child] : boot->children) {
            if (!std::string_view(name).starts_with(prefix)) {
                continue;
            }
            std::string path = "/boot/" + name;
            if (auto target = rootfs.resolve(path); target && target->is_regular()) {
                return TreeFile{std::move(path), std::move(target)};
            }
        }
    }
    return std::nullopt;
}

std::string pattern_list(std::span<const std::string_view> prefixes) {
    std::vector<std::string> patterns;
    for (const auto prefix : prefixes) {
        patterns.push_back(fmt::format("/boot/{}*", prefix));
    }
    return util::join(patterns, ", ");
}

std::optional<TreeFile> regular_file(const fs::Tree& rootfs, const std::string& path) {
    if (auto inode = rootfs.resolve(path); inode && inode->is_regular()) {
        return TreeFile{path, std::move(inode)};
    }
    return std::nullopt;
}

// The first existing regular file among `paths`; every path tried is added to `searched`.
std::optional<TreeFile> first_existing(const fs::Tree& rootfs,
                                       const std::vector<std::string>& paths,
                                       std::vector<std::string>& searched) {
    for (const auto& path : paths) {
        searched.push_back(path);
        if (auto found = regular_file(rootfs, path)) {
            return found;
        }
    }
    return std::nullopt;
}

void make_directories(const std::filesystem::path& directory) {
    std::error_code error;
    std::filesystem::create_directories(directory, error);
    if (error) {
        throw build_failed("cannot create {}: {}", directory.string(), error.message());
    }
}

bool path_exists(const std::filesystem::path& path) {
    std::error_code error;
    return std::filesystem::exists(path, error);
}

std::string debian_efi_package(Arch arch) {
    return fmt::format("grub-efi-{}-bin", arch.traits().debian_arch);
}

// A grub module directory usable by grub-mkimage: in the rootfs (copied out to the work
// directory) or on the host.
struct ModuleDirectory {
    std::filesystem::path path;
    std::string origin;
};

// Files grub-mkimage reads from a module directory besides the modules themselves.
bool has_files(const std::filesystem::path& directory, std::span<const std::string_view> names) {
    for (const auto name : names) {
        if (!path_exists(directory / name)) {
            return false;
        }
    }
    return true;
}

std::optional<ModuleDirectory>
find_module_directory(const fs::Tree& rootfs, const fs::SpillFile& spill, std::string_view target,
                      std::span<const std::string_view> needed_files,
                      const BootAssetOptions& options, std::vector<std::string>& searched) {
    const std::string in_rootfs = fmt::format("/usr/lib/grub/{}", target);
    searched.push_back("rootfs:" + in_rootfs);
    if (const auto directory = rootfs.resolve(in_rootfs); directory && directory->is_directory()) {
        bool complete = true;
        for (const auto name : needed_files) {
            const auto file = rootfs.resolve(fmt::format("{}/{}", in_rootfs, name));
            complete = complete && file && file->is_regular();
        }
        if (complete) {
            const auto destination = options.work_directory / fmt::format("grub-{}", target);
            make_directories(destination);
            // Only the top level: grub-mkimage never looks into subdirectories (monolithic/, ...).
            for (const auto& [name, child] : directory->children) {
                const auto file = rootfs.resolve(fmt::format("{}/{}", in_rootfs, name));
                if (file && file->is_regular()) {
                    extract_file(*file, spill, destination / name);
                }
            }
            return ModuleDirectory{destination, "rootfs:" + in_rootfs};
        }
    }
    const auto on_host = options.host_grub_directory / target;
    searched.push_back("host:" + on_host.string());
    if (has_files(on_host, needed_files)) {
        return ModuleDirectory{on_host, "host:" + on_host.string()};
    }
    return std::nullopt;
}

std::vector<std::string> available_modules(const std::filesystem::path& directory,
                                           std::span<const std::string_view> wanted,
                                           std::span<const std::string_view> required) {
    std::vector<std::string> modules;
    std::vector<std::string> missing;
    for (const auto module : wanted) {
        if (path_exists(directory / fmt::format("{}.mod", module))) {
            modules.emplace_back(module);
        }
    }
    for (const auto module : required) {
        if (!path_exists(directory / fmt::format("{}.mod", module))) {
            missing.emplace_back(module);
        }
    }
    if (!missing.empty()) {
        throw build_failed("the grub module directory {} lacks modules a live medium needs: {}",
                           directory.string(), util::join(missing, ", "));
    }
    return modules;
}

void run_grub_mkimage(std::string_view format, std::string_view prefix,
                      const ModuleDirectory& modules, const std::vector<std::string>& module_names,
                      const std::filesystem::path& output,
                      const std::filesystem::path& embedded_config = {}) {
    const auto program = util::find_program("grub-mkimage");
    if (!program) {
        throw build_failed("grub-mkimage is needed to build a {} grub image but is not installed "
                           "(install the Debian package grub-common)",
                           format);
    }
    std::vector<std::string> argv{program->string(),   "-O", std::string(format),   "-p",
                                  std::string(prefix), "-d", modules.path.string(), "-o",
                                  output.string()};
    if (!embedded_config.empty()) {
        argv.insert(argv.end(), {"-c", embedded_config.string()});
    }
    argv.insert(argv.end(), module_names.begin(), module_names.end());
    const auto result = util::run_process(argv);
    if (result.exit_code != 0) {
        throw build_failed("grub-mkimage -O {} with modules from {} failed (exit status {}): {}",
                           format, modules.origin, result.exit_code,
                           util::trim(result.standard_error));
    }
}

} // namespace

void extract_file(const fs::Inode& inode, const fs::SpillFile& spill,
                  const std::filesystem::path& destination) {
    std::ofstream out(destination, std::ios::binary | std::ios::trunc);
    if (!out) {
        throw build_failed("cannot create {}", destination.string());
    }
    fs::read_data(inode, spill, [&](const char* data, std::size_t size) {
        out.write(data, static_cast<std::streamsize>(size));
    });
    out.close();
    if (!out) {
        throw build_failed("cannot write {}", destination.string());
    }
}

BootFile find_kernel(const fs::Tree& rootfs) {
    auto kernel = first_in_boot(rootfs, k_kernel_prefixes);
    if (!kernel) {
        throw bad_input("no kernel in the image: none of {} is a regular file",
                        pattern_list(k_kernel_prefixes));
    }
    return BootFile{std::move(kernel->path), std::move(kernel->inode)};
}

KernelAndInitrd find_kernel_and_initrd(const fs::Tree& rootfs) {
    BootFile kernel = find_kernel(rootfs);
    auto initrd = first_in_boot(rootfs, k_initrd_prefixes);
    if (!initrd) {
        throw bad_input("no initrd in the image: none of {} is a regular file",
                        pattern_list(k_initrd_prefixes));
    }
    return KernelAndInitrd{std::move(kernel.path), std::move(kernel.inode), std::move(initrd->path),
                           std::move(initrd->inode)};
}

EfiBootFiles prepare_efi_boot_files(const fs::Tree& rootfs, const fs::SpillFile& spill, Arch arch,
                                    const BootAssetOptions& options) {
    const ArchTraits& traits = arch.traits();
    const std::string suffix(traits.efi_suffix);
    const std::string grub_name = fmt::format("grub{}.efi", suffix);
    const auto directory = options.work_directory / "efi";
    make_directories(directory);

    std::vector<std::string> searched;
    const auto shim = first_existing(rootfs,
                                     {fmt::format("/usr/lib/shim/shim{}.efi.signed", suffix),
                                      fmt::format("/usr/share/efi/{}/shim.efi", traits.uname)},
                                     searched);
    const auto grub = first_existing(
        rootfs,
        {fmt::format("/usr/lib/grub/{}-signed/gcd{}.efi.signed", traits.grub_efi_target, suffix),
         fmt::format("/usr/lib/grub/{}-signed/grub{}.efi.signed", traits.grub_efi_target, suffix),
         fmt::format("/usr/share/efi/{}/grub.efi", traits.uname)},
        searched);

    EfiBootFiles result;
    // Without shim, grub itself is what the firmware starts from the removable-media path.
    const std::string grub_target_name = shim ? grub_name : std::string(traits.efi_boot_file);
    if (shim) {
        const auto path = directory / traits.efi_boot_file;
        extract_file(*shim->inode, spill, path);
        result.files.push_back({std::string(traits.efi_boot_file), path, "rootfs:" + shim->path});
    }
    if (grub) {
        const auto path = directory / grub_target_name;
        extract_file(*grub->inode, spill, path);
        result.files.push_back({grub_target_name, path, "rootfs:" + grub->path});
    } else {
        const std::array<std::string_view, 3> needed{"kernel.img", "moddep.lst", "normal.mod"};
        const auto modules =
            find_module_directory(rootfs, spill, traits.grub_efi_target, needed, options, searched);
        if (!modules) {
            throw build_failed(
                "cannot make a grub EFI image for {}: the image has no grub EFI binary and no "
                "grub modules were found (install the Debian package {} on this machine, or add "
                "grub to the image); searched {}",
                arch.name(), debian_efi_package(arch), util::join(searched, ", "));
        }
        const auto names = available_modules(modules->path, k_efi_modules, k_required_efi_modules);
        const auto path = options.work_directory / "efi-built" / grub_target_name;
        make_directories(path.parent_path());
        run_grub_mkimage(traits.grub_efi_target, "/EFI/BOOT", *modules, names, path);
        result.files.push_back(
            {grub_target_name, path,
             fmt::format("grub-mkimage -O {} ({})", traits.grub_efi_target, modules->origin)});
        result.built_grub = true;
    }
    if (shim) {
        std::vector<std::string> ignored;
        const auto mok_manager =
            first_existing(rootfs,
                           {fmt::format("/usr/lib/shim/mm{}.efi.signed", suffix),
                            fmt::format("/usr/share/efi/{}/MokManager.efi", traits.uname)},
                           ignored);
        if (mok_manager) {
            const std::string name = fmt::format("mm{}.efi", suffix);
            const auto path = directory / name;
            extract_file(*mok_manager->inode, spill, path);
            result.files.push_back({name, path, "rootfs:" + mok_manager->path});
        }
    }
    // Every path searched holds a distribution's signed build (Debian's *.signed, openSUSE's
    // /usr/share/efi), so a shim and a grub from the image make a Secure Boot chain.
    result.signed_chain = shim.has_value() && grub.has_value();
    return result;
}

// The grub i386-pc modules with `needed` in them, from the rootfs or this machine; `what` is
// being made ("the BIOS boot image") when none are found.
ModuleDirectory require_bios_modules(const fs::Tree& rootfs, const fs::SpillFile& spill, Arch arch,
                                     std::span<const std::string_view> needed,
                                     const BootAssetOptions& options, std::string_view what) {
    const std::string_view target = arch.traits().grub_bios_target;
    std::vector<std::string> searched;
    auto modules = find_module_directory(rootfs, spill, target, needed, options, searched);
    if (!modules) {
        throw build_failed("cannot make {} for {}: no grub {} modules were found (install the "
                           "Debian package grub-pc-bin on this machine, or add it to the image); "
                           "searched {}",
                           what, arch.name(), target, util::join(searched, ", "));
    }
    return std::move(*modules);
}

std::optional<BiosBootFiles> prepare_bios_boot_files(const fs::Tree& rootfs,
                                                     const fs::SpillFile& spill, Arch arch,
                                                     const BootAssetOptions& options) {
    if (!arch.has_bios_boot()) {
        return std::nullopt;
    }
    const std::string_view target = arch.traits().grub_bios_target;
    const std::array<std::string_view, 5> needed{"kernel.img", "moddep.lst", "cdboot.img",
                                                 "boot_hybrid.img", "normal.mod"};
    const auto modules =
        require_bios_modules(rootfs, spill, arch, needed, options, "the BIOS boot image");
    const auto names = available_modules(modules.path, k_bios_modules, k_required_bios_modules);
    const auto directory = options.work_directory / "bios";
    make_directories(directory);
    BiosBootFiles files;
    files.eltorito_image = directory / "eltorito.img";
    files.hybrid_mbr = modules.path / "boot_hybrid.img";
    files.origin = modules.origin;
    run_grub_mkimage(fmt::format("{}-eltorito", target), "/boot/grub", modules, names,
                     files.eltorito_image);
    return files;
}

std::optional<BiosDiskBootFiles> prepare_bios_disk_boot_files(const fs::Tree& rootfs,
                                                              const fs::SpillFile& spill, Arch arch,
                                                              const BootAssetOptions& options) {
    if (!arch.has_bios_boot()) {
        return std::nullopt;
    }
    const std::string_view target = arch.traits().grub_bios_target;
    const std::array<std::string_view, 6> needed{"kernel.img",   "moddep.lst", "boot.img",
                                                 "diskboot.img", "normal.mod", "ext2.mod"};
    const auto modules =
        require_bios_modules(rootfs, spill, arch, needed, options, "the BIOS boot code");
    // The live menu's modules, plus ext2 for the ext4 COS_RECOVERY partition.
    std::vector<std::string_view> wanted(k_bios_modules.begin(), k_bios_modules.end());
    wanted.push_back("ext2");
    const auto names = available_modules(modules.path, wanted, k_required_bios_modules);
    const auto directory = options.work_directory / "bios-disk";
    make_directories(directory);
    // Nothing is loaded from the disk but the menu: find the partition with the kernel (the
    // recovery partition) and let normal mode read $prefix/grub.cfg there.
    const auto config = directory / "embedded.cfg";
    util::write_file_atomically(config, fmt::format("search --no-floppy --file --set=root {}\n"
                                                    "set prefix=($root){}\n",
                                                    k_live_kernel_path, k_live_menu_dir));
    BiosDiskBootFiles files;
    files.core_image = directory / "core.img";
    files.boot_image = modules.path / "boot.img";
    files.origin = modules.origin;
    run_grub_mkimage(target, k_live_menu_dir, modules, names, files.core_image, config);
    return files;
}

} // namespace edgeforge::boot
