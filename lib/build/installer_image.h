// The installer root filesystem as an OCI image (IMAGE_NAME): base + agents + overlay layers.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "base/console.h"
#include "build/plan.h"

namespace edgeforge {

struct InstallerImageResult {
    std::filesystem::path layout; // the OCI layout written
    std::string tag;
    std::string manifest_digest;
    std::size_t layers = 0;
    std::string pushed; // the registry reference it was pushed to, if IMAGE_NAME is one
    nlohmann::json to_json() const;
};

// Writes the installer image of the plan (plan.installer_image) into an OCI layout: the base
// and agent layers as they are (blobs linked, not recompressed), then the rootfs overlay as one
// reproducible tar+gzip layer, with a config whose diff_ids, history and created time
// (SOURCE_DATE_EPOCH) describe them. The layout is plan.installer_layout, tagged with the tag of
// the reference. When IMAGE_NAME is a registry reference and plan.push_installer_image is set
// (--push), the layout is then pushed there.
InstallerImageResult build_installer_image(const IsoPlan& plan, const Console& console);

} // namespace edgeforge
