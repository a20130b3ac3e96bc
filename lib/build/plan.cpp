// The build plan: every input of a build resolved and checked before any work starts.
#include "build/plan.h"

#include <algorithm>
#include <fstream>
#include <system_error>

#include <unistd.h>

#include "build/content_outputs.h"
#include "content/parts.h"
#include "userdata/merge.h"
#include "userdata/validate.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

SourceLocation setting_location(const Config& config, std::string_view key) {
    const auto& value = config.get(key);
    if (value.origin == Origin::default_value) {
        return SourceLocation{fmt::format("{} (default)", key)};
    }
    return value.location;
}

void check_output_dir(const stdfs::path& directory, const SourceLocation& where,
                      Diagnostics& diagnostics) {
    // The nearest existing ancestor must be a writable directory: that is where edgeforge will
    // create the output directory and its temporaries.
    stdfs::path probe = directory;
    std::error_code ec;
    while (!probe.empty() && !stdfs::exists(probe, ec)) {
        probe = probe.parent_path();
    }
    if (probe.empty()) {
        probe = ".";
    }
    if (!stdfs::is_directory(probe, ec)) {
        diagnostics.error(where, fmt::format("output directory {}: {} is not a directory",
                                             directory.string(), probe.string()));
    } else if (::access(probe.c_str(), W_OK | X_OK) != 0) {
        diagnostics.error(where, fmt::format("output directory {} is not writable (no write "
                                             "permission on {}); choose another with --output-dir",
                                             directory.string(), probe.string()));
    }
}

std::string expand_image_placeholders(std::string text, std::string_view distribution,
                                      std::string_view version, Arch arch) {
    const std::pair<std::string_view, std::string_view> values[] = {
        {"{distribution}", distribution}, {"{version}", version}, {"{arch}", arch.name()}};
    for (const auto& [placeholder, value] : values) {
        if (value.empty()) {
            continue;
        }
        for (auto at = text.find(placeholder); at != std::string::npos;
             at = text.find(placeholder, at + value.size())) {
            text.replace(at, placeholder.size(), value);
        }
    }
    return text;
}

