// The edgeforge version string.
#pragma once

#include <string_view>

namespace edgeforge {

constexpr std::string_view k_version = EDGEFORGE_VERSION;

} // namespace edgeforge
