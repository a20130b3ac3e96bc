// `edgeforge build provider`: base + Kubernetes + agent + /etc overlay + metadata, as OCI images.
#include "build/provider.h"

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "build/compose.h"
#include "build/plan.h"
#include "build/provider_platforms.h"
#include "build/step_cache.h"
#include "build/uki.h"
#include "oci/image.h"
#include "oci/image_composer.h"
#include "oci/layout_writer.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/yaml_check.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_release_file = "/etc/edgeforge/provider-release";
constexpr std::string_view k_bundled_sentinel = "/etc/spectro-sysext/k8s-and-agent-provider-bundled";

// Removes a directory the build creates unless keep() is called: on a failed build (destructor)
// and on Ctrl-C (registered as a temporary until then). A directory that exists already with
// content is left alone.
class FreshLayoutGuard {
  public:
    explicit FreshLayoutGuard(stdfs::path directory) : directory_(std::move(directory)) {
        std::error_code error;
        fresh_ = !stdfs::exists(directory_, error) || stdfs::is_empty(directory_, error);
        if (fresh_) {
            util::register_temporary_directory(directory_);
        }
    }
    ~FreshLayoutGuard() {
        if (fresh_) {
            util::unregister_temporary(directory_);
            std::error_code ignored;
            stdfs::remove_all(directory_, ignored);
        }
    }
    FreshLayoutGuard(const FreshLayoutGuard&) = delete;
    FreshLayoutGuard& operator=(const FreshLayoutGuard&) = delete;
    void keep() {
        if (fresh_) {
            util::unregister_temporary(directory_);
            fresh_ = false;
        }
    }

  private:
    stdfs::path directory_;
    bool fresh_ = false;
};

std::string normalise_version(std::string version) {
    if (!version.empty() && (version.front() == 'v' || version.front() == 'V')) {
        version.erase(0, 1);
    }
    return version;
}

// An OCI tag allows [A-Za-z0-9_.-]; Kubernetes versions such as 1.30.4+k3s1 carry a '+', which
// becomes '_' as the distributions' own images do.
std::string tag_text(std::string text) {
    for (char& c : text) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (!ok) {
            c = '_';
        }
    }
    return text;
}

// The versions a versions file allows for `distribution`. Three shapes are accepted: a YAML list
// of versions, a mapping from distribution to such a list, or plain text with one version per
// line (# comments allowed).
std::vector<std::string> read_versions_file(const stdfs::path& file,
                                            const std::string& distribution,
                                            Diagnostics& diagnostics) {
    std::string text;
    try {
        text = util::read_file(file);
    } catch (const std::exception&) {
        diagnostics.error(SourceLocation{file.string()},
                          "cannot read the Kubernetes versions file; check the path "
                          "(kubernetes.versions_file, --k8s-versions-file)");
        return {};
    }
    const auto loaded = util::load_yaml(text);
    if (const auto& issue = loaded.issue) {
        diagnostics.error(SourceLocation{file.string(), issue->line, issue->column},
                          issue->syntax_error ? "not valid YAML: " + issue->message
                                              : issue->message);
        return {};
    }
    const YAML::Node& root = loaded.root;
    const auto where = [&](const YAML::Node& node) {
        return SourceLocation{file.string(), node.Mark().line + 1, node.Mark().column + 1};
    };
    std::vector<std::string> versions;
    const auto take_list = [&](const YAML::Node& list) {
        if (!list.IsSequence()) {
            diagnostics.error(where(list), "expected a list of Kubernetes versions");
            return;
        }
        for (const auto& item : list) {
            if (!item.IsScalar()) {
                diagnostics.error(where(item), "expected a Kubernetes version such as 1.30.4");
                continue;
            }
            versions.push_back(normalise_version(item.as<std::string>()));
        }
    };
    if (root.IsSequence()) {
        take_list(root);
    } else if (root.IsMap()) {
        const YAML::Node list = root[distribution];
        if (!list) {
            std::vector<std::string> present;
            for (const auto& item : root) {
                present.push_back(item.first.as<std::string>());
            }
            diagnostics.error(where(root),
                              fmt::format("lists no versions for {} (it has {}); add a '{}:' list",
                                          distribution, util::join(present, ", "), distribution));
            return {};
        }
        take_list(list);
    } else if (root.IsScalar()) {
        for (const auto& word : util::split(root.as<std::string>(), ' ')) {
            if (!util::trim(word).empty()) {
                versions.push_back(normalise_version(std::string(util::trim(word))));
            }
        }
    }
    if (versions.empty() && diagnostics.empty()) {
        diagnostics.error(SourceLocation{file.string()}, "lists no Kubernetes versions");
    }
    return versions;
}

