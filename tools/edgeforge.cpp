// The edgeforge command line: CLI11 parsing and dispatch to library calls, nothing more.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "content/bundle.h"
#include "build/config.h"
#include "base/console.h"
#include "build/doctor.h"
#include "base/error.h"
#include "build/plan.h"
#include "build/project.h"
#include "build/settings.h"
#include "base/version.h"
#include "build/disk.h"
#include "fs/tree.h"
#include "build/installer_image.h"
#include "build/iso.h"
#include "build/provider.h"
#include "build/site_media.h"
#include "inspect/artifact.h"
#include "oci/blob_cache.h"
#include "oci/image.h"
#include "oci/inspect.h"
#include "oci/merge.h"
#include "oci/registry.h"
#include "userdata/validate.h"
#include "util/fs.h"
#include "util/strings.h"

namespace {

using namespace edgeforge;

struct GlobalOptions {
    std::string config_file;
    std::string installer_env_file;
    std::string arg_file;
    bool json = false;
    bool verbose = false;
    bool quiet = false;
    bool no_progress = false;
    // Raw values of setting flags, keyed by setting key.
    std::map<std::string, std::vector<std::string>> setting_flags;
};

std::string flag_help(const Setting& setting) {
    std::string help(setting.help);
    if (!setting.allowed.empty()) {
        help += " {" + util::join(setting.allowed, ",") + "}";
    }
    std::vector<std::string> also;
    also.push_back(fmt::format("key {}", setting.key));
    if (!setting.env.empty()) {
        also.push_back(fmt::format("env {}", setting.env));
    }
    if (!setting.arg_name.empty()) {
        also.push_back(fmt::format(".arg {}", setting.arg_name));
    }
    if (!setting.installer_env_name.empty()) {
        also.push_back(fmt::format(".installer.env {}", setting.installer_env_name));
    }
    if (!setting.default_value.empty()) {
        also.push_back(fmt::format("default {}", setting.default_value));
    }
    return help + " (" + util::join(also, "; ") + ")";
}

std::string type_name(const Setting& setting) {
    switch (setting.type) {
    case SettingType::path:
        return "PATH";
    case SettingType::output_path:
        return "DIR";
    case SettingType::path_list:
        return "PATH[,PATH...]";
    case SettingType::image:
        return "IMAGE";
    case SettingType::image_list:
        return "IMAGE[,IMAGE...]";
    case SettingType::enumeration:
        return "VALUE";
    case SettingType::enumeration_list:
        return "VALUE[,VALUE...]";
    case SettingType::integer:
        return "N";
    case SettingType::size:
        return "SIZE";
    case SettingType::url:
        return "URL";
    case SettingType::version_list:
        return "VERSION[,VERSION...]";
    case SettingType::name:
        return "NAME";
    case SettingType::string:
    case SettingType::boolean:
        return "TEXT";
    }
    return "VALUE";
}

// Which settings a command takes as flags.
enum class FlagSelection {
    scoped, // settings whose scope intersects the command's scope
    every,  // every non-global setting (config show, validate config, doctor, build all)
};

void add_setting_flags(CLI::App& command, GlobalOptions& options, SettingScope scope,
                       FlagSelection selection = FlagSelection::scoped) {
    for (const auto& setting : settings_table()) {
        const bool global = (setting.scope & k_scope_global) != 0;
        const bool wanted =
            scope == k_scope_global
                ? global
                : !global && (selection == FlagSelection::every || (setting.scope & scope) != 0);
        if (!wanted || setting.flag.empty()) {
            continue;
        }
        auto& storage = options.setting_flags[std::string(setting.key)];
        const std::string name = "--" + std::string(setting.flag);
        CLI::Option* option = nullptr;
        if (setting.type == SettingType::boolean) {
            // "--fips" means true; "--fips=false" is accepted too.
            option = command.add_flag(name + "{true}", storage, flag_help(setting));
            option->default_str("");
        } else {
            const bool list = is_list_type(setting.type);
            option = command.add_option(name, storage, flag_help(setting));
            option->expected(1)->allow_extra_args(false);
            option->multi_option_policy(list ? CLI::MultiOptionPolicy::TakeAll
                                             : CLI::MultiOptionPolicy::TakeLast);
            option->type_name(type_name(setting));
        }
        option->group(global ? "Global options" : "Build settings");
    }
}

ConfigInputs config_inputs(const GlobalOptions& options) {
    ConfigInputs inputs;
    if (!options.config_file.empty()) {
        inputs.config_file = options.config_file;
    }
    if (!options.installer_env_file.empty()) {
        inputs.installer_env_file = options.installer_env_file;
    }
    if (!options.arg_file.empty()) {
        inputs.arg_file = options.arg_file;
    }
    for (const auto& [key, values] : options.setting_flags) {
        if (!values.empty()) {
            inputs.flags.push_back(FlagValue{key, values});
        }
    }
    return inputs;
}

// ---- Registry and cache commands ---------------------------------------------------------
// `--creds`, `cache ls|prune` and the hidden `image push`, kept in one block: the flags and
// commands of the registry client and the blob cache.

struct RegistryCommands {
    std::string creds; // USER:PASS; never printed
    CLI::App* cache_ls = nullptr;
    CLI::App* cache_prune = nullptr;
    std::string older_than;
    CLI::App* image_push = nullptr;
    std::string push_source;
    std::string push_destination;
    std::string chunk_size;
    std::vector<std::string> mount_from;
    CLI::App* image_merge = nullptr;
    std::string merge_source;
    bool merge_no_unpacked_cache = false;
};

void add_registry_commands(CLI::App& app, RegistryCommands& commands) {
    app.add_option("--creds", commands.creds,
                   "Registry credentials USER:PASSWORD (else REGISTRY_AUTH_FILE, "
                   "~/.docker/config.json and its credential helpers)")
        ->type_name("USER:PASS")
        ->group("Global options");
    auto* cache = app.add_subcommand("cache", "List or prune the blob and build-step cache");
    cache->require_subcommand(1);
    commands.cache_ls =
        cache->add_subcommand("ls", "List cached blobs and build steps with size and last use");
    commands.cache_prune =
        cache->add_subcommand("prune", "Remove cache entries (all, or those unused for a while)");
    commands.cache_prune
        ->add_option("--older-than", commands.older_than,
                     "Only entries last used longer ago than this (90m, 12h, 7d, 2w)")
        ->type_name("DURATION");
    // Hidden (no group): a test and scripting hook for pushing an OCI layout to a registry.
    auto* image = app.add_subcommand("image", "")->group("");
    image->require_subcommand(1);
    commands.image_push = image->add_subcommand("push", "Push an OCI layout image to a registry");
    commands.image_push->add_option("source", commands.push_source, "oci:DIR[:TAG]")->required();
    commands.image_push->add_option("destination", commands.push_destination, "docker://REF")
        ->required();
    commands.image_push->add_option("--chunk-size", commands.chunk_size,
                                    "Upload blobs larger than this in chunks (e.g. 1M)");
    commands.image_push->add_option("--mount-from", commands.mount_from,
                                    "Repository of the same registry to mount blobs from");
    // Hidden too: merges an image's layers into the in-memory tree and reports the throughput
    // (the layer-merge benchmark of `make bench`).
    commands.image_merge =
        image->add_subcommand("merge", "Merge an image's layers in memory and report the speed");
    commands.image_merge->add_option("source", commands.merge_source, "Image reference")
        ->required();
    commands.image_merge->add_flag("--no-unpacked-cache", commands.merge_no_unpacked_cache,
                                   "Inflate gzip layers even when their unpacked copy is cached "
                                   "(and keep none)");
}

// The registry options of the configuration plus --creds.
oci::RegistryOptions registry_options_for(const Config& config, const RegistryCommands& commands) {
    oci::RegistryOptions options = registry_options(config);
    if (!commands.creds.empty()) {
        options.credentials = oci::parse_credentials_option(commands.creds);
    }
    return options;
}

std::string age_text(std::filesystem::file_time_type when) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                             std::filesystem::file_time_type::clock::now() - when)
                             .count();
    if (seconds < 60) {
        return fmt::format("{}s ago", std::max<long long>(seconds, 0));
    }
    if (seconds < 3600) {
        return fmt::format("{}m ago", seconds / 60);
    }
    if (seconds < 86400) {
        return fmt::format("{}h ago", seconds / 3600);
    }
    return fmt::format("{}d ago", seconds / 86400);
}

