// AWS credentials and region from the environment and the shared ~/.aws files, as the AWS CLI
// finds them.
#include "cloud/aws_credentials.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "util/strings.h"

namespace edgeforge::cloud {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_default_profile = "default";

// One key of an INI section, with the line it was set on for messages.
struct IniValue {
    std::string value;
    int line = 0;
};

struct IniSection {
    int line = 0;
    std::map<std::string, IniValue> values; // keys lower-cased
};

// Sections in file order of first appearance, by their name as written between the brackets.
struct IniFile {
    stdfs::path path;
    std::map<std::string, IniSection> sections;
    std::vector<std::string> order;
};

// Parses the AWS shared-file dialect of INI: [section], key = value, # and ; comment lines, and
// indented lines that belong to the key above them (nested settings such as "s3 =" blocks,
// which nothing here needs). Errors name file:line but never quote the line: it may hold a secret.
IniFile parse_ini(const stdfs::path& path, const std::string& text) {
    IniFile ini;
    ini.path = path;
    IniSection* section = nullptr;
    std::istringstream in(text);
    std::string raw;
    int line_number = 0;
    bool previous_was_key = false;
    while (std::getline(in, raw)) {
        ++line_number;
        if (!raw.empty() && raw.back() == '\r') {
            raw.pop_back();
        }
        const std::string_view line = util::trim(raw);
        const SourceLocation where{path.string(), line_number};
        if (line.empty() || line.front() == '#' || line.front() == ';') {
            continue;
        }
        if (raw.front() == ' ' || raw.front() == '\t') {
            if (!previous_was_key) {
                throw bad_input("{}: indented line outside a setting (only nested settings such as "
                                "'s3 =' blocks may be indented)",
                                where.str());
            }
            continue;
        }
        if (line.front() == '[') {
            if (line.back() != ']') {
                throw bad_input("{}: section header without a closing ']'", where.str());
            }
            const std::string name(util::trim(line.substr(1, line.size() - 2)));
            if (name.empty()) {
                throw bad_input("{}: empty section name '[]'", where.str());
            }
            auto [it, inserted] = ini.sections.try_emplace(name);
            if (inserted) {
                it->second.line = line_number;
                ini.order.push_back(name);
            }
            section = &it->second;
            previous_was_key = false;
            continue;
        }
        const auto equals = line.find('=');
        if (equals == std::string_view::npos) {
            throw bad_input("{}: expected 'key = value' or '[section]'", where.str());
        }
        if (section == nullptr) {
            throw bad_input("{}: setting before the first [section]", where.str());
        }
        const std::string key = util::to_lower(util::trim(line.substr(0, equals)));
        if (key.empty()) {
            throw bad_input("{}: setting without a name before '='", where.str());
        }
        section->values[key] =
            IniValue{std::string(util::trim(line.substr(equals + 1))), line_number};
        previous_was_key = true;
    }
    return ini;
}

std::optional<IniFile> read_ini_if_present(const stdfs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_ini(path, text.str());
}

std::optional<std::string> non_empty(const EnvironmentLookup& environment, const char* name) {
    auto value = environment(name);
    if (value && value->empty()) {
        value.reset();
    }
    return value;
}

// The shared file an override variable names, else ~/.aws/<name>; nothing when neither is known.
struct SharedFile {
    std::optional<stdfs::path> path;
    std::string described; // for messages: the path, or why there is none
    bool explicit_path = false;
};

SharedFile shared_file(const EnvironmentLookup& environment, const char* override_variable,
                       std::string_view name) {
    SharedFile file;
    if (auto path = non_empty(environment, override_variable)) {
        file.path = *path;
        file.explicit_path = true;
        file.described = fmt::format("{} (from {})", *path, override_variable);
    } else if (auto home = non_empty(environment, "HOME")) {
        file.path = stdfs::path(*home) / ".aws" / name;
        file.described = file.path->string();
    } else {
        file.described = fmt::format("~/.aws/{} (HOME is not set)", name);
    }
    return file;
}

std::string profile_list(const IniFile& ini) {
    if (ini.order.empty()) {
        return "none";
    }
    return util::join(ini.order, ", ");
}

bool is_region_name(std::string_view region) {
    if (region.empty() || region.size() > 32) {
        return false;
    }
    for (const char c : region) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return region.front() != '-' && region.back() != '-';
}

std::string checked_region(std::string region, std::string_view origin) {
    if (!is_region_name(region)) {
        throw bad_input("AWS region '{}' ({}) is not a region name such as eu-west-1", region,
                        origin);
    }
    return region;
}

} // namespace

std::optional<std::string> process_environment(const std::string& name) {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
        return std::nullopt;
    }
    return std::string(value);
}

std::string describe_credentials(const AwsCredentials& credentials) {
    const std::string& id = credentials.access_key_id;
    const std::string tail = id.size() > 4 ? id.substr(id.size() - 4) : std::string();
    return fmt::format("access key ...{}{} ({})", tail,
                       credentials.session_token.empty() ? "" : " with session token",
                       credentials.source);
}

