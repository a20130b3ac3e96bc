// What goes into a content bundle: image references, Helm charts and files, read from the
// command line, an images file (one reference per line) and a bundle manifest (YAML).
#include "content/inputs.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>

#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include "util/fs.h"
#include "util/strings.h"
#include "util/yaml_check.h"

namespace edgeforge::content {
namespace stdfs = std::filesystem;

namespace {

SourceLocation yaml_location(const stdfs::path& file, const YAML::Node& node) {
    const YAML::Mark mark = node.Mark();
    return SourceLocation{file.string(), mark.is_null() ? 0 : mark.line + 1,
                          mark.is_null() ? 0 : mark.column + 1};
}

std::string scalar(const stdfs::path& file, const YAML::Node& node, std::string_view what) {
    if (!node.IsScalar()) {
        throw bad_input("{}: {} must be a string", yaml_location(file, node).str(), what);
    }
    return node.as<std::string>();
}

// "a/b/c" with no empty, "." or ".." components and no leading "/".
bool is_safe_relative(std::string_view path) {
    if (path.empty() || path.front() == '/') {
        return false;
    }
    for (const auto& component : util::split(path, '/')) {
        if (component.empty() || component == "." || component == "..") {
            return false;
        }
    }
    return true;
}

} // namespace

std::string default_ref_name(const oci::ImageReference& reference) {
    if (reference.is_registry()) {
        const std::string name = reference.registry + "/" + reference.repository;
        return reference.digest.empty() ? name + ":" + reference.tag
                                        : name + "@" + reference.digest;
    }
    std::string base = stdfs::path(reference.path).filename().string();
    if (base.empty()) {
        base = stdfs::path(reference.path).parent_path().filename().string();
    }
    for (const std::string_view suffix : {".tar.gz", ".tgz", ".tar"}) {
        if (base.ends_with(suffix)) {
            base.resize(base.size() - suffix.size());
            break;
        }
    }
    return base + ":" + (reference.tag.empty() ? "latest" : reference.tag);
}

ImageRequest image_request(std::string_view text, const SourceLocation& where) {
    ImageRequest request;
    request.text = std::string(util::trim(text));
    request.where = where;
    try {
        request.reference = oci::parse_reference(request.text);
    } catch (const Error& error) {
        throw Error(error.code(), fmt::format("{}: {}", where.str(), error.what()));
    }
    using oci::Transport;
    if (request.reference.transport == Transport::directory ||
        request.reference.transport == Transport::tarball) {
        throw bad_input("{}: {} is a root filesystem, not an image with a manifest; content "
                        "bundles carry OCI images (oci:, oci-archive:, docker-archive:, "
                        "docker://)",
                        where.str(), request.text);
    }
    return request;
}

void read_images_file(const stdfs::path& file, BundleInputs& inputs) {
    std::ifstream in(file);
    if (!in) {
        throw bad_input("cannot read the images file {}: {}", file.string(),
                        std::error_code(errno, std::generic_category()).message());
    }
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        // A NUL or other control byte would cut or bend the reference where it is used.
        if (const auto bad = std::find_if(line.begin(), line.end(),
                                          [](char c) {
                                              const auto byte = static_cast<unsigned char>(c);
                                              return (byte < 0x20 && c != '\t' && c != '\r') ||
                                                     byte == 0x7F;
                                          });
            bad != line.end()) {
            throw bad_input("{}:{}:{}: the control character 0x{:02X} is not allowed in an image "
                            "list; write one reference per line, optionally followed by a name",
                            file.string(), number, bad - line.begin() + 1,
                            static_cast<unsigned char>(*bad));
        }
        if (const auto hash = line.find('#'); hash != std::string::npos) {
            line.resize(hash);
        }
        const auto trimmed = util::trim(line);
        if (trimmed.empty()) {
            continue;
        }
        const SourceLocation where{file.string(), number, 0};
        std::vector<std::string> words;
        for (const auto& word : util::split(trimmed, ' ')) {
            if (!util::trim(word).empty()) {
                words.push_back(std::string(util::trim(word)));
            }
        }
        if (words.size() > 2) {
            throw bad_input("{}: expected an image reference and optionally the name to give it, "
                            "found {} words",
                            where.str(), words.size());
        }
        ImageRequest request = image_request(words[0], where);
        if (words.size() == 2) {
            request.ref_name = words[1];
        }
        inputs.images.push_back(std::move(request));
    }
}

