// The user-data and site templates shipped in templates/ pass validation, strictly.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <string>

#include "base/templates.h"
#include "userdata/merge.h"
#include "userdata/validate.h"
#include "util/fs.h"

using namespace edgeforge;
using namespace edgeforge::userdata;
namespace stdfs = std::filesystem;

TEST_CASE("every user-data template is valid and registers as its name says") {
    const std::map<std::string, RegistrationMode> expected = {
        {"connected-auto-registration.yaml", RegistrationMode::token},
        {"qr-code-registration.yaml", RegistrationMode::qr},
        {"air-gapped-local.yaml", RegistrationMode::manual},
        {"static-network-proxy-ca.yaml", RegistrationMode::token},
    };
    std::size_t seen = 0;
    for (const auto& entry : stdfs::directory_iterator(templates_directory() / "user-data")) {
        const std::string name = entry.path().filename().string();
        INFO(name);
        const Report report = validate_file(entry.path());
        CHECK_MESSAGE(report.passes(true), render_report(report));
        REQUIRE(expected.count(name) == 1);
        CHECK(report.registration == expected.at(name));
        ++seen;
    }
    CHECK(seen == expected.size());
}

TEST_CASE("every site template merges over every user-data template into valid user-data") {
    std::size_t merged_count = 0;
    for (const auto& site : stdfs::directory_iterator(templates_directory() / "sites")) {
        if (site.path().extension() != ".yaml") {
            continue;
        }
        for (const auto& org : stdfs::directory_iterator(templates_directory() / "user-data")) {
            INFO(site.path().filename().string() << " over " << org.path().filename().string());
            const MergedUserData merged =
                merge_user_data(util::read_file(org.path()), org.path().string(),
                                util::read_file(site.path()), site.path().string());
            const Report report = validate_merged(merged, site.path().string());
            CHECK_MESSAGE(report.passes(true), render_report(report));
            CHECK(merged.text.find("/etc/site-id") != std::string::npos);
            ++merged_count;
        }
    }
    CHECK(merged_count >= 4);
}
