// `edgeforge doctor`: checks up front every host tool and library the enabled outputs need.
#include "build/doctor.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <archive.h>
#include <curl/curl.h>
#include <guestfs.h>
#include <libisofs/libisofs.h>
#include <openssl/crypto.h>
#include <zlib.h>
#include <zstd.h>

#include "util/process.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

using Kind = HostRequirement::Kind;
using Requirement = HostRequirement;

// What the outputs need (from the outputs table), plus with `include_tests` what the end-to-end
// tests and benchmarks use.
std::vector<Requirement> requirements(const std::vector<std::string>& outputs, const Arch& arch,
                                      bool include_tests) {
    std::vector<Requirement> list = host_requirements(outputs, arch);
    if (include_tests) {
        list.push_back({Kind::program, "qemu-system-x86_64", "qemu-system-x86", "amd64 boot tests",
                        Need::testing});
        list.push_back({Kind::program, "qemu-system-aarch64", "qemu-system-arm", "arm64 boot tests",
                        Need::testing});
        list.push_back({Kind::path, "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf", "UEFI boot tests",
                        Need::testing});
        list.push_back({Kind::path, "/usr/share/OVMF/OVMF_CODE_4M.ms.fd", "ovmf",
                        "Secure Boot tests", Need::testing});
        list.push_back({Kind::path, "/usr/share/AAVMF/AAVMF_CODE.fd", "qemu-efi-aarch64",
                        "arm64 UEFI boot tests", Need::testing});
        list.push_back(
            {Kind::program, "xorriso", "xorriso", "checking ISO boot records", Need::testing});
        list.push_back({Kind::program, "unsquashfs", "squashfs-tools", "checking squashfs trees",
                        Need::testing});
        list.push_back({Kind::program, "mksquashfs", "squashfs-tools",
                        "the peer pipeline in benchmarks", Need::testing});
        list.push_back({Kind::program, "skopeo", "skopeo", "registry tests", Need::testing});
        list.push_back({Kind::program, "docker-registry", "docker-registry",
                        "the local registry in tests", Need::testing});
        list.push_back({Kind::program, "htpasswd", "apache2-utils",
                        "the authenticated registry in tests", Need::testing});
        list.push_back(
            {Kind::program, "sgdisk", "gdisk", "checking partition tables", Need::testing});
        list.push_back({Kind::program, "sign-efi-sig-list", "efitools",
                        "checking Secure Boot key files", Need::testing});
        list.push_back({Kind::program, "sbverify", "sbsigntool",
                        "checking Secure Boot signatures", Need::testing});
        list.push_back(
            {Kind::program, "qemu-img", "qemu-utils", "checking qcow2/vmdk images", Need::testing});
        list.push_back(
            {Kind::program, "busybox", "busybox-static", "test fixture images", Need::testing});
        list.push_back({Kind::program, "cpio", "cpio", "test fixture initramfs", Need::testing});
        list.push_back({Kind::program, "zstd", "zstd", "test fixture layers", Need::testing});
        list.push_back(
            {Kind::program, "python3", "python3", "test fixture builder", Need::testing});
    }
    return list;
}

std::string_view need_label(Need need) {
    switch (need) {
    case Need::required:
        return "required";
    case Need::fallback:
        return "fallback";
    case Need::testing:
        return "tests";
    }
    return "";
}

} // namespace

std::vector<std::pair<std::string, std::string>> linked_library_versions() {
    std::vector<std::pair<std::string, std::string>> versions;
    versions.emplace_back("libarchive", archive_version_details());
    versions.emplace_back("libcurl", curl_version());
    versions.emplace_back("OpenSSL", OpenSSL_version(OPENSSL_VERSION));
    int major = 0;
    int minor = 0;
    int micro = 0;
    iso_lib_version(&major, &minor, &micro);
    versions.emplace_back("libisofs", fmt::format("{}.{}.{}", major, minor, micro));
    versions.emplace_back("zstd", ZSTD_versionString());
    versions.emplace_back("zlib", zlibVersion());
    if (guestfs_h* handle = guestfs_create_flags(GUESTFS_CREATE_NO_ENVIRONMENT)) {
        if (struct guestfs_version* version = guestfs_version(handle)) {
            versions.emplace_back("libguestfs", fmt::format("{}.{}.{}", version->major,
                                                            version->minor, version->release));
            guestfs_free_version(version);
        }
        guestfs_close(handle);
    }
    return versions;
}

