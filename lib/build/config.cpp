// Resolves every setting from defaults, legacy files, edgeforge.yaml, the environment and CLI
// flags (in that order of precedence), validating all of it before any work starts.
// About 800 lines: the readers of the five sources share the raw-entry model and precedence
// rules kept here; the value checks live in setting_values.cpp.
#include "build/config.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "build/arg_file.h"
#include "build/canvos.h"
#include "build/setting_values.h"
#include "fs/squashfs.h"
#include "oci/reference.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/yaml_check.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_default_config_name = "edgeforge.yaml";
constexpr std::string_view k_installer_env_name = ".installer.env";
constexpr std::string_view k_arg_file_name = ".arg";
// How deep ${A:-${B:-...}} defaults may nest.
constexpr std::size_t k_max_expansion_depth = 16;
// edgeforge.yaml, .arg and .installer.env are a few KiB.
constexpr std::uintmax_t k_max_settings_file_size = 1 << 20;

std::optional<std::string> process_environment(const std::string& name) {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
        return std::nullopt;
    }
    return std::string(value);
}

// A value for one setting from one source, before validation.
struct RawEntry {
    const Setting* setting = nullptr;
    std::vector<std::string> values;
    std::vector<SourceLocation> value_locations; // parallel to values
    std::string display_name;                    // the key as spelled in that source
    Origin origin = Origin::default_value;
    SourceLocation location;
    stdfs::path base_dir;
};

// The keys a YAML mapping may hold at `prefix` ("" for the top level, "iso." for the iso block).
std::vector<std::string_view> child_keys(std::string_view prefix) {
    std::vector<std::string_view> keys;
    for (const auto& setting : settings_table()) {
        if (!setting.key.starts_with(prefix)) {
            continue;
        }
        auto rest = setting.key.substr(prefix.size());
        rest = rest.substr(0, rest.find('.'));
        if (std::find(keys.begin(), keys.end(), rest) == keys.end()) {
            keys.push_back(rest);
        }
    }
    return keys;
}

SourceLocation mark_location(const std::string& file, const YAML::Mark& mark) {
    if (mark.is_null()) {
        return SourceLocation{file, 0, 0};
    }
    return SourceLocation{file, mark.line + 1, mark.column + 1};
}

class YamlReader {
  public:
    YamlReader(std::string file_label, stdfs::path base_dir, const EnvironmentLookup& environment,
               Diagnostics& diagnostics, std::vector<RawEntry>& entries)
        : file_(std::move(file_label)), base_dir_(std::move(base_dir)), environment_(environment),
          diagnostics_(diagnostics), entries_(entries) {}

    void read_mapping(const YAML::Node& node, const std::string& prefix) {
        const auto allowed = child_keys(prefix);
        for (const auto& item : node) {
            const YAML::Node& key_node = item.first;
            const YAML::Node& value = item.second;
            const auto where = mark_location(file_, key_node.Mark());
            if (!key_node.IsScalar()) {
                diagnostics_.error(where, "keys must be plain names");
                continue;
            }
            const std::string name = key_node.Scalar();
            const std::string full_key = prefix + name;
            if (const Setting* setting = find_setting(full_key)) {
                read_value(*setting, full_key, value, where);
                continue;
            }
            if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
                if (value.IsNull()) {
                    continue;
                }
                if (!value.IsMap()) {
                    diagnostics_.error(mark_location(file_, value.Mark()),
                                       fmt::format("'{}' must be a mapping with the keys: {}",
                                                   full_key,
                                                   util::join(child_keys(full_key + "."), ", ")));
                    continue;
                }
                read_mapping(value, full_key + ".");
                continue;
            }
            std::string message = fmt::format("unknown key '{}'", full_key);
            if (const auto suggestion = util::closest_match(name, allowed)) {
                message += fmt::format(" (did you mean '{}{}'?)", prefix, *suggestion);
            }
            if (prefix.empty()) {
                message += "; allowed top-level keys: " + util::join(allowed, ", ");
            } else {
                message +=
                    fmt::format("; allowed keys under '{}': {}",
                                prefix.substr(0, prefix.size() - 1), util::join(allowed, ", "));
            }
            diagnostics_.error(where, message);
        }
    }

  private:
    std::optional<std::string> scalar(const YAML::Node& node, const std::string& key) {
        try {
            return expand_variables(node.Scalar(), environment_);
        } catch (const std::invalid_argument& error) {
            diagnostics_.error(mark_location(file_, node.Mark()),
                               fmt::format("{} (in '{}')", error.what(), key));
            return std::nullopt;
        }
    }

    void read_value(const Setting& setting, const std::string& key, const YAML::Node& value,
                    const SourceLocation& key_location) {
        if (value.IsNull()) {
            return; // "key:" with no value leaves the setting at its default
        }
        RawEntry entry{.setting = &setting,
                       .display_name = key,
                       .origin = Origin::config_file,
                       .location = key_location,
                       .base_dir = base_dir_};
        const bool is_list = is_list_type(setting.type);
        if (value.IsMap()) {
            diagnostics_.error(
                mark_location(file_, value.Mark()),
                fmt::format("'{}' expects {}, not a mapping", key, type_description(setting)));
            return;
        }
        if (value.IsSequence()) {
            if (!is_list) {
                diagnostics_.error(mark_location(file_, value.Mark()),
                                   fmt::format("'{}' expects a single {}, not a list", key,
                                               type_description(setting)));
                return;
            }
            for (const auto& element : value) {
                if (!element.IsScalar()) {
                    diagnostics_.error(mark_location(file_, element.Mark()),
                                       fmt::format("'{}' expects a list of plain values", key));
                    return;
                }
                const auto text = scalar(element, key);
                if (!text) {
                    return;
                }
                entry.values.push_back(*text);
                entry.value_locations.push_back(mark_location(file_, element.Mark()));
            }
        } else {
            const auto text = scalar(value, key);
            if (!text) {
                return;
            }
            entry.values.push_back(*text);
            entry.value_locations.push_back(mark_location(file_, value.Mark()));
        }
        entries_.push_back(std::move(entry));
    }

    std::string file_;
    stdfs::path base_dir_;
    const EnvironmentLookup& environment_;
    Diagnostics& diagnostics_;
    std::vector<RawEntry>& entries_;
};

