// The edgeforge command line: CLI11 parsing and dispatch to library calls, nothing more.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "content/bundle.h"
#include "build/canvos_import.h"
#include "build/commands.h"
#include "build/config.h"
#include "build/outputs.h"
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
#include "build/keys.h"
#include "build/provider.h"
#include "build/site_media.h"
#include "inspect/artifact.h"
#include "oci/blob_cache.h"
#include "oci/image.h"
#include "oci/image_summary.h"
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
    case SettingType::credentials:
        return "USER:PASSWORD";
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
    every,  // every non-global build setting (config show, validate config, doctor, build all);
            // content.* flags stay on `content build`
};

void add_setting_flags(CLI::App& command, GlobalOptions& options, SettingScope scope,
                       FlagSelection selection = FlagSelection::scoped) {
    for (const auto& setting : settings_table()) {
        const bool global = (setting.scope & k_scope_global) != 0;
        const bool wanted =
            scope == k_scope_global
                ? global
                : !global && ((selection == FlagSelection::every && setting.scope != k_scope_content) ||
                              (setting.scope & scope) != 0);
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

// Resolves the configuration and prints its warnings (once per command).
Config load_config(const GlobalOptions& options, const Console& console) {
    ConfigInputs inputs = config_inputs(options);
    inputs.on_warning = [&console](const std::string& warning) {
        console.warning("{}", warning);
    };
    return resolve_config(inputs);
}

// `init --from-canvos DIR`: DIR/edgeforge.yaml from DIR/.arg (or printed), and what it leaves out.
int run_init_from_canvos(const std::filesystem::path& directory, bool print_only, bool force,
                         const Console& console) {
    const CanvosImport imported = import_canvos_project(directory);
    for (const auto& warning : imported.warnings) {
        console.warning("{}", warning);
    }
    const std::filesystem::path target = directory / "edgeforge.yaml";
    nlohmann::json document{{"left_out", imported.left_out}, {"found", imported.found}};
    if (print_only) {
        console.print(imported.yaml);
        document["yaml"] = imported.yaml;
        console.print_json(document);
        return 0;
    }
    std::error_code ec;
    if (!force && std::filesystem::exists(target, ec)) {
        throw bad_input("{} exists; pass --force to replace it, or --print to see the result "
                        "without writing",
                        target.string());
    }
    util::write_file_atomically(target, imported.yaml);
    std::string text = fmt::format("wrote {} from {}\n", target.string(),
                                   (directory / ".arg").string());
    if (!imported.left_out.empty()) {
        text += "not carried over (see the end of the file):\n  " +
                util::join(imported.left_out, "\n  ") + "\n";
    }
    if (!imported.found.empty()) {
        text += "found, picked up by itself:\n  " + util::join(imported.found, "\n  ") + "\n";
    }
    text += fmt::format("next: cd {} && edgeforge config show && edgeforge build iso\n",
                        directory.string());
    console.print(text);
    document["written"] = target.string();
    console.print_json(document);
    return 0;
}

// Prints a command's text and --json document; returns its exit code.
int print(const CommandOutcome& outcome, const Console& console) {
    if (!outcome.text.empty()) {
        console.print(outcome.text);
    }
    console.print_json(outcome.document);
    return outcome.code;
}

// ---- Registry and cache commands ---------------------------------------------------------
// `--creds`, `cache ls|prune` and the hidden `image push`, kept in one block: the flags and
// commands of the registry client and the blob cache.

struct RegistryCommands {
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


// Runs `cache ...` or `image push` when one was given; nullopt otherwise.
std::optional<int> run_registry_command(const RegistryCommands& commands,
                                        const GlobalOptions& options, const Console& console) {
    if (commands.cache_ls->parsed()) {
        return print(run_cache_ls(load_config(options, console)), console);
    }
    if (commands.cache_prune->parsed()) {
        return print(run_cache_prune(load_config(options, console), commands.older_than,
                                     console),
                     console);
    }
    if (commands.image_merge->parsed()) {
        const Config config = load_config(options, console);
        oci::OpenOptions open_options;
        open_options.cache_dir = config.path("cache_dir");
        open_options.registry = registry_options(config);
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
        const Config config = load_config(options, console);
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
        oci::RegistryOptions registry = registry_options(config);
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
    ContentRequest request; // what to bundle; how comes from the content.* settings
    std::string bundle;
    std::string public_key;
};

void add_content_commands(CLI::App& content, ContentCommands& commands, GlobalOptions& options) {
    auto* build = content.add_subcommand(
        "build", "Pull images (and charts, files) into one deduplicated, signed bundle "
                 "<output-dir>/content-<name>/<name>.tar.zst");
    build->add_option("--image", commands.request.images, "An image to bundle (repeat for several)")
        ->type_name("IMAGE");
    build
        ->add_option("--images-file", commands.request.images_file,
                     "File with one image per line ('REF [NAME]'; # comments)")
        ->type_name("FILE");
    build
        ->add_option("--manifest", commands.request.manifest,
                     "Bundle manifest (YAML: images, charts, files; see README)")
        ->type_name("FILE");
    build->add_option("--name", commands.request.name, "Bundle name (default: the 'name' setting)")
        ->type_name("NAME");
    build
        ->add_option("--existing-bundle", commands.request.existing_bundle,
                     "Leave out the blobs an earlier bundle already has (incremental bundle)")
        ->type_name("FILE");
    build->add_flag("--dry-run", commands.request.dry_run,
                    "Check every input and print what would be bundled; pull nothing");
    // --level, --threads, --split-size, --sign, --all-platforms: the content.* settings.
    add_setting_flags(*build, options, k_scope_content);
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
                                       const Console& console) {
    if (commands.build->parsed()) {
        return print(run_content_build(single_arch_config(load_config(options, console), "content build"), commands.request,
                                       console),
                     console);
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
    auto* build =
        app.add_subcommand("build", "Build artifacts: iso, iso-disk-image, uki, disk, provider, all");
    build->require_subcommand(1);
    bool dry_run = false;
    bool fail_fast = false;
    bool push_installer_image = false;
    std::vector<std::string> disk_formats;
    bool upload = false;
    bool push_provider = false;
    bool push_disk_image = false;
    CLI::App* build_iso = nullptr;
    CLI::App* build_iso_disk_image_command = nullptr;
    CLI::App* build_disk_command = nullptr;
    CLI::App* build_uki_command = nullptr;
    std::string uki_keys_directory;
    CLI::App* build_provider_command = nullptr;
    CLI::App* build_all_command = nullptr;
    CLI::App* build_rootfs_command = nullptr;
    std::string shard;
    bool assemble_stage = false;
    // Each target: its settings (by scope) and --dry-run, plus its own flags.
    struct BuildTarget {
        const char* name;
        std::string help;
        SettingScope scope;
        FlagSelection selection;
        CLI::App** command;
        std::function<void(CLI::App&)> add_flags;
    };
    const auto add_keys_option = [&](CLI::App& command, const std::string& what) {
        command
            .add_option("--keys", uki_keys_directory,
                        "Key directory " + what +
                            " (db.key, db.pem, tpm2-pcr-*.pem, PK/KEK/db.auth; default: "
                            "secureboot-keys/ of the project, where `keys generate` writes them)")
            ->type_name("DIR");
    };
    const BuildTarget build_targets[] = {
        {"iso",
         "Build the bootable live installer ISO (BIOS + UEFI hybrid; --uki: the Trusted Boot "
         "installer ISO, EFI only)",
         k_scope_iso,
         FlagSelection::scoped, &build_iso,
         [&](CLI::App& command) {
             command.add_flag("--fail-fast", fail_fast,
                              "With --sites: stop at the first site that fails (default: build "
                              "the others and list the failures)");
             command.add_flag("--push", push_installer_image,
                              "Push the installer image (IMAGE_NAME / --installer-image, a "
                              "registry name) after building; without it only the layout under "
                              "build/<name>-image is written");
             add_keys_option(command, "for --uki");
         }},
        {"iso-disk-image",
         "Build the ISO as a KubeVirt containerDisk OCI image (/disk/<name>.iso; CanvOS's "
         "+iso-disk-image)",
         k_scope_iso | k_scope_iso_disk_image, FlagSelection::scoped,
         &build_iso_disk_image_command,
         [&](CLI::App& command) {
             command.add_flag("--push", push_disk_image,
                              "Push the image to IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG (TAG: "
                              "PE_VERSION[-CUSTOM_TAG]) after building; without it only the "
                              "layout build/<name>-disk-image is written");
             add_keys_option(command, "for --uki");
         }},
        {"uki",
         "Build signed Unified Kernel Images (Trusted Boot) and the systemd-boot ESP tree that "
         "enrols your Secure Boot keys (build/<name>-uki; run `edgeforge keys generate` first)",
         k_scope_iso, FlagSelection::scoped, &build_uki_command,
         [&](CLI::App& command) { add_keys_option(command, "holding the signing keys"); }},
        {"disk", "Build disk images (" + output_names_text(OutputGroup::disk) + ")", k_scope_disk,
         FlagSelection::scoped, &build_disk_command,
         [&](CLI::App& command) {
             command
                 .add_option("--format", disk_formats,
                             "Formats to build, comma-separated: " +
                                 output_names_text(OutputGroup::disk) +
                                 "; default: the disk formats under outputs:")
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
             add_keys_option(command, "for --uki (IS_UKI: each image carries its signed UKI)");
         }},
        {"all", "Build every output listed in 'outputs' (" + util::join(build_all_output_names(), ", ") + ")",
         k_scope_all_builds, FlagSelection::every, &build_all_command,
         [&](CLI::App& command) {
             command.add_flag("--push", push_provider,
                              "Push what can be pushed: the provider images, a registry "
                              "IMAGE_NAME installer image and the iso-disk-image (when "
                              "IMAGE_REGISTRY/IMAGE_REPO are set)");
             add_keys_option(command, "for --uki");
             command
                 .add_option("--shard", shard,
                             "Build only shard I of N (1-based): the units `edgeforge plan "
                             "--shards N` assigns to it; N workers with a shared cache "
                             "(--cache-remote) together build what one machine builds")
                 ->type_name("I/N");
             command.add_flag("--assemble", assemble_stage,
                              "The last stage of a sharded build: join the provider image "
                              "platforms the shards composed (under build/provider-platforms, "
                              "from their output directories) into build/provider-images, as "
                              "one machine writes it; with --push, push the images");
         }},
        {"rootfs",
         "The first stage of a sharded build: compute each arch's root filesystem step (found "
         "in the cache, pulled from --cache-from, or built) and push it to --cache-to, and pack "
         "the content bundles of content.manifests into the output directory",
         k_scope_iso, FlagSelection::scoped, &build_rootfs_command,
         [&](CLI::App& command) { add_keys_option(command, "for --uki"); }},
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
    add_content_commands(*content, content_commands, options);

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
    auto* init_directory_option =
        init->add_option("directory", init_directory, "Where to write it (created if missing)")
            ->type_name("DIR")
            ->capture_default_str();
    init->add_option("--base", init_options.base_image, "Base OS image to put in edgeforge.yaml")
        ->type_name("IMAGE");
    init->add_option("--agent", init_options.agent_images,
                     "Agent image to put in edgeforge.yaml (repeat for several)")
        ->type_name("IMAGE");
    init->add_flag("--force", init_options.force, "Overwrite files that exist");
    std::string from_canvos;
    bool print_only = false;
    init->add_option("--from-canvos", from_canvos,
                     "Carry a CanvOS project over instead: read DIR/.arg with CanvOS's rules and "
                     "write the equivalent DIR/edgeforge.yaml, listing what it does not carry")
        ->type_name("DIR")
        ->excludes(init_directory_option);
    init->add_flag("--print", print_only,
                   "With --from-canvos: print the edgeforge.yaml instead of writing it");

    // keys
    KeysRequest keys_request;
    std::string keys_directory;
    auto* keys = app.add_subcommand("keys",
                                    "UEFI Secure Boot keys for Trusted Boot: generate, import");
    keys->require_subcommand(1);
    auto* keys_generate = keys->add_subcommand(
        "generate", "Generate the PK, KEK and db key pairs (certificates, .esl, signed .auth) "
                    "and the TPM PCR policy key into secureboot-keys/");
    auto* keys_import = keys->add_subcommand(
        "import", "Bring your own PK, KEK and db key pairs (CanvOS's UKI_BRING_YOUR_OWN_KEYS): "
                  "write them with their .esl and signed .auth (and a TPM PCR policy key when "
                  "DIR has none) into secureboot-keys/");
    keys_import
        ->add_option("--from", keys_request.import_from,
                     "Directory with PK.key, PK.pem, KEK.key, KEK.pem, db.key, db.pem (and "
                     "tpm2-pcr-private.pem), or CanvOS's secure-boot/ (private-keys/, "
                     "public-keys/)")
        ->type_name("DIR")
        ->required();
    keys_generate->add_option("--days", keys_request.days, "Certificate validity in days (1-36500)")
        ->type_name("N")
        ->capture_default_str();
    keys_generate->add_option("--key-type", keys_request.key_type,
                              "PK, KEK and db key type: rsa2048 (firmware compatibility) or rsa4096")
        ->type_name("TYPE")
        ->capture_default_str();
    for (CLI::App* command : {keys_generate, keys_import}) {
        command
            ->add_option("--org", keys_request.org,
                         command == keys_generate
                             ? "Organization: certificate subjects O=NAME, CN=\"NAME PK\" ..."
                             : "Organization named in the key directory's README.txt")
            ->type_name("NAME")
            ->capture_default_str();
        command
            ->add_option("--keys", keys_directory,
                         "Key directory (default: secureboot-keys/ next to edgeforge.yaml, else in "
                         "the working directory)")
            ->type_name("DIR");
        command
            ->add_option("--include-cert", keys_request.include_certs,
                         "Add a certificate (PEM/DER) or EFI signature list to KEK, db or dbx, "
                         "e.g. db=MicCorUEFCA2011.crt (Microsoft's UEFI CA: option ROMs, dual "
                         "boot); repeatable")
            ->type_name("VAR=FILE");
        command
            ->add_option("--include-cert-dir", keys_request.include_cert_dir,
                         "Add every certificate of DIR: files KEK, db, dbx (CanvOS's "
                         "secure-boot/exported-keys, efi-readvar's lists) or KEK/, db/, dbx/ "
                         "subdirectories (INCLUDE_MS_SECUREBOOT_KEYS: Microsoft's certificates)")
            ->type_name("DIR");
        command->add_flag("--force", keys_request.force,
                          "Replace existing keys (devices enrolled with them will not accept "
                          "the new ones)");
    }

    // plan
    PlanRequest plan_request;
    auto* plan_command = app.add_subcommand(
        "plan", "List the units of work `build all` runs (root filesystem, each ISO or site, "
                "each disk format, each provider image) with step keys, inputs, outputs and "
                "dependencies; --json for schedulers");
    add_setting_flags(*plan_command, options, k_scope_all_builds, FlagSelection::every);
    plan_command
        ->add_option("--shards", plan_request.shards,
                     "Also assign the fan-out units to N shards (what `build all --shard I/N` "
                     "builds; 4 with --emit)")
        ->type_name("N");
    plan_command
        ->add_option("--emit", plan_request.emit,
                     "Print the CI pipeline that runs the plan instead: gitlab-ci "
                     "(.gitlab-ci.yml, parallel: N), github-actions (a workflow with a shard "
                     "matrix) or k8s-job (an Indexed Job); a first stage computes the shared "
                     "steps into cache.remote")
        ->type_name("ENGINE");
    plan_command
        ->add_option("--ci-command", plan_request.ci_command,
                     "The edgeforge command the generated jobs run")
        ->type_name("CMD")
        ->capture_default_str();
    plan_command
        ->add_option("--ci-image", plan_request.ci_image,
                     "Container image with edgeforge for the generated jobs (k8s-job; GitLab "
                     "runners with a Docker executor)")
        ->type_name("IMAGE");
    add_keys_option(*plan_command, "for --uki");

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
            run_content_command(content_commands, options, console)) {
        return *code;
    }
    if (keys_generate->parsed() || keys_import->parsed()) {
        keys_request.directory = keys_directory;
        const std::filesystem::path project_dir =
            options.config_file.empty()
                ? std::filesystem::current_path()
                : std::filesystem::absolute(options.config_file).parent_path();
        return print(keys_import->parsed() ? run_keys_import(keys_request, project_dir)
                                           : run_keys_generate(keys_request, project_dir),
                     console);
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
    if (init->parsed() && !from_canvos.empty()) {
        return run_init_from_canvos(from_canvos, print_only, init_options.force, console);
    }
    if (init->parsed() && print_only) {
        throw bad_input("--print goes with --from-canvos DIR");
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
        const Config config = load_config(options, console);
        console.print(render_config_table(config));
        console.print_json(config_to_json(config));
        return 0;
    }
    if (validate_config->parsed()) {
        const Config config = load_config(options, console);
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
        if (is_artifact_target(inspect_target)) {
            return print(run_inspect_artifact(inspect_target, console), console);
        }
        return print(run_inspect_image(load_config(options, console), inspect_target,
                                       console),
                     console);
    }
    if (validate_user_data->parsed()) {
        const userdata::Report report = userdata::validate_file(user_data_file);
        console.print(userdata::render_report(report));
        console.print_json(userdata::report_to_json(report));
        return report.passes(strict) ? 0 : static_cast<int>(ExitCode::bad_input);
    }
    if (site_media->parsed()) {
        return print(run_site_media(load_config(options, console), site_user_data, console),
                     console);
    }
    BuildRequest request;
    request.dry_run = dry_run;
    request.upload = upload;
    request.fail_fast = fail_fast;
    request.disk_formats = disk_formats;
    request.keys_directory = uki_keys_directory;
    if (build_iso->parsed()) {
        request.push = push_installer_image;
        request.push_needs_installer = true;
        return print(run_build_iso(single_arch_config(load_config(options, console), "build iso"), request, console),
                     console);
    }
    if (build_iso_disk_image_command->parsed()) {
        request.push = push_disk_image;
        request.push_needs_disk_image = true;
        return print(run_build_iso_disk_image(single_arch_config(load_config(options, console), "build iso-disk-image"), request, console),
                     console);
    }
    if (build_uki_command->parsed()) {
        return print(run_build_uki(single_arch_config(load_config(options, console), "build uki"), request, console), console);
    }
    if (build_disk_command->parsed()) {
        return print(run_build_disk(single_arch_config(load_config(options, console), "build disk"), request, console),
                     console);
    }
    if (build_provider_command->parsed()) {
        request.push = push_provider;
        return print(run_build_provider(load_config(options, console), request, console),
                     console);
    }
    if (build_rootfs_command->parsed()) {
        return print(run_build_rootfs(load_config(options, console), request, console), console);
    }
    if (plan_command->parsed()) {
        plan_request.config_file = options.config_file;
        plan_request.emit_given = plan_command->count("--emit") > 0;
        plan_request.shards_given = plan_command->count("--shards") > 0;
        return print(run_plan(load_config(options, console), request, plan_request, console),
                     console);
    }
    if (build_all_command->parsed()) {
        request.push = push_provider;
        request.shard = shard;
        request.sharded = build_all_command->count("--shard") > 0;
        request.assemble = assemble_stage;
        return print(run_build_all(load_config(options, console), request, console),
                     console);
    }
    if (doctor->parsed()) {
        const Config config = load_config(options, console);
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
