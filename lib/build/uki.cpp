// `edgeforge build uki` and `build iso --uki`: signed Unified Kernel Images, the systemd-boot
// ESP tree, and the UKI installer ISO.
#include "build/uki.h"

#include <chrono>
#include <ctime>
#include <fstream>

#include <sys/stat.h>

#include <fmt/format.h>
#include <zlib.h>

#include "boot/efi.h"
#include "boot/esp.h"
#include "boot/uki.h"
#include "build/compose.h"
#include "build/keys.h"
#include "build/medium.h"
#include "build/step_cache.h"
#include "formats/iso_writer.h"
#include "fs/tree.h"
#include "oci/merge.h"
#include "secureboot/authenticode.h"
#include "secureboot/pcr_policy.h"
#include "secureboot/pe.h"
#include "secureboot/signature_lists.h"
#include "secureboot/signing_key.h"
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

// The ISO 9660 volume label of the UKI installer medium: Kairos's immucore finds its medium
// (user-data, overlay files, content) by it.
constexpr std::string_view k_uki_volume_id = "UKI_ISO_INSTALL";
constexpr std::string_view k_uki_esp_label = "UKI_EFI";

// Room in a UKI beyond its sections' bytes: the stub's headers, .pcrpkey, .pcrsig, section
// alignment and the signature.
constexpr std::uint64_t k_uki_overhead = 64 << 10;

// Kairos's installer names its UKI "norole" (kairos-agent's install copies every file named
// norole* to the active, passive, recovery and statereset roles) and another entry
// "norole_<its command line>"; the installer skips entries whose command line holds
// install-mode-interactive. The medium's recovery entry is named "recovery": the install writes
// the device's own recovery role over it, so nothing of the medium's is left on the device.
constexpr std::string_view k_kairos_install_file = "norole";

// The entries `ids` names (uki.entries), in that order: the first is the default.
std::vector<UkiEntry> make_entries(const IsoPlan& iso, const std::vector<std::string>& ids,
                                   const std::string& branding) {
    const std::string extra(util::trim(iso.extra_cmdline));
    const auto entry = [&](const std::string& id, std::string file, std::string title,
                           std::string_view mode) {
        std::string tail(mode);
        if (!extra.empty()) {
            tail += " " + extra;
        }
        return UkiEntry{id, std::move(file), std::move(title),
                        std::string(boot::k_uki_cmdline) + " " + tail, tail};
    };
    std::vector<UkiEntry> entries;
    for (const auto& id : ids) {
        if (id == "install") {
            entries.push_back(
                entry(id, std::string(k_kairos_install_file),
                      branding.empty() ? fmt::format("Install {}", iso.name) : branding,
                      boot::k_uki_install_flag));
        } else if (id == "interactive-install") {
            entries.push_back(
                entry(id, fmt::format("{}_install-mode-interactive", k_kairos_install_file),
                      branding.empty() ? fmt::format("Install {} (interactive)", iso.name)
                                       : branding + " (interactive install)",
                      "install-mode install-mode-interactive"));
        } else if (id == "recovery") {
            entries.push_back(entry(id, "recovery",
                                    branding.empty() ? fmt::format("{} recovery", iso.name)
                                                     : branding + " (recovery)",
                                    "recovery-mode"));
        }
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
                       plan.entries.front().file, plan.secure_boot_enroll);
}

// A type #1 entry as AuroraBoot writes it: `efi` (systemd-boot 252 has no `uki` key) and the
// `cmdline` key kairos-agent reads (systemd-boot ignores it; the signed .cmdline is what boots).
std::string entry_conf(const UkiEntry& entry, std::size_t index) {
    return fmt::format("title {}\nsort-key {:02}-{}\nefi /EFI/kairos/{}.efi\ncmdline {}\n",
                       entry.title, index, entry.file, entry.file, entry.extra);
}

} // namespace

