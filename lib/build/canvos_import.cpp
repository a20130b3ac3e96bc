// `edgeforge init --from-canvos DIR`: the edgeforge.yaml equivalent of a CanvOS project's .arg.
#include "build/canvos_import.h"

#include <map>
#include <system_error>

#include <fmt/format.h>

#include "base/error.h"
#include "build/plan.h"
#include "build/settings.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

// One value as YAML: numbers and booleans as they are, everything else quoted (a tag such as
// 1.30 or a proxy URL must stay text).
std::string yaml_scalar(SettingType type, const std::string& value) {
    switch (type) {
    case SettingType::boolean:
    case SettingType::integer:
    case SettingType::size:
        return value;
    default:
        return util::yaml_double_quoted(value);
    }
}

std::string yaml_value(const ResolvedValue& value) {
    if (!is_list_type(value.setting->type)) {
        return yaml_scalar(value.setting->type, value.values.front());
    }
    std::vector<std::string> items;
    for (const auto& item : value.values) {
        items.push_back(yaml_scalar(value.setting->type, item));
    }
    return "[" + util::join(items, ", ") + "]";
}

} // namespace

CanvosImport import_canvos_project(const stdfs::path& directory,
                                   const EnvironmentLookup& environment) {
    const stdfs::path arg_file = directory / ".arg";
    std::error_code ec;
    if (!stdfs::is_regular_file(arg_file, ec)) {
        throw bad_input("--from-canvos: {} has no .arg file; give the CanvOS project directory "
                        "(the one holding .arg, user-data and overlay/)",
                        directory.string());
    }
    CanvosImport result;
    ConfigInputs inputs;
    inputs.arg_file = arg_file;
    inputs.working_dir = directory;
    inputs.skip_config_file = true;
    inputs.environment = environment;
    inputs.on_warning = [&result](const std::string& warning) {
        result.warnings.push_back(warning);
    };
    Config config;
    try {
        config = resolve_config(inputs);
    } catch (const Error& error) {
        throw Error(ExitCode::bad_input,
                    fmt::format("{} cannot be carried over to edgeforge.yaml as it is (nothing "
                                "was written); change these in .arg and run again:\n{}",
                                arg_file.string(), error.what()),
                    error.problems());
    }

    // Settings grouped by their first key part ("kubernetes.versions" under kubernetes:), in
    // the settings table's order; only what .arg set or a CanvOS rule derived.
    std::vector<std::pair<std::string, std::vector<std::string>>> groups;
    const auto group_of = [&groups](const std::string& name) -> std::vector<std::string>& {
        for (auto& [group, lines] : groups) {
            if (group == name) {
                return lines;
            }
        }
        groups.emplace_back(name, std::vector<std::string>{});
        return groups.back().second;
    };
    for (const auto& value : config.values()) {
        if (value.origin != Origin::arg_file || !value.is_set() ||
            value.setting->type == SettingType::credentials) {
            continue;
        }
        const std::string key(value.setting->key);
        const auto dot = key.find('.');
        const std::string comment = "  # " + value.location.str();
        if (dot == std::string::npos) {
            group_of("").push_back(fmt::format("{}: {}{}", key, yaml_value(value), comment));
        } else {
            group_of(key.substr(0, dot))
                .push_back(fmt::format("  {}: {}{}", key.substr(dot + 1), yaml_value(value),
                                       comment));
        }
    }

    std::string yaml = fmt::format(
        "# edgeforge.yaml carried over from the CanvOS project's .arg by `edgeforge init "
        "--from-canvos`.\n"
        "# Each value says where it came from. edgeforge reads .arg itself too (this file wins "
        "where both\n"
        "# set a key), so keep editing one of the two, not both.\n");
    for (const auto& [group, lines] : groups) {
        yaml += "\n";
        if (!group.empty()) {
            yaml += group + ":\n";
        }
        for (const auto& line : lines) {
            yaml += line + "\n";
        }
    }

    for (const auto& value : config.canvos()) {
        result.left_out.push_back(fmt::format("{}={} ({}): {}", value.variable->name,
                                              util::printable_line(value.value, 80),
                                              value.location.str(), value.effect));
    }
    if (!result.left_out.empty()) {
        yaml += "\n# Not carried over (CanvOS variables that are not edgeforge settings):\n";
        for (const auto& line : result.left_out) {
            yaml += "#   " + line + "\n";
        }
    }

    // Files edgeforge finds in the project by itself, as CanvOS does: nothing to set for them.
    for (const auto& bundle : discover_bundles(directory)) {
        result.found.push_back(bundle.lexically_relative(directory).string() +
                               ": a content bundle, placed under /opt/spectrocloud/content/ by "
                               "build iso");
    }
    if (stdfs::is_regular_file(directory / k_local_ui_file, ec)) {
        result.found.push_back(std::string(k_local_ui_file) +
                               ": unpacked into /opt/spectrocloud/ of the installer root "
                               "filesystem by build iso");
    }
    if (config.get("user_data").origin == Origin::default_value &&
        stdfs::is_regular_file(config.path("user_data"), ec)) {
        result.found.push_back("user-data: the installer's /config.yaml (the user_data "
                               "setting's default)");
    }
    if (!result.found.empty()) {
        yaml += "\n# Found in the project directory (edgeforge picks these up by itself):\n";
        for (const auto& line : result.found) {
            yaml += "#   " + line + "\n";
        }
    }
    result.yaml = std::move(yaml);
    return result;
}

} // namespace edgeforge
