// The one table of build settings: config key, CLI flag, environment variable, legacy file
// names, type, allowed values, default and help all come from here.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeforge {

enum class SettingType {
    string, // free text
    name,   // an artifact or tag name: letters, digits, '.', '_', '-'
    path,   // an input file or directory; relative paths resolve against the file that set them
    output_path,      // a directory edgeforge creates (output, cache)
    path_list,        // several paths
    image,            // an image reference (oci:, docker://, ...)
    image_list,       // several image references
    enumeration,      // one of `allowed`
    enumeration_list, // several of `allowed`
    boolean,          // true/false, yes/no, on/off, 1/0
    integer,          // within [minimum, maximum]
    size,             // bytes with optional K/M/G suffix
    url,              // http:// or https:// URL
    version_list,     // Kubernetes versions such as 1.30.5
    credentials,      // USER:PASSWORD: never shown (config show, --json, plans, logs), never hashed
};

// Which CLI commands take the setting's flag: a bit set, so a setting can serve several
// commands (`config show`, `validate config`, `doctor` and `build all` take every one).
using SettingScope = unsigned;
constexpr SettingScope k_scope_global = 1u << 0;   // every command
constexpr SettingScope k_scope_iso = 1u << 1;      // build iso
constexpr SettingScope k_scope_disk = 1u << 2;     // build disk
constexpr SettingScope k_scope_provider = 1u << 3; // build provider
constexpr SettingScope k_scope_content = 1u << 4;  // content build
constexpr SettingScope k_scope_iso_disk_image = 1u << 5; // build iso-disk-image (with the ISO's)
constexpr SettingScope k_scope_all_builds =
    k_scope_iso | k_scope_disk | k_scope_provider | k_scope_iso_disk_image;

struct Setting {
    std::string_view key;                // dotted key in edgeforge.yaml: "iso.name"
    std::string_view flag;               // long CLI flag without dashes, or empty
    std::string_view env;                // environment variable, or empty
    std::string_view arg_name;           // name in a `.arg` file, or empty
    std::string_view installer_env_name; // name in `.installer.env`, or empty
    SettingType type;
    SettingScope scope;
    std::string_view default_value; // in the same syntax a user would write; lists comma-separated
    std::vector<std::string_view> allowed; // for enumerations
    std::string_view help;                 // one sentence for --help and docs
    std::int64_t minimum = 0;              // integers and sizes
    std::int64_t maximum = 0;              // integers and sizes; 0 = unbounded
    bool power_of_two = false;             // sizes that must be a power of two (block sizes)
};

// Every setting, in the order `config show` prints them.
std::span<const Setting> settings_table();
const Setting* find_setting(std::string_view key);
const Setting* find_setting_by_legacy_name(std::string_view name, bool installer_env);

bool is_list_type(SettingType type);
// How a value is shown to users: the value itself, or a mask for secrets.
std::string shown_value(const Setting& setting, const std::string& value);
std::string_view type_description(const Setting& setting);

} // namespace edgeforge