// k3s and rke2 come with add-ons the edge profile replaces: the CNI comes from the profile, the
// agent installs its own metrics-server, and ingress, service load balancer and storage are
// profile packs too.
std::optional<MetadataFile> kubernetes_defaults(const std::string& distribution) {
    if (distribution == "k3s") {
        return MetadataFile{"/etc/rancher/k3s/config.yaml.d/00-edgeforge.yaml",
                            "# Written by edgeforge: the cluster profile provides these.\n"
                            "disable:\n"
                            "  - traefik\n"
                            "  - servicelb\n"
                            "  - local-storage\n"
                            "  - metrics-server\n"
                            "flannel-backend: none\n"
                            "disable-network-policy: true\n"};
    }
    if (distribution == "rke2") {
        // RKE2 has no service load balancer or local-path provisioner unless enabled.
        return MetadataFile{"/etc/rancher/rke2/config.yaml.d/00-edgeforge.yaml",
                            "# Written by edgeforge: the cluster profile provides these.\n"
                            "disable:\n"
                            "  - rke2-ingress-nginx\n"
                            "  - rke2-traefik\n"
                            "  - rke2-metrics-server\n"
                            "cni: none\n"
                            "enable-servicelb: false\n"};
    }
    return std::nullopt;
}

std::string quoted(const std::string& value) {
    std::string out = "\"";
    for (const char c : value) {
        if (c == '"' || c == '\\' || c == '$' || c == '`') {
            out += '\\';
        }
        out += c;
    }
    return out + "\"";
}

// A configuration file for an image layer: a few KiB; more is not what the user meant.
std::string read_small_file(const stdfs::path& file) {
    constexpr std::uintmax_t k_max_size = 1 << 20;
    std::error_code ec;
    const auto size = stdfs::file_size(file, ec);
    if (ec) {
        throw bad_input("cannot read {}: {}", file.string(), ec.message());
    }
    if (size > k_max_size) {
        throw bad_input("{} is larger than 1 MiB; an edge custom config is a few KiB: is it the "
                        "right file?",
                        file.string());
    }
    return util::read_file(file);
}

void add_file(fs::Tree& tree, fs::SpillFile& spill, const std::string& path,
              const std::string& content, std::int64_t mtime) {
    const auto parts = fs::split_path(path);
    std::string parent;
    std::vector<std::string> parents;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        parent += "/" + std::string(parts[i]);
        parents.push_back(parent);
    }
    tree.ensure_directories(parents, mtime);
    auto file = std::make_shared<fs::Inode>();
    file->mode = 0644;
    file->mtime = mtime;
    if (!content.empty()) {
        file->data.kind = fs::DataRef::Kind::spill;
        file->data.offset = spill.append(content);
        file->data.size = content.size();
    }
    auto directory = parent.empty() ? tree.root_ptr() : tree.lookup(parent);
    directory->children[std::string(parts.back())] = file;
}

// Where CanvOS's +uki-provider-image puts the signed ESP tree.
constexpr std::string_view k_trusted_boot_directory = "trusted-boot";

// The signed UKI tree of one platform of a provider image: its root filesystem is the platform's
// base, Kubernetes and agent images and the generated layers (the image "generated" of
// `generated_layout`), merged; written below `work`, returned.
stdfs::path build_provider_uki(const ProviderPlan& plan, const ProviderImagePlan& image,
                               const ProviderPlatform& platform,
                               const oci::RegistryOptions& registry,
                               const stdfs::path& generated_layout, const stdfs::path& work,
                               const Console& console, nlohmann::json& summary) {
    UkiPlan uki;
    uki.medium = UkiMedium::tree;
    uki.iso.arch = platform.arch;
    uki.iso.name = image.tag;
    uki.iso.output_dir = work;
    uki.iso.cache_dir = plan.cache_dir;
    uki.iso.unpacked_layer_cache = plan.unpacked_layer_cache;
    uki.iso.block_cache_bytes = plan.block_cache_bytes;
    uki.iso.project_dir = plan.project_dir;
    uki.iso.registry = registry;
    uki.iso.source_date_epoch = plan.source_date_epoch;
    if (plan.source_date_epoch) {
        // Without SOURCE_DATE_EPOCH this root filesystem is never reused (see below): it is
        // neither looked up in nor pushed to the remote cache.
        uki.iso.remote_cache = plan.remote_cache;
        uki.iso.remote_cache.registry = registry;
    }
    uki.iso.base = platform.base;
    uki.iso.agents = platform.kubernetes;
    uki.iso.agents.insert(uki.iso.agents.end(), platform.agents.begin(), platform.agents.end());
    uki.iso.agents.push_back(
        oci::parse_reference(fmt::format("oci:{}:generated", generated_layout.string())));
    uki.keys = plan.uki->keys;
    uki.entries = {uki_upgrade_entry(plan.uki->title.empty() ? image.tag : plan.uki->title)};
    uki.secure_boot_enroll = plan.uki->secure_boot_enroll;
    uki.max_efi_size = plan.uki->max_efi_size;
    uki.output = work / std::string(k_trusted_boot_directory);
    console.info("provider {} ({}): the signed UKI of its root filesystem -> /{}", image.tag,
                 platform.arch.name(), k_trusted_boot_directory);
    UkiBuildResult built = build_uki(uki, console);
    if (!plan.source_date_epoch) {
        // Without SOURCE_DATE_EPOCH the metadata's build id (and the layers' times) change with
        // every build, so this root filesystem is never reused: its step entry (the whole OS as
        // an initrd) is removed now rather than left to fill the cache.
        const std::string key = built.summary.at("rootfs").value("key", std::string());
        if (!key.empty()) {
            StepCache(plan.cache_dir / "steps").remove("rootfs", key);
        }
    }
    summary = std::move(built.summary);
    summary["arch"] = platform.arch.name();
    return built.directory;
}

} // namespace