bool is_path_type(SettingType type) {
    return type == SettingType::path || type == SettingType::path_list ||
           type == SettingType::output_path;
}

std::string display_path(const stdfs::path& file, const stdfs::path& working_dir) {
    const auto relative = file.lexically_proximate(working_dir);
    const std::string text = relative.string();
    if (!text.empty() && !text.starts_with("..")) {
        return text;
    }
    return file.string();
}

// The text of a settings file (edgeforge.yaml, .arg, .installer.env), or nullopt after reporting
// why not. Such files are a few KiB; a much larger one is not what the user meant.
std::optional<std::string> read_settings_file(const stdfs::path& file, const std::string& label,
                                              std::string_view what, Diagnostics& diagnostics) {
    std::error_code ec;
    if (const auto size = stdfs::file_size(file, ec); !ec && size > k_max_settings_file_size) {
        diagnostics.error(SourceLocation{label},
                          fmt::format("the file is larger than {} (settings files are a few "
                                      "KiB): is it the right file?",
                                      util::format_bytes(k_max_settings_file_size)));
        return std::nullopt;
    }
    try {
        return util::read_file(file);
    } catch (const std::exception&) {
        diagnostics.error(SourceLocation{label}, fmt::format("cannot read {}", what));
        return std::nullopt;
    }
}

void read_config_file(const stdfs::path& file, const std::string& label,
                      const EnvironmentLookup& environment, Diagnostics& diagnostics,
                      std::vector<RawEntry>& entries) {
    const auto read = read_settings_file(file, label, "the configuration file", diagnostics);
    if (!read) {
        return;
    }
    const std::string& text = *read;
    const auto loaded = util::load_yaml(text);
    if (const auto& issue = loaded.issue) {
        diagnostics.error(SourceLocation{label, issue->line, issue->column},
                          issue->syntax_error ? "YAML syntax error: " + issue->message
                                              : issue->message);
        return;
    }
    const YAML::Node& root = loaded.root;
    if (root.IsNull()) {
        return;
    }
    if (!root.IsMap()) {
        diagnostics.error(mark_location(label, root.Mark()),
                          "the configuration must be a mapping of keys such as 'base:', 'iso:'");
        return;
    }
    YamlReader reader(label, file.parent_path(), environment, diagnostics, entries);
    reader.read_mapping(root, "");
}