void read_bundle_manifest(const stdfs::path& file, BundleInputs& inputs) {
    std::string manifest_text;
    try {
        manifest_text = util::read_file(file);
    } catch (const std::exception&) {
        throw bad_input("cannot read the bundle manifest {}", file.string());
    }
    const auto loaded = util::load_yaml(manifest_text);
    if (const auto& issue = loaded.issue) {
        throw bad_input("{}:{}:{}: {}", file.string(), issue->line, issue->column, issue->message);
    }
    const YAML::Node& root = loaded.root;
    if (root.IsNull()) {
        return;
    }
    if (!root.IsMap()) {
        throw bad_input("{}: the bundle manifest must be a mapping with images:, charts: and "
                        "files:",
                        file.string());
    }
    const stdfs::path base = file.parent_path();
    const auto resolve = [&base](const std::string& path) {
        const stdfs::path p(path);
        return p.is_absolute() || base.empty() ? p : base / p;
    };
    const auto sequence = [&file](const YAML::Node& node, std::string_view key) {
        if (!node.IsSequence() && !node.IsNull()) {
            throw bad_input("{}: '{}' must be a list", yaml_location(file, node).str(), key);
        }
    };
    for (const auto& entry : root) {
        const std::string key = entry.first.as<std::string>();
        const YAML::Node& value = entry.second;
        if (key == "images") {
            sequence(value, key);
            for (const auto& item : value) {
                const SourceLocation where = yaml_location(file, item);
                if (item.IsMap()) {
                    std::string ref;
                    std::string name;
                    for (const auto& field : item) {
                        const auto field_name = field.first.as<std::string>();
                        if (field_name == "ref") {
                            ref = scalar(file, field.second, "images[].ref");
                        } else if (field_name == "name") {
                            name = scalar(file, field.second, "images[].name");
                        } else {
                            throw bad_input("{}: unknown key '{}' in an image (expected ref, name)",
                                            yaml_location(file, field.first).str(), field_name);
                        }
                    }
                    if (ref.empty()) {
                        throw bad_input("{}: the image has no 'ref'", where.str());
                    }
                    ImageRequest request = image_request(ref, where);
                    request.ref_name = name;
                    inputs.images.push_back(std::move(request));
                } else {
                    inputs.images.push_back(image_request(scalar(file, item, "an image"), where));
                }
            }
        } else if (key == "charts") {
            sequence(value, key);
            for (const auto& item : value) {
                inputs.charts.push_back(ChartRequest{resolve(scalar(file, item, "a chart path")),
                                                     yaml_location(file, item)});
            }
        } else if (key == "files") {
            sequence(value, key);
            for (const auto& item : value) {
                const SourceLocation where = yaml_location(file, item);
                if (!item.IsMap()) {
                    throw bad_input("{}: a file must be a mapping with path: and dest:",
                                    where.str());
                }
                FileRequest request;
                request.where = where;
                std::string path;
                for (const auto& field : item) {
                    const auto field_name = field.first.as<std::string>();
                    if (field_name == "path") {
                        path = scalar(file, field.second, "files[].path");
                    } else if (field_name == "dest") {
                        request.dest = scalar(file, field.second, "files[].dest");
                    } else if (field_name == "mode") {
                        const auto text = scalar(file, field.second, "files[].mode");
                        std::size_t used = 0;
                        unsigned long mode = 0;
                        try {
                            mode = std::stoul(text, &used, 8);
                        } catch (const std::exception&) {
                            used = 0;
                        }
                        if (used != text.size() || mode > 0777) {
                            throw bad_input("{}: mode '{}' is not octal permission bits such as "
                                            "0644 or 0755",
                                            yaml_location(file, field.second).str(), text);
                        }
                        request.mode = static_cast<unsigned>(mode);
                    } else {
                        throw bad_input("{}: unknown key '{}' in a file (expected path, dest, "
                                        "mode)",
                                        yaml_location(file, field.first).str(), field_name);
                    }
                }
                if (path.empty()) {
                    throw bad_input("{}: the file has no 'path'", where.str());
                }
                request.source = resolve(path);
                if (request.dest.empty()) {
                    request.dest = stdfs::path(path).filename().string();
                }
                if (!is_safe_relative(request.dest)) {
                    throw bad_input("{}: dest '{}' must be a relative path without '.' or '..' "
                                    "components (it is stored under files/)",
                                    where.str(), request.dest);
                }
                inputs.files.push_back(std::move(request));
            }
        } else {
            throw bad_input("{}: unknown key '{}' in the bundle manifest (expected images, "
                            "charts, files)",
                            yaml_location(file, entry.first).str(), key);
        }
    }
}

bool is_bundle_name(std::string_view name) {
    return !name.empty() && name.size() <= 128 &&
           std::all_of(name.begin(), name.end(),
                       [](char c) {
                           return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' ||
                                  c == '_' || c == '+' || c == '-';
                       }) &&
           name.front() != '.' && name.front() != '+' && name.front() != '-';
}

void check_bundle_name(std::string_view name) {
    if (!is_bundle_name(name)) {
        throw bad_input("--name: '{}' is not a bundle name; use letters, digits, '.', '_', '+' "
                        "and '-' only (at most 128 characters, not starting with '.', '+' or '-')",
                        name);
    }
}

void check_inputs(const BundleInputs& inputs) {
    Diagnostics diagnostics;
    std::map<std::string, SourceLocation> names;
    for (const auto& image : inputs.images) {
        const std::string name =
            image.ref_name.empty() ? default_ref_name(image.reference) : image.ref_name;
        const auto [found, inserted] = names.emplace(name, image.where);
        if (!inserted) {
            diagnostics.error(image.where,
                              fmt::format("the image name '{}' is already used at {}; give one "
                                          "of them another name",
                                          name, found->second.str()));
        }
    }
    std::map<std::string, SourceLocation> charts;
    for (const auto& chart : inputs.charts) {
        if (::access(chart.path.c_str(), R_OK) != 0 || !stdfs::is_regular_file(chart.path)) {
            diagnostics.error(chart.where, fmt::format("the chart {} is not a readable file",
                                                       chart.path.string()));
            continue;
        }
        const auto [found, inserted] = charts.emplace(chart.path.filename().string(), chart.where);
        if (!inserted) {
            diagnostics.error(chart.where,
                              fmt::format("a chart named {} is already listed at {}",
                                          chart.path.filename().string(), found->second.str()));
        }
    }
    std::map<std::string, SourceLocation> destinations;
    for (const auto& file : inputs.files) {
        if (::access(file.source.c_str(), R_OK) != 0 || !stdfs::is_regular_file(file.source)) {
            diagnostics.error(file.where, fmt::format("the file {} is not a readable file",
                                                      file.source.string()));
            continue;
        }
        const auto [found, inserted] = destinations.emplace(file.dest, file.where);
        if (!inserted) {
            diagnostics.error(file.where, fmt::format("dest '{}' is already used at {}", file.dest,
                                                      found->second.str()));
        }
    }
    diagnostics.throw_if_any();
}

} // namespace edgeforge::content
