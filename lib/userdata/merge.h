// Merges a site's settings over the org user-data (per-site installers), with provenance.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "userdata/validate.h"

namespace edgeforge::userdata {

// The documented deep-merge rule (README.md, "Per-site installers"):
//   - mappings merge key by key, recursively;
//   - a scalar or list in the site file replaces the org value;
//   - a key written with a trailing '+' ("initramfs+:") appends the site's list items to the
//     org list instead of replacing it;
//   - a key whose site value is null ("name: ~" or "name:") removes the key.
struct MergedUserData {
    std::string text; // "#cloud-config\n" + the merged YAML
    // Where each key path of the merged document came from ("stylus.site.name",
    // "stages.initramfs[1].files[0].path"), in the validator's key path syntax.
    std::map<std::string, SourceLocation> provenance;
};

// Merges `site_text` (a #cloud-config user-data or a plain YAML mapping) over `org_text`.
// Labels name the two inputs in locations. A YAML syntax error, or a site document that is not
// a mapping, throws Error (bad input) naming the file, line and column.
MergedUserData merge_user_data(std::string_view org_text, std::string_view org_label,
                               std::string_view site_text, std::string_view site_label);

// Validates merged user-data like `validate user-data` does, reporting each finding at the
// place the user wrote the value: the site file when it came from there, else the org file.
Report validate_merged(const MergedUserData& merged, std::string_view site_label);

} // namespace edgeforge::userdata