// Reads KEY=value lines (".arg" and ".installer.env", syntax in build/arg_file.cpp). An empty
// value leaves the setting unset. In .arg, CanvOS's variables that are not settings go to
// `canvos` (build/canvos.cpp says what each does); any other unknown name is an error.
void read_legacy_file(const stdfs::path& file, const std::string& label, bool installer_env,
                      const EnvironmentLookup& environment, Diagnostics& diagnostics,
                      std::vector<RawEntry>& entries, std::vector<CanvosValue>& canvos,
                      std::vector<std::string>& warnings) {
    const auto read = read_settings_file(file, label, "the file", diagnostics);
    if (!read) {
        return;
    }
    const std::string& text = *read;
    std::vector<std::string_view> known;
    for (const auto& setting : settings_table()) {
        const auto name = installer_env ? setting.installer_env_name : setting.arg_name;
        if (!name.empty()) {
            known.push_back(name);
        }
    }
    if (!installer_env) {
        for (const auto& variable : canvos_variables()) {
            if (find_setting_by_legacy_name(variable.name, false) == nullptr) {
                known.push_back(variable.name);
            }
        }
    }
    auto parsed = parse_assignments(text, label,
                                    installer_env ? AssignmentDialect::installer_env
                                                  : AssignmentDialect::earthly_arg,
                                    environment, diagnostics);
    for (auto& warning : parsed.warnings) {
        warnings.push_back(std::move(warning));
    }
    for (auto& assignment : parsed.assignments) {
        const std::string& name = assignment.name;
        const Setting* setting = find_setting_by_legacy_name(name, installer_env);
        if (const CanvosVariable* optional = installer_env ? nullptr : find_canvos_variable(name);
            setting != nullptr && optional != nullptr && optional->role == CanvosRole::optional_file &&
            assignment.value == optional->accepted.front() &&
            !stdfs::exists(file.parent_path() / assignment.value)) {
            setting = nullptr; // CanvOS's template value, file absent: CanvOS adds nothing
        }
        if (setting == nullptr && !installer_env) {
            if (const CanvosVariable* variable = find_canvos_variable(name)) {
                canvos.push_back(CanvosValue{.variable = variable,
                                             .value = std::move(assignment.value),
                                             .location = assignment.location});
                continue;
            }
        }
        if (setting == nullptr) {
            std::string message = fmt::format("unknown setting '{}'", name);
            if (const auto other = find_setting_by_legacy_name(name, !installer_env)) {
                message +=
                    fmt::format(" here: it belongs in {} (or set '{}' in edgeforge.yaml)",
                                installer_env ? k_arg_file_name : k_installer_env_name, other->key);
            } else if (const auto suggestion = util::closest_match(name, known)) {
                message += fmt::format(" (did you mean '{}'?)", *suggestion);
            }
            message += installer_env ? "; known settings: " + util::join(known, ", ")
                                     : std::string("; .arg takes the settings README's "
                                                   "Configuration table lists and CanvOS's .arg "
                                                   "variables (README: Coming from CanvOS)");
            diagnostics.error(assignment.location, message);
            continue;
        }
        if (assignment.value.empty()) {
            continue;
        }
        RawEntry entry{.setting = setting,
                       .display_name = name,
                       .origin = installer_env ? Origin::installer_env : Origin::arg_file,
                       .location = assignment.location,
                       .base_dir = file.parent_path()};
        if (is_list_type(setting->type)) {
            for (auto& element : util::split_list(assignment.value)) {
                entry.values.push_back(std::move(element));
                entry.value_locations.push_back(assignment.value_location);
            }
        } else {
            entry.values.push_back(std::move(assignment.value));
            entry.value_locations.push_back(assignment.value_location);
        }
        entries.push_back(std::move(entry));
    }
}

void read_environment(const ConfigInputs& inputs, const EnvironmentLookup& environment,
                      std::vector<RawEntry>& entries) {
    for (const auto& setting : settings_table()) {
        if (setting.env.empty()) {
            continue;
        }
        const auto value = environment(std::string(setting.env));
        if (!value || util::trim(*value).empty()) {
            continue;
        }
        const SourceLocation where{fmt::format("environment variable {}", setting.env)};
        RawEntry entry{.setting = &setting,
                       .display_name = std::string(setting.key),
                       .origin = Origin::environment,
                       .location = where,
                       .base_dir = inputs.working_dir};
        const auto values = is_list_type(setting.type) ? util::split_list(*value)
                                                       : std::vector<std::string>{*value};
        for (const auto& element : values) {
            entry.values.push_back(element);
            entry.value_locations.push_back(where);
        }
        entries.push_back(std::move(entry));
    }
}

