// Unit tests for build/settings: the table is consistent.
#include <doctest/doctest.h>

#include <set>

#include "build/settings.h"

using namespace edgeforge;

TEST_CASE("every setting has a unique key, flag, env var and legacy name, and help") {
    std::set<std::string_view> keys;
    std::set<std::string> flags;
    std::set<std::string_view> envs;
    std::set<std::string_view> legacy;
    for (const auto& setting : settings_table()) {
        CHECK_MESSAGE(keys.insert(setting.key).second, setting.key);
        CHECK_MESSAGE(!setting.help.empty(), setting.key);
        if (!setting.flag.empty()) {
            // content build takes only the content.* flags: they may reuse a build flag's name.
            const bool content_only = setting.scope == k_scope_content;
            CHECK_MESSAGE(flags.insert(content_only ? "content " + std::string(setting.flag)
                                                    : std::string(setting.flag))
                              .second,
                          setting.flag);
        }
        if (!setting.env.empty()) {
            CHECK_MESSAGE(envs.insert(setting.env).second, setting.env);
        }
        for (const auto name : {setting.arg_name, setting.installer_env_name}) {
            if (!name.empty()) {
                CHECK_MESSAGE(legacy.insert(name).second, name);
            }
        }
        const bool enumerated = setting.type == SettingType::enumeration ||
                                setting.type == SettingType::enumeration_list;
        CHECK_MESSAGE(enumerated == !setting.allowed.empty(), setting.key);
    }
}

TEST_CASE("every legacy variable users know maps to a setting") {
    for (const auto name :
         {"CUSTOM_TAG", "IMAGE_REGISTRY", "IMAGE_REPO", "OS_DISTRIBUTION", "OS_VERSION",
          "K8S_DISTRIBUTION", "K8S_VERSION", "ISO_NAME", "ARCH", "FIPS_ENABLED", "HTTP_PROXY",
          "HTTPS_PROXY", "NO_PROXY", "CLUSTERCONFIG", "BASE_IMAGE"}) {
        CHECK_MESSAGE(find_setting_by_legacy_name(name, false) != nullptr, name);
    }
    for (const auto name : {"ISO_IMAGE", "INSTALLER_VERSION", "IMAGE_NAME", "USER_DATA_FILE"}) {
        CHECK_MESSAGE(find_setting_by_legacy_name(name, true) != nullptr, name);
    }
}
