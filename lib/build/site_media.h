// `edgeforge build site-media`: a NoCloud seed ISO (CIDATA) carrying one site's settings.
#pragma once

#include <filesystem>
#include <optional>

#include "base/console.h"
#include "build/iso.h"

namespace edgeforge {

struct SiteMediaPlan {
    std::filesystem::path user_data; // validated like any user-data
    std::filesystem::path output;    // build/<name>-cidata.iso
    std::optional<std::int64_t> source_date_epoch;
};

// Validates the user-data (errors: Error bad input, nothing written) and writes a small ISO
// with volume id CIDATA holding /user-data (the file as given) and /meta-data (instance-id
// derived from the user-data, local-hostname from stylus.site.name when set), which cloud-init's
// NoCloud source and the edge installer read when the medium is attached next to the
// installer. Written atomically, reproducibly with SOURCE_DATE_EPOCH.
Artifact build_site_media(const SiteMediaPlan& plan, const Console& console);

} // namespace edgeforge