void read_flags(const ConfigInputs& inputs, Diagnostics& diagnostics,
                std::vector<RawEntry>& entries) {
    for (const auto& flag : inputs.flags) {
        const Setting* setting = find_setting(flag.key);
        if (setting == nullptr) {
            diagnostics.error(SourceLocation{},
                              fmt::format("internal: unknown setting {}", flag.key));
            continue;
        }
        const SourceLocation where{fmt::format("--{}", setting->flag)};
        RawEntry entry{.setting = setting,
                       .display_name = std::string(setting->key),
                       .origin = Origin::flag,
                       .location = where,
                       .base_dir = inputs.working_dir};
        for (const auto& raw : flag.values) {
            const auto values =
                is_list_type(setting->type) ? util::split_list(raw) : std::vector<std::string>{raw};
            for (const auto& element : values) {
                entry.values.push_back(element);
                entry.value_locations.push_back(where);
            }
        }
        if (!is_list_type(setting->type) && entry.values.size() > 1) {
            entry.values.erase(entry.values.begin(), entry.values.end() - 1); // last one wins
            entry.value_locations.resize(1);
        }
        entries.push_back(std::move(entry));
    }
}

// Cross-setting rules that a single value cannot check on its own.
void check_combinations(const Config& config, Diagnostics& diagnostics) {
    const auto& level = config.get("squashfs.level");
    const auto compressor = fs::parse_squashfs_compressor(config.string("squashfs.compression"));
    if (!compressor) {
        return; // the value check already reported it
    }
    if (const auto problem = fs::squashfs_level_problem(
            *compressor, static_cast<int>(config.integer("squashfs.level")))) {
        diagnostics.error(level.location, "squashfs." + *problem);
    }
}

std::optional<stdfs::path> locate(const std::optional<stdfs::path>& explicit_path,
                               const stdfs::path& directory, std::string_view default_name,
                               const stdfs::path& working_dir, Diagnostics& diagnostics,
                               std::string_view option) {
    if (explicit_path) {
        const stdfs::path path =
            explicit_path->is_absolute() ? *explicit_path : working_dir / *explicit_path;
        if (!stdfs::exists(path)) {
            diagnostics.error(SourceLocation{std::string(option)},
                              fmt::format("'{}' does not exist", explicit_path->string()));
            return std::nullopt;
        }
        if (!stdfs::is_regular_file(path)) {
            diagnostics.error(SourceLocation{std::string(option)},
                              fmt::format("'{}' is not a regular file", explicit_path->string()));
            return std::nullopt;
        }
        return path.lexically_normal();
    }
    const stdfs::path candidate = directory / default_name;
    if (!stdfs::exists(candidate)) {
        return std::nullopt;
    }
    if (!stdfs::is_regular_file(candidate)) {
        diagnostics.error(SourceLocation{display_path(candidate, working_dir)},
                          "expected a file, found a directory or special file; move it away or "
                          "name the right file with " +
                              std::string(option));
        return std::nullopt;
    }
    return candidate.lexically_normal();
}

} // namespace

std::string_view origin_name(Origin origin) {
    switch (origin) {
    case Origin::default_value:
        return "default";
    case Origin::installer_env:
        return ".installer.env";
    case Origin::arg_file:
        return ".arg";
    case Origin::config_file:
        return "config";
    case Origin::environment:
        return "environment";
    case Origin::flag:
        return "flag";
    }
    return "?";
}

namespace {

std::string expand_at_depth(std::string_view text, const EnvironmentLookup& environment,
                            std::size_t level) {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] != '$') {
            out.push_back(text[i++]);
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == '$') {
            out.push_back('$');
            i += 2;
            continue;
        }
        if (i + 1 >= text.size() || text[i + 1] != '{') {
            out.push_back(text[i++]);
            continue;
        }
        // Find the matching close brace, allowing nested ${...} in the default, at most
        // k_max_expansion_depth deep (the expansion recurses once per level).
        std::size_t depth = 0;
        std::size_t close = std::string_view::npos;
        for (std::size_t j = i + 1; j < text.size(); ++j) {
            if (text[j] == '{') {
                if (++depth + level > k_max_expansion_depth) {
                    throw std::invalid_argument(fmt::format(
                        "'${{' is nested more than {} deep in '{}'", k_max_expansion_depth,
                        util::printable_line(text, 80)));
                }
            } else if (text[j] == '}' && --depth == 0) {
                close = j;
                break;
            }
        }
        if (close == std::string_view::npos) {
            throw std::invalid_argument(
                fmt::format("unterminated '${{' in '{}' (write $$ for a literal $)",
                            util::printable_line(text, 80)));
        }
        const std::string_view body = text.substr(i + 2, close - i - 2);
        const auto separator = body.find(":-");
        const std::string name(body.substr(0, separator));
        if (!valid_variable_name(name)) {
            throw std::invalid_argument(fmt::format("'${{{}}}' is not a valid variable reference",
                                                    util::printable_line(body, 80)));
        }
        const auto value = environment(name);
        if (value && !value->empty()) {
            out += *value;
        } else if (separator != std::string_view::npos) {
            out += expand_at_depth(body.substr(separator + 2), environment, level + 1);
        } else {
            throw std::invalid_argument(
                fmt::format("environment variable {} is not set; set it or write ${{{}:-default}}",
                            name, name));
        }
        i = close + 1;
    }
    return out;
}

} // namespace

