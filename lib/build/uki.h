// `edgeforge build uki` and `build iso --uki`: signed Unified Kernel Images (Trusted Boot), the
// systemd-boot ESP tree that boots them, and the UKI installer ISO that carries that tree, from
// the same inputs as the grub ISO.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/artifact.h"
#include "base/console.h"
#include "build/config.h"
#include "build/iso.h"
#include "build/plan.h"

namespace edgeforge {

// One boot menu entry: its own UKI, as Kairos's installer media have them.
struct UkiEntry {
    std::string id;      // the uki.entries name: install, interactive-install, recovery
    std::string file;    // EFI/kairos/<file>.efi, loader/entries/<file>.conf: Kairos's names
    std::string title;   // the menu title
    std::string cmdline; // the whole .cmdline section
    std::string extra;   // the part after Kairos's common command line, for the entry's
                         // `cmdline` key (kairos-agent reads it to skip entries at install)
};

// The key files a UKI build reads from the key directory (what `keys generate` writes).
struct UkiKeyFiles {
    std::filesystem::path directory;
    std::string layout; // "edgeforge" (keys generate) or "CanvOS secure-boot/"
    std::filesystem::path db_key, db_certificate;          // signs every EFI binary
    std::filesystem::path pcr_private_key, pcr_public_key; // signs the PCR 11 policy (the public
                                                           // one may be missing: derived)
    std::filesystem::path pk_auth, kek_auth, db_auth;      // enrolled by systemd-boot
};

// What a UKI build writes: the ESP tree (`build uki`), or the installer ISO holding it
// (`build iso --uki`).
enum class UkiMedium { tree, iso };

struct UkiPlan {
    UkiMedium medium = UkiMedium::tree;
    IsoPlan iso; // the root filesystem's inputs, name, output and cache directories
    UkiKeyFiles keys;
    std::vector<UkiEntry> entries;             // the first is the default
    std::string secure_boot_enroll = "manual"; // loader.conf: off, manual or force
    std::uint64_t max_efi_size = 2ULL << 30;   // the largest UKI the firmware loads
    std::filesystem::path output; // build/<name>-uki (the ESP tree) or build/<name>.iso

    nlohmann::json to_json() const;
};

// Checks every input before any work and reports every problem together (Error, bad input):
// the ISO's plan (plan_iso: images, overlays, user-data, output directory), no per-site build,
// the entries (uki.entries; iso.interactive_default needs interactive-install among them), what
// the medium cannot carry (the tree: user-data, overlays, content, cluster config; both:
// IMAGE_NAME), and the key directory: `keys_directory`, else secureboot-keys/ of the project,
// else CanvOS's secure-boot/ there. Its layout is edgeforge's (every file in it) or CanvOS's
// (private-keys/, public-keys/, enrollment/). It must hold db.key, db.pem,
// tpm2-pcr-private.pem and PK/KEK/db.auth (tpm2-pcr-public.pem may be missing), each at most
// 4 MiB; db.key must be db.pem's key and db.pem valid today. Missing files are named with
// `edgeforge keys generate`. Private keys readable by others are a warning (at build time).
UkiPlan plan_uki(const Config& config, const std::filesystem::path& keys_directory,
                 UkiMedium medium = UkiMedium::tree);

std::string render_uki_plan(const UkiPlan& plan);

// The key directory of a UKI build (`keys_directory`, else secureboot-keys/ of `project`, else
// CanvOS's secure-boot/ there) with its files checked as plan_uki checks them; problems go into
// `diagnostics` (bad input).
UkiKeyFiles plan_uki_keys(const std::filesystem::path& keys_directory,
                          const std::filesystem::path& project, Diagnostics& diagnostics);

// Problems of a text that goes on one line of the loader entries and into the signed
// .cmdline (uki.branding, iso.extra_cmdline): a control character is reported at `where`.
void check_one_line(const Config& config, std::string_view key, Diagnostics& diagnostics);

// The one entry of an upgrade set (CanvOS's +build-provider-trustedboot-image runs AuroraBoot's
// `build-uki -t container` without --extend-cmdline): norole.efi with Kairos's install command
// line and nothing after it, titled `title`. kairos-agent's UKI upgrade installs norole.efi as
// the device's active (or recovery) entry.
UkiEntry uki_upgrade_entry(const std::string& title);

struct UkiBuildResult {
    std::filesystem::path directory;
    std::vector<Artifact> files; // every file written, with its size and SHA-256
    nlohmann::json summary;
};

// Composes (or reuses) the root filesystem as a UKI initrd, then writes plan.output (replacing
// it whole; nothing is left half-written): EFI/kairos/<id>.efi per entry (the systemd EFI stub
// of the base image, else the host's systemd-boot-efi, with .osrel, .cmdline, .pcrpkey, .pcrsig,
// .initrd and .linux, Authenticode-signed with the db key), EFI/BOOT/BOOT<ARCH>.EFI (systemd-boot,
// signed), loader/loader.conf, loader/entries/<id>.conf and loader/keys/auto/{PK,KEK,db}.auth.
// A UKI larger than plan.max_efi_size is refused (Error, bad input) before any is written.
UkiBuildResult build_uki(const UkiPlan& plan, const Console& console);

// The UKI installer ISO, build/<name>.iso (+ .sha256), written atomically: EFI only (no BIOS
// boot), volume UKI_ISO_INSTALL (the label Kairos's immucore looks for), the ESP tree of
// build_uki as a FAT image appended as GPT partition 2 and booted through El Torito, and on the
// ISO 9660 side what the grub ISO carries: /config.yaml (the user-data), the ISO overlay, the
// content bundles, the cluster config and the edge custom config.
IsoBuildResult build_uki_iso(const UkiPlan& plan, const Console& console);

} // namespace edgeforge
