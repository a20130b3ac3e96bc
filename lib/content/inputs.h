// What goes into a content bundle: image references, Helm charts and files, read from the
// command line, an images file (one reference per line) and a bundle manifest (YAML).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "oci/reference.h"

namespace edgeforge::content {

struct ImageRequest {
    std::string text;              // as written: "registry.example.com/edge/app:1.0"
    oci::ImageReference reference; // parsed
    // The org.opencontainers.image.ref.name the image gets in the bundle's index.json; empty
    // means the default (see default_ref_name()).
    std::string ref_name;
    SourceLocation where; // "--image", "images.txt:3", "bundle.yaml:5:5"
};

struct ChartRequest {
    std::filesystem::path path; // a Helm chart archive (.tgz)
    SourceLocation where;
};

struct FileRequest {
    std::filesystem::path source;
    std::string dest;     // relative path under files/ in the bundle
    unsigned mode = 0644; // stored permission bits
    SourceLocation where;
};

struct BundleInputs {
    std::vector<ImageRequest> images;
    std::vector<ChartRequest> charts;
    std::vector<FileRequest> files;
};

// The reference name an image gets unless one is given: the full registry reference
// ("registry.example.com/edge/app:1.0", "...@sha256:<hex>"), or for local sources the file or
// directory name with the tag ("base-amd64:latest").
std::string default_ref_name(const oci::ImageReference& reference);

// Parses one reference; a malformed one is an Error (bad input) naming `where`.
ImageRequest image_request(std::string_view text, const SourceLocation& where);

// Appends the images of an images file: one reference per line, optionally followed by the ref
// name to give it; '#' starts a comment; blank lines are skipped. Throws Error (bad input)
// naming FILE:LINE.
void read_images_file(const std::filesystem::path& file, BundleInputs& inputs);

// Appends what a bundle manifest lists. Relative paths resolve against the manifest's
// directory. The format (README.md, "Content bundles"):
//
//   images:                 # optional; strings, or {ref: REF, name: REF-NAME}
//     - registry.example.com/edge/app:1.0
//   charts:                 # Helm chart archives, stored as charts/<file name>
//     - charts/nginx-15.1.0.tgz
//   files:                  # stored as files/<dest>
//     - path: scripts/setup.sh
//       dest: bin/setup.sh
//       mode: 0755          # optional, default 0644
//
// Unknown keys, missing fields and absolute or ".." destinations are Errors (bad input) naming
// FILE:LINE:COLUMN.
void read_bundle_manifest(const std::filesystem::path& file, BundleInputs& inputs);

// Throws Error (bad input) unless `name` is fit for a file name: letters, digits, '.', '_', '+'
// and '-', not starting with '.', '+' or '-', at most 128 characters.
void check_bundle_name(std::string_view name);
bool is_bundle_name(std::string_view name);

// Checks what cannot be checked line by line: duplicate ref names, duplicate chart file names
// and file destinations, unreadable charts and files. Every problem is reported together.
void check_inputs(const BundleInputs& inputs);

} // namespace edgeforge::content