namespace {

SourceLocation where_set(const Config& config, std::string_view key) {
    return setting_location(config, key);
}

bool readable_file(const stdfs::path& path) {
    std::error_code ec;
    return stdfs::is_regular_file(path, ec) && ::access(path.c_str(), R_OK) == 0;
}

// An optional directory input: absent is fine when it is the default, an error when the user
// named it (resolve_config already checked that), and a non-directory is always an error.
std::optional<stdfs::path> optional_directory(const Config& config, std::string_view key,
                                           Diagnostics& diagnostics) {
    const stdfs::path path = config.path(key);
    std::error_code ec;
    if (path.empty() || !stdfs::exists(path, ec)) {
        return std::nullopt;
    }
    if (!stdfs::is_directory(path, ec)) {
        diagnostics.error(
            where_set(config, key),
            fmt::format("{} must be a directory, but {} is a file", key, path.string()));
        return std::nullopt;
    }
    if (::access(path.c_str(), R_OK | X_OK) != 0) {
        diagnostics.error(where_set(config, key),
                          fmt::format("{} directory {} is not readable; check its permissions", key,
                                      path.string()));
        return std::nullopt;
    }
    return path;
}

// A split bundle's index must be readable and its parts all there with their sizes; parts
// bigger than --split-size would not fit where the ISO's own split parts fit.
void check_split_bundle(const stdfs::path& index_file, std::uint64_t split_size,
                        const SourceLocation& where, Diagnostics& diagnostics) {
    content::PartsIndex index;
    try {
        index = content::PartsIndex::read(index_file);
    } catch (const Error& error) {
        diagnostics.error(where, error.what());
        return;
    }
    for (const auto& part : index.parts) {
        const stdfs::path file = index_file.parent_path() / part.name;
        std::error_code ec;
        const auto size = stdfs::file_size(file, ec);
        if (ec || !readable_file(file)) {
            diagnostics.error(where, fmt::format("content bundle {}: its part {} is missing; copy "
                                                 "every part next to the index",
                                                 index_file.string(), file.string()));
        } else if (size != part.size) {
            diagnostics.error(where, fmt::format("content bundle {}: its part {} is {} bytes, "
                                                 "the index says {}; copy it again",
                                                 index_file.string(), file.string(), size,
                                                 part.size));
        } else if (split_size != 0 && size > split_size) {
            diagnostics.error(
                where, fmt::format("content bundle {} is split into parts of up to {}, more than "
                                   "the ISO's split size {}; split it again with `edgeforge "
                                   "content build --split-size {}`",
                                   index_file.string(), util::format_bytes(index.split_size),
                                   util::format_bytes(split_size), split_size));
        }
    }
}

bool is_site_file(const stdfs::path& path) {
    const std::string extension = path.extension().string();
    return (extension == ".yaml" || extension == ".yml") &&
           !path.filename().string().starts_with(".");
}

// Merges and validates every site file now, so a broken one is known before any work starts;
// its error is kept with the site, which fails alone while the others are built.
void plan_sites(IsoPlan& plan, const SourceLocation& where, Diagnostics& diagnostics) {
    const stdfs::path& directory = *plan.sites_dir;
    std::error_code ec;
    if (!stdfs::is_directory(directory, ec)) {
        diagnostics.error(where, fmt::format("sites directory {} {}", directory.string(),
                                             stdfs::exists(directory, ec) ? "is not a directory"
                                                                       : "does not exist"));
        return;
    }
    std::vector<stdfs::path> files;
    for (const auto& entry : stdfs::directory_iterator(directory, ec)) {
        if (is_site_file(entry.path()) && !entry.is_directory()) {
            files.push_back(entry.path());
        }
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        diagnostics.error(where, fmt::format("sites directory {} has no site files; add one "
                                             "NAME.yaml per site (see templates/sites/)",
                                             directory.string()));
        return;
    }
    if (!readable_file(plan.user_data)) {
        return; // already reported; nothing to merge over
    }
    const std::string org_text = util::read_file(plan.user_data);
    for (const auto& file : files) {
        SitePlan site;
        site.file = file;
        site.name = file.stem().string();
        try {
            const auto site_char = [](char c) {
                return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
            };
            if (site.name.empty() || site.name.size() > 63 || !site_char(site.name[0]) ||
                site.name[0] == '.' || site.name[0] == '_' || site.name[0] == '-' ||
                !std::all_of(site.name.begin(), site.name.end(), site_char)) {
                throw bad_input("{}: the site name '{}' (from the file name) may only use "
                                "letters, digits, '.', '_' and '-' (at most 63); rename the file",
                                file.string(), site.name);
            }
            const userdata::MergedUserData merged = userdata::merge_user_data(
                org_text, plan.user_data.string(), util::read_file(file), file.string());
            const userdata::Report report = userdata::validate_merged(merged, file.string());
            std::vector<std::string> errors;
            for (const auto& finding : report.findings) {
                std::string message = fmt::format(
                    "{}: {}", finding.location.str(),
                    finding.key.empty() ? finding.message : finding.key + ": " + finding.message);
                if (!finding.hint.empty()) {
                    message += " (" + finding.hint + ")";
                }
                (finding.severity == userdata::Severity::error ? errors : site.warnings)
                    .push_back(std::move(message));
            }
            if (!errors.empty()) {
                throw bad_input("{}", util::join(errors, "\n"));
            }
            site.user_data = merged.text;
        } catch (const Error& error) {
            site.error = error.what();
        } catch (const std::system_error& error) {
            site.error = fmt::format("cannot read {}: {}", file.string(), error.code().message());
        }
        plan.sites.push_back(std::move(site));
    }
}

} // namespace

// See plan.h.
std::vector<stdfs::path> discover_bundles(const stdfs::path& project_dir) {
    std::vector<stdfs::path> bundles;
    std::error_code ec;
    for (const auto& entry : stdfs::directory_iterator(project_dir, ec)) {
        if (!entry.is_directory() || !entry.path().filename().string().starts_with("content-")) {
            continue;
        }
        for (const auto& file : stdfs::directory_iterator(entry.path(), ec)) {
            if (!file.is_regular_file()) {
                continue;
            }
            const stdfs::path archive = content::archive_of_parts_index(file.path());
            if (archive.string().ends_with(".zst") &&
                (archive == file.path() || !stdfs::exists(archive, ec))) {
                bundles.push_back(file.path());
            }
        }
    }
    std::sort(bundles.begin(), bundles.end());
    return bundles;
}