std::string cluster_profile_snippet(const std::string& uri) {
    return fmt::format("pack:\n"
                       "  content:\n"
                       "    images:\n"
                       "      - image: \"{{{{.spectro.pack.edge-native-byoi.options.system.uri}}}}\"\n"
                       "options:\n"
                       "  system.uri: \"{}\"\n",
                       uri);
}

nlohmann::json ProviderPlan::to_json() const {
    nlohmann::json images_json = nlohmann::json::array();
    for (const auto& image : images) {
        nlohmann::json platforms = nlohmann::json::array();
        for (const auto& platform : image.platforms) {
            std::vector<std::string> kubernetes;
            std::vector<std::string> agents;
            for (const auto& ref : platform.kubernetes) {
                kubernetes.push_back(ref.str());
            }
            for (const auto& ref : platform.agents) {
                agents.push_back(ref.str());
            }
            platforms.push_back({{"arch", std::string(platform.arch.name())},
                                 {"base", platform.base.str()},
                                 {"kubernetes", kubernetes},
                                 {"agents", agents}});
        }
        images_json.push_back({{"kubernetes_version", image.kubernetes_version},
                               {"tag", image.tag},
                               {"reference", image.reference},
                               {"platforms", platforms}});
    }
    return {{"distribution", distribution},
            {"agent_version", agent_version},
            {"fips", fips},
            {"layout", layout.string()},
            {"etc_overlay", etc_overlay ? nlohmann::json(etc_overlay->string()) : nlohmann::json()},
            {"edge_custom_config",
             edge_custom_config ? nlohmann::json(edge_custom_config->string()) : nlohmann::json()},
            {"push", push},
            {"images", images_json},
            {"uki", uki ? nlohmann::json{{"keys", uki->keys.directory.string()},
                                         {"keys_layout", uki->keys.layout},
                                         {"title", uki->title},
                                         {"secure_boot_enroll", uki->secure_boot_enroll},
                                         {"max_efi_size", uki->max_efi_size}}
                        : nlohmann::json()}};
}

