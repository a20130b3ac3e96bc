// The value check of each setting type (the rows of build/settings.cpp carry their type, the
// type carries its check): hand-written, linear, with the length checked first.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "build/settings.h"

namespace edgeforge {

// Longer than any path (PATH_MAX 4096): no setting's value needs more.
inline constexpr std::size_t k_max_setting_value_length = 8192;

// One value of a setting in canonical form, or the reason it is bad.
struct CheckedValue {
    std::optional<std::string> value;
    std::string problem;
};
CheckedValue check_setting_value(const Setting& setting, const std::string& raw);

// [A-Za-z_][A-Za-z0-9_]*: a variable name in ${NAME}.
bool valid_variable_name(std::string_view text);

} // namespace edgeforge