oci::RegistryOptions registry_options(const Config& config) {
    oci::RegistryOptions options;
    if (config.get("registry.ca_cert").is_set()) {
        options.ca_cert = config.path("registry.ca_cert");
    }
    if (config.get("registry.certs_dir").is_set()) {
        options.certs_d_roots = {config.path("registry.certs_dir")};
    }
    options.insecure_hosts = util::split_list(config.string("registry.insecure"));
    options.request_timeout = std::chrono::seconds(config.integer("registry.timeout"));
    options.low_speed_time = std::chrono::seconds(config.integer("registry.stall_timeout"));
    if (config.get("registry.creds").is_set()) {
        options.credentials = oci::parse_credentials_option(config.string("registry.creds"));
    }
    return options;
}

RemoteCacheSettings remote_cache_settings(const Config& config,
                                          const oci::RegistryOptions& registry,
                                          Diagnostics& diagnostics) {
    RemoteCacheSettings settings;
    settings.registry = registry;
    settings.push_private = config.boolean("cache.push_private");
    const auto read = [&](std::string_view key) -> std::optional<oci::ImageReference> {
        if (!config.get(key).is_set() || config.image(key).empty()) {
            return std::nullopt;
        }
        const SourceLocation where = where_set(config, key);
        try {
            return parse_cache_reference(config.image(key));
        } catch (const Error& error) {
            diagnostics.error(where, error.what());
            return std::nullopt;
        }
    };
    settings.from = read("cache.from");
    settings.to = read("cache.to");
    if (const auto both = read("cache.remote")) {
        if (!settings.from) {
            settings.from = both;
        }
        if (!settings.to) {
            settings.to = both;
        }
    }
    return settings;
}

