// Unit tests for userdata/validate: every rule and its exact message.
#include <doctest/doctest.h>

#include <string>

#include "userdata/validate.h"

using namespace edgeforge::userdata;

namespace {

// The rendered findings without the summary line.
std::string findings_of(const std::string& text) {
    const Report report = validate_text(text, "ud.yaml");
    std::string out = render_report(report);
    out.erase(out.rfind("ud.yaml: "));
    return out;
}

const std::string k_head =
    "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.example.com\n";

} // namespace

TEST_CASE("a minimal valid user-data passes and registers manually") {
    const Report report = validate_text(k_head, "ud.yaml");
    CHECK(report.findings.empty());
    CHECK(report.passes(true));
    CHECK(report.registration == RegistrationMode::manual);
    CHECK(render_report(report) == "ud.yaml: 0 errors, 0 warnings; registration: manual\n");
}

TEST_CASE("registration mode: token, QR code") {
    CHECK(validate_text(k_head + "    edgeHostToken: abc\n", "u").registration ==
          RegistrationMode::token);
    CHECK(validate_text(k_head + "    registrationURL: https://reg.example.com/\n", "u")
              .registration == RegistrationMode::qr);
}

TEST_CASE("the first line must be #cloud-config") {
    CHECK(findings_of("stylus: {}\n") ==
          "ud.yaml:1:1: error: the first line must be '#cloud-config'\n"
          "    hint: cloud-init and the edge agent ignore the file otherwise\n");
}

TEST_CASE("YAML syntax errors carry their position") {
    CHECK(findings_of("#cloud-config\nstylus:\n  site: [a\n") ==
          "ud.yaml:4:1: error: YAML syntax error: end of sequence flow not found\n"
          "    hint: check the indentation (spaces, not tabs) and quotes\n");
}

TEST_CASE("paletteEndpoint is mandatory and must be a host or URL") {
    CHECK(findings_of("#cloud-config\nstylus:\n  site:\n    name: edge-1\n") ==
          "ud.yaml:4:5: error: stylus.site.paletteEndpoint: the management endpoint is mandatory "
          "and missing\n"
          "    hint: add paletteEndpoint: api.example.com under stylus.site\n");
    CHECK(findings_of("#cloud-config\nhostname: x\n") ==
          "ud.yaml:2:1: error: stylus.site.paletteEndpoint: the management endpoint is mandatory "
          "and missing\n"
          "    hint: add stylus: site: paletteEndpoint: api.example.com\n");
    CHECK(findings_of("#cloud-config\nstylus:\n  site:\n    paletteEndpoint: 'not a host'\n") ==
          "ud.yaml:4:22: error: stylus.site.paletteEndpoint: expected a host name or an https:// "
          "URL, got 'not a host'\n"
          "    hint: for example api.spectrocloud.com or https://palette.example.com\n");
    CHECK(findings_of(
              "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: https://p.example.com:8443/\n")
              .empty());
}

TEST_CASE("device name and registration URL") {
    CHECK(findings_of(k_head + "    name: Edge_1\n    registrationURL: ftp://x\n") ==
          "ud.yaml:5:11: error: stylus.site.name: 'Edge_1' is not a valid device name: use at "
          "most 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or "
          "digit\n"
          "    hint: leave it out to derive the name from the serial number\n"
          "ud.yaml:6:22: error: stylus.site.registrationURL: expected an http:// or https:// URL, "
          "got 'ftp://x'\n"
          "    hint: for example https://edge-registration.example.com/\n");
}

TEST_CASE("misspelled keys are warnings, unknown ones are fine, --strict fails on warnings") {
    const std::string text =
        k_head + "    paletteEndpiont: x\n    customThing: 1\nstages:\n  intramfs: []\n";
    const Report report = validate_text(text, "ud.yaml");
    CHECK(report.errors() == 0);
    CHECK(report.warnings() == 2);
    CHECK(report.passes(false));
    CHECK_FALSE(report.passes(true));
    CHECK(findings_of(text) ==
          "ud.yaml:5:5: warning: stylus.site.paletteEndpiont: unknown key 'paletteEndpiont' looks "
          "like a misspelling of 'paletteEndpoint'\n"
          "    hint: rename it to 'paletteEndpoint'; as written the device ignores it\n"
          "ud.yaml:8:3: warning: stages.intramfs: unknown stage 'intramfs' looks like a "
          "misspelling of 'initramfs'\n"
          "    hint: steps under an unknown stage never run\n");
}

TEST_CASE("static network: required fields") {
    CHECK(findings_of(k_head + "    network:\n      type: static\n") ==
          "ud.yaml:6:7: error: stylus.site.network.ipAddress: required when type is static\n"
          "    hint: add ipAddress: 10.0.10.25\n"
          "ud.yaml:6:7: error: stylus.site.network.mask: required when type is static\n"
          "    hint: add mask: 24 (the prefix length)\n"
          "ud.yaml:6:7: error: stylus.site.network.gateway: required when type is static\n"
          "    hint: add gateway: 10.0.10.1\n");
}