std::string expand_variables(std::string_view text, const EnvironmentLookup& environment) {
    return expand_at_depth(text, environment, 0);
}

ResolvedValue& Config::mutable_value(std::string_view key) {
    for (auto& value : values_) {
        if (value.setting->key == key) {
            return value;
        }
    }
    throw std::out_of_range(fmt::format("internal: no setting named '{}'", key));
}

const ResolvedValue& Config::get(std::string_view key) const {
    for (const auto& value : values_) {
        if (value.setting->key == key) {
            return value;
        }
    }
    throw std::out_of_range(fmt::format("internal: no setting named '{}'", key));
}

std::string Config::string(std::string_view key) const {
    const auto& value = get(key);
    return value.values.empty() ? std::string() : value.values.front();
}

std::vector<std::string> Config::list(std::string_view key) const {
    return get(key).values;
}

bool Config::boolean(std::string_view key) const {
    return string(key) == "true";
}

std::int64_t Config::integer(std::string_view key) const {
    const auto text = string(key);
    return text.empty() ? 0 : std::stoll(text);
}

std::uint64_t Config::size(std::string_view key) const {
    const auto text = string(key);
    return text.empty() ? 0 : std::stoull(text);
}

stdfs::path Config::path(std::string_view key) const {
    const auto& value = get(key);
    if (value.values.empty()) {
        return {};
    }
    const stdfs::path path(value.values.front());
    return (path.is_absolute() ? path : value.base_dir / path).lexically_normal();
}

std::vector<stdfs::path> Config::paths(std::string_view key) const {
    const auto& value = get(key);
    std::vector<stdfs::path> out;
    for (const auto& text : value.values) {
        const stdfs::path path(text);
        out.push_back((path.is_absolute() ? path : value.base_dir / path).lexically_normal());
    }
    return out;
}

namespace {

std::string resolve_image_path(const std::string& text, const stdfs::path& base_dir) {
    for (const std::string_view prefix : {"oci:", "oci-archive:", "docker-archive:", "dir:", "tar:"}) {
        if (!text.starts_with(prefix)) {
            continue;
        }
        const stdfs::path path(text.substr(prefix.size()));
        if (path.empty() || path.is_absolute() || base_dir.empty()) {
            return text;
        }
        return std::string(prefix) + (base_dir / path).lexically_normal().string();
    }
    return text;
}

} // namespace

std::string Config::image(std::string_view key) const {
    const auto& value = get(key);
    return value.values.empty() ? std::string()
                                : resolve_image_path(value.values.front(), value.base_dir);
}

std::vector<std::string> Config::images(std::string_view key) const {
    const auto& value = get(key);
    std::vector<std::string> out;
    for (const auto& text : value.values) {
        out.push_back(resolve_image_path(text, value.base_dir));
    }
    return out;
}

Arch Config::arch() const {
    return Arch::parse(string("arch")).value_or(Arch());
}

