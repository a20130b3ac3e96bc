// CanvOS projects: the `.arg` variables CanvOS reads that are not edgeforge settings (those carry
// their .arg name in build/settings.cpp), what edgeforge does with each, and CanvOS's rules for
// the base and agent images when BASE_IMAGE is empty. One table; `config show`, validation and
// README's migration guide follow from its rows.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace edgeforge {

enum class CanvosRole {
    derivation,       // an input of CanvOS's base/agent rule: honoured when BASE_IMAGE is empty
    os_customisation, // CanvOS changes the base OS with it: only its default is accepted
    not_supported,    // a CanvOS feature edgeforge does not build (yet): only its default
    no_effect,        // a tool pin, mirror or upload detail: accepted, reported as no effect
    optional_file,    // a file CanvOS copies when it exists (COPY --if-exists)
    uki,              // read for Trusted Boot media (IS_UKI=true) only
};

struct CanvosVariable {
    std::string_view name;
    CanvosRole role;
    // Values accepted without effect (compared case-insensitively; an empty value always is).
    // The first is CanvOS's default.
    std::vector<std::string_view> accepted;
    // os_customisation / not_supported: why a other value is refused and what to do instead;
    // no_effect / derivation / optional_file / uki: what edgeforge does with it.
    std::string_view note;
};

std::span<const CanvosVariable> canvos_variables();
const CanvosVariable* find_canvos_variable(std::string_view name);

// A CanvOS-only variable as the project's .arg sets it.
struct CanvosValue {
    const CanvosVariable* variable = nullptr;
    std::string value;
    SourceLocation location;
    std::string effect; // what `config show` says it does, filled by check_canvos_values()
};

// What check_canvos_values() needs from the resolved settings.
struct CanvosContext {
    std::string os_distribution;
    std::string os_version;
    bool fips = false;
    bool base_image_set = false;  // BASE_IMAGE (or base.image anywhere) is set
    bool uki = false;             // IS_UKI (iso.uki) is true
    std::filesystem::path project_dir;
};

// The value the .arg gives `name` (the last assignment wins, as in Earthly), or `fallback` when
// it is unset or empty.
std::string canvos_value_or(const std::vector<CanvosValue>& values, std::string_view name,
                            std::string_view fallback);

// Refuses (into `diagnostics`) each value edgeforge cannot honour, naming the .arg position and
// what to do instead, and fills each value's `effect`.
void check_canvos_values(std::vector<CanvosValue>& values, const CanvosContext& context,
                         Diagnostics& diagnostics);

// CanvOS's defaults for the variables its rules read.
inline constexpr std::string_view k_canvos_pub_repo = "us-docker.pkg.dev/palette-images";
inline constexpr std::string_view k_canvos_pub_repo_fips = "us-docker.pkg.dev/palette-images-fips";
inline constexpr std::string_view k_canvos_kairos_init_version = "v0.17.1";
inline constexpr std::string_view k_canvos_pe_version = "v4.10.0-rc.2";
inline constexpr std::string_view k_canvos_clusterconfig = "spc.tgz";
inline constexpr std::string_view k_canvos_edge_custom_config = ".edge-custom-config.yaml";

// The base image CanvOS uses when BASE_IMAGE is empty (ubuntu and opensuse-leap; nullopt for
// other distributions or without OS_VERSION: BASE_IMAGE must be set), as a docker:// reference with {arch} left for
// each build's architecture.
std::optional<std::string> canvos_base_image(const std::vector<CanvosValue>& values,
                                             const CanvosContext& context);
// The agent (stylus framework) image CanvOS layers: $SPECTRO_PUB_REPO/edge/
// stylus-framework-linux-{arch}:PE_VERSION.
std::string canvos_agent_image(const std::vector<CanvosValue>& values, const CanvosContext& context,
                               std::string_view pe_version);

} // namespace edgeforge
