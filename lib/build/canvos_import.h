// `edgeforge init --from-canvos DIR`: the edgeforge.yaml equivalent of a CanvOS project's .arg.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "build/config.h"

namespace edgeforge {

struct CanvosImport {
    std::string yaml; // the edgeforge.yaml text, each value commented with where it came from
    // What the file does not carry, one line each: variables without effect in edgeforge,
    // and files edgeforge finds by itself (content bundles, local-ui.tar).
    std::vector<std::string> left_out;
    std::vector<std::string> found;
    std::vector<std::string> warnings; // from reading .arg (an undefined $NAME)
};

// Reads DIR/.arg (and nothing else of edgeforge's) with every CanvOS rule edgeforge applies and
// renders the settings it gives as edgeforge.yaml. Throws Error (bad input): no .arg in DIR, or
// the .arg sets what edgeforge cannot carry over (each problem with its .arg:line:col and what
// to do instead, as `config show` would report it).
CanvosImport import_canvos_project(const std::filesystem::path& directory,
                                   const EnvironmentLookup& environment = {});

} // namespace edgeforge