IsoPlan plan_iso(const Config& config) {
    Diagnostics diagnostics;
    IsoPlan plan;
    plan.arch = config.arch();
    plan.name = config.string("name");
    plan.output_dir = config.path("output_dir");
    plan.cache_dir = config.path("cache_dir");
    plan.unpacked_layer_cache = config.boolean("unpacked_layer_cache");
    plan.block_cache_bytes = config.size("block_cache_size");
    plan.registry = registry_options(config);
    plan.remote_cache = remote_cache_settings(config, plan.registry, diagnostics);
    plan.project_dir = project_directory(config);

    if (!config.get("base.image").is_set()) {
        diagnostics.error(SourceLocation{"base.image"},
                          "no base image: set base.image in edgeforge.yaml, BASE_IMAGE in .arg, "
                          "EDGEFORGE_BASE_IMAGE, or pass --base (e.g. --base oci:images/base)");
    } else if (auto base = parse_image(expand_image_placeholders(config.image("base.image"), {}, {}, plan.arch),
                                       where_set(config, "base.image"),
                                       diagnostics)) {
        plan.base = *base;
    }
    // An agent image written without a tag takes the agent version (INSTALLER_VERSION) as its
    // tag, so one setting moves every agent image to a release.
    const bool agent_version_set = config.get("agent.version").origin != Origin::default_value;
    for (const auto& text : config.images("agent.images")) {
        if (auto agent = parse_image(expand_image_placeholders(text, {}, {}, plan.arch),
                                     where_set(config, "agent.images"), diagnostics)) {
            if (agent_version_set && agent->unversioned()) {
                agent->tag = config.string("agent.version");
                agent->tag_implied = false;
            }
            plan.agents.push_back(*agent);
        }
    }

    plan.user_data = config.path("user_data");
    if (!readable_file(plan.user_data)) {
        diagnostics.error(where_set(config, "user_data"),
                          fmt::format("user-data file {} is missing or unreadable; every installer "
                                      "needs one (set user_data, USER_DATA_FILE or --user-data)",
                                      plan.user_data.string()));
    } else {
        // The same checks as `edgeforge validate user-data`: a typo in the user-data must stop
        // the build here, not surface when a site fails to register.
        const userdata::Report report = userdata::validate_file(plan.user_data);
        for (const auto& finding : report.findings) {
            std::string message =
                finding.key.empty() ? finding.message : finding.key + ": " + finding.message;
            if (!finding.hint.empty()) {
                message += " (" + finding.hint + ")";
            }
            if (finding.severity == userdata::Severity::error) {
                diagnostics.error(finding.location, message);
            } else {
                plan.warnings.push_back(finding.location.str() + ": " + message);
            }
        }
    }

    plan.rootfs_overlay = optional_directory(config, "overlays.rootfs", diagnostics);
    plan.iso_overlay = optional_directory(config, "overlays.iso", diagnostics);

    plan.content_bundles = config.paths("content.bundles");
    // content-*/*.zst in the project directory, and in the output directory where
    // `edgeforge content build` writes them (build/content-<name>/<name>.tar.zst).
    std::vector<stdfs::path> discovered = discover_bundles(plan.project_dir);
    for (auto& bundle : discover_bundles(plan.output_dir)) {
        discovered.push_back(std::move(bundle));
    }
    for (const auto& bundle : discovered) {
        const auto same = [&bundle](const stdfs::path& known) {
            std::error_code ec;
            return known == bundle || stdfs::equivalent(known, bundle, ec);
        };
        if (std::none_of(plan.content_bundles.begin(), plan.content_bundles.end(), same)) {
            plan.content_bundles.push_back(bundle);
        }
    }
    const std::vector<std::string> outputs = config.list("outputs");
    if (std::find(outputs.begin(), outputs.end(), "content") != outputs.end()) {
        for (const auto& bundle : configured_bundles(config)) {
            const stdfs::path directory = plan.output_dir / ("content-" + bundle.name);
            if (std::none_of(
                    plan.content_bundles.begin(), plan.content_bundles.end(),
                    [&](const stdfs::path& known) { return known.parent_path() == directory; })) {
                plan.pending_content_bundles.push_back(directory);
            }
        }
    }
    plan.split_size = config.size("iso.split_size");
    for (auto& bundle : plan.content_bundles) {
        if (const auto index = content::split_bundle_index(bundle)) {
            bundle = *index; // a split bundle goes on the ISO as its parts and their index
            check_split_bundle(bundle, plan.split_size, where_set(config, "content.bundles"),
                               diagnostics);
        } else if (!readable_file(bundle)) {
            diagnostics.error(
                where_set(config, "content.bundles"),
                fmt::format("content bundle {} is not a readable file", bundle.string()));
        }
    }
    if (config.get("edge_custom_config").is_set()) {
        plan.edge_custom_config = config.path("edge_custom_config");
        if (!readable_file(*plan.edge_custom_config)) {
            diagnostics.error(where_set(config, "edge_custom_config"),
                              fmt::format("edge custom config {} is not a readable file",
                                          plan.edge_custom_config->string()));
        }
    }
    if (config.get("local_ui").is_set()) {
        plan.local_ui = config.path("local_ui");
        if (!readable_file(*plan.local_ui)) {
            diagnostics.error(where_set(config, "local_ui"),
                              fmt::format("local UI archive {} is not a readable file",
                                          plan.local_ui->string()));
        }
    } else if (std::error_code ec;
               stdfs::is_regular_file(plan.project_dir / k_local_ui_file, ec)) {
        plan.local_ui = plan.project_dir / k_local_ui_file; // found, as CanvOS finds it
    }
    if (config.get("cluster_config").is_set()) {
        plan.cluster_config = config.path("cluster_config");
        if (!readable_file(*plan.cluster_config)) {
            diagnostics.error(where_set(config, "cluster_config"),
                              fmt::format("cluster config {} is not a readable file",
                                          plan.cluster_config->string()));
        }
    }

    // The value check allows only the compressors' names.
    plan.squashfs.compressor = *fs::parse_squashfs_compressor(config.string("squashfs.compression"));
    plan.squashfs.level = static_cast<int>(config.integer("squashfs.level"));
    plan.squashfs.block_size = static_cast<std::uint32_t>(config.size("squashfs.block_size"));
    plan.extra_cmdline = config.string("iso.extra_cmdline");
    plan.interactive_default = config.boolean("iso.interactive_default");
    plan.debug = config.boolean("iso.debug");
    if (config.get("source_date_epoch").is_set()) {
        plan.source_date_epoch = config.integer("source_date_epoch");
    }

    if (config.get("installer.image_name").is_set()) {
        if (auto image = parse_image(config.image("installer.image_name"),
                                     where_set(config, "installer.image_name"), diagnostics,
                                     ImageUse::output)) {
            if (image->transport == oci::Transport::oci_layout) {
                plan.installer_layout = stdfs::path(image->path);
                plan.installer_image = *image;
            } else if (image->is_registry()) {
                // The image is written as a layout next to the ISO, then pushed from there.
                plan.installer_layout = plan.output_dir / (plan.name + "-image");
                plan.installer_image = *image;
            } else {
                diagnostics.error(where_set(config, "installer.image_name"),
                                  fmt::format("IMAGE_NAME {} must be a registry reference "
                                              "(registry.example.com/edge/installer:v1) or an OCI "
                                              "layout (oci:DIR[:TAG])",
                                              image->str()));
            }
        }
    }
    check_output_dir(plan.output_dir, where_set(config, "output_dir"), diagnostics);
    if (config.get("sites").is_set()) {
        plan.sites_dir = config.path("sites");
        plan_sites(plan, where_set(config, "sites"), diagnostics);
    }
    diagnostics.throw_if_any();
    return plan;
}

