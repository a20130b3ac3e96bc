// Registry pull progress shown on the console: pull steps as lines, one bar per image.
#pragma once

#include "base/console.h"
#include "oci/image.h"

namespace edgeforge::oci {

// Reports registry pulls through `console`: the pull steps as lines, and one progress bar per
// image while its layers download. `console` must outlive `options`.
void show_pull_progress(OpenOptions& options, const Console& console);

} // namespace edgeforge::oci