namespace {

// The key files in `directory`: edgeforge's layout (`keys generate`: every file in it), or
// CanvOS's secure-boot/ (+uki-genkey, +uki-byok: private-keys/, public-keys/, enrollment/).
UkiKeyFiles key_files_in(const stdfs::path& directory) {
    UkiKeyFiles keys;
    keys.directory = directory;
    const KeyLayout layout = key_layout(directory);
    const stdfs::path& secret = layout.secret;
    const stdfs::path& open = layout.open;
    const stdfs::path& enrollment = layout.enrollment;
    keys.layout = std::string(layout.name());
    keys.db_key = secret / "db.key";
    keys.db_certificate = open / "db.pem";
    keys.pcr_private_key = secret / "tpm2-pcr-private.pem";
    keys.pcr_public_key = open / "tpm2-pcr-public.pem";
    keys.pk_auth = enrollment / "PK.auth";
    keys.kek_auth = enrollment / "KEK.auth";
    keys.db_auth = enrollment / "db.auth";
    return keys;
}

// --keys DIR; else secureboot-keys/ of the project; else CanvOS's secure-boot/ when a project
// has that one only.
UkiKeyFiles find_key_files(const stdfs::path& keys_directory, const stdfs::path& project) {
    if (!keys_directory.empty()) {
        return key_files_in(keys_directory);
    }
    std::error_code ec;
    const stdfs::path own = project / k_default_keys_directory;
    if (!stdfs::exists(own, ec) && stdfs::is_directory(project / "secure-boot", ec)) {
        return key_files_in(project / "secure-boot");
    }
    return key_files_in(own);
}

// Every file there and readable, the db pair a pair and valid today: checked before any work.
void check_key_files(const UkiKeyFiles& keys, bool default_directory, Diagnostics& diagnostics) {
    const SourceLocation where{default_directory ? "key directory (default)" : "--keys"};
    std::vector<std::string> missing;
    for (const auto* file : {&keys.db_key, &keys.db_certificate, &keys.pcr_private_key,
                             &keys.pk_auth, &keys.kek_auth, &keys.db_auth}) {
        std::error_code ec;
        if (!stdfs::is_regular_file(*file, ec)) {
            missing.push_back(file->lexically_relative(keys.directory).string());
        }
    }
    if (!missing.empty()) {
        diagnostics.error(where, fmt::format("the key directory {} ({} layout) lacks {}: run "
                                             "`edgeforge keys generate --org NAME` (it writes "
                                             "them there) or point --keys at your key directory",
                                             keys.directory.string(), keys.layout,
                                             util::join(missing, ", ")));
        return;
    }
    // Every file read bounded (a key directory is the user's input too); only
    // tpm2-pcr-public.pem may be missing here.
    bool readable = true;
    const auto read = [&](const stdfs::path& file) {
        try {
            return secureboot::read_key_material(file, secureboot::k_max_signature_file_size);
        } catch (const Error& error) {
            diagnostics.error(where, error.what());
            readable = false;
            return std::string();
        }
    };
    const std::string db_key = read(keys.db_key);
    const std::string db_certificate = read(keys.db_certificate);
    const std::string pcr_private = read(keys.pcr_private_key);
    for (const auto* file : {&keys.pk_auth, &keys.kek_auth, &keys.db_auth}) {
        (void)read(*file);
    }
    if (std::error_code ec; stdfs::exists(keys.pcr_public_key, ec)) {
        (void)read(keys.pcr_public_key);
    }
    if (!readable) {
        return;
    }
    for (const auto& problem : secureboot::signing_pair_problems(
             db_key, db_certificate,
             static_cast<std::int64_t>(std::time(nullptr)), keys.db_key.string(),
             keys.db_certificate.string())) {
        diagnostics.error(where, problem);
    }
    try {
        (void)secureboot::pcr_public_key_pem(pcr_private);
    } catch (const Error& error) {
        diagnostics.error(where,
                          fmt::format("{}: {}", keys.pcr_private_key.string(), error.what()));
    }
}

} // namespace