std::string render_iso_plan(const IsoPlan& plan) {
    std::string out =
        plan.sites_dir
            ? fmt::format("plan: build {} site installers from {} for {}\n", plan.sites.size(),
                          plan.sites_dir->string(), plan.arch.name())
            : fmt::format("plan: build {} for {}\n", plan.iso_path().string(), plan.arch.name());
    out += fmt::format("  base            {}\n", plan.base.str());
    for (const auto& agent : plan.agents) {
        out += fmt::format("  agent           {}\n", agent.str());
    }
    out += fmt::format("  rootfs overlay  {}\n",
                       plan.rootfs_overlay ? plan.rootfs_overlay->string() : "(none)");
    out += fmt::format("  user-data       {} -> /config.yaml\n", plan.user_data.string());
    out += fmt::format("  ISO overlay     {}\n",
                       plan.iso_overlay ? plan.iso_overlay->string() : "(none)");
    for (const auto& bundle : plan.content_bundles) {
        out += fmt::format("  content bundle  {} -> /opt/spectrocloud/content/\n", bundle.string());
    }
    if (plan.cluster_config) {
        out += fmt::format("  cluster config  {} -> /opt/spectrocloud/clusterconfig/\n",
                           plan.cluster_config->string());
    }
    if (plan.local_ui) {
        out += fmt::format("  local UI        {} -> /opt/spectrocloud/ of the root filesystem\n",
                           plan.local_ui->string());
    }
    if (plan.edge_custom_config) {
        out += fmt::format("  edge config     {} -> /.edge_custom_config.yaml\n",
                           plan.edge_custom_config->string());
    }
    out +=
        fmt::format("  squashfs        {}{}, {} blocks\n",
                    fs::squashfs_compressor_name(plan.squashfs.compressor),
                    plan.squashfs.level != 0 ? fmt::format(" level {}", plan.squashfs.level) : "",
                    util::format_bytes(plan.squashfs.block_size));
    out += fmt::format("  timestamps      {}\n",
                       plan.source_date_epoch
                           ? fmt::format("SOURCE_DATE_EPOCH={}", *plan.source_date_epoch)
                           : std::string("build time"));
    if (plan.installer_image) {
        out += fmt::format("  installer image {} -> oci:{}\n", plan.installer_image->str(),
                           plan.installer_layout->string());
    }
    for (const auto& site : plan.sites) {
        out += fmt::format("  site {:<10} {} -> {}\n", site.name, site.file.string(),
                           site.error.empty() ? plan.site_iso_path(site).string()
                                              : "FAILS: " + site.error);
    }
    return out;
}