ProviderPlan plan_provider(const Config& config, bool push, const stdfs::path& keys_directory) {
    Diagnostics diagnostics;
    ProviderPlan plan;
    plan.project_dir = project_directory(config);
    if (config.boolean("iso.uki")) {
        // CanvOS's IS_UKI=true provider image (+uki-provider-image): the signed UKIs of the
        // provider rootfs for Trusted Boot upgrades, never a plain image in its place.
        ProviderUki uki;
        uki.keys = plan_uki_keys(
            keys_directory, plan.project_dir.empty() ? stdfs::current_path() : plan.project_dir,
            diagnostics);
        check_one_line(config, "uki.branding", diagnostics);
        uki.title = config.string("uki.branding");
        uki.secure_boot_enroll = config.string("uki.secure_boot_enroll");
        uki.max_efi_size = config.size("uki.max_efi_size");
        plan.uki = std::move(uki);
    }
    plan.os_distribution = config.string("os.distribution");
    plan.os_version = config.string("os.version");
    plan.agent_version = config.string("agent.version");
    plan.fips = config.boolean("fips");
    plan.http_proxy = config.string("proxy.http");
    plan.https_proxy = config.string("proxy.https");
    plan.no_proxy = config.string("proxy.no_proxy");
    plan.source_url = config.string("provider.source");
    plan.cache_dir = config.path("cache_dir");
    plan.unpacked_layer_cache = config.boolean("unpacked_layer_cache");
    plan.block_cache_bytes = config.size("block_cache_size");
    plan.registry = registry_options(config);
    plan.remote_cache = remote_cache_settings(config, plan.registry, diagnostics);
    plan.push = push;
    if (config.get("source_date_epoch").is_set()) {
        plan.source_date_epoch = config.integer("source_date_epoch");
    }

    if (!config.get("kubernetes.distribution").is_set()) {
        diagnostics.error(SourceLocation{"kubernetes.distribution"},
                          "no Kubernetes distribution: set kubernetes.distribution in "
                          "edgeforge.yaml, K8S_DISTRIBUTION in .arg, or --k8s-distribution (k3s, "
                          "rke2, kubeadm, kubeadm-fips, canonical, nodeadm)");
    }
    plan.distribution = config.string("kubernetes.distribution");
    plan.fips = plan.fips || plan.distribution == "kubeadm-fips";

    std::vector<std::string> versions;
    for (const auto& version : config.list("kubernetes.versions")) {
        versions.push_back(normalise_version(version));
    }
    if (config.get("kubernetes.versions_file").is_set() && !plan.distribution.empty()) {
        const stdfs::path file = config.path("kubernetes.versions_file");
        const std::vector<std::string> allowed =
            read_versions_file(file, plan.distribution, diagnostics);
        if (versions.empty()) {
            versions = allowed;
        } else if (!allowed.empty()) {
            for (const auto& version : versions) {
                if (std::find(allowed.begin(), allowed.end(), version) == allowed.end()) {
                    diagnostics.error(
                        setting_location(config, "kubernetes.versions"),
                        fmt::format("Kubernetes version {} is not in {} ({}: {}); pick one of "
                                    "those or add it to the file",
                                    version, file.string(), plan.distribution,
                                    util::join(allowed, ", ")));
                }
            }
        }
    } else if (versions.empty()) {
        diagnostics.error(SourceLocation{"kubernetes.versions"},
                          "no Kubernetes version: set kubernetes.versions in edgeforge.yaml, "
                          "K8S_VERSION in .arg, --k8s-version (repeat for a matrix), or a "
                          "versions file (--k8s-versions-file) to build all of its versions");
    }

    const std::vector<std::string> artifacts = config.images("kubernetes.artifacts");
    if (artifacts.empty()) {
        diagnostics.error(SourceLocation{"kubernetes.artifacts"},
                          "no Kubernetes layer: set kubernetes.artifacts in edgeforge.yaml or "
                          "--k8s-artifact to the image, tar: or dir: artifact holding the "
                          "distribution (e.g. oci:k8s/{distribution}-{version}-{arch} or "
                          "dir:k8s/{distribution}/{version}; the placeholders are replaced for "
                          "each image)");
    }
    if (!config.get("base.image").is_set()) {
        diagnostics.error(SourceLocation{"base.image"},
                          "no base image: set base.image in edgeforge.yaml, BASE_IMAGE in .arg, "
                          "EDGEFORGE_BASE_IMAGE, or pass --base (e.g. --base oci:images/base)");
    }

    std::vector<Arch> arches;
    for (const auto& name : config.list("provider.arches")) {
        const Arch arch = *Arch::parse(name); // the setting's type checked it
        if (std::find(arches.begin(), arches.end(), arch) == arches.end()) {
            arches.push_back(arch);
        }
    }
    if (arches.empty()) {
        arches = config.arches(); // a multi-arch build's arches, else --arch
    }
    if (arches.empty()) {
        arches.push_back(config.arch());
    }

    const std::string registry = config.string("provider.registry");
    const std::string repository = config.string("provider.repository");
    if (!registry.empty() && !repository.empty()) {
        std::string host = registry;
        while (host.ends_with('/')) {
            host.pop_back();
        }
        plan.repository_prefix = fmt::format("{}/{}", host, repository);
    } else if (!repository.empty()) {
        plan.repository_prefix = repository;
    }
    if (push && plan.repository_prefix.empty()) {
        diagnostics.error(SourceLocation{"--push"},
                          "--push needs somewhere to push: set IMAGE_REGISTRY and IMAGE_REPO "
                          "(.arg), provider.registry and provider.repository, or --registry and "
                          "--repository");
    }

    if (config.get("edge_custom_config").is_set()) {
        plan.edge_custom_config = config.path("edge_custom_config");
    }
    const stdfs::path overlay = config.path("overlays.rootfs");
    std::error_code ec;
    if (!overlay.empty() && stdfs::is_directory(overlay / "etc", ec)) {
        plan.etc_overlay = overlay / "etc";
    }
    const stdfs::path output_dir = config.path("output_dir");
    plan.layout = output_dir / std::string(k_provider_images_directory);
    check_output_dir(output_dir, setting_location(config, "output_dir"), diagnostics);

    // Agent images without a tag take the agent version, as for the installer.
    const bool agent_version_set = config.get("agent.version").origin != Origin::default_value;
    const std::string custom_tag = config.string("provider.custom_tag");
    std::vector<std::string> arch_names;
    for (const Arch arch : arches) {
        arch_names.emplace_back(arch.name());
    }
    for (const auto& version : versions) {
        // This image's problems, so that one bad setting shared by the whole matrix (a
        // repository name with a capital letter) is one error with a count, not one per tag.
        Diagnostics image_problems;
        ProviderImagePlan image;
        image.kubernetes_version = version;
        image.tag = tag_text(fmt::format("{}-{}-{}{}", plan.distribution, version,
                                         plan.agent_version,
                                         custom_tag.empty() ? "" : "-" + custom_tag));
        if (!plan.repository_prefix.empty()) {
            image.reference = plan.repository_prefix + ":" + image.tag;
            if (auto parsed = parse_image(image.reference, setting_location(config,
                                                                            "provider.repository"),
                                          image_problems);
                parsed && !parsed->is_registry()) {
                image_problems.error(setting_location(config, "provider.repository"),
                                  fmt::format("{} is not a registry reference", image.reference));
            }
        }
        for (const Arch arch : arches) {
            ProviderPlatform platform;
            platform.arch = arch;
            if (config.get("base.image").is_set()) {
                if (auto base = parse_image(
                        expand_image_placeholders(config.image("base.image"), plan.distribution, version, arch),
                        setting_location(config, "base.image"), image_problems)) {
                    platform.base = *base;
                }
            }
            for (const auto& text : artifacts) {
                if (auto artifact =
                        parse_image(expand_image_placeholders(text, plan.distribution, version, arch),
                                    setting_location(config, "kubernetes.artifacts"), image_problems)) {
                    platform.kubernetes.push_back(*artifact);
                }
            }
            for (const auto& text : config.images("agent.images")) {
                if (auto agent = parse_image(expand_image_placeholders(text, plan.distribution, version, arch),
                                             setting_location(config, "agent.images"),
                                             image_problems)) {
                    if (agent_version_set && agent->unversioned()) {
                        agent->tag = plan.agent_version;
                        agent->tag_implied = false;
                    }
                    platform.agents.push_back(*agent);
                }
            }
            image.platforms.push_back(std::move(platform));
        }
        std::vector<std::string> names = arch_names;
        names.push_back(image.tag);
        names.push_back(version);
        diagnostics.absorb_for_item(image_problems, names, "provider images");
        plan.images.push_back(std::move(image));
    }
    diagnostics.throw_if_any();
    return plan;
}