AwsCredentials load_aws_credentials(const EnvironmentLookup& environment) {
    const auto key_id = non_empty(environment, "AWS_ACCESS_KEY_ID");
    const auto secret = non_empty(environment, "AWS_SECRET_ACCESS_KEY");
    if (key_id && secret) {
        AwsCredentials credentials;
        credentials.access_key_id = *key_id;
        credentials.secret_access_key = *secret;
        credentials.session_token = non_empty(environment, "AWS_SESSION_TOKEN").value_or("");
        credentials.source = "environment";
        return credentials;
    }
    if (key_id || secret) {
        throw bad_input("{} is set but {} is not: set both (and AWS_SESSION_TOKEN for temporary "
                        "credentials), or unset both to use ~/.aws/credentials",
                        key_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                        key_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    }

    const auto profile_variable = non_empty(environment, "AWS_PROFILE");
    const std::string profile = profile_variable.value_or(std::string(k_default_profile));
    const SharedFile file = shared_file(environment, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    std::optional<IniFile> ini;
    if (file.path) {
        ini = read_ini_if_present(*file.path);
        if (!ini && file.explicit_path) {
            throw bad_input("cannot read the AWS credentials file {}", file.described);
        }
    }
    if (ini) {
        const auto section = ini->sections.find(profile);
        if (section != ini->sections.end()) {
            const auto& values = section->second.values;
            const auto get = [&](const char* key) -> std::string {
                const auto it = values.find(key);
                return it == values.end() ? std::string() : it->second.value;
            };
            const SourceLocation where{file.path->string(), section->second.line};
            AwsCredentials credentials;
            credentials.access_key_id = get("aws_access_key_id");
            credentials.secret_access_key = get("aws_secret_access_key");
            credentials.session_token = get("aws_session_token");
            credentials.source = fmt::format("{} [{}]", file.path->string(), profile);
            if (credentials.access_key_id.empty() || credentials.secret_access_key.empty()) {
                throw bad_input("{}: profile [{}] has no {}: add 'aws_access_key_id = ...' and "
                                "'aws_secret_access_key = ...' to it",
                                where.str(), profile,
                                credentials.access_key_id.empty() ? "aws_access_key_id"
                                                                  : "aws_secret_access_key");
            }
            return credentials;
        }
        if (profile_variable) {
            throw bad_input("AWS profile '{}' (from AWS_PROFILE) is not in {} (profiles there: "
                            "{}): fix AWS_PROFILE or add a [{}] section",
                            profile, file.described, profile_list(*ini), profile);
        }
    }
    throw bad_input("no AWS credentials found: looked at AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                    "(not set) and profile [{}] in {} ({}); set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), or "
                    "add the profile to the credentials file (AWS_PROFILE and "
                    "AWS_SHARED_CREDENTIALS_FILE choose another profile or file)",
                    profile, file.described,
                    !file.path ? "unknown" : (ini ? "no such profile" : "not found"));
}

std::string resolve_aws_region(std::string_view explicit_region,
                               const EnvironmentLookup& environment) {
    if (!explicit_region.empty()) {
        return checked_region(std::string(explicit_region), "given explicitly");
    }
    for (const char* variable : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
        if (auto region = non_empty(environment, variable)) {
            return checked_region(*region, fmt::format("from {}", variable));
        }
    }
    const std::string profile =
        non_empty(environment, "AWS_PROFILE").value_or(std::string(k_default_profile));
    const SharedFile file = shared_file(environment, "AWS_CONFIG_FILE", "config");
    std::optional<IniFile> ini;
    if (file.path) {
        ini = read_ini_if_present(*file.path);
        if (!ini && file.explicit_path) {
            throw bad_input("cannot read the AWS config file {}", file.described);
        }
    }
    // The config file names profiles "[profile NAME]", except the default which is "[default]"
    // (the AWS CLI accepts "[profile default]" too).
    const std::string section_name =
        profile == k_default_profile ? std::string(k_default_profile) : "profile " + profile;
    if (ini) {
        for (const auto& candidate : {section_name, "profile " + profile}) {
            const auto section = ini->sections.find(candidate);
            if (section == ini->sections.end()) {
                continue;
            }
            const auto value = section->second.values.find("region");
            if (value != section->second.values.end() && !value->second.value.empty()) {
                const SourceLocation where{file.path->string(), value->second.line};
                return checked_region(value->second.value, fmt::format("from {}", where.str()));
            }
        }
    }
    throw bad_input("no AWS region: looked at an explicit region, AWS_REGION, AWS_DEFAULT_REGION "
                    "(not set) and 'region' in [{}] of {} ({}); pass a region, set AWS_REGION, or "
                    "add 'region = ...' to that section",
                    section_name, file.described,
                    !file.path ? "unknown" : (ini ? "not set there" : "not found"));
}

} // namespace edgeforge::cloud
