// Unit tests for userdata/merge: the deep-merge rule, provenance and exact messages.
#include <doctest/doctest.h>

#include <string>

#include "support/errors.h"
#include "support/yaml.h"
#include "userdata/merge.h"
#include "userdata/validate.h"

using namespace edgeforge;
using namespace edgeforge::userdata;
using edgeforge::testing::error_of;

namespace {

const std::string k_org = "#cloud-config\n"
                          "stylus:\n"
                          "  site:\n"
                          "    paletteEndpoint: api.example.com\n"
                          "    projectName: edge\n"
                          "    network:\n"
                          "      type: dhcp\n"
                          "stages:\n"
                          "  initramfs:\n"
                          "    - users:\n"
                          "        kairos:\n"
                          "          passwd: \"$6$x$y\"\n";

MergedUserData merge(const std::string& site) {
    return merge_user_data(k_org, "user-data", site, "sites/s1.yaml");
}

} // namespace

TEST_CASE("maps merge key by key; site scalars win; org keys stay") {
    const MergedUserData merged = merge("stylus:\n"
                                        "  site:\n"
                                        "    name: store-042\n"
                                        "    network:\n"
                                        "      type: static\n"
                                        "      ipAddress: 10.0.0.5\n");
    CHECK(merged.text == "#cloud-config\n"
                         "stylus:\n"
                         "  site:\n"
                         "    paletteEndpoint: api.example.com\n"
                         "    projectName: edge\n"
                         "    network:\n"
                         "      type: static\n"
                         "      ipAddress: 10.0.0.5\n"
                         "    name: store-042\n"
                         "stages:\n"
                         "  initramfs:\n"
                         "    - users:\n"
                         "        kairos:\n"
                         "          passwd: $6$x$y\n");
    CHECK(merged.provenance.at("stylus.site.name").str() == "sites/s1.yaml:3:11");
    CHECK(merged.provenance.at("stylus.site.network.type").str() == "sites/s1.yaml:5:13");
    CHECK(merged.provenance.at("stylus.site.paletteEndpoint").str() == "user-data:4:22");
    CHECK(merged.provenance.at("stages.initramfs[0].users.kairos.passwd").str() ==
          "user-data:12:19");
}

TEST_CASE("lists replace, 'key+' appends, null removes") {
    const std::string site = "#cloud-config\n"
                             "stylus:\n"
                             "  site:\n"
                             "    projectName: ~\n"
                             "stages:\n"
                             "  initramfs+:\n"
                             "    - files:\n"
                             "        - path: /etc/site\n"
                             "          content: s1\n";
    const MergedUserData appended = merge(site);
    CHECK(appended.text == "#cloud-config\n"
                           "stylus:\n"
                           "  site:\n"
                           "    paletteEndpoint: api.example.com\n"
                           "    network:\n"
                           "      type: dhcp\n"
                           "stages:\n"
                           "  initramfs:\n"
                           "    - users:\n"
                           "        kairos:\n"
                           "          passwd: $6$x$y\n"
                           "    - files:\n"
                           "        - path: /etc/site\n"
                           "          content: s1\n");
    CHECK(appended.provenance.at("stages.initramfs[0]").file == "user-data");
    CHECK(appended.provenance.at("stages.initramfs[1].files[0].path").str() ==
          "sites/s1.yaml:8:17");

    std::string replacing = site;
    replacing.replace(replacing.find("initramfs+"), 10, "initramfs");
    const MergedUserData replaced = merge(replacing);
    CHECK(replaced.text.find("kairos") == std::string::npos);
    CHECK(replaced.text.find("/etc/site") != std::string::npos);
}

TEST_CASE("an empty site file gives the org user-data") {
    const MergedUserData merged = merge("");
    CHECK(merged.text.find("projectName: edge\n") != std::string::npos);
    CHECK(merged.provenance.at("stylus.site.projectName").file == "user-data");
}

