// CanvOS .arg variables that are not edgeforge settings (see canvos.h).
#include "build/canvos.h"

#include "util/strings.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

namespace edgeforge {
namespace {

using R = CanvosRole;

constexpr std::string_view k_os_note =
    "edgeforge composes the base image and does not modify the OS inside it; build a base image "
    "with this option (CanvOS's +base-image target, or your own Dockerfile) and give it as "
    "BASE_IMAGE (or --base)";
// Rows in the order of CanvOS's .arg.template and Earthfile. Defaults are CanvOS's (Earthfile
// ARG lines, 2026-08).
const std::vector<CanvosVariable>& rows() {
    static const std::vector<CanvosVariable> table = {
        // Inputs of the base and agent rules (BASE_IMAGE empty).
        {"SPECTRO_PUB_REPO", R::derivation, {k_canvos_pub_repo},
         "the registry the base (through KAIROS_BASE_IMAGE_URL) and the agent image come from"},
        {"KAIROS_BASE_IMAGE_URL", R::derivation, {},
         "the repository the base image comes from when BASE_IMAGE is empty (default "
         "$SPECTRO_PUB_REPO/edge)"},
        {"KAIROS_INIT_VERSION", R::derivation, {k_canvos_kairos_init_version},
         "the kairos-init version in the base image's tag when BASE_IMAGE is empty"},

        // OS customisation: CanvOS runs package managers inside the base.
        {"UPDATE_KERNEL", R::os_customisation, {"false"}, k_os_note},
        {"CIS_HARDENING", R::os_customisation, {"false"}, k_os_note},
        {"DISABLE_SELINUX", R::os_customisation, {"true"}, k_os_note},
        {"UBUNTU_PRO_ATTACH", R::os_customisation, {"false"}, k_os_note},
        {"DRBD_VERSION", R::os_customisation, {"9.2.13"},
         "CanvOS builds the DRBD kernel module into the base for the Piraeus pack; edgeforge "
         "composes the base image and does not build kernel modules: build a base image with "
         "DRBD and give it as BASE_IMAGE (or --base)"},
        {"INSTALL_NVIDIA_GPU_DRIVERS", R::os_customisation, {"false"}, k_os_note},
        {"INSTALL_AMD_GPU_DRIVERS", R::os_customisation, {"false"}, k_os_note},
        {"NVIDIA_DRIVER_BRANCH", R::no_effect, {"580"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"NVIDIA_DRIVER_TYPE", R::no_effect, {"open"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"NVIDIA_USE_CUDA_REPO", R::no_effect, {"true"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"NVIDIA_INSTALL_FABRICMANAGER", R::no_effect, {"true"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"NVIDIA_INSTALL_CONTAINER_TOOLKIT", R::no_effect, {"false"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"NVIDIA_INSTALL_IMEX", R::no_effect, {"true"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"NVIDIA_REBUILD_INITRD", R::no_effect, {"true"},
         "used by CanvOS only with INSTALL_NVIDIA_GPU_DRIVERS=true"},
        {"AMDGPU_DRIVER_SOURCE", R::no_effect, {"dkms"},
         "used by CanvOS only with INSTALL_AMD_GPU_DRIVERS=true"},
        {"AMDGPU_DRIVER_RELEASE", R::no_effect, {"31.40"},
         "used by CanvOS only with INSTALL_AMD_GPU_DRIVERS=true"},
        {"AMDGPU_INSTALL_SMI", R::no_effect, {"true"},
         "used by CanvOS only with INSTALL_AMD_GPU_DRIVERS=true"},
        {"AMDGPU_REBUILD_INITRD", R::no_effect, {"false"},
         "used by CanvOS only with INSTALL_AMD_GPU_DRIVERS=true"},

        // Features edgeforge does not build yet: their defaults only.
        // Trusted Boot (IS_UKI and BRANDING are settings: iso.uki, uki.branding).
        {"UKI_BRING_YOUR_OWN_KEYS", R::no_effect, {"false"},
         "CanvOS's +uki-byok reads it; edgeforge: `keys import --from secure-boot` makes the "
         "enrolment files from your own PK/KEK/db pairs"},
        {"INCLUDE_MS_SECUREBOOT_KEYS", R::no_effect, {"true"},
         "CanvOS's +uki-genkey reads it; `edgeforge keys generate` adds only the certificates "
         "you give it"},
        {"AUTO_ENROLL_SECUREBOOT_KEYS", R::uki, {"false"},
         "true is uki.secure_boot_enroll force (false: manual), unless that is set"},
        {"MY_ORG", R::no_effect, {"ACME Corp"},
         "used by CanvOS only for Secure Boot keys (+uki-genkey); edgeforge: keys generate --org"},
        {"EXPIRATION_IN_DAYS", R::no_effect, {"5475"},
         "used by CanvOS only for Secure Boot keys (+uki-genkey); edgeforge: keys generate "
         "--days"},
        {"CMDLINE", R::uki, {"stylus.registration"},
         "appended to the UKI command line (CanvOS's default stylus.registration when unset), "
         "unless iso.extra_cmdline is set"},
        {"EFI_MAX_SIZE", R::no_effect, {"2048"},
         "the size of CanvOS's +efi-size-check test medium; edgeforge checks each UKI against "
         "uki.max_efi_size"},
        {"EFI_IMG_SIZE", R::no_effect, {"2200"},
         "the size of CanvOS's +efi-size-check test medium"},
        {"ENROLL_SPECTRO_EXTENSION_CERT", R::no_effect, {"true"},
         "used by CanvOS only for UKI keys (+uki-genkey)"},
        {"SPECTRO_EXTENSION_CERT_IMAGE", R::no_effect, {},
         "used by CanvOS only for UKI keys (+uki-genkey)"},
        {"TWO_NODE", R::not_supported, {"false"},
         "CanvOS installs kine and the two-node packages into the base with it; edgeforge "
         "composes artifacts you supply: build a base (BASE_IMAGE) or Kubernetes artifact "
         "(kubernetes.artifacts) that has them"},
        {"KINE_VERSION", R::no_effect, {"0.15.0"}, "used by CanvOS only with TWO_NODE=true"},
        {"IS_MAAS", R::not_supported, {"false"},
         "edgeforge does not build MAAS images (.raw.gz) yet; build a raw disk with `edgeforge "
         "build disk --format raw` and compress it, or use CanvOS's +maas-image"},
        {"MAAS_IMAGE_NAME", R::no_effect, {"kairos-ubuntu-maas"},
         "used by CanvOS only with IS_MAAS=true"},
        {"BUNDLE_K8S_AND_AGENT_PROVIDER", R::no_effect, {"false", "true"},
         "edgeforge always composes Kubernetes and the agent (with its provider) into provider "
         "images, as CanvOS does with true, and marks them with "
         "/etc/spectro-sysext/k8s-and-agent-provider-bundled; no systemd-extension delivery"},

        // Files CanvOS copies only when they exist.
        {"EDGE_CUSTOM_CONFIG", R::optional_file, {k_canvos_edge_custom_config},
         "the edge custom config (edge_custom_config)"},
        {"CLUSTERCONFIG", R::optional_file, {k_canvos_clusterconfig},
         "the cluster configuration archive (cluster_config)"},

        // Tool pins, mirrors and upload details.
        {"OSBUILDER_VERSION", R::no_effect, {}, "a CanvOS tool pin (osbuilder-tools)"},
        {"AURORABOOT_VERSION", R::no_effect, {}, "a CanvOS tool pin (AuroraBoot)"},
        {"KAIROS_VERSION", R::no_effect, {}, "a CanvOS tool pin"},
        {"SPECTRO_LUET_REPO", R::no_effect, {},
         "CanvOS installs Kubernetes from luet packages there; edgeforge takes Kubernetes "
         "artifacts as images or directories (kubernetes.artifacts)"},
        {"S3_BUCKET", R::no_effect, {},
         "edgeforge uploads AMIs with the EBS direct APIs, without an S3 bucket"},
        {"S3_KEY", R::no_effect, {},
         "edgeforge uploads AMIs with the EBS direct APIs, without an S3 bucket"},
    };
    return table;
}

bool accepted_value(const CanvosVariable& variable, std::string_view value) {
    if (value.empty()) {
        return true;
    }
    return std::any_of(variable.accepted.begin(), variable.accepted.end(),
                       [&](std::string_view accepted) { return util::iequals(accepted, value); });
}

const CanvosValue* find_value(const std::vector<CanvosValue>& values, std::string_view name) {
    const CanvosValue* found = nullptr;
    for (const auto& value : values) {
        if (value.variable->name == name) {
            found = &value; // the last assignment wins, as in Earthly
        }
    }
    return found;
}

std::string pub_repo(const std::vector<CanvosValue>& values, const CanvosContext& context) {
    std::string repo = canvos_value_or(values, "SPECTRO_PUB_REPO", k_canvos_pub_repo);
    if (context.fips && repo == k_canvos_pub_repo) {
        repo = k_canvos_pub_repo_fips; // as CanvOS's Earthfile does for FIPS_ENABLED=true
    }
    return repo;
}

} // namespace

std::span<const CanvosVariable> canvos_variables() {
    return rows();
}

const CanvosVariable* find_canvos_variable(std::string_view name) {
    for (const auto& row : rows()) {
        if (row.name == name) {
            return &row;
        }
    }
    return nullptr;
}

std::string canvos_value_or(const std::vector<CanvosValue>& values, std::string_view name,
                     std::string_view fallback) {
    const auto* value = find_value(values, name);
    return value != nullptr && !value->value.empty() ? value->value : std::string(fallback);
}

void check_canvos_values(std::vector<CanvosValue>& values, const CanvosContext& context,
                         Diagnostics& diagnostics) {
    for (auto& value : values) {
        const CanvosVariable& variable = *value.variable;
        const bool accepted = accepted_value(variable, value.value);
        switch (variable.role) {
        case R::derivation:
            value.effect = context.base_image_set && variable.name != "SPECTRO_PUB_REPO"
                               ? "none: BASE_IMAGE is set, so " + std::string(variable.name) +
                                     " is not used"
                               : "used: " + std::string(variable.note);
            break;
        case R::os_customisation:
        case R::not_supported:
            if (!accepted) {
                diagnostics.error(value.location,
                                  fmt::format("{}={} is not supported: {}", variable.name,
                                              util::printable_line(value.value, 80),
                                              variable.note));
            }
            value.effect = fmt::format("none: {} is the default", value.value.empty()
                                                                        ? std::string("empty")
                                                                        : value.value);
            break;
        case R::no_effect:
            value.effect = "none: " + std::string(variable.note);
            break;
        case R::uki:
            value.effect = context.uki ? "used: " + std::string(variable.note)
                                       : "none: read for IS_UKI=true builds only";
            break;
        case R::optional_file: {
            const std::filesystem::path path =
                std::filesystem::path(value.value).is_absolute()
                    ? std::filesystem::path(value.value)
                    : context.project_dir / value.value;
            std::error_code ec;
            const bool exists = !value.value.empty() && std::filesystem::exists(path, ec);
            // Both are settings (cluster_config, edge_custom_config); config.cpp hands over
            // only their template value with the file absent, which CanvOS skips.
            if (!exists && !value.value.empty() && !accepted) {
                diagnostics.error(value.location,
                                  fmt::format("{}: '{}' does not exist (looked for {}); CanvOS "
                                              "skips only its template name '{}' when missing",
                                              variable.name,
                                              util::printable_line(value.value, 200),
                                              path.lexically_normal().string(),
                                              variable.accepted.front()));
            }
            value.effect = fmt::format("none: {} does not exist (CanvOS copies it only when "
                                       "present)",
                                       value.value.empty() ? std::string("the file")
                                                           : value.value);
            break;
        }
        }
    }
}

std::optional<std::string> canvos_base_image(const std::vector<CanvosValue>& values,
                                             const CanvosContext& context) {
    const std::string url = canvos_value_or(values, "KAIROS_BASE_IMAGE_URL",
                                     pub_repo(values, context) + "/edge");
    const std::string init = canvos_value_or(values, "KAIROS_INIT_VERSION", k_canvos_kairos_init_version);
    if (context.os_version.empty()) {
        return std::nullopt; // the tag needs it: BASE_IMAGE stays unset and the build asks
    }
    if (context.os_distribution == "ubuntu") {
        // Ubuntu 20 and 22 are tagged 20.04/22.04; a version given in full is used as is.
        // IS_UKI=true takes the -uki flavour, except for those two (CanvOS's Earthfile).
        const bool short_lts = context.os_version == "20" || context.os_version == "22";
        return fmt::format("docker://{}/kairos-ubuntu:{}{}-core-{{arch}}-generic-{}{}", url,
                           context.os_version, short_lts ? ".04" : "", init,
                           context.uki && !short_lts ? "-uki" : "");
    }
    if (context.os_distribution == "opensuse-leap") {
        return fmt::format("docker://{}/kairos-opensuse:leap-{}-core-{{arch}}-generic-{}", url,
                           context.os_version, init);
    }
    return std::nullopt;
}

std::string canvos_agent_image(const std::vector<CanvosValue>& values, const CanvosContext& context,
                               std::string_view pe_version) {
    return fmt::format("docker://{}/edge/stylus-framework-linux-{{arch}}:{}",
                       pub_repo(values, context), pe_version);
}

} // namespace edgeforge