// A CanvOS project (.arg present): checks CanvOS's own variables and, for what the project
// leaves unset, applies CanvOS's rules: the base image from OS_DISTRIBUTION/OS_VERSION when
// BASE_IMAGE is empty, the agent (stylus framework) image, PE_VERSION's default.
void apply_canvos_rules(Config& config, const stdfs::path& arg_file, const std::string& label,
                        Diagnostics& diagnostics) {
    const CanvosContext context{.os_distribution = config.string("os.distribution"),
                                .os_version = config.string("os.version"),
                                .fips = config.boolean("fips"),
                                .base_image_set = config.get("base.image").is_set(),
                                .uki = config.boolean("iso.uki"),
                                .project_dir = arg_file.parent_path()};
    check_canvos_values(config.canvos_, context, diagnostics);
    const auto derive = [&](std::string_view key, const std::string& value,
                            const std::string& rule) {
        ResolvedValue& resolved = config.mutable_value(key);
        std::vector<std::string> values;
        for (const auto& item : is_list_type(resolved.setting->type)
                                    ? util::split(value, ',')
                                    : std::vector<std::string>{value}) {
            const auto checked = check_setting_value(*resolved.setting, item);
            if (!checked.value) {
                diagnostics.error(SourceLocation{label},
                                  fmt::format("{} by CanvOS's rule ({}) gives '{}', which is not "
                                              "valid: {}; set {} instead",
                                              key, rule, util::printable_line(value, 200),
                                              checked.problem, key));
                return;
            }
            values.push_back(*checked.value);
        }
        resolved.values = std::move(values);
        resolved.origin = Origin::arg_file;
        resolved.location = SourceLocation{fmt::format("{} (CanvOS rule: {})", label, rule)};
        resolved.base_dir = arg_file.parent_path();
    };
    if (config.get("agent.version").origin == Origin::default_value) {
        derive("agent.version", std::string(k_canvos_pe_version), "PE_VERSION's default");
    }
    // Only where nothing was given: an empty value (--agent "") means none.
    if (config.get("base.image").origin == Origin::default_value) {
        if (const auto base = canvos_base_image(config.canvos_, context)) {
            derive("base.image", *base,
                   "empty BASE_IMAGE, from OS_DISTRIBUTION, OS_VERSION, KAIROS_BASE_IMAGE_URL, "
                   "KAIROS_INIT_VERSION");
        }
    }
    // CanvOS's overlay directories, where edgeforge's own (overlays/...) are absent.
    for (const auto& [key, canvos_dir] : {std::pair<std::string_view, std::string_view>{
                                              "overlays.rootfs", "overlay/files"},
                                          {"overlays.iso", "overlay/files-iso"}}) {
        std::error_code ec;
        const stdfs::path directory = arg_file.parent_path() / canvos_dir;
        if (config.get(key).origin == Origin::default_value &&
            !stdfs::exists(config.path(key), ec) && stdfs::is_directory(directory, ec)) {
            derive(key, std::string(canvos_dir), "CanvOS's " + std::string(canvos_dir) + "/");
        }
    }
    // The Earthfile's own default: ARG IMAGE_REPO=$OS_DISTRIBUTION. (Its ARG ISO_NAME=installer
    // is not followed: edgeforge projects with a .arg keep their ISO name.)
    if (config.get("provider.repository").origin == Origin::default_value &&
        !context.os_distribution.empty()) {
        derive("provider.repository", context.os_distribution,
               "IMAGE_REPO's default, $OS_DISTRIBUTION");
    }
    // CanvOS builds every version k8s_version.json lists for the distribution when K8S_VERSION
    // is empty; edgeforge reads it as the versions file (which also checks a K8S_VERSION given).
    if (std::error_code ec; config.get("kubernetes.versions_file").origin ==
                                Origin::default_value &&
                            stdfs::is_regular_file(arg_file.parent_path() / "k8s_version.json", ec)) {
        derive("kubernetes.versions_file", "k8s_version.json", "CanvOS's k8s_version.json");
    }
    // Trusted Boot media as CanvOS makes them (enki build-uki --extend-cmdline "$CMDLINE"
    // [--secure-boot-enroll force] --boot-branding "$BRANDING"): one install entry.
    if (context.uki) {
        const auto canvos_value = [&](std::string_view name, std::string_view fallback) {
            return canvos_value_or(config.canvos_, name, fallback);
        };
        if (config.get("iso.extra_cmdline").origin == Origin::default_value) {
            derive("iso.extra_cmdline", canvos_value("CMDLINE", "stylus.registration"),
                   "CMDLINE, appended to the UKI command line");
        }
        if (config.get("uki.secure_boot_enroll").origin == Origin::default_value &&
            util::iequals(canvos_value("AUTO_ENROLL_SECUREBOOT_KEYS", "false"), "true")) {
            derive("uki.secure_boot_enroll", "force", "AUTO_ENROLL_SECUREBOOT_KEYS=true");
        }
        if (config.get("uki.branding").origin == Origin::default_value) {
            derive("uki.branding", "Palette eXtended Kubernetes Edge", "BRANDING's default");
        }
        if (config.get("uki.entries").origin == Origin::default_value) {
            derive("uki.entries",
                   config.boolean("iso.interactive_default") ? "interactive-install,install"
                                                             : "install",
                   "CanvOS's UKI medium: one install entry");
        }
    }
    if (config.get("agent.images").origin == Origin::default_value) {
        derive("agent.images",
               canvos_agent_image(config.canvos_, context, config.string("agent.version")),
               "the stylus framework image from SPECTRO_PUB_REPO and PE_VERSION");
    }
}