nlohmann::json cache_entry_json(const oci::CacheEntry& entry) {
    const auto used = std::chrono::file_clock::to_sys(entry.last_used);
    return {{"kind", entry.kind_name()},
            {"name", entry.name},
            {"size", entry.size},
            {"last_used",
             std::chrono::duration_cast<std::chrono::seconds>(used.time_since_epoch()).count()},
            {"path", entry.path.string()}};
}

// Runs `cache ...` or `image push` when one was given; nullopt otherwise.
std::optional<int> run_registry_command(const RegistryCommands& commands,
                                        const GlobalOptions& options, const Console& console) {
    if (commands.cache_ls->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        const auto cache_dir = config.path("cache_dir");
        const oci::CacheListing listing = oci::list_cache(cache_dir);
        std::string text =
            fmt::format("{:<8} {:>10}  {:<9}  {}\n", "KIND", "SIZE", "LAST USED", "NAME");
        nlohmann::json entries = nlohmann::json::array();
        for (const auto& entry : listing.entries) {
            text +=
                fmt::format("{:<8} {:>10}  {:<9}  {}\n", entry.kind_name(),
                            util::format_bytes(entry.size), age_text(entry.last_used), entry.name);
            entries.push_back(cache_entry_json(entry));
        }
        text += fmt::format(
            "{}: blobs {}, unpacked layers {}, partial downloads {}, build steps {}; total {}\n",
            cache_dir.string(), util::format_bytes(listing.blob_bytes),
            util::format_bytes(listing.layer_bytes), util::format_bytes(listing.partial_bytes),
            util::format_bytes(listing.step_bytes), util::format_bytes(listing.total_bytes()));
        console.print(text);
        console.print_json({{"cache_dir", cache_dir.string()},
                            {"entries", entries},
                            {"blob_bytes", listing.blob_bytes},
                            {"layer_bytes", listing.layer_bytes},
                            {"partial_bytes", listing.partial_bytes},
                            {"step_bytes", listing.step_bytes},
                            {"total_bytes", listing.total_bytes()}});
        return 0;
    }
    if (commands.cache_prune->parsed()) {
        std::optional<std::chrono::seconds> older_than;
        if (!commands.older_than.empty()) {
            const auto seconds = util::parse_duration_seconds(commands.older_than);
            if (!seconds) {
                throw bad_input("--older-than: '{}' is not a duration; write a number and a unit "
                                "s, m, h, d or w (e.g. 7d, 12h)",
                                commands.older_than);
            }
            older_than = std::chrono::seconds(static_cast<std::int64_t>(*seconds));
        }
        const Config config = resolve_config(config_inputs(options));
        const auto cache_dir = config.path("cache_dir");
        const oci::PruneResult result = oci::prune_cache(cache_dir, older_than);
        nlohmann::json removed = nlohmann::json::array();
        for (const auto& entry : result.removed) {
            console.detail("removed {} {} ({})", entry.kind_name(), entry.name,
                           util::format_bytes(entry.size));
            removed.push_back(cache_entry_json(entry));
        }
        console.print(fmt::format(
            "{}: removed {} {} ({}), kept {}{}\n", cache_dir.string(), result.removed.size(),
            result.removed.size() == 1 ? "entry" : "entries",
            util::format_bytes(result.removed_bytes), result.kept,
            result.busy > 0 ? fmt::format(", {} in use by another edgeforge", result.busy)
                            : std::string()));
        console.print_json({{"cache_dir", cache_dir.string()},
                            {"removed", removed},
                            {"removed_bytes", result.removed_bytes},
                            {"kept", result.kept},
                            {"busy", result.busy}});
        return 0;
    }
    if (commands.image_merge->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        oci::OpenOptions open_options;
        open_options.cache_dir = config.path("cache_dir");
        open_options.registry = registry_options_for(config, commands);
        const oci::Image image = oci::open_image(oci::parse_reference(commands.merge_source),
                                                 config.arch(), open_options);
        std::filesystem::create_directories(open_options.cache_dir);
        util::TempDir work(open_options.cache_dir, "merge-");
        fs::Tree tree;
        fs::SpillFile spill(work.path());
        const auto started = std::chrono::steady_clock::now();
        oci::MergeOptions merge_options;
        if (!commands.merge_no_unpacked_cache) {
            merge_options.unpacked_layers = open_options.cache_dir;
        }
        const oci::MergeResult merged = oci::merge_layers(image, tree, spill, merge_options);
        spill.flush();
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        const auto& total = merged.total;
        const double mib = 1024.0 * 1024.0;
        console.print(fmt::format(
            "{}: {} layers ({} read unpacked from the cache, {} unpacked into it), {} entries, "
            "{} of layers -> {} of file data in {:.2f} s: {:.0f} MiB/s of layer data, {:.0f} "
            "MiB/s of file data\n",
            image.description, merged.layers.size(), total.cached_layers, total.unpacked_layers,
            total.entries,
            util::format_bytes(total.input_bytes), util::format_bytes(total.data_bytes), seconds,
            static_cast<double>(total.input_bytes) / mib / seconds,
            static_cast<double>(total.data_bytes) / mib / seconds));
        console.print_json({{"image", image.name},
                            {"layers", merged.layers.size()},
                            {"entries", total.entries},
                            {"input_bytes", total.input_bytes},
                            {"data_bytes", total.data_bytes},
                            {"cached_layers", total.cached_layers},
                            {"unpacked_layers", total.unpacked_layers},
                            {"seconds", seconds}});
        return 0;
    }
    if (commands.image_push->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        const oci::ImageReference source = oci::parse_reference(commands.push_source);
        const oci::ImageReference destination = oci::parse_reference(commands.push_destination);
        if (source.transport != oci::Transport::oci_layout) {
            throw bad_input("image push: the source must be an OCI layout (oci:DIR[:TAG]), not {}",
                            source.str());
        }
        if (!destination.is_registry()) {
            throw bad_input("image push: the destination must be a registry reference "
                            "(docker://HOST/REPO:TAG), not {}",
                            destination.str());
        }
        oci::RegistryOptions registry = registry_options_for(config, commands);
        if (!commands.chunk_size.empty()) {
            const auto size = util::parse_size(commands.chunk_size);
            if (!size || *size == 0) {
                throw bad_input("--chunk-size: '{}' is not a size", commands.chunk_size);
            }
            registry.upload_chunk_size = *size;
        }
        oci::PushOptions push;
        push.mount_from = commands.mount_from;
        push.on_progress = [&console](const std::string& line) { console.detail("{}", line); };
        const oci::PushResult result =
            oci::push_layout(source.path, source.tag, destination, registry, push);
        console.print(fmt::format("{}@{} ({} blobs uploaded, {} mounted, {} already there)\n",
                                  destination.str(), result.digest, result.uploaded, result.mounted,
                                  result.skipped));
        console.print_json({{"reference", destination.str()},
                            {"digest", result.digest},
                            {"media_type", result.media_type},
                            {"uploaded", result.uploaded},
                            {"mounted", result.mounted},
                            {"skipped", result.skipped}});
        return 0;
    }
    return std::nullopt;
}
// ---- end of registry and cache commands ----------------------------------------------------