std::string render_provider_plan(const ProviderPlan& plan) {
    std::vector<std::string> versions;
    for (const auto& image : plan.images) {
        versions.push_back(image.kubernetes_version);
    }
    std::string out = fmt::format("provider images: {} {}, agent {}{}, into {}\n",
                                  plan.distribution, util::join(versions, ", "),
                                  plan.agent_version, plan.fips ? ", FIPS" : "",
                                  plan.layout.string());
    for (const auto& image : plan.images) {
        out += fmt::format("  {}{}\n", image.tag,
                           image.reference.empty() ? "" : "  ->  " + image.reference +
                                                              (plan.push ? " (push)" : ""));
        for (const auto& platform : image.platforms) {
            std::vector<std::string> layers{platform.base.str()};
            for (const auto& ref : platform.kubernetes) {
                layers.push_back(ref.str());
            }
            for (const auto& ref : platform.agents) {
                layers.push_back(ref.str());
            }
            if (plan.etc_overlay) {
                layers.push_back(plan.etc_overlay->string() + " -> /etc");
            }
            if (plan.edge_custom_config) {
                layers.push_back(plan.edge_custom_config->string() +
                                 " -> /oem/.edge_custom_config.yaml");
            }
            layers.push_back("metadata " + std::string(k_release_file));
            if (plan.uki) {
                layers.push_back("/trusted-boot (signed UKI of all that)");
            }
            out += fmt::format("    {}: {}\n", platform.arch.name(), util::join(layers, " + "));
        }
    }
    if (plan.uki) {
        out +=
            fmt::format("  Trusted Boot: norole.efi signed with {} ({} layout), "
                        "secure-boot-enroll {}, at most {} (uki.max_efi_size)\n",
                        plan.uki->keys.directory.string(), plan.uki->keys.layout,
                        plan.uki->secure_boot_enroll, util::format_bytes(plan.uki->max_efi_size));
    }
    return out;
}

std::vector<MetadataFile> provider_metadata_files(const ProviderPlan& plan,
                                                  const ProviderImagePlan& image, Arch arch,
                                                  const std::string& build_id) {
    std::vector<MetadataFile> files;
    std::string release;
    const std::pair<std::string_view, std::string> fields[] = {
        {"EDGEFORGE_PROVIDER", "1"},
        {"OS_DISTRIBUTION", plan.os_distribution},
        {"OS_VERSION", plan.os_version},
        {"K8S_DISTRIBUTION", plan.distribution},
        {"K8S_VERSION", image.kubernetes_version},
        {"AGENT_VERSION", plan.agent_version},
        {"ARCH", std::string(arch.name())},
        {"FIPS", plan.fips ? "true" : "false"},
        {"IMAGE_TAG", image.tag},
        {"IMAGE", image.reference},
        {"BUILD_ID", build_id},
    };
    for (const auto& [key, value] : fields) {
        release += fmt::format("{}={}\n", key, quoted(value));
    }
    files.push_back({std::string(k_release_file), release});
    if (auto defaults = kubernetes_defaults(plan.distribution)) {
        files.push_back(*defaults);
    }
    if (!plan.http_proxy.empty() || !plan.https_proxy.empty() || !plan.no_proxy.empty()) {
        std::string env;
        std::string systemd = "# Written by edgeforge: the build's proxy for every service.\n"
                              "[Manager]\n";
        for (const auto& [key, value] : {std::pair<std::string, std::string>{"HTTP_PROXY", plan.http_proxy},
                                         {"HTTPS_PROXY", plan.https_proxy},
                                         {"NO_PROXY", plan.no_proxy}}) {
            if (value.empty()) {
                continue;
            }
            env += fmt::format("{}={}\n{}={}\n", key, quoted(value), util::to_lower(key),
                               quoted(value));
            systemd += fmt::format("DefaultEnvironment={}\n",
                                   quoted(key + "=" + value) + " " +
                                       quoted(util::to_lower(key) + "=" + value));
        }
        files.push_back({"/etc/edgeforge/proxy.env", env});
        files.push_back({"/etc/systemd/system.conf.d/10-edgeforge-proxy.conf", systemd});
    }
    // CanvOS's sentinel for a provider image that carries Kubernetes and the agent provider
    // itself (rather than as systemd extensions): edgeforge's always do.
    files.push_back({std::string(k_bundled_sentinel), ""});
    return files;
}

