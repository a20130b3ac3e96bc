// `edgeforge build uki`: signed Unified Kernel Images and the systemd-boot ESP tree.
#include "build/uki.h"

#include <fstream>

#include <sys/stat.h>

#include <fmt/format.h>
#include <zlib.h>

#include "boot/efi.h"
#include "boot/uki.h"
#include "build/compose.h"
#include "build/keys.h"
#include "build/step_cache.h"
#include "fs/tree.h"
#include "oci/merge.h"
#include "secureboot/authenticode.h"
#include "secureboot/pcr_policy.h"
#include "secureboot/pe.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr std::uint64_t k_max_kernel_bytes = 512ULL << 20; // a decompressed kernel: ~30-60 MiB

// The PCR bank the policy is signed for: ukify's and Kairos's default.
constexpr secureboot::PcrBank k_pcr_bank = secureboot::PcrBank::sha256;
constexpr std::uint16_t k_machine_amd64 = 0x8664;
constexpr std::uint16_t k_machine_arm64 = 0xaa64;

std::vector<UkiEntry> default_entries(const IsoPlan& iso) {
    std::string common(boot::k_uki_cmdline);
    const std::string_view extra = util::trim(iso.extra_cmdline);
    auto line = [&](std::string_view mode) {
        std::string cmdline = common + " " + std::string(mode);
        if (!extra.empty()) {
            cmdline += " ";
            cmdline += extra;
        }
        return cmdline;
    };
    std::vector<UkiEntry> entries = {
        {"install", fmt::format("Install {}", iso.name), line(boot::k_uki_install_flag)},
        {"interactive-install", fmt::format("Install {} (interactive)", iso.name),
         line("install-mode-interactive")},
        {"recovery", fmt::format("{} recovery", iso.name), line("recovery-mode")},
    };
    if (iso.interactive_default) {
        std::swap(entries[0], entries[1]);
    }
    return entries;
}

// The host file of `path` in the boot tree (the exported /boot, /usr/lib/systemd/boot/efi ...),
// else the host's own copy; nullopt when neither exists.
std::optional<stdfs::path> boot_file(const fs::Tree& boot_tree, const std::string& path,
                                     const fs::SpillFile& spill, const stdfs::path& work,
                                     std::string_view work_name, std::string& origin) {
    if (const auto inode = boot_tree.resolve(path); inode && inode->is_regular()) {
        const stdfs::path copy = work / std::string(work_name);
        boot::extract_file(*inode, spill, copy);
        origin = "base image " + path;
        return copy;
    }
    std::error_code ec;
    if (stdfs::is_regular_file(path, ec)) {
        origin = "host " + path;
        return stdfs::path(path);
    }
    return std::nullopt;
}

// Debian's arm64 kernels are gzip-compressed Images, which systemd-stub cannot start: inflate
// them (bounded) into `destination`. Other kernels are used as they are.
stdfs::path plain_kernel(const stdfs::path& kernel, const stdfs::path& destination,
                         const std::string& name) {
    std::string head(2, '\0');
    {
        std::ifstream in(kernel, std::ios::binary);
        if (!in.read(head.data(), 2)) {
            throw build_failed("cannot read the kernel {}", name);
        }
    }
    if (head != "\x1f\x8b") {
        return kernel;
    }
    gzFile in = gzopen(kernel.c_str(), "rb");
    if (in == nullptr) {
        throw build_failed("cannot read the kernel {}", name);
    }
    util::AtomicFile out(destination);
    std::vector<char> buffer(1 << 20);
    std::uint64_t total = 0;
    for (;;) {
        const int got = gzread(in, buffer.data(), static_cast<unsigned>(buffer.size()));
        if (got < 0) {
            gzclose(in);
            throw bad_input("the kernel {} of the image is not a valid gzip stream", name);
        }
        if (got == 0) {
            break;
        }
        total += static_cast<std::uint64_t>(got);
        if (total > k_max_kernel_bytes) {
            gzclose(in);
            throw bad_input("the kernel {} of the image inflates past {}; a kernel is tens of MiB",
                            name, util::format_bytes(k_max_kernel_bytes));
        }
        out.write(buffer.data(), static_cast<std::size_t>(got));
    }
    gzclose(in);
    out.commit();
    return destination;
}