TEST_CASE("static network: consistent addresses") {
    const std::string net = k_head + "    network:\n      type: static\n";
    CHECK(
        findings_of(net + "      ipAddress: 10.0.10.25\n      mask: 24\n      gateway: 10.0.10.1\n")
            .empty());
    CHECK(findings_of(
              net +
              "      ipAddress: 10.0.10.25\n      mask: 255.255.255.0\n      gateway: 10.0.10.1\n")
              .empty());
    CHECK(findings_of(net + "      ipAddress: 10.0.10.25/24\n      gateway: 10.0.10.1\n").empty());
    CHECK(findings_of(net +
                      "      ipAddress: 10.0.10.25\n      mask: 24\n      gateway: 10.0.11.1\n") ==
          "ud.yaml:9:16: error: stylus.site.network.gateway: gateway 10.0.11.1 is outside the "
          "subnet of 10.0.10.25/24\n"
          "    hint: check the gateway, the ipAddress and the mask\n");
    CHECK(
        findings_of(net +
                    "      ipAddress: 10.0.10.300\n      mask: 33\n      gateway: fd00::1\n") ==
        "ud.yaml:7:18: error: stylus.site.network.ipAddress: '10.0.10.300' is not an IPv4 or "
        "IPv6 address\n"
        "ud.yaml:8:13: error: stylus.site.network.mask: expected a prefix length from 0 to 32 (or "
        "a netmask such as 255.255.255.0), got '33'\n"
        "    hint: for example mask: 24\n");
    CHECK(findings_of(net + "      ipAddress: fd00::10\n      mask: 64\n      gateway: fd00::1\n")
              .empty());
    CHECK(
        findings_of(net + "      ipAddress: fd00::10\n      mask: 64\n      gateway: 10.0.0.1\n") ==
        "ud.yaml:9:16: error: stylus.site.network.gateway: the gateway and ipAddress are of "
        "different IP versions\n");
    CHECK(
        findings_of(net + "      ipAddress: 10.0.0.5\n      mask: 24\n      gateway: 10.0.0.5\n") ==
        "ud.yaml:9:16: error: stylus.site.network.gateway: the gateway equals the host's own "
        "ipAddress\n");
}

TEST_CASE("network type, DNS, proxies, noProxy") {
    CHECK(findings_of(k_head + "    network:\n      type: dhcpp\n") ==
          "ud.yaml:6:13: error: stylus.site.network.type: expected dhcp or static, got 'dhcpp'\n");
    CHECK(findings_of(k_head + "    network:\n      type: dhcp\n      gateway: 10.0.0.1\n") ==
          "ud.yaml:7:16: warning: stylus.site.network.gateway: gateway is ignored because the "
          "network type is dhcp\n"
          "    hint: set type: static to use a fixed address\n");
    CHECK(findings_of(k_head +
                      "    network:\n      nameserver: dns.example\n      httpProxy: proxy:3128\n"
                      "      httpsProxy: https://proxy.example.com:3129\n"
                      "      noProxy: 10.0.0.0/8,.svc,bad host\n") ==
          "ud.yaml:6:19: error: stylus.site.network.nameserver: 'dns.example' is not an IPv4 or "
          "IPv6 address\n"
          "    hint: for example nameserver: 1.1.1.1\n"
          "ud.yaml:7:18: error: stylus.site.network.httpProxy: expected an http:// or https:// "
          "URL, got 'proxy:3128'\n"
          "    hint: for example http://proxy.example.com:3128\n"
          "ud.yaml:9:16: error: stylus.site.network.noProxy: 'bad host' is not a host, domain "
          "(.example.com), IP or CIDR\n"
          "    hint: for example noProxy: 10.0.0.0/8,.svc,.cluster.local\n");
    CHECK(findings_of(k_head + "    network:\n      noProxy: [10.0.0.0/8, .svc, localhost]\n")
              .empty());
    // No host name is longer than 253 characters; a 200,000-character entry would end up in
    // NO_PROXY at the site, where it breaks every exec (an environment string over 128 KiB).
    CHECK(findings_of(k_head + "    network:\n      noProxy:\n        - " +
                      std::string(200000, 'a') + "\n")
              .starts_with("ud.yaml:7:11: error: stylus.site.network.noProxy: 'aaaa"));
    CHECK(findings_of(k_head + "    network:\n      noProxy: [." + std::string(253, 'a') +
                      ":3128]\n")
              .empty());
}

