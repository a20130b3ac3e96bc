// `edgeforge init`: writes a starter project from the templates.
#include "build/project.h"

#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "base/error.h"
#include "build/settings.h"
#include "base/templates.h"
#include "oci/reference.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

std::string base_image_lines(const InitOptions& options) {
    if (options.base_image.empty()) {
        return "  # Set this to your base image, e.g. image: oci:images/kairos-ubuntu:latest\n"
               "  # (or BASE_IMAGE in .arg, EDGEFORGE_BASE_IMAGE, --base).\n"
               "  # image: docker://quay.io/kairos/ubuntu:24.04-core-" +
               std::string(options.arch.name()) + "-generic";
    }
    return "  image: " + util::yaml_double_quoted(options.base_image);
}

std::string agent_image_lines(const InitOptions& options) {
    if (options.agent_images.empty()) {
        return "  # images:\n"
               "  #   - docker://registry.example.com/edge/agent\n"
               "  # version: v4.5.0";
    }
    std::string out = "  images:";
    for (const auto& image : options.agent_images) {
        out += "\n    - " + util::yaml_double_quoted(image);
    }
    return out;
}

const char* const k_overlay_readme =
    "Files here are merged into the OS root filesystem of every image edgeforge builds, over\n"
    "the base and agent layers (an empty file named .wh.NAME deletes NAME from below).\n";
const char* const k_iso_overlay_readme =
    "Files here are copied to the root of the installer ISO (site instructions, checksums).\n";
const char* const k_content_readme =
    "Content bundles for air-gapped sites. `edgeforge content build` writes\n"
    "content-<name>/<name>.tar.zst next to edgeforge.yaml, and `edgeforge build iso` places\n"
    "every content-*/*.zst (and the bundles listed under content.bundles) on the ISO under\n"
    "/opt/spectrocloud/content/.\n";

} // namespace

std::string render_installer_env_template() {
    std::string out =
        "# Legacy installer settings, read by edgeforge when a file named .installer.env sits "
        "next to\n"
        "# edgeforge.yaml (or in the current directory). Copy this file to .installer.env and "
        "edit.\n"
        "# Precedence (lowest first): defaults, .installer.env, .arg, edgeforge.yaml, "
        "EDGEFORGE_*\n"
        "# environment variables, command-line flags. `edgeforge config show` tells where each "
        "value\n"
        "# came from. Unknown names are errors, so a typo is never silently ignored.\n";
    for (const auto& setting : settings_table()) {
        if (setting.installer_env_name.empty()) {
            continue;
        }
        std::string_view help = setting.help;
        if (help.ends_with(".")) {
            help.remove_suffix(1);
        }
        out += fmt::format("\n# {}.\n# edgeforge.yaml key `{}`{}.\n{}={}\n", help,
                           setting.key,
                           setting.default_value.empty()
                               ? "; optional"
                               : fmt::format("; default {}", setting.default_value),
                           setting.installer_env_name, setting.default_value);
    }
    return out;
}

InitResult init_project(const InitOptions& options) {
    if (!options.base_image.empty()) {
        oci::parse_reference(options.base_image);
    }
    for (const auto& image : options.agent_images) {
        oci::parse_reference(image);
    }
    const stdfs::path templates =
        options.templates.empty() ? templates_directory() : options.templates;
    const TemplateValues values{{"ARCH", std::string(options.arch.name())},
                                {"BASE_IMAGE", base_image_lines(options)},
                                {"AGENT_IMAGES", agent_image_lines(options)}};

    // Everything is rendered before the first write, so a template problem writes nothing.
    std::vector<std::pair<stdfs::path, std::string>> files = {
        {"edgeforge.yaml", render_template_file(templates, "project/edgeforge.yaml", values)},
        {"user-data",
         render_template_file(templates, "user-data/connected-auto-registration.yaml", {})},
        {".installer.env", render_installer_env_template()},
        {"Makefile", render_template_file(templates, "project/Makefile", {})},
        {"overlays/files/README.edgeforge", k_overlay_readme},
        {"overlays/files-iso/README.txt", k_iso_overlay_readme},
        {"content/README.txt", k_content_readme},
    };

    std::error_code ec;
    if (stdfs::exists(options.directory, ec) && !stdfs::is_directory(options.directory, ec)) {
        throw bad_input("cannot create a project in {}: it is a file, not a directory",
                        options.directory.string());
    }
    if (!options.force) {
        std::vector<std::string> existing;
        for (const auto& [relative, text] : files) {
            if (stdfs::exists(options.directory / relative, ec)) {
                existing.push_back(relative.string());
            }
        }
        if (!existing.empty()) {
            throw bad_input("{} already has {}; nothing was written. Use another directory, or "
                            "--force to overwrite them",
                            options.directory.string(), util::join(existing, ", "));
        }
    }
    InitResult result;
    for (const auto& [relative, text] : files) {
        const stdfs::path target = options.directory / relative;
        stdfs::create_directories(target.parent_path(), ec);
        if (ec) {
            throw build_failed("cannot create {}: {}", target.parent_path().string(),
                               ec.message());
        }
        util::write_file_atomically(target, text);
        result.written.push_back(relative);
    }
    return result;
}

} // namespace edgeforge