void check_private_key_mode(const stdfs::path& file, const Console& console) {
    struct stat st {};
    if (::stat(file.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
        console.warning("{} is readable by others (mode {:04o}): a private key; chmod 600 it",
                        file.string(), st.st_mode & 07777);
    }
}

std::string loader_conf(const UkiPlan& plan) {
    return fmt::format("timeout 5\nconsole-mode max\neditor no\ndefault {}.conf\n"
                       "secure-boot-enroll {}\n",
                       plan.entries.front().id, plan.secure_boot_enroll);
}

std::string entry_conf(const UkiEntry& entry, std::size_t index) {
    return fmt::format("title {}\nsort-key {:02}-{}\nefi /EFI/kairos/{}.efi\n", entry.title, index,
                       entry.id, entry.id);
}

} // namespace

nlohmann::json UkiPlan::to_json() const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& entry : entries) {
        list.push_back({{"id", entry.id}, {"title", entry.title}, {"cmdline", entry.cmdline}});
    }
    return {{"iso", iso.to_json()},
            {"keys", keys.directory.string()},
            {"entries", list},
            {"secure_boot_enroll", secure_boot_enroll},
            {"output", output.string()}};
}

UkiPlan plan_uki(const Config& config, const stdfs::path& keys_directory) {
    Diagnostics diagnostics;
    UkiPlan plan;
    plan.iso = plan_iso(config, diagnostics);
    if (config.get("sites").is_set()) {
        diagnostics.error(setting_location(config, "sites"),
                          "build uki makes one set of UKIs; per-site Trusted Boot media are not "
                          "built yet: unset sites for this build");
    }
    const stdfs::path project =
        plan.iso.project_dir.empty() ? stdfs::current_path() : plan.iso.project_dir;
    auto& keys = plan.keys;
    keys.directory = keys_directory.empty() ? project / k_default_keys_directory : keys_directory;
    keys.db_key = keys.directory / "db.key";
    keys.db_certificate = keys.directory / "db.pem";
    keys.pcr_private_key = keys.directory / "tpm2-pcr-private.pem";
    keys.pcr_public_key = keys.directory / "tpm2-pcr-public.pem";
    keys.pk_auth = keys.directory / "PK.auth";
    keys.kek_auth = keys.directory / "KEK.auth";
    keys.db_auth = keys.directory / "db.auth";
    std::vector<std::string> missing;
    for (const auto* file : {&keys.db_key, &keys.db_certificate, &keys.pcr_private_key,
                             &keys.pcr_public_key, &keys.pk_auth, &keys.kek_auth, &keys.db_auth}) {
        std::error_code ec;
        if (!stdfs::is_regular_file(*file, ec)) {
            missing.push_back(file->filename().string());
        }
    }
    if (!missing.empty()) {
        diagnostics.error(
            SourceLocation{keys_directory.empty() ? "secureboot-keys (default)" : "--keys"},
            fmt::format("the key directory {} lacks {}: run `edgeforge keys generate --org "
                        "NAME` (it writes them there) or point --keys at your key directory",
                        keys.directory.string(), util::join(missing, ", ")));
    }
    // What the grub ISO carries beside the OS has no place in the UKI tree yet: a flag or
    // variable given for this build is refused, a project setting (shared with build iso) is
    // named in a warning, never dropped silently.
    for (const char* key : {"user_data", "overlays.iso", "content.bundles", "cluster_config",
                            "edge_custom_config", "iso.split_size", "installer.image_name"}) {
        const ResolvedValue& value = config.get(key);
        if (!value.is_set() || value.origin == Origin::default_value) {
            continue;
        }
        const std::string what =
            fmt::format("{} is not carried by build uki yet (the UKI tree holds the OS, the "
                        "kernel command line and the keys; the UKI installer ISO that will "
                        "carry it is not built yet)",
                        key);
        if (value.origin == Origin::flag || value.origin == Origin::environment) {
            diagnostics.error(value.location, what + ": leave it out of this build");
        } else {
            plan.iso.warnings.push_back(fmt::format("{}: {}", value.location.str(), what));
        }
    }
    diagnostics.throw_if_any();
    plan.entries = default_entries(plan.iso);
    plan.secure_boot_enroll = config.string("uki.secure_boot_enroll");
    plan.output = plan.iso.output_dir / (plan.iso.name + "-uki");
    return plan;
}