nlohmann::json ProviderBuildResult::to_json() const {
    nlohmann::json images_json = nlohmann::json::array();
    for (const auto& image : images) {
        nlohmann::json entry = {{"tag", image.tag},
                                {"reference", image.reference},
                                {"digest", image.digest},
                                {"media_type", image.media_type},
                                {"arches", image.arches},
                                {"pushed", image.pushed},
                                {"profile_snippet", image.profile_snippet}};
        if (image.trusted_boot.is_array() && !image.trusted_boot.empty()) {
            entry["trusted_boot"] = image.trusted_boot;
        }
        images_json.push_back(std::move(entry));
    }
    return {{"layout", layout.string()}, {"images", images_json}};
}

namespace {

using ImageOpener = std::function<const oci::Image&(const oci::ImageReference&, Arch)>;

std::map<std::string, std::string> image_annotations(const ProviderPlan& plan,
                                                     const ProviderImagePlan& image,
                                                     std::int64_t created) {
    std::map<std::string, std::string> annotations{
        {"org.opencontainers.image.created", oci::rfc3339(created)},
        {"org.opencontainers.image.version", image.tag},
        {"org.opencontainers.image.title",
         image.reference.empty() ? image.tag : plan.repository_prefix},
        {"org.opencontainers.image.description",
         fmt::format("edgeforge provider image: {} {} with agent {}", plan.distribution,
                     image.kubernetes_version, plan.agent_version)},
    };
    if (!plan.source_url.empty()) {
        annotations["org.opencontainers.image.source"] = plan.source_url;
    }
    return annotations;
}

struct ComposedPlatform {
    oci::PlatformManifest manifest;
    nlohmann::json trusted_boot; // the UKI build summary, with Trusted Boot
};

// One platform of one image, composed into `layout`: base, Kubernetes and agent layers as they
// are, the /etc overlay and metadata layers, with Trusted Boot the signed UKI tree.
ComposedPlatform compose_platform(const ProviderPlan& plan, const ProviderImagePlan& image,
                                  const ProviderPlatform& platform, oci::LayoutWriter& layout,
                                  const std::map<std::string, std::string>& annotations,
                                  std::int64_t created, const ImageOpener& open,
                                  StepCache& cache, const oci::RegistryOptions& registry,
                                  const Console& console) {
    ComposedPlatform result;
    const stdfs::path& directory = layout.directory();
    console.info("provider {} ({}): composing {} + {} + {}", image.tag, platform.arch.name(),
                 platform.base.str(), plan.distribution + " " + image.kubernetes_version,
                 platform.agents.empty() ? std::string("no agent") : "agent");
    oci::ImageComposer composer(layout, created, plan.source_date_epoch);
    const oci::Image& base = open(platform.base, platform.arch);
    composer.add_image(base, project_relative(platform.base, plan.project_dir));
    for (const auto& reference : platform.kubernetes) {
        composer.add_image(open(reference, platform.arch),
                           project_relative(reference, plan.project_dir));
    }
    for (const auto& reference : platform.agents) {
        composer.add_image(open(reference, platform.arch),
                           project_relative(reference, plan.project_dir));
    }
    // The generated layers. With Trusted Boot they also go into a small image of their own (in
    // the cache's work directory), so that the UKI's root filesystem is every layer of this
    // image, merged as a build merges its inputs.
    std::optional<util::TempDir> uki_work;
    std::optional<oci::LayoutWriter> uki_layout;
    std::optional<oci::ImageComposer> generated;
    if (plan.uki) {
        uki_work.emplace(cache.work_dir(), "provider-uki-");
        uki_layout.emplace(uki_work->path() / "generated");
        generated.emplace(*uki_layout, created, plan.source_date_epoch);
    }
    const auto add_generated = [&](const fs::Tree& tree, const fs::SpillFile& spill,
                                   const std::string& created_by) {
        composer.add_tree(tree, spill, created_by);
        if (generated) {
            generated->add_tree(tree, spill, created_by);
        }
    };
    if (plan.etc_overlay) {
        fs::Tree etc;
        oci::apply_directory(*plan.etc_overlay, etc, oci::DirectoryOptions::overlay());
        fs::Tree tree;
        etc.root().mode = 0755;
        etc.root().mtime = created;
        tree.root().mtime = created;
        tree.root().children["etc"] = etc.root_ptr();
        add_generated(tree, fs::SpillFile(directory),
                      fmt::format("edgeforge: {} -> /etc",
                                  project_relative(*plan.etc_overlay, plan.project_dir)));
    }
    if (plan.edge_custom_config) {
        fs::Tree oem;
        oem.root().mtime = created;
        fs::SpillFile oem_spill(directory);
        add_file(oem, oem_spill, "/oem/.edge_custom_config.yaml",
                 read_small_file(*plan.edge_custom_config), created);
        add_generated(oem, oem_spill,
                      fmt::format("edgeforge: {} -> /oem/.edge_custom_config.yaml",
                                  project_relative(*plan.edge_custom_config, plan.project_dir)));
    }
    // The build id is derived from every input layer, so equal inputs give equal ids.
    const std::string build_id =
        util::sha256_hex(fmt::format("{}\n{}\n{}\n{}", util::join(composer.layer_digests(), "\n"),
                                     plan.distribution, image.kubernetes_version,
                                     platform.arch.name()))
            .substr(0, 16);
    fs::Tree metadata;
    metadata.root().mtime = created;
    fs::SpillFile spill(directory);
    for (const auto& file : provider_metadata_files(plan, image, platform.arch, build_id)) {
        add_file(metadata, spill, file.path, file.content, created);
    }
    add_generated(metadata, spill, "edgeforge: provider metadata");
    if (plan.uki) {
        uki_layout->tag(generated->finish({.arch = platform.arch, .variant = base.platform.variant}),
                        "generated");
        uki_layout->commit();
        nlohmann::json uki_summary;
        const stdfs::path tree =
            build_provider_uki(plan, image, platform, registry, uki_layout->directory(),
                               uki_work->path(), console, uki_summary);
        result.trusted_boot = std::move(uki_summary);
        fs::Tree boot;
        oci::apply_directory(tree, boot, oci::DirectoryOptions::overlay());
        boot.root().mode = 0755;
        boot.root().mtime = created;
        fs::Tree layer;
        layer.root().mtime = created;
        layer.root().children[std::string(k_trusted_boot_directory)] = boot.root_ptr();
        // The UKIs hold a zstd initrd: gzip level 1, as for other compressed data.
        composer.add_tree(layer, fs::SpillFile(directory),
                          "edgeforge: signed UKI -> /" + std::string(k_trusted_boot_directory),
                          1);
    }

    oci::ImageComposer::Finish finish{.arch = platform.arch, .variant = base.platform.variant};
    if (base.config.is_object() && base.config.contains("config")) {
        finish.base_config = base.config["config"];
    }
    finish.annotations = annotations;
    if (!base.manifest_digest.empty()) {
        finish.annotations["org.opencontainers.image.base.digest"] = base.manifest_digest;
    }
    finish.annotations["org.opencontainers.image.base.name"] = platform.base.str();
    finish.labels = annotations;
    finish.labels["io.edgeforge.kubernetes.distribution"] = plan.distribution;
    finish.labels["io.edgeforge.kubernetes.version"] = image.kubernetes_version;
    finish.labels["io.edgeforge.agent.version"] = plan.agent_version;
    finish.labels["io.edgeforge.fips"] = plan.fips ? "true" : "false";
    finish.labels["io.edgeforge.build-id"] = build_id;
    if (!plan.os_distribution.empty()) {
        finish.labels["io.edgeforge.os.distribution"] = plan.os_distribution;
    }
    if (!plan.os_version.empty()) {
        finish.labels["io.edgeforge.os.version"] = plan.os_version;
    }
    result.manifest =
        oci::PlatformManifest{composer.finish(finish), platform.arch, base.platform.variant};
    return result;
}

} // namespace