nlohmann::json UkiPlan::to_json() const {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& entry : entries) {
        list.push_back({{"id", entry.id},
                        {"file", entry.file},
                        {"title", entry.title},
                        {"cmdline", entry.cmdline}});
    }
    return {{"medium", medium == UkiMedium::iso ? "iso" : "tree"},
            {"iso", iso.to_json()},
            {"keys", keys.directory.string()},
            {"keys_layout", keys.layout},
            {"entries", list},
            {"secure_boot_enroll", secure_boot_enroll},
            {"max_efi_size", max_efi_size},
            {"output", output.string()}};
}

UkiKeyFiles plan_uki_keys(const stdfs::path& keys_directory, const stdfs::path& project,
                          Diagnostics& diagnostics) {
    UkiKeyFiles keys = find_key_files(keys_directory, project);
    check_key_files(keys, keys_directory.empty(), diagnostics);
    return keys;
}

// Both go into loader entries line by line and into the signed .cmdline: one line each.
void check_one_line(const Config& config, std::string_view key, Diagnostics& diagnostics) {
    const std::string value = config.string(key);
    if (std::any_of(value.begin(), value.end(), [](char c) {
            const auto byte = static_cast<unsigned char>(c);
            return byte < 0x20 || byte == 0x7f;
        })) {
        diagnostics.error(setting_location(config, key),
                          fmt::format("{} holds a control character (a line break?): it goes on "
                                      "one line of the boot loader entries and the signed "
                                      "command line; remove it",
                                      key));
    }
}

UkiEntry uki_upgrade_entry(const std::string& title) {
    const std::string tail(boot::k_uki_install_flag);
    return UkiEntry{"install", std::string(k_kairos_install_file), title,
                    std::string(boot::k_uki_cmdline) + " " + tail, tail};
}

UkiPlan plan_uki(const Config& config, const stdfs::path& keys_directory, UkiMedium medium) {
    Diagnostics diagnostics;
    UkiPlan plan;
    plan.medium = medium;
    plan.iso = plan_iso(config, diagnostics);
    const std::string_view command = medium == UkiMedium::iso ? "build iso --uki" : "build uki";
    if (config.get("sites").is_set()) {
        diagnostics.error(setting_location(config, "sites"),
                          fmt::format("{} makes one Trusted Boot medium; per-site UKI media are "
                                      "not built yet: unset sites for this build",
                                      command));
    }
    const stdfs::path project =
        plan.iso.project_dir.empty() ? stdfs::current_path() : plan.iso.project_dir;
    plan.keys = plan_uki_keys(keys_directory, project, diagnostics);
    // What the medium cannot carry: a flag or variable given for this build is refused, a
    // project setting (shared with the grub ISO) is named in a warning, never dropped silently.
    std::vector<std::pair<const char*, std::string>> not_carried = {
        {"installer.image_name",
         "the installer image (IMAGE_NAME) is the grub ISO's root filesystem; Trusted Boot media "
         "do not write it yet"}};
    if (medium == UkiMedium::tree) {
        for (const char* key : {"user_data", "overlays.iso", "content.bundles", "cluster_config",
                                "edge_custom_config", "iso.split_size"}) {
            not_carried.emplace_back(key, "the UKI tree holds the OS, the kernel command line "
                                          "and the keys; `build iso --uki` puts it on the medium");
        }
    }
    for (const auto& [key, why] : not_carried) {
        const ResolvedValue& value = config.get(key);
        if (!value.is_set() || value.origin == Origin::default_value) {
            continue;
        }
        const std::string what = fmt::format("{} is not carried by {}: {}", key, command, why);
        if (value.origin == Origin::flag || value.origin == Origin::environment) {
            diagnostics.error(value.location, what + "; leave it out of this build");
        } else {
            plan.iso.warnings.push_back(fmt::format("{}: {}", value.location.str(), what));
        }
    }
    for (const char* key : {"uki.branding", "iso.extra_cmdline"}) {
        check_one_line(config, key, diagnostics);
    }
    const std::vector<std::string> ids = config.list("uki.entries");
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (std::find(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i), ids[i]) !=
            ids.begin() + static_cast<std::ptrdiff_t>(i)) {
            diagnostics.error(setting_location(config, "uki.entries"),
                              fmt::format("uki.entries names {} twice: name each entry once",
                                          ids[i]));
        }
    }
    if (ids.empty()) {
        diagnostics.error(setting_location(config, "uki.entries"),
                          "uki.entries is empty: name at least one of install, "
                          "interactive-install, recovery");
    }
    if (plan.iso.interactive_default &&
        std::find(ids.begin(), ids.end(), "interactive-install") == ids.end()) {
        diagnostics.error(setting_location(config, "iso.interactive_default"),
                          fmt::format("the interactive install is to be the default entry, but "
                                      "uki.entries ({}) has no interactive-install: add it",
                                      setting_location(config, "uki.entries").str()));
    }
    std::vector<std::string> ordered = ids;
    if (plan.iso.interactive_default) {
        // FORCE_INTERACTIVE_INSTALL: the interactive install first, so it is the default.
        std::stable_partition(ordered.begin(), ordered.end(),
                              [](const std::string& id) { return id == "interactive-install"; });
    }
    diagnostics.throw_if_any();
    plan.entries = make_entries(plan.iso, ordered, config.string("uki.branding"));
    plan.secure_boot_enroll = config.string("uki.secure_boot_enroll");
    plan.max_efi_size = config.size("uki.max_efi_size");
    plan.output = medium == UkiMedium::iso ? plan.iso.iso_path()
                                           : plan.iso.output_dir / (plan.iso.name + "-uki");
    return plan;
}

