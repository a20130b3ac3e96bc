// Resolves every setting from defaults, legacy files, edgeforge.yaml, the environment and CLI
// flags (in that order of precedence), validating all of it before any work starts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/arch.h"
#include "base/error.h"
#include "build/canvos.h"
#include "build/settings.h"

namespace edgeforge {

// Where a value came from, lowest precedence first.
enum class Origin {
    default_value,
    installer_env, // .installer.env
    arg_file,      // .arg
    config_file,   // edgeforge.yaml
    environment,   // EDGEFORGE_* variables (and SOURCE_DATE_EPOCH)
    flag,          // command-line flags
};

std::string_view origin_name(Origin origin);

struct ResolvedValue {
    const Setting* setting = nullptr;
    // Normalised values: one element for scalar settings, any number for lists, none when unset.
    std::vector<std::string> values;
    Origin origin = Origin::default_value;
    SourceLocation location;        // where it was set; empty for defaults
    std::filesystem::path base_dir; // relative paths resolve against this

    bool is_set() const { return !values.empty(); }
};

// A flag given on the command line, before validation.
struct FlagValue {
    std::string key;                 // setting key
    std::vector<std::string> values; // raw values as typed (lists may repeat or use commas)
};

using EnvironmentLookup = std::function<std::optional<std::string>(const std::string&)>;

// Everything resolution reads. The CLI fills it from argv and the process environment; tests
// fill it directly.
struct ConfigInputs {
    std::optional<std::filesystem::path> config_file; // --config; else edgeforge.yaml if present
    std::optional<std::filesystem::path> installer_env_file; // else .installer.env if present
    std::optional<std::filesystem::path> arg_file;           // else .arg if present
    std::filesystem::path working_dir = std::filesystem::current_path();
    EnvironmentLookup environment; // defaults to getenv
    std::vector<FlagValue> flags;
    // Called with each warning ("FILE:LINE:COL: ...") as soon as the files are read, also when
    // resolution then fails; the warnings are also kept in Config::warnings().
    std::function<void(const std::string&)> on_warning;
    // Leaves edgeforge.yaml out even when it is there (`init --from-canvos` reads .arg alone).
    bool skip_config_file = false;
};

class Config {
  public:
    const ResolvedValue& get(std::string_view key) const;
    // Scalar accessors; calling them on an unset setting returns an empty/zero value.
    std::string string(std::string_view key) const;
    std::vector<std::string> list(std::string_view key) const;
    bool boolean(std::string_view key) const;
    std::int64_t integer(std::string_view key) const;
    std::uint64_t size(std::string_view key) const;
    // A path setting resolved against the directory of the file that set it (or the working
    // directory for flags, the environment and defaults).
    std::filesystem::path path(std::string_view key) const;
    std::vector<std::filesystem::path> paths(std::string_view key) const;
    // An image setting with the path of a local source (oci:, oci-archive:, docker-archive:,
    // dir:, tar:) resolved the same way; registry references are returned as written.
    std::string image(std::string_view key) const;
    std::vector<std::string> images(std::string_view key) const;
    Arch arch() const;
    // The `arches` setting (empty when unset): installer outputs built once per arch.
    std::vector<Arch> arches() const;
    // One arch of a multi-arch build: a copy with `arch` set to `arch` (as if set where `arches`
    // was) and output_dir set to <output_dir>/<arch>.
    Config for_arch(Arch arch) const;

    const std::vector<ResolvedValue>& values() const { return values_; }
    // The configuration files that were read, in precedence order.
    const std::vector<std::filesystem::path>& files() const { return files_; }
    // CanvOS's .arg variables that are not settings, with what each does (build/canvos.h).
    const std::vector<CanvosValue>& canvos() const { return canvos_; }
    // Problems that do not stop the build (an undefined $NAME in .arg), "FILE:LINE:COL: ...".
    const std::vector<std::string>& warnings() const { return warnings_; }

  private:
    friend Config resolve_config(const ConfigInputs& inputs);
    friend void apply_canvos_rules(Config& config, const std::filesystem::path& arg_file,
                                   const std::string& label, Diagnostics& diagnostics);
    ResolvedValue& mutable_value(std::string_view key);
    std::vector<ResolvedValue> values_;
    std::vector<std::filesystem::path> files_;
    std::vector<CanvosValue> canvos_;
    std::vector<std::string> warnings_;
};

// The configurations `build all`, `build rootfs` and `plan` run the installer outputs with:
// this one when `arches` is unset, else one per arch of it (Config::for_arch). Error (bad input)
// when `arch` is set too and is not one of them.
std::vector<Config> arch_configs(const Config& config);

// The configuration a single-output command (`build iso`, `build disk`, ...) builds with: this
// one when `arches` is unset; else the arch --arch (or `arch`) picks, or the only one of
// `arches`, into <output_dir>/<arch> as `build all` writes it. Error (bad input) naming
// `command` when `arches` lists several and none is picked, or `arch` is not among them.
Config single_arch_config(const Config& config, std::string_view command);

// Reads and validates every source. Throws Error(bad_input) listing every problem found, each
// with its file:line:col (or flag / variable name), the key, and the allowed values.
Config resolve_config(const ConfigInputs& inputs);

// Expands ${VAR} and ${VAR:-default} (nestable) and $$ in a config value. Throws
// std::invalid_argument naming the variable when it is unset and has no default.
std::string expand_variables(std::string_view text, const EnvironmentLookup& environment);

// `config show`: every setting, its resolved value and where it came from.
std::string render_config_table(const Config& config);
nlohmann::json config_to_json(const Config& config);

} // namespace edgeforge
