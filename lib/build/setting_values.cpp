// The value check of each setting type: what a row's type accepts, in canonical form.
#include "build/setting_values.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "base/arch.h"
#include "base/error.h"
#include "oci/reference.h"
#include "util/strings.h"

namespace edgeforge {

namespace {

// ---- value checks: hand-written and linear (std::regex recurses per character and overflows the
// stack on long values), with the length checked first.

using util::is_digit;
using util::is_letter;
using util::is_space;

// [A-Za-z0-9_][A-Za-z0-9_.+-]*, at most 128 characters.
bool valid_name(std::string_view text) {
    if (text.empty() || text.size() > 128 ||
        !(is_letter(text[0]) || is_digit(text[0]) || text[0] == '_')) {
        return false;
    }
    return std::all_of(text.begin(), text.end(), [](char c) {
        return is_letter(c) || is_digit(c) || c == '_' || c == '.' || c == '+' || c == '-';
    });
}

// http:// or https:// (any case), a host part without whitespace, '/', '?' or '#', then
// anything without whitespace.
bool valid_url(std::string_view text) {
    const std::string lower = util::to_lower(text.substr(0, 8));
    std::size_t start = 0;
    if (lower.starts_with("https://")) {
        start = 8;
    } else if (lower.starts_with("http://")) {
        start = 7;
    } else {
        return false;
    }
    std::size_t i = start;
    while (i < text.size() && !is_space(text[i]) && text[i] != '/' && text[i] != '?' &&
           text[i] != '#') {
        ++i;
    }
    if (i == start) {
        return false;
    }
    return std::none_of(text.begin() + static_cast<std::ptrdiff_t>(i), text.end(), is_space);
}

// v?N.N(.N)?([-+][A-Za-z0-9.+-]+)?
bool valid_version(std::string_view text) {
    std::size_t i = text.starts_with('v') ? 1 : 0;
    const auto number = [&] {
        const std::size_t start = i;
        while (i < text.size() && is_digit(text[i])) {
            ++i;
        }
        return i > start;
    };
    if (!number() || i >= text.size() || text[i] != '.') {
        return false;
    }
    ++i;
    if (!number()) {
        return false;
    }
    if (i < text.size() && text[i] == '.') {
        ++i;
        if (!number()) {
            return false;
        }
    }
    if (i == text.size()) {
        return true;
    }
    if (text[i] != '-' && text[i] != '+') {
        return false;
    }
    const auto suffix = text.substr(i + 1);
    return !suffix.empty() && std::all_of(suffix.begin(), suffix.end(), [](char c) {
        return is_letter(c) || is_digit(c) || c == '.' || c == '+' || c == '-';
    });
}

std::string quoted_list(std::span<const std::string_view> values) {
    return util::join(values, ", ");
}

} // namespace

CheckedValue check_setting_value(const Setting& setting, const std::string& raw) {
    const std::string text(util::trim(raw));
    const auto reject = [](std::string why) { return CheckedValue{std::nullopt, std::move(why)}; };
    if (text.size() > k_max_setting_value_length) {
        return reject(fmt::format("it is {} characters long; a setting's value is at most {}",
                                  text.size(), k_max_setting_value_length));
    }
    if (const auto offset = util::invalid_utf8_offset(text)) {
        return reject(fmt::format("byte {} (0x{:02x}) is not valid UTF-8 text", *offset + 1,
                                  static_cast<unsigned char>(text[*offset])));
    }
    switch (setting.type) {
    case SettingType::string:
        return CheckedValue{text, {}};
    case SettingType::name: {
        if (!valid_name(text)) {
            return reject("use letters, digits, '.', '_', '+' and '-' only (at most 128 "
                          "characters, not starting with '.', '+' or '-')");
        }
        return CheckedValue{text, {}};
    }
    case SettingType::path:
    case SettingType::output_path:
    case SettingType::path_list:
        if (text.empty()) {
            return reject("expected a path");
        }
        return CheckedValue{text, {}};
    case SettingType::image:
    case SettingType::image_list:
        try {
            // Provider builds replace {distribution}, {version} and {arch} per image: check the
            // reference with sample values in their place.
            std::string sample = text;
            for (const auto& [placeholder, value] :
                 {std::pair<std::string_view, std::string_view>{"{distribution}", "k3s"},
                  {"{version}", "1.30.0"},
                  {"{arch}", "amd64"}}) {
                for (auto at = sample.find(placeholder); at != std::string::npos;
                     at = sample.find(placeholder)) {
                    sample.replace(at, placeholder.size(), value);
                }
            }
            (void)oci::parse_reference(sample);
        } catch (const Error& error) {
            return reject(error.what());
        }
        return CheckedValue{text, {}};
    case SettingType::enumeration:
    case SettingType::enumeration_list: {
        if (setting.key == "arch") {
            if (const auto arch = Arch::parse(text)) {
                return CheckedValue{std::string(arch->name()), {}};
            }
            return reject("allowed values are " + Arch::allowed_values_text());
        }
        const std::string lowered = util::to_lower(text);
        for (const auto allowed : setting.allowed) {
            if (lowered == allowed) {
                return CheckedValue{lowered, {}};
            }
        }
        return reject("allowed values are " + quoted_list(setting.allowed));
    }
    case SettingType::boolean: {
        const std::string lowered = util::to_lower(text);
        if (lowered == "true" || lowered == "yes" || lowered == "on" || lowered == "1") {
            return CheckedValue{"true", {}};
        }
        if (lowered == "false" || lowered == "no" || lowered == "off" || lowered == "0") {
            return CheckedValue{"false", {}};
        }
        return reject("expected true or false");
    }
    case SettingType::integer: {
        std::int64_t number = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
        const bool parsed = ec == std::errc{} && end == text.data() + text.size() && !text.empty();
        const bool in_range =
            number >= setting.minimum && (setting.maximum == 0 || number <= setting.maximum);
        if (!parsed || !in_range) {
            if (setting.maximum == 0) {
                return reject(
                    fmt::format("expected a whole number of at least {}", setting.minimum));
            }
            return reject(fmt::format("expected a whole number from {} to {}", setting.minimum,
                                      setting.maximum));
        }
        return CheckedValue{std::to_string(number), {}};
    }
    case SettingType::size: {
        const auto bytes = util::parse_size(text);
        const auto minimum = static_cast<std::uint64_t>(setting.minimum);
        const auto maximum = static_cast<std::uint64_t>(setting.maximum);
        std::string range;
        if (maximum != 0) {
            range = fmt::format(" from {} to {}", util::format_bytes(minimum),
                                util::format_bytes(maximum));
        } else if (minimum != 0) {
            range = fmt::format(" of at least {}", util::format_bytes(minimum));
        }
        const std::string what = setting.power_of_two ? "a power of two" : "a size";
        if (!bytes || *bytes < minimum || (maximum != 0 && *bytes > maximum) ||
            (setting.power_of_two && (*bytes & (*bytes - 1)) != 0)) {
            return reject(
                fmt::format("expected {}{}{}", what, range,
                            range.empty() ? " such as 512M or 2G (K, M, G, T suffixes)" : ""));
        }
        return CheckedValue{std::to_string(*bytes), {}};
    }
    case SettingType::url: {
        if (!valid_url(text)) {
            return reject("expected an http:// or https:// URL such as http://proxy.example:3128");
        }
        return CheckedValue{text, {}};
    }
    case SettingType::credentials: {
        const auto colon = text.find(':');
        if (colon == std::string::npos || colon == 0) {
            return reject("expected USER:PASSWORD (the value is not shown)");
        }
        return CheckedValue{text, {}};
    }
    case SettingType::version_list: {
        if (!valid_version(text)) {
            return reject("expected a Kubernetes version such as 1.30.5");
        }
        return CheckedValue{text.front() == 'v' ? text.substr(1) : text, {}};
    }
    }
    return reject("unsupported setting type");
}

// [A-Za-z_][A-Za-z0-9_]*
bool valid_variable_name(std::string_view text) {
    return !text.empty() && (is_letter(text[0]) || text[0] == '_') &&
           std::all_of(text.begin(), text.end(),
                       [](char c) { return is_letter(c) || is_digit(c) || c == '_'; });
}


} // namespace edgeforge