std::string render_uki_plan(const UkiPlan& plan) {
    std::string text = fmt::format("{} build plan ({})\n  output:  {}\n  keys:    {} ({} layout)\n",
                                   plan.medium == UkiMedium::iso ? "UKI installer ISO" : "UKI",
                                   plan.iso.arch.name(), plan.output.string(),
                                   plan.keys.directory.string(), plan.keys.layout);
    text += fmt::format("  base:    {}\n", plan.iso.base.str());
    for (const auto& entry : plan.entries) {
        text += fmt::format("  entry:   {} ({}.efi, {})\n           {}\n", entry.id, entry.file,
                            entry.title, entry.cmdline);
    }
    text += fmt::format("  loader:  secure-boot-enroll {}\n", plan.secure_boot_enroll);
    text += fmt::format("  limit:   each UKI at most {} (uki.max_efi_size)\n",
                        util::format_bytes(plan.max_efi_size));
    if (plan.medium == UkiMedium::iso) {
        text += fmt::format("  medium:  volume {}, EFI only; /config.yaml from {}\n",
                            k_uki_volume_id, plan.iso.user_data.string());
        if (plan.iso.iso_overlay) {
            text += fmt::format("           overlay {}\n", plan.iso.iso_overlay->string());
        }
        for (const auto& bundle : plan.iso.content_bundles) {
            text += fmt::format("           content {}\n", bundle.string());
        }
        if (plan.iso.cluster_config) {
            text +=
                fmt::format("           cluster config {}\n", plan.iso.cluster_config->string());
        }
        if (plan.iso.edge_custom_config) {
            text += fmt::format("           edge custom config {}\n",
                                plan.iso.edge_custom_config->string());
        }
    }
    return text;
}