TEST_CASE("merge errors name the site file, line and column") {
    CHECK(error_of([] { merge("stylus: [a\n"); }, ExitCode::bad_input) ==
          "sites/s1.yaml:2:1: YAML syntax error: end of sequence flow not found; check the "
          "indentation (spaces, not tabs) and quotes");
    CHECK(error_of([] { merge("- a\n- b\n"); }, ExitCode::bad_input) ==
          "sites/s1.yaml:1:1: a site file must be a YAML mapping of the keys it sets, such as "
          "'stylus: {site: {name: store-042}}'");
    CHECK(error_of([] { merge("stylus:\n  site+:\n    - a\n"); }, ExitCode::bad_input) ==
          "sites/s1.yaml:2:3: 'stylus.site+' appends list items, but the org value is not a list; "
          "write 'site:' to replace the value instead");
    CHECK(error_of([] { merge("stages:\n  initramfs: []\n  initramfs+: []\n"); },
                   ExitCode::bad_input) ==
          "sites/s1.yaml:3:3: 'stages.initramfs' is given twice (as 'initramfs' and "
          "'initramfs+'); keep one: 'initramfs' replaces the org value, 'initramfs+' appends to "
          "its list");
}

TEST_CASE("findings on merged user-data point at the file that set the value") {
    const MergedUserData merged = merge("stylus:\n"
                                        "  site:\n"
                                        "    network:\n"
                                        "      type: static\n"
                                        "      ipAddress: 10.0.0.5\n"
                                        "      mask: 24\n");
    const Report report = validate_merged(merged, "sites/s1.yaml");
    REQUIRE(report.errors() >= 1);
    const std::string rendered = render_report(report);
    CHECK(rendered.find("sites/s1.yaml:4:7: error: stylus.site.network.gateway: ") !=
          std::string::npos);
    CHECK(rendered.find("user-data:12:19: warning: stages.initramfs[0].users.kairos.passwd") ==
          std::string::npos); // a hash, not a plain password: no finding

    const MergedUserData plain = merge("stages:\n"
                                       "  initramfs:\n"
                                       "    - users:\n"
                                       "        kairos:\n"
                                       "          passwd: kairos\n");
    const Report plain_report = validate_merged(plain, "sites/s1.yaml");
    CHECK(render_report(plain_report).starts_with(
        "sites/s1.yaml:5:19: warning: stages.initramfs[0].users.kairos.passwd: "));
}

TEST_CASE("a site file with an alias bomb or a repeated key is bad input before any merge") {
    const std::string bomb = "stylus:\n" + edgeforge::testing::alias_bomb("  ");
    const std::string error = error_of([&] { (void)merge(bomb); }, ExitCode::bad_input);
    CHECK(error.starts_with("sites/s1.yaml:"));
    CHECK(error.find("alias") != std::string::npos);

    CHECK(error_of([&] { (void)merge("stylus:\n  site:\n    name: a\n    name: b\n"); },
                   ExitCode::bad_input) ==
          "sites/s1.yaml:4:5: the key 'name' is given twice (first at line 3, column 5); keep one");
}

TEST_CASE("a site file or user-data that is not UTF-8 is bad input at its line and column") {
    CHECK(edgeforge::testing::error_of(
              [] { merge_user_data(k_org, "user-data", "stylus:\n  site:\n    n\xffme: x\n",
                                   "sites/s1.yaml"); },
              ExitCode::bad_input) ==
          "sites/s1.yaml:3:6: byte 0xff is not valid UTF-8; save the file as UTF-8");
    const auto report = validate_text("#cloud-config\nstages:\n  in\xc3tramfs: x\n", "ud.yaml");
    REQUIRE_FALSE(report.findings.empty());
    CHECK(report.findings[0].location.str() == "ud.yaml:3:5");
    CHECK(report_to_json(report).dump().find("not valid UTF-8") != std::string::npos);
}
