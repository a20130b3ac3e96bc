// Checks #cloud-config user-data against the settings edge hosts rely on, with positions.
// About 900 lines: one rule per key of the user-data schema, each short; splitting the schema
// would scatter the one Validator they share.
#include "userdata/validate.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include "util/strings.h"
#include "util/yaml_check.h"

namespace edgeforge::userdata {
namespace {

// ---- value checks: hand-written and linear (std::regex recurses per character and overflows the
// stack on long values).

using util::is_alnum;
using util::is_digit;
using util::is_space;
bool all_digits(std::string_view text, std::size_t min, std::size_t max) {
    return text.size() >= min && text.size() <= max && std::all_of(text.begin(), text.end(), is_digit);
}

// ":" and 1 to 5 digits.
bool is_port_suffix(std::string_view text) {
    return text.starts_with(':') && all_digits(text.substr(1), 1, 5);
}

// https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#]\S*)?, scheme in any case.
bool is_http_url_text(std::string_view text) {
    const std::string scheme = util::to_lower(text.substr(0, 8));
    std::size_t i = scheme.starts_with("https://") ? 8 : scheme.starts_with("http://") ? 7 : 0;
    if (i == 0) {
        return false;
    }
    const std::size_t host_start = i;
    while (i < text.size() && (is_alnum(text[i]) || text[i] == '.' || text[i] == '-')) {
        ++i;
    }
    if (i == host_start) {
        return false;
    }
    if (i < text.size() && text[i] == ':') {
        const std::size_t port_start = i;
        ++i;
        while (i < text.size() && is_digit(text[i])) {
            ++i;
        }
        if (!is_port_suffix(text.substr(port_start, i - port_start))) {
            return false;
        }
    }
    if (i == text.size()) {
        return true;
    }
    if (text[i] != '/' && text[i] != '?' && text[i] != '#') {
        return false;
    }
    return std::none_of(text.begin() + static_cast<std::ptrdiff_t>(i), text.end(), is_space);
}

// Dot-separated labels of 1 to 63 alphanumerics and inner '-', optionally ":PORT"; at most 253
// characters.
bool is_hostname_text(std::string_view text) {
    if (text.empty() || text.size() > 253) {
        return false;
    }
    if (const auto colon = text.find(':'); colon != std::string_view::npos) {
        if (!is_port_suffix(text.substr(colon))) {
            return false;
        }
        text = text.substr(0, colon);
    }
    for (const auto& label : util::split(text, '.')) {
        if (label.empty() || label.size() > 63 || !is_alnum(label.front()) ||
            !is_alnum(label.back()) ||
            !std::all_of(label.begin(), label.end(), [](char c) { return is_alnum(c) || c == '-'; })) {
            return false;
        }
    }
    return true;
}

// [a-z0-9]([a-z0-9.-]*[a-z0-9])?, at most 63 characters.
bool is_device_name(std::string_view text) {
    const auto lower_alnum = [](char c) { return is_digit(c) || (c >= 'a' && c <= 'z'); };
    return !text.empty() && text.size() <= 63 && lower_alnum(text.front()) &&
           lower_alnum(text.back()) &&
           std::all_of(text.begin(), text.end(),
                       [&](char c) { return lower_alnum(c) || c == '.' || c == '-'; });
}

// *, or .?[A-Za-z0-9*]([A-Za-z0-9.:*-]*[A-Za-z0-9])? with an optional /N (1-3 digits).
bool is_no_proxy_entry(std::string_view text) {
    // A domain name is at most 253 characters; with a leading '.', ":PORT" or "/PREFIX" no
    // entry is longer than 260. Longer ones would go into NO_PROXY at the site, where an
    // environment string over 128 KiB makes every exec fail.
    if (text.size() > 260) {
        return false;
    }
    if (text == "*") {
        return true;
    }
    if (const auto slash = text.find('/'); slash != std::string_view::npos) {
        if (!all_digits(text.substr(slash + 1), 1, 3)) {
            return false;
        }
        text = text.substr(0, slash);
    }
    if (text.starts_with('.')) {
        text.remove_prefix(1);
    }
    if (text.empty() || !(is_alnum(text.front()) || text.front() == '*')) {
        return false;
    }
    if (text.size() == 1) {
        return true;
    }
    return is_alnum(text.back()) && std::all_of(text.begin(), text.end(), [](char c) {
               return is_alnum(c) || c == '.' || c == ':' || c == '*' || c == '-';
           });
}

// [a-z_][a-z0-9_-]*\$?, at most 32 characters.
bool is_user_name(std::string_view text) {
    if (text.empty() || text.size() > 32) {
        return false;
    }
    if (text.back() == '$') {
        text.remove_suffix(1);
    }
    const auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
    return !text.empty() && (lower(text.front()) || text.front() == '_') &&
           std::all_of(text.begin(), text.end(),
                       [&](char c) { return lower(c) || is_digit(c) || c == '_' || c == '-'; });
}

// An OpenSSH public key line (TYPE BASE64 [COMMENT]) or github:USER / gitlab:USER.
bool is_ssh_key_line(std::string_view text) {
    for (const std::string_view forge : {"github:", "gitlab:"}) {
        if (text.starts_with(forge)) {
            const auto user = text.substr(forge.size());
            return !user.empty() && std::none_of(user.begin(), user.end(), is_space);
        }
    }
    static constexpr std::string_view k_types[] = {
        "ssh-rsa", "ssh-ed25519", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"};
    const auto space = text.find(' ');
    if (space == std::string_view::npos ||
        std::find(std::begin(k_types), std::end(k_types), text.substr(0, space)) ==
            std::end(k_types)) {
        return false;
    }
    const auto rest = text.substr(space + 1);
    const auto key_end = std::min(rest.find(' '), rest.size());
    const auto key = rest.substr(0, key_end);
    const auto comment = rest.substr(key_end);
    return !key.empty() &&
           std::all_of(key.begin(), key.end(),
                       [](char c) { return is_alnum(c) || c == '+' || c == '/' || c == '='; }) &&
           comment.find_first_of("\r\n") == std::string_view::npos;
}

// 0[0-7]{1,4} or 0o[0-7]{1,4}.
bool is_octal_mode(std::string_view text) {
    if (text.starts_with("0o")) {
        text.remove_prefix(2);
    } else if (text.starts_with('0')) {
        text.remove_prefix(1);
    } else {
        return false;
    }
    return text.size() >= 1 && text.size() <= 4 &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
}

// Keys we know at each level. Cloud-config is open, so other keys are allowed, but a key
// within typo distance of one of these is almost certainly a misspelling that would be ignored
// silently on the device.
constexpr auto k_top_keys = std::to_array<std::string_view>(
    {"stylus", "stages", "install", "reset", "upgrade", "hostname", "users", "bundles", "k3s",
     "k3s-agent", "p2p", "debug", "strict"});
constexpr auto k_stylus_keys =
    std::to_array<std::string_view>({"site", "debug", "trace", "includeTui", "installationMode",
                                     "externalRegistries", "registryCredentials", "localUI"});
constexpr auto k_site_keys = std::to_array<std::string_view>(
    {"paletteEndpoint", "edgeHostToken", "projectUid", "projectName", "name", "registrationURL",
     "network", "tags", "tagsFromFile", "deviceUIDPaths", "insecureSkipVerify", "caCerts"});
constexpr auto k_network_keys =
    std::to_array<std::string_view>({"type", "ipAddress", "gateway", "mask", "nameserver",
                                     "httpProxy", "httpsProxy", "noProxy", "interfaces"});
constexpr auto k_stage_names = std::to_array<std::string_view>(
    {"initramfs", "boot", "fs", "network", "reconcile", "after-install", "after-upgrade",
     "after-reset", "after-install-chroot", "after-upgrade-chroot", "after-reset-chroot",
     "before-install", "before-upgrade", "before-reset"});
constexpr auto k_step_keys = std::to_array<std::string_view>({"name",
                                                              "if",
                                                              "users",
                                                              "files",
                                                              "commands",
                                                              "directories",
                                                              "hostname",
                                                              "environment",
                                                              "environment_file",
                                                              "systemctl",
                                                              "modules",
                                                              "sysctl",
                                                              "dns",
                                                              "timesyncd",
                                                              "ensure_entities",
                                                              "delete_entities",
                                                              "layout",
                                                              "datasource",
                                                              "downloads",
                                                              "only_os",
                                                              "only_arch",
                                                              "node",
                                                              "git"});
constexpr auto k_user_keys = std::to_array<std::string_view>(
    {"name", "groups", "passwd", "ssh_authorized_keys", "lock_passwd", "homedir", "shell", "uid",
     "primary_group", "no_create_home", "system"});
constexpr auto k_file_keys = std::to_array<std::string_view>(
    {"path", "content", "encoding", "permissions", "owner", "group", "owner_string"});

class Validator {
  public:
    explicit Validator(Report& report) : report_(report) {}

    void run(const YAML::Node& root) {
        if (!root.IsMap()) {
            error(root, "", "the user-data must be a YAML mapping of keys such as 'stylus:'",
                  "start from templates/user-data/ or `edgeforge init`");
            return;
        }
        check_typos(root, "", k_top_keys);
        const YAML::Node stylus = root["stylus"];
        const YAML::Node site = stylus && stylus.IsMap() ? stylus["site"] : YAML::Node();
        if (stylus) {
            if (expect_map(stylus, "stylus")) {
                check_typos(stylus, "stylus", k_stylus_keys);
            }
        }
        if (!site || site.IsNull()) {
            error(stylus ? stylus : root, "stylus.site.paletteEndpoint",
                  "the management endpoint is mandatory and missing",
                  "add stylus: site: paletteEndpoint: api.example.com");
        } else if (expect_map(site, "stylus.site")) {
            check_site(site);
        }
        if (const YAML::Node stages = root["stages"]) {
            check_stages(stages);
        }
    }

  private:
    void add(Severity severity, const YAML::Node& node, std::string key, std::string message,
             std::string hint) {
        const YAML::Mark mark = node.Mark();
        SourceLocation where{report_.file};
        if (!mark.is_null()) {
            where.line = mark.line + 1;
            where.column = mark.column + 1;
        }
        report_.findings.push_back(
            Finding{severity, where, std::move(key), std::move(message), std::move(hint)});
    }
    void error(const YAML::Node& node, std::string key, std::string message,
               std::string hint = {}) {
        add(Severity::error, node, std::move(key), std::move(message), std::move(hint));
    }
    void warning(const YAML::Node& node, std::string key, std::string message,
                 std::string hint = {}) {
        add(Severity::warning, node, std::move(key), std::move(message), std::move(hint));
    }

    static std::string join_key(std::string_view parent, std::string_view child) {
        return parent.empty() ? std::string(child) : std::string(parent) + "." + std::string(child);
    }

    bool expect_map(const YAML::Node& node, const std::string& key) {
        if (node.IsMap()) {
            return true;
        }
        error(node, key, "expected a mapping of keys");
        return false;
    }

    // A scalar string, or an error naming what was expected.
    std::optional<std::string> scalar(const YAML::Node& node, const std::string& key,
                                      std::string_view expected) {
        if (!node.IsScalar()) {
            error(node, key,
                  fmt::format("expected {}, got a {}", expected,
                              node.IsSequence() ? "list"
                              : node.IsMap()    ? "mapping"
                                                : "null"));
            return std::nullopt;
        }
        return node.Scalar();
    }

    template <std::size_t N>
    void check_typos(const YAML::Node& map, const std::string& parent,
                     const std::array<std::string_view, N>& known) {
        for (const auto& item : map) {
            if (!item.first.IsScalar()) {
                continue;
            }
            const std::string name = item.first.Scalar();
            if (std::find(known.begin(), known.end(), name) != known.end()) {
                continue;
            }
            if (const auto suggestion = util::closest_match(name, known)) {
                warning(item.first, join_key(parent, name),
                        fmt::format("unknown key '{}' looks like a misspelling of '{}'", name,
                                    *suggestion),
                        fmt::format("rename it to '{}'; as written the device ignores it",
                                    *suggestion));
            }
        }
    }

    static bool is_http_url(std::string_view text) { return is_http_url_text(text); }
    static bool is_hostname(std::string_view text) { return is_hostname_text(text); }

    void check_url(const YAML::Node& node, const std::string& key, std::string_view example) {
        if (const auto text = scalar(node, key, "an http:// or https:// URL")) {
            if (!is_http_url(*text)) {
                error(node, key,
                      fmt::format("expected an http:// or https:// URL, got '{}'", util::printable_line(*text, 120)),
                      fmt::format("for example {}", example));
            }
        }
    }

    void check_site(const YAML::Node& site) {
        check_typos(site, "stylus.site", k_site_keys);
        const YAML::Node endpoint = site["paletteEndpoint"];
        if (!endpoint || endpoint.IsNull()) {
            error(site, "stylus.site.paletteEndpoint",
                  "the management endpoint is mandatory and missing",
                  "add paletteEndpoint: api.example.com under stylus.site");
        } else if (const auto text =
                       scalar(endpoint, "stylus.site.paletteEndpoint", "a host name or URL")) {
            if (!is_hostname(*text) && !is_http_url(*text)) {
                error(endpoint, "stylus.site.paletteEndpoint",
                      fmt::format("expected a host name or an https:// URL, got '{}'", util::printable_line(*text, 120)),
                      "for example api.spectrocloud.com or https://palette.example.com");
            }
        }
        if (const YAML::Node name = site["name"]; name && !name.IsNull()) {
            if (const auto text = scalar(name, "stylus.site.name", "a device name")) {
                if (!is_device_name(*text)) {
                    error(name, "stylus.site.name",
                          fmt::format("'{}' is not a valid device name: use at most 63 lowercase "
                                      "letters, digits, '-' and '.', starting and ending with a "
                                      "letter or digit",
                                      util::printable_line(*text, 120)),
                          "leave it out to derive the name from the serial number");
                }
            }
        }
        if (const YAML::Node url = site["registrationURL"]; url && !url.IsNull()) {
            check_url(url, "stylus.site.registrationURL", "https://edge-registration.example.com/");
        }
        const YAML::Node token = site["edgeHostToken"];
        const YAML::Node url = site["registrationURL"];
        if (token && token.IsScalar() && !token.Scalar().empty()) {
            report_.registration = RegistrationMode::token;
        } else if (url && url.IsScalar() && !url.Scalar().empty()) {
            report_.registration = RegistrationMode::qr;
        }
        if (const YAML::Node network = site["network"]; network && !network.IsNull()) {
            if (expect_map(network, "stylus.site.network")) {
                check_network(network, "stylus.site.network");
            }
        }
    }

    struct ParsedAddress {
        int family = 0; // AF_INET or AF_INET6
        std::array<unsigned char, 16> bytes{};
    };

    static std::optional<ParsedAddress> parse_ip(std::string_view text) {
        ParsedAddress address;
        const std::string copy(text);
        if (::inet_pton(AF_INET, copy.c_str(), address.bytes.data()) == 1) {
            address.family = AF_INET;
            return address;
        }
        if (::inet_pton(AF_INET6, copy.c_str(), address.bytes.data()) == 1) {
            address.family = AF_INET6;
            return address;
        }
        return std::nullopt;
    }

    static bool same_subnet(const ParsedAddress& a, const ParsedAddress& b, int prefix) {
        for (int bit = 0; bit < prefix; ++bit) {
            const auto index = static_cast<std::size_t>(bit / 8);
            const int mask = 0x80 >> (bit % 8);
            if ((a.bytes[index] & mask) != (b.bytes[index] & mask)) {
                return false;
            }
        }
        return true;
    }

    // A prefix length (24) or, for IPv4, a dotted netmask (255.255.255.0).
    std::optional<int> parse_mask(const YAML::Node& node, const std::string& key, int family) {
        const auto text = scalar(node, key, "a prefix length");
        if (!text) {
            return std::nullopt;
        }
        const int maximum = family == AF_INET6 ? 128 : 32;
        int prefix = -1;
        const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), prefix);
        if (ec == std::errc{} && end == text->data() + text->size() && prefix >= 0 &&
            prefix <= maximum) {
            return prefix;
        }
        if (family == AF_INET) {
            if (const auto netmask = parse_ip(*text); netmask && netmask->family == AF_INET) {
                std::uint32_t bits = 0;
                for (int i = 0; i < 4; ++i) {
                    bits = (bits << 8) | netmask->bytes[static_cast<std::size_t>(i)];
                }
                const std::uint32_t inverted = ~bits;
                if ((inverted & (inverted + 1)) == 0) { // contiguous ones
                    int ones = 0;
                    for (std::uint32_t b = bits; b != 0; b <<= 1) {
                        ++ones;
                    }
                    return ones;
                }
            }
        }
        error(node, key,
              fmt::format("expected a prefix length from 0 to {}{}, got '{}'", maximum,
                          family == AF_INET ? " (or a netmask such as 255.255.255.0)" : "", util::printable_line(*text, 120)),
              "for example mask: 24");
        return std::nullopt;
    }