nlohmann::json IsoPlan::to_json() const {
    const auto path_list = [](const std::vector<stdfs::path>& paths) {
        std::vector<std::string> out;
        for (const auto& path : paths) {
            out.push_back(path.string());
        }
        return out;
    };
    std::vector<std::string> agent_refs;
    for (const auto& agent : agents) {
        agent_refs.push_back(agent.str());
    }
    nlohmann::json json{
        {"kind", "iso"},
        {"arch", arch.name()},
        {"name", name},
        {"output", iso_path().string()},
        {"checksum", checksum_path().string()},
        {"cache_dir", cache_dir.string()},
        {"unpacked_layer_cache", unpacked_layer_cache},
        {"block_cache_size", block_cache_bytes},
        {"remote_cache", remote_cache.to_json()},
        {"base", base.str()},
        {"agents", agent_refs},
        {"user_data", user_data.string()},
        {"rootfs_overlay", rootfs_overlay ? nlohmann::json(rootfs_overlay->string()) : nullptr},
        {"iso_overlay", iso_overlay ? nlohmann::json(iso_overlay->string()) : nullptr},
        {"content_bundles", path_list(content_bundles)},
        {"cluster_config", cluster_config ? nlohmann::json(cluster_config->string()) : nullptr},
        {"edge_custom_config",
         edge_custom_config ? nlohmann::json(edge_custom_config->string()) : nullptr},
        {"local_ui", local_ui ? nlohmann::json(local_ui->string()) : nullptr},
        {"squashfs",
         {{"compression", fs::squashfs_compressor_name(squashfs.compressor)},
          {"level", squashfs.level},
          {"block_size", squashfs.block_size}}},
        {"extra_cmdline", extra_cmdline},
        {"interactive_default", interactive_default},
        {"debug", debug},
        {"source_date_epoch", source_date_epoch ? nlohmann::json(*source_date_epoch) : nullptr},
        {"split_size", split_size},
        {"warnings", warnings},
    };
    if (installer_image) {
        json["installer_image"] = {{"reference", installer_image->str()},
                                   {"layout", installer_layout->string()}};
    }
    if (sites_dir) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& site : sites) {
            list.push_back({{"site", site.name},
                            {"file", site.file.string()},
                            {"output", site.error.empty()
                                           ? nlohmann::json(site_iso_path(site).string())
                                           : nlohmann::json(nullptr)},
                            {"error", site.error.empty() ? nlohmann::json(nullptr)
                                                         : nlohmann::json(site.error)},
                            {"warnings", site.warnings}});
        }
        json["sites_dir"] = sites_dir->string();
        json["sites"] = list;
    }
    return json;
}

std::optional<oci::ImageReference> parse_image(const std::string& text, const SourceLocation& where,
                                               Diagnostics& diagnostics, ImageUse use) {
    try {
        oci::ImageReference reference = oci::parse_reference(text);
        std::error_code ec;
        if (use == ImageUse::input && !reference.is_registry() &&
            !stdfs::exists(reference.path, ec)) {
            diagnostics.error(where, fmt::format("{}: {} does not exist", reference.str(),
                                                 reference.path));
            return std::nullopt;
        }
        return reference;
    } catch (const Error& error) {
        diagnostics.error(where, error.what());
        return std::nullopt;
    }
}

stdfs::path project_directory(const Config& config) {
    return config.files().empty() ? stdfs::current_path() : config.files().back().parent_path();
}

std::string project_relative(const stdfs::path& path, const stdfs::path& project_dir) {
    const stdfs::path relative = path.lexically_normal().lexically_relative(
        project_dir.lexically_normal());
    if (relative.empty() || *relative.begin() == "..") {
        return path.string();
    }
    return relative.string();
}

std::string project_relative(const oci::ImageReference& reference, const stdfs::path& project_dir) {
    if (reference.is_registry()) {
        return reference.str();
    }
    oci::ImageReference shown = reference;
    shown.path = project_relative(stdfs::path(reference.path), project_dir);
    return shown.str();
}

IsoPlan plan_iso(const Config& config, Diagnostics& diagnostics) {
    try {
        return plan_iso(config);
    } catch (const Error& error) {
        if (error.code() != ExitCode::bad_input) {
            throw;
        }
        diagnostics.absorb(error);
    }
    return {};
}

} // namespace edgeforge