ProviderBuildResult build_provider(const ProviderPlan& plan, const Console& console) {
    StepCache cache(plan.cache_dir / "steps");
    oci::OpenOptions open_options;
    open_options.work_dir = cache.work_dir();
    open_options.cache_dir = plan.cache_dir;
    open_options.registry = plan.registry;
    // The build's proxy settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) are used for its pulls and
    // pushes too, as a Docker build would.
    if (open_options.registry.proxy.empty()) {
        open_options.registry.proxy = plan.https_proxy.empty() ? plan.http_proxy : plan.https_proxy;
    }
    if (open_options.registry.no_proxy.empty()) {
        open_options.registry.no_proxy = plan.no_proxy;
    }
    show_pull_progress(open_options, console);
    // Each reference is opened once per arch, however many versions use it: a registry image
    // costs manifest requests, an archive an extraction.
    std::map<std::pair<std::string, std::string>, oci::Image> opened;
    const ImageOpener open = [&](const oci::ImageReference& reference,
                                 Arch arch) -> const oci::Image& {
        const auto key = std::make_pair(reference.str(), std::string(arch.name()));
        auto found = opened.find(key);
        if (found == opened.end()) {
            found = opened.emplace(key, oci::open_image(reference, arch, open_options)).first;
        }
        return found->second;
    };

    const std::int64_t created = plan.source_date_epoch.value_or(std::time(nullptr));
    ProviderBuildResult result;
    result.layout = plan.layout;
    if (plan.stage == ProviderStage::platforms) {
        // Each platform into a layout of its own, which the assemble stage joins.
        result.layout = plan.layout.parent_path() / k_provider_platforms_directory;
        if (plan.push) {
            console.info("provider images: the assemble stage pushes them (`edgeforge build all "
                         "--assemble --push`), once it has joined their platforms");
        }
        for (const auto& image : plan.images) {
            const auto annotations = image_annotations(plan, image, created);
            for (const auto& platform : image.platforms) {
                const stdfs::path directory =
                    provider_platform_layout(plan, image, platform.arch);
                FreshLayoutGuard fresh(directory);
                oci::LayoutWriter layout(directory);
                ComposedPlatform composed =
                    compose_platform(plan, image, platform, layout, annotations, created, open,
                                     cache, open_options.registry, console);
                layout.tag(composed.manifest.manifest, image.tag);
                layout.commit();
                write_platform_inputs(plan, image, platform);
                fresh.keep();
                ProviderImageResult built;
                built.tag = image.tag;
                built.arches = {std::string(platform.arch.name())};
                built.digest = composed.manifest.manifest.digest;
                built.media_type = composed.manifest.manifest.media_type;
                built.reference = fmt::format("oci:{}:{}", directory.string(), image.tag);
                if (!composed.trusted_boot.is_null()) {
                    built.trusted_boot = nlohmann::json::array({composed.trusted_boot});
                }
                result.images.push_back(std::move(built));
            }
        }
        return result;
    }

    // A layout this build creates is removed again when the build fails or is interrupted, so
    // no layout without index.json is left under the final name. An existing layout keeps its
    // index.json (written only by commit()); blobs a failed build added to it are unreferenced.
    FreshLayoutGuard fresh(plan.layout);
    oci::LayoutWriter layout(plan.layout);
    for (const auto& image : plan.images) {
        const auto annotations = image_annotations(plan, image, created);
        std::vector<oci::PlatformManifest> manifests;
        nlohmann::json trusted_boot = nlohmann::json::array();
        for (const auto& platform : image.platforms) {
            if (plan.stage == ProviderStage::assemble) {
                console.info("provider {} ({}): adding the platform the build stage composed",
                             image.tag, platform.arch.name());
                manifests.push_back(adopt_platform(plan, image, platform, layout));
                continue;
            }
            ComposedPlatform composed =
                compose_platform(plan, image, platform, layout, annotations, created, open, cache,
                                 open_options.registry, console);
            manifests.push_back(composed.manifest);
            if (!composed.trusted_boot.is_null()) {
                trusted_boot.push_back(std::move(composed.trusted_boot));
            }
        }
        ProviderImageResult built;
        built.tag = image.tag;
        built.trusted_boot = std::move(trusted_boot);
        for (const auto& manifest : manifests) {
            built.arches.emplace_back(manifest.arch.name());
        }
        const oci::BlobDescriptor tagged = manifests.size() == 1
                                               ? manifests.front().manifest
                                               : oci::write_index(layout, manifests, annotations);
        layout.tag(tagged, image.tag);
        built.digest = tagged.digest;
        built.media_type = tagged.media_type;
        built.reference = image.reference.empty()
                              ? fmt::format("oci:{}:{}", plan.layout.string(), image.tag)
                              : image.reference;
        built.profile_snippet = cluster_profile_snippet(built.reference);
        result.images.push_back(std::move(built));
    }
    layout.commit();
    fresh.keep();

    if (plan.push) {
        oci::PushOptions push;
        push.on_progress = [&console](const std::string& line) { console.detail("{}", line); };
        for (auto& image : result.images) {
            const oci::PushResult pushed =
                oci::push_layout(plan.layout, image.tag, oci::parse_reference(image.reference),
                                 open_options.registry, push);
            image.pushed = true;
            console.info("provider {}: pushed {}@{} ({} blobs uploaded, {} already there)",
                         image.tag, image.reference, pushed.digest, pushed.uploaded,
                         pushed.skipped);
        }
    }
    if (plan.stage == ProviderStage::assemble) {
        // Joined (and pushed): the output directory is a whole build's. A failed push leaves
        // them, so that `--assemble --push` can run again.
        remove_platform_layouts(plan);
    }
    return result;
}

} // namespace edgeforge