    void check_network(const YAML::Node& network, const std::string& prefix) {
        check_typos(network, prefix, k_network_keys);
        std::string type = "dhcp";
        const YAML::Node type_node = network["type"];
        if (type_node && !type_node.IsNull()) {
            if (const auto text = scalar(type_node, prefix + ".type", "dhcp or static")) {
                type = util::to_lower(*text);
                if (type != "dhcp" && type != "static") {
                    error(type_node, prefix + ".type",
                          fmt::format("expected dhcp or static, got '{}'", util::printable_line(*text, 120)));
                    type = "";
                }
            }
        }
        const YAML::Node ip = network["ipAddress"];
        const YAML::Node gateway = network["gateway"];
        const YAML::Node mask = network["mask"];
        if (type == "static") {
            std::optional<ParsedAddress> ip_address;
            std::optional<int> prefix_length;
            std::optional<ParsedAddress> gateway_address;
            if (!ip || ip.IsNull()) {
                error(network, prefix + ".ipAddress", "required when type is static",
                      "add ipAddress: 10.0.10.25");
            } else if (const auto text = scalar(ip, prefix + ".ipAddress", "an IP address")) {
                std::string address_text = *text;
                if (const auto slash = address_text.find('/'); slash != std::string::npos) {
                    int embedded = -1;
                    const std::string suffix = address_text.substr(slash + 1);
                    std::from_chars(suffix.data(), suffix.data() + suffix.size(), embedded);
                    address_text.resize(slash);
                    if (embedded >= 0) {
                        prefix_length = embedded;
                    }
                }
                ip_address = parse_ip(address_text);
                if (!ip_address) {
                    error(ip, prefix + ".ipAddress",
                          fmt::format("'{}' is not an IPv4 or IPv6 address", util::printable_line(*text, 120)));
                }
            }
            const int family = ip_address ? ip_address->family : AF_INET;
            if (mask && !mask.IsNull()) {
                prefix_length = parse_mask(mask, prefix + ".mask", family);
            } else if (!prefix_length) {
                error(network, prefix + ".mask", "required when type is static",
                      "add mask: 24 (the prefix length)");
            }
            if (!gateway || gateway.IsNull()) {
                error(network, prefix + ".gateway", "required when type is static",
                      "add gateway: 10.0.10.1");
            } else if (const auto text = scalar(gateway, prefix + ".gateway", "an IP address")) {
                gateway_address = parse_ip(*text);
                if (!gateway_address) {
                    error(gateway, prefix + ".gateway",
                          fmt::format("'{}' is not an IPv4 or IPv6 address", util::printable_line(*text, 120)));
                }
            }
            if (ip_address && gateway_address && prefix_length) {
                if (ip_address->family != gateway_address->family) {
                    error(gateway, prefix + ".gateway",
                          "the gateway and ipAddress are of different IP versions");
                } else if (!same_subnet(*ip_address, *gateway_address, *prefix_length)) {
                    error(gateway, prefix + ".gateway",
                          fmt::format("gateway {} is outside the subnet of {}/{}", gateway.Scalar(),
                                      ip.Scalar(), *prefix_length),
                          "check the gateway, the ipAddress and the mask");
                } else if (ip_address->bytes == gateway_address->bytes) {
                    error(gateway, prefix + ".gateway",
                          "the gateway equals the host's own ipAddress");
                }
            }
        } else if (type == "dhcp") {
            for (const auto& [node, name] :
                 {std::pair{ip, "ipAddress"}, std::pair{gateway, "gateway"},
                  std::pair{mask, "mask"}}) {
                if (node && !node.IsNull()) {
                    warning(node, prefix + "." + name,
                            fmt::format("{} is ignored because the network type is dhcp", name),
                            "set type: static to use a fixed address");
                }
            }
        }
        if (const YAML::Node nameserver = network["nameserver"];
            nameserver && !nameserver.IsNull()) {
            const auto check_one = [&](const YAML::Node& node) {
                if (const auto text = scalar(node, prefix + ".nameserver", "an IP address")) {
                    if (!parse_ip(*text)) {
                        error(node, prefix + ".nameserver",
                              fmt::format("'{}' is not an IPv4 or IPv6 address", util::printable_line(*text, 120)),
                              "for example nameserver: 1.1.1.1");
                    }
                }
            };
            if (nameserver.IsSequence()) {
                for (const auto& item : nameserver) {
                    check_one(item);
                }
            } else {
                check_one(nameserver);
            }
        }
        for (const char* proxy : {"httpProxy", "httpsProxy"}) {
            if (const YAML::Node node = network[proxy]; node && !node.IsNull()) {
                check_url(node, prefix + "." + proxy, "http://proxy.example.com:3128");
            }
        }
        if (const YAML::Node no_proxy = network["noProxy"]; no_proxy && !no_proxy.IsNull()) {
            check_no_proxy(no_proxy, prefix + ".noProxy");
        }
        if (const YAML::Node interfaces = network["interfaces"];
            interfaces && !interfaces.IsNull()) {
            if (expect_map(interfaces, prefix + ".interfaces")) {
                for (const auto& item : interfaces) {
                    const std::string name =
                        prefix + ".interfaces." + item.first.as<std::string>("?");
                    if (expect_map(item.second, name)) {
                        check_network(item.second, name);
                    }
                }
            }
        }
    }

