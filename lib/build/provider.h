// `edgeforge build provider`: provider images, the OS + Kubernetes + agent OCI images that a
// cluster profile's OS layer points at and the edge agent installs and upgrades from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/arch.h"
#include "base/console.h"
#include "build/config.h"
#include "build/uki.h"
#include "oci/reference.h"
#include "oci/registry.h"

namespace edgeforge {

// The inputs of one platform of one provider image, {arch}/{version}/{distribution} replaced.
struct ProviderPlatform {
    Arch arch;
    oci::ImageReference base;
    std::vector<oci::ImageReference> kubernetes; // the Kubernetes layer(s), in order
    std::vector<oci::ImageReference> agents;
};

// One provider image: a Kubernetes version, one tag, one platform per arch.
struct ProviderImagePlan {
    std::string kubernetes_version;
    std::string tag;       // k3s-1.30.4-v4.5.0[-CUSTOM_TAG]
    std::string reference; // REGISTRY/REPO:TAG, or empty when no registry and repository are set
    std::vector<ProviderPlatform> platforms;
};

// IS_UKI (iso.uki): CanvOS's +uki-provider-image. Each platform's image also carries
// /trusted-boot: the signed systemd-boot ESP tree of its own root filesystem (one norole.efi
// UKI, loader.conf, the .auth keys), which kairos-agent's UKI upgrade installs on the device.
struct ProviderUki {
    UkiKeyFiles keys;
    std::string title;                         // the entry's title: uki.branding, else the tag
    std::string secure_boot_enroll = "manual"; // loader.conf
    std::uint64_t max_efi_size = 2ULL << 30;
};

// How `build_provider` runs. A sharded build (work_plan.h) splits each image into its
// platforms: the build stage composes each platform it was given into a layout of its own
// (provider_platform_layout()), and the assemble stage joins those into `layout`, tagged and
// indexed as a whole build writes them, then removes them.
enum class ProviderStage { whole, platforms, assemble };

inline constexpr std::string_view k_provider_platforms_directory = "provider-platforms";
inline constexpr std::string_view k_provider_images_directory = "provider-images"; // the layout

struct ProviderPlan {
    ProviderStage stage = ProviderStage::whole;
    std::filesystem::path project_dir; // recorded paths are shown relative to it
    std::string os_distribution;
    std::string os_version;
    std::string distribution; // k3s, rke2, kubeadm, kubeadm-fips, canonical, nodeadm
    std::string agent_version;
    bool fips = false;
    std::string http_proxy;
    std::string https_proxy;
    std::string no_proxy;
    std::string source_url;
    std::string repository_prefix; // REGISTRY/REPO, or empty
    // overlays/files/etc: laid over /etc of every provider image (the rest of the rootfs overlay
    // is the installer's).
    std::optional<std::filesystem::path> etc_overlay;
    std::optional<std::filesystem::path> edge_custom_config; // -> /oem/.edge_custom_config.yaml
    std::filesystem::path layout; // build/provider-images: every image built, by tag
    std::filesystem::path cache_dir;
    bool unpacked_layer_cache = true;             // for the Trusted Boot root filesystem
    std::uint64_t block_cache_bytes = 8ULL << 30; // idem
    oci::RegistryOptions registry;
    RemoteCacheSettings remote_cache; // for the Trusted Boot root filesystem
    std::optional<std::int64_t> source_date_epoch;
    bool push = false; // --push: push every image to its reference after building
    std::vector<ProviderImagePlan> images;
    std::optional<ProviderUki> uki; // set: Trusted Boot provider images

    nlohmann::json to_json() const;
};

// Checks every input of a provider build and reports every problem together (Error, bad input):
// the distribution and versions (each version must be in the versions file when there is one;
// with no version given, every version of the file is built), the Kubernetes artifacts, base and
// agent references for each arch, the /etc overlay, the output directory, and with `push` the
// registry and repository. With iso.uki (IS_UKI) the key directory too (`keys_directory`, else
// the project's, as plan_uki finds and checks it).
ProviderPlan plan_provider(const Config& config, bool push,
                           const std::filesystem::path& keys_directory = {});

std::string render_provider_plan(const ProviderPlan& plan);

// The generated metadata layer's files, for tests and `--dry-run`: path -> content.
struct MetadataFile {
    std::string path; // absolute in the image: "/etc/edgeforge/provider-release"
    std::string content;
};
std::vector<MetadataFile> provider_metadata_files(const ProviderPlan& plan,
                                                  const ProviderImagePlan& image, Arch arch,
                                                  const std::string& build_id);

struct ProviderImageResult {
    std::string tag;
    std::string reference;       // where it was pushed (or would be), else oci:LAYOUT:TAG
    std::string digest;          // of the manifest, or of the index for several arches
    std::string media_type;      // manifest or index
    std::vector<std::string> arches;
    bool pushed = false;
    std::string profile_snippet; // the cluster profile OS layer values that point at it
    nlohmann::json trusted_boot; // with Trusted Boot: each platform's UKI build summary
};

struct ProviderBuildResult {
    std::filesystem::path layout;
    std::vector<ProviderImageResult> images;
    nlohmann::json to_json() const;
};

// Composes every image of the plan into the layout (base, Kubernetes and agent layers linked as
// they are; the /etc overlay and the metadata as reproducible layers), tags each, and with
// plan.push pushes each to its reference. With plan.uki, each platform's root filesystem (every
// layer above, merged) is built into a signed UKI tree (build_uki) that is added as a last
// layer under /trusted-boot.
ProviderBuildResult build_provider(const ProviderPlan& plan, const Console& console);

// Where the build stage of a sharded build writes one platform of one image:
// <output_dir>/provider-platforms/<tag>-<arch>, an OCI layout with the manifest under <tag>.
std::filesystem::path provider_platform_layout(const ProviderPlan& plan,
                                               const ProviderImagePlan& image, Arch arch);

// The values users paste into the cluster profile's OS layer (BYOOS pack) for `uri`.
std::string cluster_profile_snippet(const std::string& uri);

} // namespace edgeforge