TEST_CASE("stages: users with hashed passwords and keys, plain passwords warned") {
    const std::string base = k_head + "stages:\n  initramfs:\n    - name: users\n      users:\n";
    CHECK(findings_of(
              base +
              "        kairos:\n          groups: [admin]\n          passwd: \"$6$salt$hash\"\n"
              "          ssh_authorized_keys:\n            - ssh-ed25519 AAAAC3Nza me@host\n"
              "            - github:someone\n")
              .empty());
    CHECK(findings_of(base +
                      "        kairos:\n          passwd: kairos\n          groups: admin\n") ==
          "ud.yaml:10:19: warning: stages.initramfs[0].users.kairos.passwd: a plain-text password "
          "is stored readable in the image\n"
          "    hint: store a hash instead: openssl passwd -6\n"
          "ud.yaml:11:19: error: stages.initramfs[0].users.kairos.groups: expected a list of group "
          "names\n"
          "    hint: for example groups: [admin, sudo]\n");
    CHECK(
        findings_of(base + "        Bad-User:\n          ssh_authorized_keys: [not-a-key]\n") ==
        "ud.yaml:10:11: error: stages.initramfs[0].users.Bad-User: 'Bad-User' is not a valid "
        "user name: use lowercase letters, digits, '_' and '-', starting with a letter or '_', at "
        "most 32 characters\n"
        "ud.yaml:10:33: error: stages.initramfs[0].users.Bad-User.ssh_authorized_keys: not an "
        "OpenSSH public key line\n"
        "    hint: paste the contents of ~/.ssh/id_ed25519.pub, or github:USER\n");
    CHECK(findings_of(base + "        nobody: {}\n") ==
          "ud.yaml:9:17: warning: stages.initramfs[0].users.nobody: user 'nobody' has neither "
          "passwd nor ssh_authorized_keys and cannot log in\n");
}

TEST_CASE("stages: files with paths, encodings and octal permissions") {
    const std::string base = k_head + "stages:\n  boot:\n    - files:\n";
    CHECK(findings_of(base +
                      "        - path: /etc/a\n          content: x\n          permissions: 0644\n")
              .empty());
    CHECK(findings_of(base +
                      "        - path: etc/a\n          content: x\n          encoding: rot13\n"
                      "          permissions: 644\n"
                      "        - content: y\n          permissions: rw\n") ==
          "ud.yaml:8:17: error: stages.boot[0].files[0].path: 'etc/a' is not an absolute path\n"
          "ud.yaml:10:21: error: stages.boot[0].files[0].encoding: unknown encoding 'rot13'; "
          "expected one of b64, base64, gz, gzip, gz+base64, gzip+base64, gz+b64, gzip+b64\n"
          "ud.yaml:11:24: warning: stages.boot[0].files[0].permissions: 644 is read as a decimal "
          "number (= octal 1204)\n"
          "    hint: write 0644 for the octal mode\n"
          "ud.yaml:12:11: error: stages.boot[0].files[1].path: every file needs a path\n"
          "    hint: add path: /etc/example.conf\n"
          "ud.yaml:13:24: error: stages.boot[0].files[1].permissions: expected an octal mode such "
          "as 0644, got 'rw'\n");
    CHECK(findings_of(k_head + "stages:\n  boot: {}\n") ==
          "ud.yaml:6:9: error: stages.boot: expected a list of steps\n"
          "    hint: write each step as a list item: '- name: ...'\n");
}

TEST_CASE("an unreadable file is a finding, and JSON carries every field") {
    const Report missing = validate_file("/nonexistent/user-data");
    CHECK(missing.errors() == 1);
    CHECK(missing.findings[0].message == "cannot read the file: No such file or directory");
    const auto json = report_to_json(validate_text(k_head + "    name: BAD\n", "ud.yaml"));
    CHECK(json["errors"] == 1);
    CHECK(json["findings"][0]["line"] == 5);
    CHECK(json["findings"][0]["column"] == 11);
    CHECK(json["findings"][0]["key"] == "stylus.site.name");
    CHECK(json["registration"] == "manual");
}

TEST_CASE("hostile values: 200k-character values are findings, checked in linear time") {
    const std::string big(200'000, 'a');
    const std::string text = "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: https://" +
                             big + "/x y\n    name: " + big +
                             "\n    network:\n      httpProxy: http://" + big +
                             " x\n      noProxy: " + big + "/12345\nusers:\n  - name: " + big +
                             "\n    ssh_authorized_keys:\n      - ssh-ed25519 " + big +
                             "!\nwrite_files:\n  - path: /etc/x\n    permissions: '" + big +
                             "'\n";
    const Report report = validate_text(text, "ud.yaml");
    CHECK(!report.passes(false));
    std::string keys;
    for (const auto& finding : report.findings) {
        CHECK(finding.message.size() < 1'000);
        keys += finding.key + "\n";
    }
    INFO(keys);
    for (const auto* key : {"stylus.site.paletteEndpoint", "stylus.site.name",
                            "stylus.site.network.noProxy"}) {
        CHECK(keys.find(key) != std::string::npos);
    }
}

TEST_CASE("a repeated key in user-data is an error with both positions") {
    const Report report =
        validate_text(k_head + "    projectName: a\n    projectName: b\n", "ud.yaml");
    REQUIRE(!report.findings.empty());
    CHECK(report.findings.front().severity == Severity::error);
    CHECK(report.findings.front().location.line == 6);
    CHECK(report.findings.front().message ==
          "the key 'projectName' is given twice (first at line 5, column 5); keep one");
}