// ---- Content bundle commands ----------------------------------------------------------------
// `content build|verify|ls`: flags here, the work in lib/content.

struct ContentCommands {
    CLI::App* build = nullptr;
    CLI::App* verify = nullptr;
    CLI::App* ls = nullptr;
    std::vector<std::string> images;
    std::string images_file;
    std::string manifest;
    std::string name;
    bool all_platforms = false;
    int level = 3;
    unsigned threads = 0;
    std::string sign;
    std::string existing_bundle;
    std::string split_size;
    bool dry_run = false;
    std::string bundle;
    std::string public_key;
};

void add_content_commands(CLI::App& content, ContentCommands& commands) {
    auto* build = content.add_subcommand(
        "build", "Pull images (and charts, files) into one deduplicated, signed bundle "
                 "<output-dir>/content-<name>/<name>.tar.zst");
    build->add_option("--image", commands.images, "An image to bundle (repeat for several)")
        ->type_name("IMAGE");
    build
        ->add_option("--images-file", commands.images_file,
                     "File with one image per line ('REF [NAME]'; # comments)")
        ->type_name("FILE");
    build
        ->add_option("--manifest", commands.manifest,
                     "Bundle manifest (YAML: images, charts, files; see README)")
        ->type_name("FILE");
    build->add_option("--name", commands.name, "Bundle name (default: the 'name' setting)")
        ->type_name("NAME");
    build->add_flag("--all-platforms", commands.all_platforms,
                    "Keep every platform of multi-platform images (default: --arch only)");
    build->add_option("--level", commands.level, "zstd compression level 1..19")
        ->capture_default_str();
    build->add_option("--threads", commands.threads, "zstd worker threads (0: one per CPU)")
        ->capture_default_str();
    build
        ->add_option("--sign", commands.sign,
                     "Sign with this ECDSA P-256 or Ed25519 private key (writes .sig)")
        ->type_name("KEY.pem");
    build
        ->add_option("--existing-bundle", commands.existing_bundle,
                     "Leave out the blobs an earlier bundle already has (incremental bundle)")
        ->type_name("FILE");
    build
        ->add_option("--split-size", commands.split_size,
                     "Split the archive into parts of at most this size (.part-NNN + "
                     ".parts.json)")
        ->type_name("SIZE");
    build->add_flag("--dry-run", commands.dry_run,
                    "Check every input and print what would be bundled; pull nothing");
    commands.build = build;
    commands.verify = content.add_subcommand(
        "verify", "Check a bundle against its .sha256, parts index and signature");
    commands.verify->add_option("bundle", commands.bundle, "Bundle (.tar.zst, or its .parts.json)")
        ->required();
    commands.verify->add_option("--pubkey", commands.public_key, "Public key to check the .sig")
        ->type_name("PUB.pem");
    commands.ls = content.add_subcommand(
        "ls", "List the images, charts and files of a bundle without unpacking it");
    commands.ls->add_option("bundle", commands.bundle, "Bundle (.tar.zst, or its .parts.json)")
        ->required();
}