namespace {

// Everything the UKIs are made of, for every entry: the small parts read once, the kernel and
// the initrd (the OS) left in their files, read in pieces while each UKI is written.
struct UkiParts {
    ComposedRootfs rootfs;
    std::string db_key, db_certificate, pcr_private, pcr_public_file, pcr_public;
    std::int64_t signing_time = 0;
    std::string stub_image, loader_image, os_release;
    stdfs::path kernel, initrd; // kernel: in `work`; initrd: in the step cache entry
    std::uint64_t kernel_size = 0, initrd_size = 0;
    std::string stub_origin, loader_origin, kernel_path;
    std::shared_ptr<util::TempDir> work;
};

UkiParts load_parts(const UkiPlan& plan, const Console& console) {
    UkiParts parts;
    check_private_key_mode(plan.keys.db_key, console);
    check_private_key_mode(plan.keys.pcr_private_key, console);
    parts.db_key = util::read_file(plan.keys.db_key);
    parts.db_certificate = util::read_file(plan.keys.db_certificate);
    parts.pcr_private = util::read_file(plan.keys.pcr_private_key);
    std::error_code ec;
    if (stdfs::is_regular_file(plan.keys.pcr_public_key, ec)) {
        parts.pcr_public_file = util::read_file(plan.keys.pcr_public_key);
    }
    parts.pcr_public = secureboot::pcr_public_key_pem(parts.pcr_private);
    parts.signing_time = plan.iso.source_date_epoch.value_or(0);

    parts.rootfs = compose_rootfs(plan.iso, console, RootfsForm::uki_initrd);

    StepCache cache(plan.iso.cache_dir / "steps");
    parts.work = std::make_shared<util::TempDir>(cache.work_dir(), "uki-");
    const stdfs::path& work = parts.work->path();
    fs::Tree boot_tree;
    oci::apply_directory(parts.rootfs.bootfs, boot_tree);
    const fs::SpillFile no_spill(work);
    const boot::BootFile kernel_file = boot::find_kernel(boot_tree);
    const stdfs::path kernel_copy = work / "kernel";
    boot::extract_file(*kernel_file.inode, no_spill, kernel_copy);
    const stdfs::path kernel = plain_kernel(kernel_copy, work / "kernel.plain", kernel_file.path);
    parts.kernel_path = kernel_file.path;

    const Arch arch = plan.iso.arch;
    const auto stub = boot_file(boot_tree, boot::uki_stub_path(arch), no_spill, work, "stub.efi",
                                parts.stub_origin);
    const auto loader = boot_file(boot_tree, boot::systemd_boot_path(arch), no_spill, work,
                                  "systemd-boot.efi", parts.loader_origin);
    if (!stub || !loader) {
        throw build_failed(
            "no systemd EFI {} for {}: the base image has no {} and neither has this machine; "
            "install Debian's systemd-boot-efi{} here (or use a base image that ships it)",
            !stub ? "stub" : "boot loader", arch.name(),
            !stub ? boot::uki_stub_path(arch) : boot::systemd_boot_path(arch),
            arch.id() == Arch::Id::amd64 ? "" : ":arm64");
    }
    parts.stub_image = util::read_file(*stub);
    const std::uint16_t want_machine =
        arch.id() == Arch::Id::arm64 ? k_machine_arm64 : k_machine_amd64;
    const std::uint16_t machine = secureboot::parse_pe(parts.stub_image, parts.stub_origin).machine;
    if (machine != want_machine) {
        throw bad_input("the systemd EFI stub ({}) is for PE machine {:#06x}, not {} ({:#06x})",
                        parts.stub_origin, machine, arch.name(), want_machine);
    }
    parts.loader_image = util::read_file(*loader);

    // The firmware reads a UKI whole into memory: check the size each will have before writing
    // anything.
    std::size_t longest_cmdline = 0;
    for (const auto& entry : plan.entries) {
        longest_cmdline = std::max(longest_cmdline, entry.cmdline.size());
    }
    const std::uint64_t uki_size =
        parts.stub_image.size() + stdfs::file_size(kernel) + stdfs::file_size(parts.rootfs.initrd) +
        stdfs::file_size(parts.rootfs.os_release) + longest_cmdline + k_uki_overhead;
    if (uki_size > plan.max_efi_size) {
        throw bad_input(
            "each UKI would be about {} (the OS as its initrd: {}; the kernel: {}), more than "
            "uki.max_efi_size ({}), the largest EFI file the firmware is taken to load: make the "
            "base image smaller, or raise uki.max_efi_size (--max-efi-size) to what your "
            "firmware loads (CanvOS's efi-size-check medium measures it; a FAT file cannot pass "
            "4 GiB)",
            util::format_bytes(uki_size), util::format_bytes(stdfs::file_size(parts.rootfs.initrd)),
            util::format_bytes(stdfs::file_size(kernel)), util::format_bytes(plan.max_efi_size));
    }
    console.info("uki: {} of about {} (limit {}), stub {}, boot loader {}, kernel {}",
                 plan.entries.size() == 1 ? std::string("1 entry")
                                          : fmt::format("{} entries", plan.entries.size()) +
                                                " each",
                 util::format_bytes(uki_size), util::format_bytes(plan.max_efi_size),
                 parts.stub_origin, parts.loader_origin, kernel_file.path);
    parts.kernel = kernel;
    parts.kernel_size = stdfs::file_size(kernel);
    // A hard link pins the initrd's bytes for the whole build (every UKI reads it several
    // times): `cache prune` or another build replacing the step entry cannot change them.
    parts.initrd = work / "initrd";
    std::error_code link_error;
    stdfs::create_hard_link(parts.rootfs.initrd, parts.initrd, link_error);
    if (link_error) {
        stdfs::copy_file(parts.rootfs.initrd, parts.initrd);
    }
    parts.initrd_size = stdfs::file_size(parts.initrd);
    parts.os_release = util::read_file(parts.rootfs.os_release);
    return parts;
}

// Writes the ESP tree into `esp` (an empty directory) and returns the entries' summary.
nlohmann::json write_esp_tree(const UkiPlan& plan, const UkiParts& parts, const stdfs::path& esp,
                              const Console& console) {
    const std::string boot_name(plan.iso.arch.traits().efi_boot_file);
    stdfs::create_directories(esp / "EFI" / "BOOT");
    stdfs::create_directories(esp / "EFI" / "kairos");
    stdfs::create_directories(esp / "loader" / "entries");
    stdfs::create_directories(esp / "loader" / "keys" / "auto");

    nlohmann::json entries = nlohmann::json::array();
    for (const auto& entry : plan.entries) {
        // PCR 11 at each boot phase the policy is signed for, and right after systemd-stub
        // (phase ""), from one pass over the sections.
        std::vector<std::string> phases = secureboot::default_pcr_phases();
        phases.emplace_back();
        std::vector<secureboot::PcrValue> prediction;
        std::string after_stub;
        for (auto& value : secureboot::predict_pcr11({{".linux", parts.kernel},
                                                      {".osrel", parts.os_release},
                                                      {".cmdline", entry.cmdline},
                                                      {".initrd", parts.initrd},
                                                      {".pcrpkey", parts.pcr_public}},
                                                     {k_pcr_bank}, phases)) {
            if (value.phase.empty()) {
                after_stub = value.hex();
            } else {
                prediction.push_back(std::move(value));
            }
        }
        // Without tpm2-pcr-public.pem (CanvOS's key sets may lack it) the public half is taken
        // from the private key.
        const std::string pcrsig = secureboot::sign_pcr_predictions(
            prediction, parts.pcr_private,
            parts.pcr_public_file.empty() ? std::nullopt
                                          : std::optional<std::string>(parts.pcr_public_file));

        // ukify's order: the small sections first, .initrd and .linux last. The OS stays in its
        // file: the UKI is read from there while it is signed and written.
        secureboot::PeImage image =
            secureboot::assemble_pe_sections(parts.stub_image,
                                             {{".osrel", parts.os_release},
                                              {".cmdline", entry.cmdline},
                                              {".pcrpkey", parts.pcr_public},
                                              {".pcrsig", pcrsig},
                                              {".initrd", {}, parts.initrd},
                                              {".linux", {}, parts.kernel}},
                                             parts.stub_origin);
        const stdfs::path signed_image = esp / "EFI" / "kairos" / (entry.file + ".efi");
        secureboot::sign_pe_to_file(image, parts.db_key, parts.db_certificate, parts.signing_time,
                                    entry.file + ".efi", signed_image);
        nlohmann::json pcr = nlohmann::json::array();
        for (const auto& value : prediction) {
            pcr.push_back({{"phase", value.phase}, {"sha256", value.hex()}});
        }
        entries.push_back({{"id", entry.id},
                           {"file", entry.file},
                           {"size", stdfs::file_size(signed_image)},
                           {"pcr11", pcr},
                           {"pcr11_after_stub", after_stub}});
        console.info("uki: EFI/kairos/{}.efi ({})", entry.file,
                     util::format_bytes(stdfs::file_size(signed_image)));
    }
    util::write_file_atomically(esp / "EFI" / "BOOT" / boot_name,
                                secureboot::sign_pe(parts.loader_image, parts.db_key,
                                                    parts.db_certificate, parts.signing_time,
                                                    parts.loader_origin));

    util::write_file_atomically(esp / "loader" / "loader.conf", loader_conf(plan));
    for (std::size_t i = 0; i < plan.entries.size(); ++i) {
        util::write_file_atomically(esp / "loader" / "entries" / (plan.entries[i].file + ".conf"),
                                    entry_conf(plan.entries[i], i));
    }
    for (const auto* file : {&plan.keys.pk_auth, &plan.keys.kek_auth, &plan.keys.db_auth}) {
        stdfs::copy_file(*file, esp / "loader" / "keys" / "auto" / file->filename());
    }
    return entries;
}

// The regular files below `directory`, sorted.
std::vector<stdfs::path> files_below(const stdfs::path& directory) {
    std::vector<stdfs::path> files;
    for (const auto& item : stdfs::recursive_directory_iterator(directory)) {
        if (item.is_regular_file()) {
            files.push_back(item.path());
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

nlohmann::json uki_summary(const UkiParts& parts, nlohmann::json entries) {
    return {{"rootfs", parts.rootfs.summary},
            {"entries", std::move(entries)},
            {"stub", parts.stub_origin},
            {"boot_loader", parts.loader_origin},
            {"kernel", parts.kernel_path}};
}

} // namespace

UkiBuildResult build_uki(const UkiPlan& plan, const Console& console) {
    const UkiParts parts = load_parts(plan, console);
    util::PartialDirectory partial(plan.output);
    const nlohmann::json entries = write_esp_tree(plan, parts, partial.path(), console);
    try {
        partial.commit();
    } catch (const std::system_error& e) {
        throw build_failed("uki: cannot replace {}: {}", plan.output.string(), e.code().message());
    }
    UkiBuildResult result;
    result.directory = plan.output;
    for (const auto& file : files_below(plan.output)) {
        result.files.push_back(Artifact{file, stdfs::file_size(file), util::sha256_file_hex(file)});
    }
    result.summary = uki_summary(parts, entries);
    return result;
}

IsoBuildResult build_uki_iso(const UkiPlan& plan, const Console& console) {
    const auto started = std::chrono::steady_clock::now();
    const IsoPlan& iso = plan.iso;
    std::error_code ec;
    stdfs::create_directories(iso.output_dir, ec);
    if (ec) {
        throw build_failed("cannot create the output directory {}: {}", iso.output_dir.string(),
                           ec.message());
    }
    // Before the OS is composed: the medium's payload and room for its boot files.
    const std::uint64_t payload = (64u << 20) + medium_payload_bytes(iso);
    check_free_space(iso.output_dir, payload, "the ISO", "--output-dir");
    const UkiParts parts = load_parts(plan, console);
    // The UKIs are written twice (the tree, then the FAT image), then once more into the ISO.
    const std::uint64_t ukis = plan.entries.size() * (parts.initrd_size + parts.kernel_size);
    check_free_space(iso.output_dir, payload + 3 * ukis, "the UKI installer ISO", "--output-dir");

    util::TempDir work(iso.output_dir, ".edgeforge-uki-iso-");
    const stdfs::path esp = work.path() / "esp";
    stdfs::create_directories(esp);
    const nlohmann::json entries = write_esp_tree(plan, parts, esp, console);

    std::vector<boot::EspFile> esp_files;
    for (const auto& file : files_below(esp)) {
        esp_files.push_back(
            boot::EspFile{"/" + file.lexically_relative(esp).generic_string(), file, std::nullopt});
    }
    const stdfs::path esp_image = work.path() / "efiboot.img";
    console.info("iso: writing the EFI system partition ({} files)", esp_files.size());
    boot::build_esp_image(
        esp_files, esp_image,
        {.label = std::string(k_uki_esp_label), .source_date_epoch = iso.source_date_epoch});
    stdfs::remove_all(esp); // its bytes are in the FAT image now

    const std::string user_data = util::read_file(iso.user_data);
    formats::IsoDescription description;
    description.volume_id = std::string(k_uki_volume_id);
    description.arch = iso.arch;
    description.files.push_back({"/config.yaml", formats::IsoBytes{user_data}, 0644});
    for (auto& file : medium_payload_files(iso, console)) {
        description.files.push_back(std::move(file));
    }
    if (iso.iso_overlay) {
        description.directories.push_back({"/", *iso.iso_overlay});
    }
    description.efi_system_partition = esp_image;
    description.boot_catalog_path = "/boot.catalog"; // hidden; no /boot directory on the medium
    description.source_date_epoch = iso.source_date_epoch;
    util::Sha256 layout;
    layout.update("uki installer iso");
    layout.update(parts.rootfs.key);
    layout.update(util::sha256_hex(user_data));
    hash_medium_payload(iso, layout);
    // What decides the ESP's bytes besides the rootfs, without reading the image back (it holds
    // the OS once per entry): the boot binaries, the keys, the entries and loader settings.
    for (const std::string* part : {&parts.stub_image, &parts.loader_image, &parts.db_certificate,
                                    &parts.pcr_public}) {
        layout.update(util::sha256_hex(*part));
    }
    for (const auto* file : {&plan.keys.pk_auth, &plan.keys.kek_auth, &plan.keys.db_auth}) {
        layout.update(util::sha256_file_hex(*file));
    }
    for (const auto& entry : plan.entries) {
        layout.update(fmt::format("{}\n{}\n{}\n", entry.file, entry.title, entry.cmdline));
    }
    layout.update(plan.secure_boot_enroll);
    description.content_digest = layout.finish_hex();

    const stdfs::path iso_path = iso.iso_path();
    console.info("iso: writing {}", iso_path.string());
    formats::IsoWriteResult written;
    {
        Progress progress(console, "iso", 0);
        written =
            formats::write_iso(description, iso_path, [&](std::uint64_t done, std::uint64_t total) {
                progress.set_total(total);
                progress.update(done);
            });
        progress.finish();
    }
    for (const auto& warning : written.warnings) {
        console.detail("libisofs: {}", warning);
    }
    IsoBuildResult result;
    result.iso = Artifact{iso_path, written.size, written.sha256};
    result.checksum = write_checksum_file(result.iso);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    result.summary = uki_summary(parts, entries);
    result.summary["esp_size"] = stdfs::file_size(esp_image);
    result.summary["bios_boot"] = false;
    result.summary["seconds"] = seconds;
    console.info("iso: {} ({}, EFI system partition {}, {} UKI{}) in {}{}", iso_path.string(),
                 util::format_bytes(written.size), util::format_bytes(stdfs::file_size(esp_image)),
                 plan.entries.size(), plan.entries.size() == 1 ? "" : "s",
                 util::format_duration(seconds),
                 parts.rootfs.cache_hit ? " (rootfs from cache)" : "");
    return result;
}

} // namespace edgeforge