    void check_no_proxy(const YAML::Node& node, const std::string& key) {
        std::vector<std::pair<std::string, YAML::Node>> entries;
        if (node.IsSequence()) {
            for (const auto& item : node) {
                if (const auto text = scalar(item, key, "a host, domain, IP or CIDR")) {
                    entries.emplace_back(*text, item);
                }
            }
        } else if (const auto text = scalar(node, key, "a comma-separated list or a list")) {
            for (const auto& piece : util::split_list(*text)) {
                entries.emplace_back(piece, node);
            }
        }
        for (const auto& [entry, where] : entries) {
            if (!is_no_proxy_entry(entry)) {
                error(where, key,
                      fmt::format("'{}' is not a host, domain (.example.com), IP or CIDR",
                                  util::printable_line(entry, 120)),
                      "for example noProxy: 10.0.0.0/8,.svc,.cluster.local");
            }
        }
    }

    void check_stages(const YAML::Node& stages) {
        if (!expect_map(stages, "stages")) {
            return;
        }
        for (const auto& item : stages) {
            const std::string stage = item.first.as<std::string>("?");
            const std::string key = "stages." + stage;
            // Stage names may carry suffixes such as "boot.before" or "initramfs.after".
            const std::string base_name = stage.substr(0, stage.find('.'));
            if (std::find(k_stage_names.begin(), k_stage_names.end(), base_name) ==
                k_stage_names.end()) {
                if (const auto suggestion = util::closest_match(base_name, k_stage_names)) {
                    warning(item.first, key,
                            fmt::format("unknown stage '{}' looks like a misspelling of '{}'",
                                        stage, *suggestion),
                            "steps under an unknown stage never run");
                }
            }
            if (!item.second.IsSequence()) {
                error(item.second, key, "expected a list of steps",
                      "write each step as a list item: '- name: ...'");
                continue;
            }
            std::size_t index = 0;
            for (const auto& step : item.second) {
                check_step(step, fmt::format("{}[{}]", key, index++));
            }
        }
    }