Config resolve_config(const ConfigInputs& inputs) {
    const EnvironmentLookup environment =
        inputs.environment ? inputs.environment : EnvironmentLookup(process_environment);
    Diagnostics diagnostics;
    std::vector<RawEntry> entries;

    // Defaults first, so later sources override them.
    for (const auto& setting : settings_table()) {
        RawEntry entry{.setting = &setting,
                       .display_name = std::string(setting.key),
                       .origin = Origin::default_value,
                       .base_dir = inputs.working_dir};
        if (!setting.default_value.empty()) {
            std::string value;
            try {
                value = expand_variables(setting.default_value, environment);
            } catch (const std::invalid_argument&) {
                value = std::string(setting.default_value); // e.g. HOME unset: show it as is
            }
            entry.values = is_list_type(setting.type) ? util::split_list(value)
                                                      : std::vector<std::string>{value};
            entry.value_locations.assign(entry.values.size(), SourceLocation{});
        }
        entries.push_back(std::move(entry));
    }

    Config config;
    const auto config_file =
        inputs.skip_config_file
            ? std::nullopt
            : locate(inputs.config_file, inputs.working_dir, k_default_config_name,
                     inputs.working_dir, diagnostics, "--config");
    const stdfs::path project_dir = config_file ? config_file->parent_path() : inputs.working_dir;
    const auto installer_env = locate(inputs.installer_env_file, project_dir, k_installer_env_name,
                                      inputs.working_dir, diagnostics, "--installer-env");
    const auto arg_file = locate(inputs.arg_file, project_dir, k_arg_file_name, inputs.working_dir,
                                 diagnostics, "--arg-file");

    if (installer_env) {
        read_legacy_file(*installer_env, display_path(*installer_env, inputs.working_dir), true,
                         environment, diagnostics, entries, config.canvos_, config.warnings_);
        config.files_.push_back(*installer_env);
    }
    if (arg_file) {
        read_legacy_file(*arg_file, display_path(*arg_file, inputs.working_dir), false,
                         environment, diagnostics, entries, config.canvos_, config.warnings_);
        config.files_.push_back(*arg_file);
    }
    if (inputs.on_warning) {
        for (const auto& warning : config.warnings_) {
            inputs.on_warning(warning);
        }
    }
    if (config_file) {
        read_config_file(*config_file, display_path(*config_file, inputs.working_dir), environment,
                         diagnostics, entries);
        config.files_.push_back(*config_file);
    }
    read_environment(inputs, environment, entries);
    read_flags(inputs, diagnostics, entries);

    // Validate each source's values where they were written, then let the highest-precedence
    // source of each setting win. Entries are already in precedence order.
    for (const auto& setting : settings_table()) {
        ResolvedValue resolved{.setting = &setting};
        for (const auto& entry : entries) {
            if (entry.setting != &setting) {
                continue;
            }
            std::vector<std::string> normalised;
            bool valid = true;
            for (std::size_t i = 0; i < entry.values.size(); ++i) {
                const auto checked = check_setting_value(setting, entry.values[i]);
                if (!checked.value) {
                    valid = false;
                    if (entry.origin != Origin::default_value) {
                        diagnostics.error(entry.value_locations[i],
                                          fmt::format("invalid value '{}' for {}: {}",
                                                      util::printable_line(
                                                          shown_value(setting, entry.values[i]),
                                                          200),
                                                      entry.display_name,
                                                      checked.problem));
                    }
                    continue;
                }
                normalised.push_back(*checked.value);
            }
            if (!valid) {
                continue;
            }
            if (entry.origin != Origin::default_value &&
                (setting.type == SettingType::path || setting.type == SettingType::path_list)) {
                for (std::size_t i = 0; i < normalised.size(); ++i) {
                    const stdfs::path given(normalised[i]);
                    const stdfs::path resolved_path =
                        given.is_absolute() ? given : entry.base_dir / given;
                    if (!stdfs::exists(resolved_path)) {
                        valid = false;
                        diagnostics.error(entry.value_locations[i],
                                          fmt::format("{}: '{}' does not exist (looked for {})",
                                                      entry.display_name, normalised[i],
                                                      resolved_path.lexically_normal().string()));
                    }
                }
            }
            if (!valid) {
                continue;
            }
            resolved.values = std::move(normalised);
            resolved.origin = entry.origin;
            resolved.location = entry.location;
            resolved.base_dir = entry.base_dir;
        }
        config.values_.push_back(std::move(resolved));
    }

    if (arg_file) {
        apply_canvos_rules(config, *arg_file, display_path(*arg_file, inputs.working_dir),
                           diagnostics);
    }
    if (diagnostics.empty()) {
        check_combinations(config, diagnostics);
    }
    diagnostics.throw_if_any();
    return config;
}