std::optional<int> run_content_command(const ContentCommands& commands,
                                       const GlobalOptions& options,
                                       const RegistryCommands& registry_commands,
                                       const Console& console) {
    if (commands.build->parsed()) {
        content::BundleInputs inputs;
        for (const auto& image : commands.images) {
            inputs.images.push_back(content::image_request(image, SourceLocation{"--image"}));
        }
        if (!commands.images_file.empty()) {
            content::read_images_file(commands.images_file, inputs);
        }
        if (!commands.manifest.empty()) {
            content::read_bundle_manifest(commands.manifest, inputs);
        }
        const Config config = resolve_config(config_inputs(options));
        content::BuildOptions build;
        build.name = commands.name.empty() ? config.string("name") : commands.name;
        content::check_bundle_name(build.name);
        build.output_dir = config.path("output_dir");
        build.arch = config.arch();
        build.platforms = commands.all_platforms ? content::PlatformSelection::all
                                                 : content::PlatformSelection::one;
        build.level = commands.level;
        build.threads = commands.threads;
        if (!commands.sign.empty()) {
            build.signing_key = commands.sign;
        }
        if (!commands.existing_bundle.empty()) {
            build.existing_bundle = commands.existing_bundle;
        }
        if (!commands.split_size.empty()) {
            const auto size = util::parse_size(commands.split_size);
            if (!size || *size < 1024) {
                throw bad_input("--split-size: '{}' is not a size of at least 1K (e.g. 4G, 700M)",
                                commands.split_size);
            }
            build.split_size = *size;
        }
        if (config.get("source_date_epoch").is_set()) {
            build.source_date_epoch = config.integer("source_date_epoch");
        }
        build.open.cache_dir = config.path("cache_dir");
        build.open.registry = registry_options_for(config, registry_commands);
        if (commands.dry_run) {
            const nlohmann::json plan = content::plan_bundle(inputs, build);
            console.print(content::render_plan(plan));
            console.print_json(plan);
            return 0;
        }
        const content::BuildResult result = content::build_bundle(inputs, build, console);
        std::vector<std::string> written;
        std::string text;
        for (const auto& file : result.written) {
            written.push_back(file.string());
            text += file.string() + "\n";
        }
        console.print(text);
        console.print_json({{"directory", result.directory.string()},
                            {"archive", result.archive.string()},
                            {"size", result.size},
                            {"sha256", result.sha256},
                            {"written", written},
                            {"bundle", result.manifest}});
        return 0;
    }
    if (commands.verify->parsed()) {
        content::VerifyOptions verify;
        if (!commands.public_key.empty()) {
            verify.public_key = commands.public_key;
        }
        const content::VerifyResult result = content::verify_bundle(commands.bundle, verify);
        for (const auto& line : result.checked) {
            console.info("ok: {}", line);
        }
        if (!verify.public_key) {
            console.info("signature not checked (give --pubkey PUB.pem to check it)");
        }
        console.print_json(result.to_json());
        if (!result.ok) {
            for (const auto& problem : result.problems) {
                console.error("{}: {}", commands.bundle, problem);
            }
            return static_cast<int>(ExitCode::build_failed);
        }
        console.print(fmt::format("{}: OK\n", commands.bundle));
        return 0;
    }
    if (commands.ls->parsed()) {
        const nlohmann::json manifest = content::read_bundle_manifest_json(commands.bundle);
        console.print(content::render_listing(manifest));
        console.print_json(manifest);
        return 0;
    }
    return std::nullopt;
}
// ---- end of content bundle commands ----------------------------------------------------------