    void check_step(const YAML::Node& step, const std::string& key) {
        if (!expect_map(step, key)) {
            return;
        }
        check_typos(step, key, k_step_keys);
        if (const YAML::Node users = step["users"]; users && !users.IsNull()) {
            if (expect_map(users, key + ".users")) {
                for (const auto& user : users) {
                    check_user(user.first.as<std::string>("?"), user.second,
                               key + ".users." + user.first.as<std::string>("?"));
                }
            }
        }
        if (const YAML::Node files = step["files"]; files && !files.IsNull()) {
            if (!files.IsSequence()) {
                error(files, key + ".files", "expected a list of files");
            } else {
                std::size_t index = 0;
                for (const auto& file : files) {
                    check_file(file, fmt::format("{}.files[{}]", key, index++));
                }
            }
        }
    }

    void check_user(const std::string& name, const YAML::Node& user, const std::string& key) {
        if (!is_user_name(name)) {
            error(user, key,
                  fmt::format("'{}' is not a valid user name: use lowercase letters, digits, '_' "
                              "and '-', starting with a letter or '_', at most 32 characters",
                              util::printable_line(name, 120)));
        }
        if (user.IsNull()) {
            return;
        }
        if (!expect_map(user, key)) {
            return;
        }
        check_typos(user, key, k_user_keys);
        if (const YAML::Node groups = user["groups"]; groups && !groups.IsNull()) {
            if (!groups.IsSequence()) {
                error(groups, key + ".groups", "expected a list of group names",
                      "for example groups: [admin, sudo]");
            }
        }
        const YAML::Node passwd = user["passwd"];
        const YAML::Node keys = user["ssh_authorized_keys"];
        if (passwd && !passwd.IsNull()) {
            if (const auto text = scalar(passwd, key + ".passwd", "a password hash")) {
                if (!text->starts_with("$")) {
                    warning(passwd, key + ".passwd",
                            "a plain-text password is stored readable in the image",
                            "store a hash instead: openssl passwd -6");
                }
            }
        }
        if (keys && !keys.IsNull()) {
            if (!keys.IsSequence()) {
                error(keys, key + ".ssh_authorized_keys", "expected a list of public keys");
            } else {
                for (const auto& item : keys) {
                    if (const auto text =
                            scalar(item, key + ".ssh_authorized_keys", "a public key")) {
                        if (!is_ssh_key_line(*text)) {
                            error(item, key + ".ssh_authorized_keys",
                                  "not an OpenSSH public key line",
                                  "paste the contents of ~/.ssh/id_ed25519.pub, or github:USER");
                        }
                    }
                }
            }
        }
        if ((!passwd || passwd.IsNull()) && (!keys || keys.IsNull())) {
            warning(user, key,
                    fmt::format("user '{}' has neither passwd nor ssh_authorized_keys "
                                "and cannot log in",
                                name));
        }
    }

