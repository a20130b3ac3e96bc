// The platforms of a sharded provider build: the build stage composes each platform (one version
// and arch) into a layout of its own with a record of its inputs; the assemble stage checks them
// and joins them into the provider layout (build_provider(), ProviderStage).
#pragma once

#include "build/provider.h"
#include "oci/image_composer.h"
#include "oci/layout_writer.h"

namespace edgeforge {

// Writes the record of what this platform is built from (every setting the composition reads,
// the image references relative to the project, the /etc overlay and edge custom config
// digests) into its layout, for the assemble stage to compare.
void write_platform_inputs(const ProviderPlan& plan, const ProviderImagePlan& image,
                           const ProviderPlatform& platform);

// A platform the build stage composed, checked (its record against this plan's, its labels,
// every blob's digest) and linked into `layout`. Error (bad input) naming the layout and what
// differs for a missing, stale or foreign platform.
oci::PlatformManifest adopt_platform(const ProviderPlan& plan, const ProviderImagePlan& image,
                                     const ProviderPlatform& platform, oci::LayoutWriter& layout);

// Removes the platform layouts of the plan's images (and provider-platforms/ when empty).
void remove_platform_layouts(const ProviderPlan& plan);

} // namespace edgeforge
