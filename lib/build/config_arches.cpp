// The configurations of a multi-arch build (`arches`): one per arch, each writing into
// <output_dir>/<arch>, and the one arch a single-output command builds.
#include "build/config.h"

#include <algorithm>

#include "util/strings.h"

namespace edgeforge {

std::vector<Arch> Config::arches() const {
    std::vector<Arch> out;
    for (const auto& name : list("arches")) {
        const Arch arch = Arch::parse(name).value_or(Arch()); // the setting's type checked it
        if (std::find(out.begin(), out.end(), arch) == out.end()) {
            out.push_back(arch);
        }
    }
    return out;
}

Config Config::for_arch(Arch arch) const {
    Config copy = *this;
    const ResolvedValue& arches = get("arches");
    ResolvedValue& value = copy.mutable_value("arch");
    value.values = {std::string(arch.name())};
    value.origin = arches.origin;
    value.location = arches.location;
    ResolvedValue& output = copy.mutable_value("output_dir");
    output.values = {(path("output_dir") / std::string(arch.name())).string()};
    output.base_dir.clear();
    return copy;
}

namespace {

std::string arch_names(const std::vector<Arch>& arches) {
    std::vector<std::string> names;
    for (const Arch arch : arches) {
        names.emplace_back(arch.name());
    }
    return util::join(names, ", ");
}

std::string value_place(const ResolvedValue& value) {
    return value.location.file.empty() ? std::string(origin_name(value.origin))
                                       : value.location.str();
}

} // namespace

std::vector<Config> arch_configs(const Config& config) {
    const std::vector<Arch> arches = config.arches();
    if (arches.empty()) {
        return {config};
    }
    const ResolvedValue& arch = config.get("arch");
    if (arch.origin != Origin::default_value &&
        std::find(arches.begin(), arches.end(), config.arch()) == arches.end()) {
        throw bad_input("{}: arch {} is not one of arches ({}: {}); every arch of arches is "
                        "built, each into {}/<arch>: remove arch or add it to arches",
                        value_place(arch), config.arch().name(), value_place(config.get("arches")),
                        arch_names(arches), config.path("output_dir").string());
    }
    std::vector<Config> configs;
    for (const Arch each : arches) {
        configs.push_back(config.for_arch(each));
    }
    return configs;
}

Config single_arch_config(const Config& config, std::string_view command) {
    const std::vector<Arch> arches = config.arches();
    if (arches.empty()) {
        return config;
    }
    const ResolvedValue& arch = config.get("arch");
    if (arch.origin == Origin::default_value) {
        if (arches.size() == 1) {
            return config.for_arch(arches.front());
        }
        throw bad_input("{} builds one arch, and arches ({}) lists {}: pick one with --arch (it "
                        "writes into {}/<arch>), or run `edgeforge build all` for every arch",
                        command, value_place(config.get("arches")), arch_names(arches),
                        config.path("output_dir").string());
    }
    if (std::find(arches.begin(), arches.end(), config.arch()) == arches.end()) {
        throw bad_input("{}: arch {} is not one of arches ({}: {}): pick one of those",
                        value_place(arch), config.arch().name(), value_place(config.get("arches")),
                        arch_names(arches));
    }
    return config.for_arch(config.arch());
}

} // namespace edgeforge