    void check_file(const YAML::Node& file, const std::string& key) {
        if (!expect_map(file, key)) {
            return;
        }
        check_typos(file, key, k_file_keys);
        const YAML::Node path = file["path"];
        if (!path || path.IsNull()) {
            error(file, key + ".path", "every file needs a path", "add path: /etc/example.conf");
        } else if (const auto text = scalar(path, key + ".path", "an absolute path")) {
            if (!text->starts_with("/")) {
                error(path, key + ".path", fmt::format("'{}' is not an absolute path", util::printable_line(*text, 120)));
            }
        }
        if (!file["content"]) {
            warning(file, key + ".content", "no content: the file is created empty");
        }
        if (const YAML::Node encoding = file["encoding"]; encoding && !encoding.IsNull()) {
            static constexpr auto k_encodings = std::to_array<std::string_view>(
                {"b64", "base64", "gz", "gzip", "gz+base64", "gzip+base64", "gz+b64", "gzip+b64"});
            if (const auto text = scalar(encoding, key + ".encoding", "an encoding")) {
                if (std::find(k_encodings.begin(), k_encodings.end(), *text) == k_encodings.end()) {
                    error(encoding, key + ".encoding",
                          fmt::format("unknown encoding '{}'; expected one of {}", *text,
                                      util::join(k_encodings, ", ")));
                }
            }
        }
        if (const YAML::Node permissions = file["permissions"];
            permissions && !permissions.IsNull()) {
            if (const auto text = scalar(permissions, key + ".permissions", "an octal mode")) {
                if (is_octal_mode(*text)) {
                    // fine: 0644
                } else if (all_digits(*text, 1, 4) && std::stoi(*text) <= 07777) {
                    const int value = std::stoi(*text);
                    if (text->find_first_of("89") == std::string::npos && value >= 100) {
                        warning(permissions, key + ".permissions",
                                fmt::format("{} is read as a decimal number (= octal {:04o})",
                                            *text, value),
                                fmt::format("write 0{} for the octal mode", *text));
                    }
                } else {
                    error(permissions, key + ".permissions",
                          fmt::format("expected an octal mode such as 0644, got '{}'", util::printable_line(*text, 120)));
                }
            }
        }
    }

