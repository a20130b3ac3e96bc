// `edgeforge inspect IMAGE`: what an image holds, without unpacking it.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "oci/image.h"

namespace edgeforge::oci {

// Manifest summary, platform, layers (media type, digest, size) and the interesting parts of
// the config (created, entrypoint, cmd, env, labels), for people.
std::string render_image_summary(const Image& image);
nlohmann::json image_summary_json(const Image& image);

} // namespace edgeforge::oci