bool DoctorReport::ok() const {
    return std::none_of(checks.begin(), checks.end(), [](const DoctorCheck& check) {
        return !check.found && check.need != Need::fallback;
    });
}

std::vector<std::string> DoctorReport::missing_packages(bool include_optional) const {
    std::set<std::string> packages;
    for (const auto& check : checks) {
        if (!check.found && (include_optional || check.need != Need::fallback)) {
            packages.insert(check.package);
        }
    }
    return {packages.begin(), packages.end()};
}

DoctorReport run_doctor(const Config& config, bool include_tests) {
    DoctorReport report;
    report.outputs = config.list("outputs");
    const Arch arch = config.arch();
    report.arch = std::string(arch.name());
    for (const auto& requirement : requirements(report.outputs, arch, include_tests)) {
        DoctorCheck check{.name = requirement.name,
                          .package = requirement.package,
                          .purpose = requirement.purpose,
                          .need = requirement.need};
        if (requirement.kind == Kind::program) {
            if (const auto found = util::find_program(requirement.name)) {
                check.found = true;
                check.location = found->string();
            }
        } else if (stdfs::exists(requirement.name)) {
            check.found = true;
            check.location = requirement.name;
        }
        report.checks.push_back(std::move(check));
    }
    report.libraries = linked_library_versions();
    return report;
}

std::string render_doctor_report(const DoctorReport& report) {
    std::string out = fmt::format("edgeforge doctor: outputs {} for {}\n",
                                  util::join(report.outputs, ", "), report.arch);
    std::size_t width = 4;
    for (const auto& check : report.checks) {
        width = std::max(width, check.name.size());
    }
    for (const auto& check : report.checks) {
        const std::string status =
            check.found ? "ok" : (check.need == Need::fallback ? "absent" : "MISSING");
        const std::string where =
            check.found ? check.location : fmt::format("apt-get install {}", check.package);
        out += fmt::format("  {:<7}  {:<{}}  {:<8}  {}  ({})\n", status, check.name, width,
                           need_label(check.need), where, check.purpose);
    }
    out += "libraries:\n";
    for (const auto& [name, version] : report.libraries) {
        out += fmt::format("  {:<10}  {}\n", name, version);
    }
    const auto required = report.missing_packages(false);
    const auto optional = report.missing_packages(true);
    if (!required.empty()) {
        out +=
            fmt::format("missing: install with\n  apt-get install {}\n", util::join(required, " "));
    } else if (optional.size() > required.size()) {
        out += fmt::format("all required tools present; optional fallbacks absent ({}): fine "
                           "while the base image carries its own boot binaries\n",
                           util::join(optional, " "));
    } else {
        out += "all good\n";
    }
    return out;
}

nlohmann::json doctor_report_to_json(const DoctorReport& report) {
    nlohmann::json checks = nlohmann::json::array();
    for (const auto& check : report.checks) {
        checks.push_back({{"name", check.name},
                          {"package", check.package},
                          {"purpose", check.purpose},
                          {"need", need_label(check.need)},
                          {"found", check.found},
                          {"location", check.location}});
    }
    nlohmann::json libraries = nlohmann::json::object();
    for (const auto& [name, version] : report.libraries) {
        libraries[name] = version;
    }
    return {{"ok", report.ok()},         {"arch", report.arch},
            {"outputs", report.outputs}, {"checks", checks},
            {"libraries", libraries},    {"missing_packages", report.missing_packages(false)}};
}

} // namespace edgeforge