    Report& report_;
};

} // namespace

std::string_view registration_mode_name(RegistrationMode mode) {
    switch (mode) {
    case RegistrationMode::manual:
        return "manual";
    case RegistrationMode::token:
        return "auto (registration token)";
    case RegistrationMode::qr:
        return "QR code";
    }
    return "?";
}

std::size_t Report::errors() const {
    return static_cast<std::size_t>(
        std::count_if(findings.begin(), findings.end(),
                      [](const Finding& f) { return f.severity == Severity::error; }));
}

std::size_t Report::warnings() const {
    return findings.size() - errors();
}

bool Report::passes(bool strict) const {
    return errors() == 0 && (!strict || warnings() == 0);
}

Report validate_text(std::string_view text, std::string label) {
    Report report;
    report.file = std::move(label);
    const auto first_line_end = text.find('\n');
    const std::string_view first_line = util::trim(
        text.substr(0, first_line_end == std::string_view::npos ? text.size() : first_line_end));
    if (first_line != "#cloud-config") {
        report.findings.push_back(
            Finding{Severity::error, SourceLocation{report.file, 1, 1}, "",
                    "the first line must be '#cloud-config'",
                    "cloud-init and the edge agent ignore the file otherwise"});
        return report;
    }
    const auto loaded = util::load_yaml(text);
    if (const auto& issue = loaded.issue) {
        const SourceLocation where{report.file, issue->line, issue->column};
        report.findings.push_back(
            issue->syntax_error
                ? Finding{Severity::error, where, "", "YAML syntax error: " + issue->message,
                          "check the indentation (spaces, not tabs) and quotes"}
                : Finding{Severity::error, where, "", issue->message, ""});
        return report;
    }
    Validator(report).run(loaded.root);
    std::stable_sort(report.findings.begin(), report.findings.end(),
                     [](const Finding& a, const Finding& b) {
                         return std::tie(a.location.line, a.location.column) <
                                std::tie(b.location.line, b.location.column);
                     });
    return report;
}