std::string render_config_table(const Config& config) {
    std::size_t key_width = 7;
    std::size_t value_width = 5;
    std::vector<std::string> shown_values;
    for (const auto& value : config.values()) {
        key_width = std::max(key_width, value.setting->key.size());
        std::vector<std::string> shown;
        for (const auto& item : value.values) {
            shown.push_back(shown_value(*value.setting, item));
        }
        std::string text = value.is_set() ? util::join(shown, ", ") : "(unset)";
        if (value.is_set() && value.values.size() == 1 && value.values.front().empty()) {
            text = "\"\"";
        }
        if (is_path_type(value.setting->type) && value.is_set()) {
            std::vector<std::string> paths_shown;
            for (const auto& path : config.paths(value.setting->key)) {
                paths_shown.push_back(display_path(path, stdfs::current_path()));
            }
            text = util::join(paths_shown, ", ");
        }
        if (value.setting->type == SettingType::size && value.is_set()) {
            std::vector<std::string> sizes;
            for (const auto& bytes : value.values) {
                sizes.push_back(util::format_bytes(std::stoull(bytes)));
            }
            text = util::join(sizes, ", ");
        }
        value_width = std::min<std::size_t>(std::max(value_width, text.size()), 60);
        shown_values.push_back(std::move(text));
    }
    std::string out;
    for (const auto& file : config.files()) {
        out += fmt::format("# read {}\n", file.string());
    }
    out +=
        fmt::format("{:<{}}  {:<{}}  {}\n", "SETTING", key_width, "VALUE", value_width, "SOURCE");
    for (std::size_t i = 0; i < config.values().size(); ++i) {
        const auto& value = config.values()[i];
        std::string source(origin_name(value.origin));
        if (value.origin != Origin::default_value) {
            source = value.location.str();
        }
        out += fmt::format("{:<{}}  {:<{}}  {}\n", value.setting->key, key_width, shown_values[i],
                           value_width, source);
    }
    if (!config.canvos().empty()) {
        std::size_t name_width = 8;
        std::size_t text_width = 5;
        std::size_t where_width = 6;
        std::vector<std::string> texts;
        for (const auto& value : config.canvos()) {
            name_width = std::max(name_width, value.variable->name.size());
            texts.push_back(value.value.empty() ? std::string("\"\"")
                                                : util::printable_line(value.value, 60));
            text_width = std::max(text_width, texts.back().size());
            where_width = std::max(where_width, value.location.str().size());
        }
        out += "\n# CanvOS .arg variables that are not edgeforge settings\n";
        out += fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", "VARIABLE", name_width, "VALUE",
                           text_width, "SOURCE", where_width, "EFFECT");
        for (std::size_t i = 0; i < config.canvos().size(); ++i) {
            const auto& value = config.canvos()[i];
            out += fmt::format("{:<{}}  {:<{}}  {:<{}}  {}\n", value.variable->name, name_width,
                               texts[i], text_width, value.location.str(), where_width,
                               value.effect);
        }
    }
    return out;
}

nlohmann::json config_to_json(const Config& config) {
    nlohmann::json settings = nlohmann::json::array();
    for (const auto& value : config.values()) {
        nlohmann::json item;
        item["key"] = value.setting->key;
        if (is_list_type(value.setting->type)) {
            item["value"] = value.values;
        } else if (value.is_set()) {
            item["value"] = shown_value(*value.setting, value.values.front());
        } else {
            item["value"] = nullptr;
        }
        if (is_path_type(value.setting->type) && value.is_set()) {
            std::vector<std::string> resolved;
            for (const auto& path : config.paths(value.setting->key)) {
                resolved.push_back(path.string());
            }
            item["resolved"] = resolved;
        }
        item["origin"] = origin_name(value.origin);
        if (value.origin != Origin::default_value) {
            item["location"] = value.location.str();
        }
        settings.push_back(std::move(item));
    }
    nlohmann::json files = nlohmann::json::array();
    for (const auto& file : config.files()) {
        files.push_back(file.string());
    }
    nlohmann::json canvos = nlohmann::json::array();
    for (const auto& value : config.canvos()) {
        canvos.push_back({{"name", value.variable->name},
                          {"value", value.value},
                          {"location", value.location.str()},
                          {"effect", value.effect}});
    }
    return nlohmann::json{{"files", files},
                          {"settings", settings},
                          {"canvos_variables", canvos},
                          {"warnings", config.warnings()}};
}

} // namespace edgeforge
