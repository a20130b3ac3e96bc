// `edgeforge init`: writes a starter project from the templates.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/arch.h"

namespace edgeforge {

struct InitOptions {
    std::filesystem::path directory = ".";
    Arch arch;
    std::string base_image;               // empty: a commented placeholder to fill in
    std::vector<std::string> agent_images; // empty: a commented placeholder
    bool force = false;                    // overwrite files that exist
    std::filesystem::path templates;       // empty: templates_directory()
};

struct InitResult {
    std::vector<std::filesystem::path> written; // relative to the directory, in write order
};

// Writes edgeforge.yaml, user-data, .installer.env, Makefile, overlays/files/,
// overlays/files-iso/ and content/ into `directory` (created if needed). Without `force`, any
// file that exists already stops it before anything is written: Error (bad input) listing them.
// Image references are checked first (Error, bad input, naming the reference).
InitResult init_project(const InitOptions& options);

// The .installer.env template: every setting with a legacy .installer.env name, its help and
// its default, generated from the settings table (the repository's .installer.env.template is
// this text).
std::string render_installer_env_template();

} // namespace edgeforge