Report validate_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    if (in) {
        text << in.rdbuf();
    }
    if (!in || in.bad()) {
        Report report;
        report.file = file.string();
        report.findings.push_back(
            Finding{Severity::error, SourceLocation{report.file}, "",
                    fmt::format("cannot read the file: {}", std::strerror(errno)),
                    "check the path and its permissions"});
        return report;
    }
    return validate_text(text.str(), file.string());
}

std::string render_report(const Report& report) {
    std::string out;
    for (const auto& finding : report.findings) {
        out += fmt::format("{}: {}: {}{}\n", finding.location.str(),
                           finding.severity == Severity::error ? "error" : "warning",
                           finding.key.empty() ? "" : finding.key + ": ", finding.message);
        if (!finding.hint.empty()) {
            out += fmt::format("    hint: {}\n", finding.hint);
        }
    }
    out +=
        fmt::format("{}: {} error{}, {} warning{}; registration: {}\n", report.file,
                    report.errors(), report.errors() == 1 ? "" : "s", report.warnings(),
                    report.warnings() == 1 ? "" : "s", registration_mode_name(report.registration));
    return out;
}

nlohmann::json report_to_json(const Report& report) {
    nlohmann::json findings = nlohmann::json::array();
    for (const auto& finding : report.findings) {
        findings.push_back({{"severity", finding.severity == Severity::error ? "error" : "warning"},
                            {"file", finding.location.file},
                            {"line", finding.location.line},
                            {"column", finding.location.column},
                            {"key", finding.key},
                            {"message", finding.message},
                            {"hint", finding.hint}});
    }
    return {{"file", report.file},
            {"errors", report.errors()},
            {"warnings", report.warnings()},
            {"registration", registration_mode_name(report.registration)},
            {"findings", findings}};
}

} // namespace edgeforge::userdata