std::string render_uki_plan(const UkiPlan& plan) {
    std::string text =
        fmt::format("UKI build plan ({})\n  output:  {}\n  keys:    {}\n", plan.iso.arch.name(),
                    plan.output.string(), plan.keys.directory.string());
    text += fmt::format("  base:    {}\n", plan.iso.base.str());
    for (const auto& entry : plan.entries) {
        text += fmt::format("  entry:   {} ({})\n           {}\n", entry.id, entry.title,
                            entry.cmdline);
    }
    text += fmt::format("  loader:  secure-boot-enroll {}\n", plan.secure_boot_enroll);
    return text;
}

UkiBuildResult build_uki(const UkiPlan& plan, const Console& console) {
    check_private_key_mode(plan.keys.db_key, console);
    check_private_key_mode(plan.keys.pcr_private_key, console);
    const std::string db_key = util::read_file(plan.keys.db_key);
    const std::string db_certificate = util::read_file(plan.keys.db_certificate);
    const std::string pcr_private = util::read_file(plan.keys.pcr_private_key);
    const std::string pcr_public_file = util::read_file(plan.keys.pcr_public_key);
    const std::string pcr_public = secureboot::pcr_public_key_pem(pcr_private);
    const std::int64_t signing_time = plan.iso.source_date_epoch.value_or(0);

    const ComposedRootfs rootfs = compose_rootfs(plan.iso, console, RootfsForm::uki_initrd);

    StepCache cache(plan.iso.cache_dir / "steps");
    util::TempDir work(cache.work_dir(), "uki-");
    fs::Tree boot_tree;
    oci::apply_directory(rootfs.bootfs, boot_tree);
    const fs::SpillFile no_spill(work.path());
    const boot::BootFile kernel_file = boot::find_kernel(boot_tree);
    const stdfs::path kernel_copy = work.path() / "kernel";
    boot::extract_file(*kernel_file.inode, no_spill, kernel_copy);
    const stdfs::path kernel =
        plain_kernel(kernel_copy, work.path() / "kernel.plain", kernel_file.path);

    std::string stub_origin;
    std::string loader_origin;
    const Arch arch = plan.iso.arch;
    const auto stub = boot_file(boot_tree, boot::uki_stub_path(arch), no_spill, work.path(),
                                "stub.efi", stub_origin);
    const auto loader = boot_file(boot_tree, boot::systemd_boot_path(arch), no_spill, work.path(),
                                  "systemd-boot.efi", loader_origin);
    if (!stub || !loader) {
        throw build_failed(
            "no systemd EFI {} for {}: the base image has no {} and neither has this machine; "
            "install Debian's systemd-boot-efi{} here (or use a base image that ships it)",
            !stub ? "stub" : "boot loader", arch.name(),
            !stub ? boot::uki_stub_path(arch) : boot::systemd_boot_path(arch),
            arch.id() == Arch::Id::amd64 ? "" : ":arm64");
    }
    const std::string stub_image = util::read_file(*stub);
    const std::uint16_t want_machine =
        arch.id() == Arch::Id::arm64 ? k_machine_arm64 : k_machine_amd64;
    const std::uint16_t machine = secureboot::parse_pe(stub_image, stub_origin).machine;
    if (machine != want_machine) {
        throw bad_input("the systemd EFI stub ({}) is for PE machine {:#06x}, not {} ({:#06x})",
                        stub_origin, machine, arch.name(), want_machine);
    }
    const std::string kernel_image = util::read_file(kernel);
    const std::string os_release = util::read_file(rootfs.os_release);
    const std::string initrd = util::read_file(rootfs.initrd);
    console.info("uki: stub {}, boot loader {}, kernel {}", stub_origin, loader_origin,
                 kernel_file.path);

    util::PartialDirectory partial(plan.output);
    const stdfs::path esp = partial.path();
    const std::string boot_name(arch.traits().efi_boot_file);
    stdfs::create_directories(esp / "EFI" / "BOOT");
    stdfs::create_directories(esp / "EFI" / "kairos");
    stdfs::create_directories(esp / "loader" / "entries");
    stdfs::create_directories(esp / "loader" / "keys" / "auto");

    nlohmann::json entries = nlohmann::json::array();
    for (const auto& entry : plan.entries) {
        const std::vector<secureboot::PcrValue> prediction =
            secureboot::predict_pcr11({{".linux", kernel_image},
                                       {".osrel", os_release},
                                       {".cmdline", entry.cmdline},
                                       {".initrd", initrd},
                                       {".pcrpkey", pcr_public}},
                                      {k_pcr_bank}, secureboot::default_pcr_phases());
        const std::string pcrsig =
            secureboot::sign_pcr_predictions(prediction, pcr_private, pcr_public_file);

        // ukify's order: the small sections first, .initrd and .linux last.
        const std::string image = secureboot::append_pe_sections(stub_image,
                                                                 {{".osrel", os_release},
                                                                  {".cmdline", entry.cmdline},
                                                                  {".pcrpkey", pcr_public},
                                                                  {".pcrsig", pcrsig},
                                                                  {".initrd", initrd},
                                                                  {".linux", kernel_image}},
                                                                 stub_origin);
        const stdfs::path signed_image = esp / "EFI" / "kairos" / (entry.id + ".efi");
        util::write_file_atomically(
            signed_image,
            secureboot::sign_pe(image, db_key, db_certificate, signing_time, entry.id + ".efi"));
        nlohmann::json pcr = nlohmann::json::array();
        for (const auto& value : prediction) {
            pcr.push_back({{"phase", value.phase}, {"sha256", value.hex()}});
        }
        entries.push_back(
            {{"id", entry.id}, {"size", stdfs::file_size(signed_image)}, {"pcr11", pcr}});
        console.info("uki: EFI/kairos/{}.efi ({})", entry.id,
                     util::format_bytes(stdfs::file_size(signed_image)));
    }
    util::write_file_atomically(esp / "EFI" / "BOOT" / boot_name,
                                secureboot::sign_pe(util::read_file(*loader), db_key,
                                                    db_certificate, signing_time, loader_origin));

    util::write_file_atomically(esp / "loader" / "loader.conf", loader_conf(plan));
    for (std::size_t i = 0; i < plan.entries.size(); ++i) {
        util::write_file_atomically(esp / "loader" / "entries" / (plan.entries[i].id + ".conf"),
                                    entry_conf(plan.entries[i], i));
    }
    for (const auto* file : {&plan.keys.pk_auth, &plan.keys.kek_auth, &plan.keys.db_auth}) {
        stdfs::copy_file(*file, esp / "loader" / "keys" / "auto" / file->filename());
    }

    try {
        partial.commit();
    } catch (const std::system_error& e) {
        throw build_failed("uki: cannot replace {}: {}", plan.output.string(), e.code().message());
    }
    UkiBuildResult result;
    result.directory = plan.output;
    std::vector<stdfs::path> files;
    for (const auto& item : stdfs::recursive_directory_iterator(plan.output)) {
        if (item.is_regular_file()) {
            files.push_back(item.path());
        }
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
        result.files.push_back(Artifact{file, stdfs::file_size(file), util::sha256_file_hex(file)});
    }
    result.summary = {{"rootfs", rootfs.summary},
                      {"entries", entries},
                      {"stub", stub_origin},
                      {"boot_loader", loader_origin},
                      {"kernel", kernel_file.path}};
    return result;
}

} // namespace edgeforge