int run(int argc, char** argv) {
    util::install_interrupt_cleanup();
    GlobalOptions options;

    CLI::App app{"edgeforge builds edge installer media from a Kairos-style base OS image: "
                 "bootable installer ISOs, disk images (raw, qcow2, OVA, AMI) and provider "
                 "images, rootless and reproducibly.\n\n"
                 "Start with 'edgeforge doctor' and 'edgeforge config show' in a project "
                 "directory holding edgeforge.yaml (or .installer.env / .arg), then "
                 "'edgeforge build iso'.",
                 "edgeforge"};
    app.get_formatter()->column_width(34);
    app.fallthrough();
    app.require_subcommand(0, 1);
    app.footer("Exit codes: 0 success, 1 build failed, 2 bad input or usage.\n"
               "Settings precedence (lowest first): defaults, .installer.env, .arg, "
               "edgeforge.yaml, EDGEFORGE_* environment variables, command-line flags.\n"
               "Image references: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, "
               "dir:PATH, tar:FILE, docker://HOST/REPO[:TAG|@DIGEST].");

    app.add_option("-c,--config", options.config_file,
                   "Build spec to read (default: edgeforge.yaml in the current directory)")
        ->type_name("FILE")
        ->group("Global options");
    app.add_option("--installer-env", options.installer_env_file,
                   "Legacy settings file (default: .installer.env next to the config)")
        ->type_name("FILE")
        ->group("Global options");
    app.add_option("--arg-file", options.arg_file,
                   "Build-argument file (default: .arg next to the config)")
        ->type_name("FILE")
        ->group("Global options");
    add_setting_flags(app, options, k_scope_global);
    app.add_flag(
           "--json", options.json,
           "Print a machine-readable JSON result on stdout (progress as JSON lines on stderr)")
        ->group("Global options");
    app.add_flag("-v,--verbose", options.verbose, "Show more detail")->group("Global options");
    app.add_flag("-q,--quiet", options.quiet, "Only print errors")->group("Global options");
    app.add_flag("--no-progress", options.no_progress, "Do not show progress bars or lines")
        ->group("Global options");
    app.set_version_flag("--version", std::string(k_version));

    // build
    auto* build = app.add_subcommand("build", "Build artifacts: iso, disk, provider, all");
    build->require_subcommand(1);
    bool dry_run = false;
    bool fail_fast = false;
    bool push_installer_image = false;
    std::vector<std::string> disk_formats;
    bool upload = false;
    bool push_provider = false;
    CLI::App* build_iso = nullptr;
    CLI::App* build_disk_command = nullptr;
    CLI::App* build_provider_command = nullptr;
    CLI::App* build_all_command = nullptr;
    // Each target: its settings (by scope) and --dry-run, plus its own flags.
    struct BuildTarget {
        const char* name;
        const char* help;
        SettingScope scope;
        FlagSelection selection;
        CLI::App** command;
        std::function<void(CLI::App&)> add_flags;
    };
    const BuildTarget build_targets[] = {
        {"iso", "Build the bootable live installer ISO (BIOS + UEFI hybrid)", k_scope_iso,
         FlagSelection::scoped, &build_iso,
         [&](CLI::App& command) {
             command.add_flag("--fail-fast", fail_fast,
                              "With --sites: stop at the first site that fails (default: build "
                              "the others and list the failures)");
             command.add_flag("--push", push_installer_image,
                              "Push the installer image (IMAGE_NAME / --installer-image, a "
                              "registry name) after building; without it only the layout under "
                              "build/<name>-image is written");
         }},
        {"disk", "Build disk images (raw, qcow2, ova, ami, vhd, gce)", k_scope_disk,
         FlagSelection::scoped, &build_disk_command,
         [&](CLI::App& command) {
             command
                 .add_option("--format", disk_formats,
                             "Formats to build, comma-separated: raw, qcow2, ova, ami, vhd, gce; "
                             "default: the disk formats under outputs:")
                 ->delimiter(',')
                 ->type_name("FORMAT[,FORMAT...]");
             command.add_flag("--upload", upload,
                              "ami: upload the disk as an EBS snapshot and register the AMI "
                              "(AWS credentials from AWS_* variables or ~/.aws; region from "
                              "--ami-region or AWS_REGION)");
         }},
        {"provider", "Build provider images (OS + Kubernetes + agent as OCI images)",
         k_scope_provider, FlagSelection::scoped, &build_provider_command,
         [&](CLI::App& command) {
             command.add_flag("--push", push_provider,
                              "Push every provider image to IMAGE_REGISTRY/IMAGE_REPO:TAG after "
                              "building (a multi-arch index when two arches are configured); "
                              "without it they are only written to build/provider-images");
         }},
        {"all", "Build every output listed in 'outputs' (iso, disk formats, provider)",
         k_scope_all_builds, FlagSelection::every, &build_all_command,
         [&](CLI::App& command) {
             command.add_flag("--push", push_provider,
                              "Push what can be pushed: the provider images and a registry "
                              "IMAGE_NAME installer image");
         }},
    };
    for (const auto& target : build_targets) {
        auto* command = build->add_subcommand(target.name, target.help);
        add_setting_flags(*command, options, target.scope, target.selection);
        command->add_flag("--dry-run", dry_run,
                          "Check every input and print the plan (JSON with --json); build nothing");
        target.add_flags(*command);
        *target.command = command;
    }

    std::string site_user_data;
    auto* site_media = build->add_subcommand(
        "site-media", "Build a small CIDATA seed ISO with one site's user-data, to attach next to "
                      "the installer (no installer rebuild)");
    site_media->add_option("--user-data", site_user_data, "The site's #cloud-config user-data")
        ->required()
        ->type_name("PATH");

    // content
    auto* content = app.add_subcommand("content", "Air-gapped content bundles: build, verify, ls");
    content->require_subcommand(1);
    ContentCommands content_commands;
    add_content_commands(*content, content_commands);

    // validate
    auto* validate = app.add_subcommand("validate", "Check inputs without building anything");
    validate->require_subcommand(1);
    auto* validate_user_data =
        validate->add_subcommand("user-data", "Validate a #cloud-config user-data file");
    std::string user_data_file;
    bool strict = false;
    validate_user_data->add_option("file", user_data_file, "User-data file to check")->required();
    validate_user_data->add_flag("--strict", strict,
                                 "Treat warnings (likely typos, plain-text passwords) as errors");
    auto* validate_config =
        validate->add_subcommand("config", "Validate the build configuration from every source");
    add_setting_flags(*validate_config, options, k_scope_all_builds, FlagSelection::every);

    // inspect
    auto* inspect =
        app.add_subcommand("inspect", "Show what is inside an image or a built artifact");
    std::string inspect_target;
    inspect
        ->add_option("target", inspect_target,
                     "An image reference (oci:DIR, docker://REF, ...) or a built artifact "
                     "(ISO, raw, qcow2, OVA)")
        ->required();

    // config show
    auto* config_command = app.add_subcommand("config", "Show the resolved configuration");
    config_command->require_subcommand(1);
    auto* config_show = config_command->add_subcommand(
        "show", "Print every setting, its resolved value and where it came from");
    add_setting_flags(*config_show, options, k_scope_all_builds, FlagSelection::every);

    bool doctor_tests = false;
    auto* doctor =
        app.add_subcommand("doctor", "Check the host tools and libraries the outputs need");
    doctor->add_flag("--tests", doctor_tests, "Also check the tools the end-to-end tests use");
    add_setting_flags(*doctor, options, k_scope_all_builds, FlagSelection::every);

    // init
    InitOptions init_options;
    std::string init_directory = ".";
    auto* init = app.add_subcommand(
        "init", "Write a starter project: edgeforge.yaml, user-data, .installer.env, Makefile, "
                "overlays/ and content/");
    init->add_option("directory", init_directory, "Where to write it (created if missing)")
        ->type_name("DIR")
        ->capture_default_str();
    init->add_option("--base", init_options.base_image, "Base OS image to put in edgeforge.yaml")
        ->type_name("IMAGE");
    init->add_option("--agent", init_options.agent_images,
                     "Agent image to put in edgeforge.yaml (repeat for several)")
        ->type_name("IMAGE");
    init->add_flag("--force", init_options.force, "Overwrite files that exist");

    auto* version = app.add_subcommand("version", "Print the version and linked library versions");
    RegistryCommands registry_commands;
    add_registry_commands(app, registry_commands);

    if (argc <= 1) {
        std::fputs(app.help().c_str(), stderr);
        return static_cast<int>(ExitCode::bad_input);
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        return app.exit(CLI::CallForHelp());
    } catch (const CLI::CallForAllHelp&) {
        return app.exit(CLI::CallForAllHelp());
    } catch (const CLI::CallForVersion& e) {
        std::printf("edgeforge %s\n", std::string(k_version).c_str());
        return 0;
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) {
            return app.exit(e);
        }
        throw Error(
            ExitCode::bad_input,
            fmt::format("{}\nRun 'edgeforge --help' (or 'edgeforge COMMAND --help') for usage.",
                        e.what()));
    }

    ConsoleOptions console_options;
    console_options.json = options.json;
    console_options.verbosity = options.quiet     ? Verbosity::quiet
                                : options.verbose ? Verbosity::verbose
                                                  : Verbosity::normal;
    console_options.progress = !options.no_progress;
    console_options.stderr_is_terminal = ::isatty(STDERR_FILENO) == 1;
    const Console console(console_options);

    if (const auto code = run_registry_command(registry_commands, options, console)) {
        return *code;
    }
    if (const auto code =
            run_content_command(content_commands, options, registry_commands, console)) {
        return *code;
    }
    if (version->parsed()) {
        nlohmann::json libraries = nlohmann::json::object();
        std::string text = fmt::format("edgeforge {}\n", k_version);
        for (const auto& [name, library_version] : linked_library_versions()) {
            libraries[name] = library_version;
            text += fmt::format("  {:<10}  {}\n", name, library_version);
        }
        console.print(text);
        console.print_json({{"version", k_version}, {"libraries", libraries}});
        return 0;
    }
    if (init->parsed()) {
        init_options.directory = init_directory;
        if (const auto& arch = options.setting_flags["arch"]; !arch.empty()) {
            const auto parsed = Arch::parse(arch.back());
            if (!parsed) {
                throw bad_input("--arch: '{}' is not an architecture; allowed: {}", arch.back(),
                                Arch::allowed_values_text());
            }
            init_options.arch = *parsed;
        }
        const InitResult result = init_project(init_options);
        std::vector<std::string> written;
        for (const auto& file : result.written) {
            written.push_back(file.string());
        }
        console.print(fmt::format("wrote {} in {}\n  {}\nnext: cd {} && edgeforge doctor && "
                                  "make iso\n",
                                  written.size(), init_directory, util::join(written, "\n  "),
                                  init_directory));
        console.print_json({{"directory", init_directory}, {"written", written}});
        return 0;
    }
    if (config_show->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        console.print(render_config_table(config));
        console.print_json(config_to_json(config));
        return 0;
    }
    if (validate_config->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        std::vector<std::string> files;
        for (const auto& file : config.files()) {
            files.push_back(file.string());
        }
        console.print(fmt::format("configuration is valid ({})\n",
                                  files.empty() ? std::string("defaults only; no config file found")
                                                : "read " + util::join(files, ", ")));
        console.print_json({{"valid", true}, {"files", files}});
        return 0;
    }
    if (inspect->parsed()) {
        // A path (no transport prefix, or an existing file) is a built artifact: ISO, raw,
        // qcow2, VMDK or OVA.
        std::error_code exists_error;
        if (inspect_target.find(':') == std::string::npos ||
            std::filesystem::is_regular_file(inspect_target, exists_error)) {
            const nlohmann::json report = inspect::inspect_artifact(inspect_target, console);
            console.print(inspect::render_artifact_report(report));
            console.print_json(report);
            return 0;
        }
        const Config config = resolve_config(config_inputs(options));
        const oci::ImageReference reference = oci::parse_reference(inspect_target);
        // Without an explicit --arch, show whichever platform the image has.
        std::optional<oci::Image> image;
        oci::OpenOptions open_options;
        open_options.cache_dir = config.path("cache_dir");
        open_options.registry = registry_options_for(config, registry_commands);
        open_options.metadata_only = true;
        if (config.get("arch").origin != Origin::default_value) {
            image = oci::open_image(reference, config.arch(), open_options);
        } else {
            std::optional<Error> first_error;
            for (const Arch arch : Arch::all()) {
                try {
                    image = oci::open_image(reference, arch, open_options);
                    break;
                } catch (const Error& error) {
                    first_error = first_error.value_or(error);
                }
            }
            if (!image) {
                throw *first_error;
            }
        }
        console.print(oci::render_image_summary(*image));
        console.print_json(oci::image_summary_json(*image));
        return 0;
    }
    if (validate_user_data->parsed()) {
        const userdata::Report report = userdata::validate_file(user_data_file);
        console.print(userdata::render_report(report));
        console.print_json(userdata::report_to_json(report));
        return report.passes(strict) ? 0 : static_cast<int>(ExitCode::bad_input);
    }
    if (site_media->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        SiteMediaPlan plan;
        plan.user_data = site_user_data;
        plan.output = config.path("output_dir") / (config.string("name") + "-cidata.iso");
        if (config.get("source_date_epoch").is_set()) {
            plan.source_date_epoch = config.integer("source_date_epoch");
        }
        const Artifact artifact = build_site_media(plan, console);
        console.print(artifact.path.string() + "\n");
        console.print_json(artifacts_to_json({artifact}, nlohmann::json::object()));
        return 0;
    }
    // The builds, as functions of the resolved configuration returning their exit code and JSON
    // document, so that `build all` can run them one after another.
    struct BuildOutcome {
        int code = 0;
        nlohmann::json document;
    };
    const auto run_build_iso = [&](const Config& config, bool push) -> BuildOutcome {
        IsoPlan plan = plan_iso(config);
        plan.registry = registry_options_for(config, registry_commands);
        const bool registry_image = plan.installer_image && plan.installer_image->is_registry();
        if (push && !registry_image && build_iso->parsed()) {
            throw bad_input("--push pushes the installer image: set IMAGE_NAME (.installer.env), "
                            "installer.image_name or --installer-image to a registry name such "
                            "as registry.example.com/edge/installer:v1");
        }
        plan.push_installer_image = push && registry_image;
        for (const auto& warning : plan.warnings) {
            console.warning("{}", warning);
        }
        if (dry_run) {
            console.print(render_iso_plan(plan));
            return {0, plan.to_json()};
        }
        if (plan.sites_dir) {
            const SitesBuildResult result = build_iso_sites(
                plan,
                fail_fast ? FailurePolicy::fail_fast
                          : FailurePolicy::continue_with_others,
                console);
            std::vector<Artifact> artifacts;
            std::vector<std::string> failed;
            for (const auto& site : result.sites) {
                if (site.iso) {
                    console.print(fmt::format("{}\n{}\n", site.iso->path.string(),
                                              site.checksum->path.string()));
                    artifacts.push_back(*site.iso);
                    artifacts.push_back(*site.checksum);
                } else {
                    failed.push_back(fmt::format("{} ({})", site.site, site.file.string()));
                }
            }
            artifacts.push_back(result.index);
            console.print(result.index.path.string() + "\n");
            BuildOutcome outcome{0, artifacts_to_json(artifacts, result.summary)};
            if (!failed.empty()) {
                console.error("{} of {} sites failed: {}; the others were built (see {})",
                              failed.size(), result.sites.size(), util::join(failed, ", "),
                              result.index.path.string());
                outcome.code = static_cast<int>(ExitCode::build_failed);
            }
            return outcome;
        }
        const IsoBuildResult result = edgeforge::build_iso(plan, console);
        console.print(
            fmt::format("{}\n{}\n", result.iso.path.string(), result.checksum.path.string()));
        nlohmann::json document =
            artifacts_to_json({result.iso, result.checksum}, result.summary);
        if (plan.installer_image) {
            const InstallerImageResult image =
                build_installer_image(plan, console);
            console.print(fmt::format("oci:{}:{}\n", image.layout.string(), image.tag));
            document["installer_image"] = image.to_json();
        }
        return {0, document};
    };
    const auto run_build_disk = [&](const Config& config,
                                    const std::vector<std::string>& formats) -> BuildOutcome {
        DiskPlan plan = plan_disk(config, formats, upload);
        plan.rootfs.registry = registry_options_for(config, registry_commands);
        for (const auto& warning : plan.rootfs.warnings) {
            console.warning("{}", warning);
        }
        if (dry_run) {
            console.print(render_disk_plan(plan));
            return {0, plan.to_json()};
        }
        const std::vector<Artifact> artifacts = build_disk(plan, console);
        for (const auto& artifact : artifacts) {
            console.print(artifact.path.string() + "\n");
        }
        return {0, artifacts_to_json(artifacts, nlohmann::json::object())};
    };
    const auto run_build_provider = [&](const Config& config) -> BuildOutcome {
        ProviderPlan plan = plan_provider(config, push_provider);
        plan.registry = registry_options_for(config, registry_commands);
        if (dry_run) {
            console.print(render_provider_plan(plan));
            return {0, plan.to_json()};
        }
        const ProviderBuildResult result = build_provider(plan, console);
        std::string text;
        for (const auto& image : result.images) {
            text += fmt::format("{}  {}{}\n", image.reference, image.digest,
                                image.pushed ? "  (pushed)" : "");
        }
        const auto& last = result.images.back();
        text += fmt::format("\nCluster profile, OS layer (Bring Your Own OS) values for {}:\n\n{}",
                            last.tag, last.profile_snippet);
        if (result.images.size() > 1) {
            text += "(the other tags differ only in system.uri)\n";
        }
        if (!last.pushed) {
            text += "Not pushed: the OS layer needs a registry reference. Set IMAGE_REGISTRY and "
                    "IMAGE_REPO (or provider.registry and provider.repository) and add --push.\n";
        }
        console.print(text);
        return {0, result.to_json()};
    };

    if (build_iso->parsed()) {
        const BuildOutcome outcome =
            run_build_iso(resolve_config(config_inputs(options)), push_installer_image);
        console.print_json(outcome.document);
        return outcome.code;
    }
    if (build_disk_command->parsed()) {
        const BuildOutcome outcome =
            run_build_disk(resolve_config(config_inputs(options)), disk_formats);
        console.print_json(outcome.document);
        return outcome.code;
    }
    if (build_provider_command->parsed()) {
        const BuildOutcome outcome = run_build_provider(resolve_config(config_inputs(options)));
        console.print_json(outcome.document);
        return outcome.code;
    }
    if (build_all_command->parsed()) {
        // Every output of `outputs`, planned first (all inputs checked before any work), then
        // built in order: the ISO, the disk formats from the same cached root filesystem, the
        // provider images.
        const Config config = resolve_config(config_inputs(options));
        const std::vector<std::string> outputs = config.list("outputs");
        const auto wanted = [&](std::string_view name) {
            return std::find(outputs.begin(), outputs.end(), name) != outputs.end();
        };
        std::vector<std::string> disks;
        for (const auto& output : outputs) {
            if (output != "iso" && output != "provider") {
                disks.push_back(output);
            }
        }
        if (!dry_run) {
            Diagnostics diagnostics;
            const auto check = [&](const auto& plan_it) {
                try {
                    plan_it();
                } catch (const Error& error) {
                    if (error.code() != ExitCode::bad_input) {
                        throw;
                    }
                    diagnostics.absorb(error);
                }
            };
            if (wanted("iso")) {
                check([&] { (void)plan_iso(config); });
            }
            if (!disks.empty()) {
                check([&] { (void)plan_disk(config, disks, upload); });
            }
            if (wanted("provider")) {
                check([&] { (void)plan_provider(config, push_provider); });
            }
            diagnostics.throw_if_any();
        }
        nlohmann::json document = nlohmann::json::object();
        int code = 0;
        const auto take = [&](std::string_view name, const BuildOutcome& outcome) {
            document[std::string(name)] = outcome.document;
            code = std::max(code, outcome.code);
        };
        if (wanted("iso")) {
            take("iso", run_build_iso(config, push_provider));
        }
        if (!disks.empty()) {
            take("disk", run_build_disk(config, disks));
        }
        if (wanted("provider")) {
            take("provider", run_build_provider(config));
        }
        console.print_json(document);
        return code;
    }
    if (doctor->parsed()) {
        const Config config = resolve_config(config_inputs(options));
        const DoctorReport report = run_doctor(config, doctor_tests);
        console.print(render_doctor_report(report));
        console.print_json(doctor_report_to_json(report));
        return report.ok() ? 0 : static_cast<int>(ExitCode::build_failed);
    }
    std::fputs(app.help().c_str(), stderr);
    return static_cast<int>(ExitCode::bad_input);
}

// A build holds a lock file open for every cached blob it uses (see BlobCache::hold()); a
// content bundle of a few hundred images needs more descriptors than the usual soft limit of
// 1024, so take what the hard limit allows, as Go programs do.
void raise_open_file_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

} // namespace

int main(int argc, char** argv) {
    raise_open_file_limit();
    try {
        return run(argc, argv);
    } catch (const edgeforge::Error& error) {
        std::fprintf(stderr, "edgeforge: error: %s\n", error.what());
        return static_cast<int>(error.code());
    } catch (const std::exception& error) {
        std::fprintf(stderr, "edgeforge: error: %s\n", error.what());
        return static_cast<int>(edgeforge::ExitCode::build_failed);
    }
}
