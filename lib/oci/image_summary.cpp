// `edgeforge inspect IMAGE`: what an image holds, without unpacking it.
#include "oci/image_summary.h"

#include <fmt/format.h>

#include "util/strings.h"

namespace edgeforge::oci {
namespace {

std::string short_media_type(const Layer& layer) {
    if (layer.kind == LayerKind::directory) {
        return "directory";
    }
    if (layer.media_type.empty()) {
        return "tar";
    }
    const auto dot = layer.media_type.rfind('.');
    return dot == std::string::npos ? layer.media_type : layer.media_type.substr(dot + 1);
}

// The config keys people look at, in the order they look at them.
nlohmann::json config_highlights(const nlohmann::json& config) {
    nlohmann::json out = nlohmann::json::object();
    if (!config.is_object()) {
        return out;
    }
    for (const char* key : {"created", "author"}) {
        if (config.contains(key)) {
            out[key] = config[key];
        }
    }
    if (config.contains("config") && config["config"].is_object()) {
        const auto& runtime = config["config"];
        for (const char* key : {"Entrypoint", "Cmd", "Env", "WorkingDir", "User", "Labels"}) {
            if (runtime.contains(key) && !runtime[key].is_null()) {
                out[key] = runtime[key];
            }
        }
    }
    return out;
}

} // namespace

std::string render_image_summary(const Image& image) {
    std::string out = fmt::format("image     {}\n", image.name);
    if (!image.manifest_digest.empty()) {
        out += fmt::format("manifest  {}\n", image.manifest_digest);
    }
    if (!image.config_digest.empty()) {
        out += fmt::format("config    {}\n", image.config_digest);
    }
    out += fmt::format("platform  {}\n",
                       image.platform.empty() ? "(not recorded)" : image.platform.str());
    out += fmt::format("layers    {} ({})\n", image.layers.size(),
                       util::format_bytes(image.layer_bytes()));
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
        const auto& layer = image.layers[i];
        out += fmt::format("  {:>2}  {:<9}  {:>10}  {}\n", i + 1, short_media_type(layer),
                           layer.kind == LayerKind::directory ? "" : util::format_bytes(layer.size),
                           layer.digest.empty() ? layer.path.string() : layer.digest);
    }
    const auto highlights = config_highlights(image.config);
    for (const auto& [key, value] : highlights.items()) {
        if (value.is_array()) {
            out += fmt::format("{:<9} ", util::to_lower(key));
            std::vector<std::string> items;
            for (const auto& item : value) {
                items.push_back(item.is_string() ? item.get<std::string>() : item.dump());
            }
            out += util::join(items, key == "Env" ? "\n          " : " ") + "\n";
        } else if (value.is_object()) {
            for (const auto& [label, text] : value.items()) {
                out += fmt::format("label     {}={}\n", label,
                                   text.is_string() ? text.get<std::string>() : text.dump());
            }
        } else {
            out += fmt::format("{:<9} {}\n", util::to_lower(key),
                               value.is_string() ? value.get<std::string>() : value.dump());
        }
    }
    return out;
}

nlohmann::json image_summary_json(const Image& image) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : image.layers) {
        layers.push_back({{"media_type", layer.media_type},
                          {"digest", layer.digest},
                          {"size", layer.size},
                          {"path", layer.path.string()}});
    }
    return {{"image", image.name},
            {"manifest_digest", image.manifest_digest},
            {"config_digest", image.config_digest},
            {"platform", image.platform.empty() ? nlohmann::json(nullptr)
                                                : nlohmann::json(image.platform.str())},
            {"layer_bytes", image.layer_bytes()},
            {"layers", layers},
            {"config", config_highlights(image.config)}};
}

} // namespace edgeforge::oci
