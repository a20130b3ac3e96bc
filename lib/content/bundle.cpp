// Air-gapped content bundles: many images (one deduplicated OCI layout), Helm charts and files
// packed as one reproducible, optionally signed and split <name>.tar.zst.
// About 800 lines: collecting images from every source and writing them share the bundle model;
// the archive writer, bundle files and reading/verify live in their own files.
#include "content/bundle.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <yaml-cpp/yaml.h>
#include <zstd.h>

#include "content/bundle_files.h"
#include "content/parts.h"
#include "content/tar_zst_writer.h"
#include "content/sign.h"
#include "oci/pull_progress.h"
#include "base/artifact.h"
#include "oci/archive.h"
#include "oci/blob_cache.h"
#include "oci/registry.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/yaml_check.h"
#include "util/json.h"

namespace edgeforge::content {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

namespace {

using detail::TarZstWriter;
using detail::ZstdFileSink;

using oci::Descriptor;
using oci::descriptor_json;
using oci::k_ref_name_annotation;
constexpr int k_max_depth = 4;

// ---- collecting the images ------------------------------------------------------------------

struct BlobFile {
    stdfs::path path;
    std::uint64_t size = 0;
};

struct BundledImage {
    std::string ref_name;
    std::string source;
    // The entries it gets in index.json (one; several when a layout lists the platforms of one
    // image as separate untagged entries).
    std::vector<json> index_entries;
    std::vector<std::string> platforms;
    std::set<std::string> blobs;
    std::uint64_t size = 0; // every blob it uses, once
};

// A descriptor of `image`'s content; not one is a failed build naming the image.
Descriptor parse_descriptor(const json& value, std::string_view image, std::string_view what) {
    auto read = oci::read_descriptor(value, what);
    if (!read.descriptor) {
        throw build_failed("image {}: {}", image, read.problem);
    }
    return std::move(*read.descriptor);
}

std::string platform_text(const json& platform) {
    if (!platform.is_object()) {
        return "unknown";
    }
    std::string text = platform.value("os", std::string("unknown")) + "/" +
                       platform.value("architecture", std::string("unknown"));
    const auto variant = platform.value("variant", std::string());
    return variant.empty() ? text : text + "/" + variant;
}

json parse_json_file(const stdfs::path& file, std::string_view image, std::string_view what) {
    try {
        return util::parse_json(util::read_file(file));
    } catch (const std::exception& error) {
        throw build_failed("image {}: the {} {} is not readable JSON: {}", image, what,
                           file.string(), error.what());
    }
}

// Where the blobs of one image come from while walking its index and manifests.
class BlobSource {
  public:
    virtual ~BlobSource() = default;
    // An index or manifest, verified against its digest.
    virtual stdfs::path manifest(const Descriptor& descriptor) = 0;
    // Configs and layers; their digests are verified when they are copied into the archive.
    virtual std::vector<stdfs::path> blobs(const std::vector<Descriptor>& descriptors) = 0;
};

class LayoutSource : public BlobSource {
  public:
    LayoutSource(stdfs::path directory, std::string image)
        : directory_(std::move(directory)), image_(std::move(image)) {}

    stdfs::path path_of(const Descriptor& descriptor) const {
        const auto path = directory_ / "blobs" / "sha256" / descriptor.digest.substr(7);
        std::error_code error;
        const auto size = stdfs::file_size(path, error);
        if (error) {
            throw build_failed("image {}: blob {} is missing ({} does not exist); the layout is "
                               "incomplete",
                               image_, descriptor.digest, path.string());
        }
        if (size != descriptor.size) {
            throw build_failed("image {}: blob {} is {} bytes, its descriptor says {}", image_,
                               descriptor.digest, size, descriptor.size);
        }
        return path;
    }
    stdfs::path manifest(const Descriptor& descriptor) override {
        const auto path = path_of(descriptor);
        oci::verify_blob(path, descriptor.digest, image_, "manifest");
        return path;
    }
    std::vector<stdfs::path> blobs(const std::vector<Descriptor>& descriptors) override {
        std::vector<stdfs::path> paths;
        for (const auto& descriptor : descriptors) {
            paths.push_back(path_of(descriptor));
        }
        return paths;
    }

  private:
    stdfs::path directory_;
    std::string image_;
};

class RegistrySource : public BlobSource {
  public:
    RegistrySource(const oci::ImageReference& reference, const oci::OpenOptions& options,
                   std::string image)
        : client_(reference.registry, options.registry),
          cache_(options.cache_dir.empty() ? oci::default_cache_dir() : options.cache_dir),
          repository_(reference.repository), image_(std::move(image)) {}

    oci::ManifestResponse top(std::string_view tag_or_digest) {
        return client_.get_manifest(repository_, tag_or_digest);
    }
    stdfs::path store(const oci::ManifestResponse& response) {
        return cache_.store_bytes(response.digest, response.body);
    }
    stdfs::path manifest(const Descriptor& descriptor) override {
        return store(client_.get_manifest(repository_, descriptor.digest));
    }
    std::vector<stdfs::path> blobs(const std::vector<Descriptor>& descriptors) override {
        std::vector<oci::BlobRequest> requests;
        for (const auto& descriptor : descriptors) {
            requests.push_back(
                oci::BlobRequest{descriptor.digest, descriptor.size, "blob", image_});
        }
        return client_.fetch_blobs(repository_, requests, cache_);
    }

  private:
    oci::RegistryClient client_;
    oci::BlobCache cache_;
    std::string repository_;
    std::string image_;
};

class Collector {
  public:
    std::map<std::string, BlobFile> blobs; // by digest, sorted
    std::vector<BundledImage> images;
    std::vector<std::shared_ptr<const void>> storage; // extracted archives, synthesized files

    void add_blob(BundledImage& image, const std::string& digest, const stdfs::path& path,
                  std::uint64_t size) {
        blobs.emplace(digest, BlobFile{path, size});
        if (image.blobs.insert(digest).second) {
            image.size += size;
        }
    }

    // Copies the index or manifest `descriptor` and everything it refers to.
    void walk(BlobSource& source, const Descriptor& descriptor, BundledImage& image, int depth) {
        if (depth > k_max_depth) {
            throw build_failed("image {}: image indexes are nested more than {} deep", image.source,
                               k_max_depth);
        }
        const auto path = source.manifest(descriptor);
        add_blob(image, descriptor.digest, path, descriptor.size);
        const json content = parse_json_file(path, image.source, "manifest");
        if (!content.is_object()) {
            throw build_failed("image {}: manifest {} is not a JSON object", image.source,
                               descriptor.digest);
        }
        if (content.contains("manifests")) {
            if (!content["manifests"].is_array()) {
                throw build_failed("image {}: index {} has no list of manifests", image.source,
                                   descriptor.digest);
            }
            for (std::size_t i = 0; i < content["manifests"].size(); ++i) {
                const auto child = parse_descriptor(content["manifests"][i], image.source,
                                                    fmt::format("manifests[{}]", i));
                if (depth == 0 && !child.platform_json.is_null()) {
                    image.platforms.push_back(platform_text(child.platform_json));
                }
                walk(source, child, image, depth + 1);
            }
            return;
        }
        std::vector<Descriptor> parts;
        if (content.contains("config")) {
            parts.push_back(parse_descriptor(content["config"], image.source, "config"));
        }
        if (content.contains("layers") && content["layers"].is_array()) {
            for (std::size_t i = 0; i < content["layers"].size(); ++i) {
                parts.push_back(parse_descriptor(content["layers"][i], image.source,
                                                 fmt::format("layers[{}]", i)));
            }
        }
        const auto paths = source.blobs(parts);
        for (std::size_t i = 0; i < parts.size(); ++i) {
            add_blob(image, parts[i].digest, paths[i], parts[i].size);
        }
        if (depth == 0 && parts.size() > 0 &&
            parts.front().media_type.find("config") != std::string::npos) {
            // A plain manifest at the top: its platform is in its config.
            const json config = parse_json_file(paths.front(), image.source, "config");
            if (config.is_object() && config.contains("architecture")) {
                json platform = {{"os", config.value("os", std::string("linux"))},
                                 {"architecture", config.value("architecture", std::string())}};
                if (config.contains("variant") && config["variant"].is_string()) {
                    platform["variant"] = config["variant"];
                }
                image.platforms.push_back(platform_text(platform));
            }
        }
    }
};

std::string layer_media_type_for(const oci::Layer& layer) {
    using namespace oci::media_type;
    if (layer.media_type == docker_layer_gzip || layer.media_type == oci_layer_gzip) {
        return std::string(oci_layer_gzip);
    }
    if (layer.media_type == oci_layer_zstd) {
        return std::string(oci_layer_zstd);
    }
    if (layer.media_type.empty() || layer.media_type == oci_layer_tar) {
        return std::string(oci_layer_tar);
    }
    return layer.media_type;
}

// One platform through open_image(): its platform selection, checks and messages.
void collect_one_platform(Collector& collector, BundledImage& bundled, const ImageRequest& request,
                          const BuildOptions& options, const stdfs::path& synth_dir) {
    oci::Image image = oci::open_image(request.reference, options.arch, options.open);
    if (image.storage) {
        collector.storage.push_back(image.storage);
    }
    Descriptor top;
    if (!image.manifest_path.empty()) {
        top = Descriptor{image.manifest_media_type, image.manifest_digest,
                         stdfs::file_size(image.manifest_path)};
        collector.add_blob(bundled, top.digest, image.manifest_path, top.size);
        collector.add_blob(bundled, image.config_digest, image.config_path,
                           stdfs::file_size(image.config_path));
        for (const auto& layer : image.layers) {
            collector.add_blob(bundled, layer.digest, layer.path, layer.size);
        }
    } else {
        // docker-archive: no manifest to keep; write an OCI manifest for the config and layers.
        json manifest = {{"schemaVersion", 2}, {"mediaType", oci::media_type::oci_manifest}};
        const std::string config_digest = image.config_digest.empty()
                                              ? "sha256:" + util::sha256_file_hex(image.config_path)
                                              : image.config_digest;
        const auto config_size = stdfs::file_size(image.config_path);
        manifest["config"] = {{"mediaType", oci::media_type::oci_config},
                              {"digest", config_digest},
                              {"size", config_size}};
        collector.add_blob(bundled, config_digest, image.config_path, config_size);
        manifest["layers"] = json::array();
        for (const auto& layer : image.layers) {
            const std::string digest =
                layer.digest.empty() ? "sha256:" + util::sha256_file_hex(layer.path) : layer.digest;
            manifest["layers"].push_back({{"mediaType", layer_media_type_for(layer)},
                                          {"digest", digest},
                                          {"size", layer.size}});
            collector.add_blob(bundled, digest, layer.path, layer.size);
        }
        const std::string bytes = manifest.dump();
        const std::string hex = util::sha256_hex(bytes);
        const auto path = synth_dir / hex;
        util::write_file_atomically(path, bytes);
        top = Descriptor{std::string(oci::media_type::oci_manifest), "sha256:" + hex, bytes.size()};
        collector.add_blob(bundled, top.digest, path, top.size);
    }
    top.platform_json = {{"os", image.platform.os.empty() ? "linux" : image.platform.os},
                         {"architecture", image.platform.architecture}};
    if (!image.platform.variant.empty()) {
        top.platform_json["variant"] = image.platform.variant;
    }
    bundled.platforms.push_back(platform_text(top.platform_json));
    bundled.index_entries.push_back(descriptor_json(top));
}

// Every platform: the index (or manifest) the reference names, and all it refers to.
void collect_all_platforms(Collector& collector, BundledImage& bundled, const ImageRequest& request,
                           const BuildOptions& options) {
    using oci::Transport;
    const auto& reference = request.reference;
    if (reference.transport == Transport::registry) {
        RegistrySource source(reference, options.open, bundled.source);
        const auto response =
            source.top(reference.digest.empty() ? reference.tag : reference.digest);
        source.store(response);
        std::string type = response.media_type;
        if (type.empty() || type == "application/json") {
            type = util::parse_json(response.body).contains("manifests")
                       ? std::string(oci::media_type::oci_index)
                       : std::string(oci::media_type::oci_manifest);
        }
        const Descriptor top{type, response.digest, response.body.size()};
        collector.walk(source, top, bundled, 0);
        bundled.index_entries.push_back(descriptor_json(top));
        return;
    }
    stdfs::path directory = reference.path;
    if (reference.transport == Transport::oci_archive) {
        auto storage = std::make_shared<util::TempDir>(
            options.open.work_dir.empty() ? stdfs::temp_directory_path() : options.open.work_dir,
            "edgeforge-content-");
        oci::extract_archive(reference.path, storage->path(), bundled.source);
        directory = storage->path();
        collector.storage.push_back(storage);
    } else if (reference.transport != Transport::oci_layout) {
        // docker-archive files hold one image: one platform is all there is.
        throw std::logic_error("not a layout");
    }
    const auto index_file = directory / "index.json";
    if (!stdfs::exists(index_file)) {
        throw bad_input("image {}: {} is not an OCI image layout (no index.json)", bundled.source,
                        reference.path);
    }
    const json index = parse_json_file(index_file, bundled.source, "index");
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
        throw build_failed("image {}: index.json lists no manifests", bundled.source);
    }
    std::vector<Descriptor> matching;
    std::vector<std::string> tags;
    for (std::size_t i = 0; i < index["manifests"].size(); ++i) {
        const auto& entry = index["manifests"][i];
        const auto descriptor =
            parse_descriptor(entry, bundled.source, fmt::format("index.json manifests[{}]", i));
        std::string tag;
        if (entry.contains("annotations") && entry["annotations"].is_object()) {
            tag = entry["annotations"].value(std::string(k_ref_name_annotation), std::string());
        }
        if (!tag.empty()) {
            tags.push_back(tag);
        }
        if (reference.tag.empty() || tag == reference.tag || tag.ends_with(":" + reference.tag)) {
            matching.push_back(descriptor);
        }
    }
    if (matching.empty()) {
        throw bad_input("image {}: the layout has no tag '{}' (available tags: {})", bundled.source,
                        reference.tag, tags.empty() ? "none" : util::join(tags, ", "));
    }
    LayoutSource source(directory, bundled.source);
    for (const auto& descriptor : matching) {
        collector.walk(source, descriptor, bundled, 0);
        bundled.index_entries.push_back(descriptor_json(descriptor));
    }
}

// ---- charts and files -----------------------------------------------------------------------

struct StoredFile {
    std::string name; // path inside the archive
    stdfs::path source;
    std::uint64_t size = 0;
    std::string sha256;
    unsigned mode = 0644;
    json record; // its entry in bundle.json
};

// name and version from the Chart.yaml at the top of a chart archive.
std::pair<std::string, std::string> read_chart_metadata(const stdfs::path& chart,
                                                        const SourceLocation& where) {
    const oci::TarFileErrors errors{
        [&](const std::string& reason) {
            return bad_input("{}: cannot read the chart {}: {}", where.str(), chart.string(),
                             reason);
        },
        [&](const std::string& reason) {
            return bad_input("{}: the chart {} is not a readable .tgz: {}", where.str(),
                             chart.string(), reason);
        }};
    std::optional<std::pair<std::string, std::string>> found;
    oci::for_each_tar_entry(chart, errors, [&](archive* reader, archive_entry* entry) {
        const auto components = oci::normalize_entry_path(oci::entry_pathname(entry));
        if (!components || components->size() != 2 || (*components)[1] != "Chart.yaml") {
            return true;
        }
        std::string text;
        char buffer[8192];
        la_ssize_t got = 0;
        while ((got = archive_read_data(reader, buffer, sizeof buffer)) > 0 &&
               text.size() < (1u << 20)) {
            text.append(buffer, static_cast<std::size_t>(got));
        }
        const auto loaded = util::load_yaml(text);
        if (loaded.issue) {
            throw bad_input("{}: {}: Chart.yaml is not valid YAML: {}", where.str(),
                            chart.string(), loaded.issue->message);
        }
        try {
            const YAML::Node& node = loaded.root;
            found.emplace(node["name"] ? node["name"].as<std::string>() : std::string(),
                          node["version"] ? node["version"].as<std::string>() : std::string());
        } catch (const YAML::Exception& error) {
            throw bad_input("{}: {}: Chart.yaml is not valid YAML: {}", where.str(),
                            chart.string(), error.msg);
        }
        return false;
    });
    if (!found) {
        throw bad_input("{}: {} is not a Helm chart archive (no CHART/Chart.yaml inside)",
                        where.str(), chart.string());
    }
    return *found;
}

std::vector<StoredFile> stored_files(const BundleInputs& inputs) {
    std::vector<StoredFile> stored;
    for (const auto& chart : inputs.charts) {
        const auto [name, version] = read_chart_metadata(chart.path, chart.where);
        StoredFile file;
        file.name = "charts/" + chart.path.filename().string();
        file.source = chart.path;
        file.size = stdfs::file_size(chart.path);
        file.sha256 = util::sha256_file_hex(chart.path);
        file.record = {{"path", file.name},
                       {"name", name},
                       {"version", version},
                       {"size", file.size},
                       {"sha256", file.sha256}};
        stored.push_back(std::move(file));
    }
    for (const auto& request : inputs.files) {
        StoredFile file;
        file.name = "files/" + request.dest;
        file.source = request.source;
        file.size = stdfs::file_size(request.source);
        file.sha256 = util::sha256_file_hex(request.source);
        file.mode = request.mode;
        file.record = {{"path", file.name},
                       {"size", file.size},
                       {"sha256", file.sha256},
                       {"mode", fmt::format("{:04o}", request.mode)}};
        stored.push_back(std::move(file));
    }
    std::sort(stored.begin(), stored.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return stored;
}

} // namespace

// ---- build --------------------------------------------------------------------------------

namespace {

// Everything checked and read before the first image is pulled.
struct ResolvedBundle {
    std::set<std::string> base_blobs;
    json base_record; // null without --existing-bundle
    std::vector<StoredFile> files;
};

ResolvedBundle resolve_bundle(const BundleInputs& inputs, const BuildOptions& options) {
    if (inputs.images.empty() && inputs.charts.empty() && inputs.files.empty()) {
        throw bad_input("content build: nothing to bundle; give --image, --images-file or "
                        "--manifest");
    }
    if (options.level < 1 || options.level > 19) {
        throw bad_input("--level: {} is not a zstd level between 1 and 19", options.level);
    }
    check_inputs(inputs);
    // Keys, base bundles and charts are checked before anything is pulled.
    if (options.signing_key) {
        (void)sign_message(*options.signing_key, signed_message(std::string(64, '0')));
    }
    ResolvedBundle resolved;
    if (options.existing_bundle) {
        const json base = read_bundle_manifest_json(*options.existing_bundle);
        for (const auto& digest : base.value("blobs", json::array())) {
            resolved.base_blobs.insert(digest.get<std::string>());
        }
        const BundleFiles files = locate_bundle(*options.existing_bundle);
        const stdfs::path checksum(files.archive.string() + ".sha256");
        std::string sha256;
        if (stdfs::exists(checksum)) {
            sha256 = read_checksum_file(checksum);
        } else if (files.parts_index) {
            sha256 = files.index.sha256;
        } else {
            sha256 = util::sha256_file_hex(files.archive);
        }
        resolved.base_record = {{"bundle", files.archive.filename().string()},
                                {"name", base.value("name", std::string())},
                                {"sha256", sha256}};
    }
    resolved.files = stored_files(inputs);
    return resolved;
}

} // namespace

json plan_bundle(const BundleInputs& inputs, const BuildOptions& options) {
    const ResolvedBundle resolved = resolve_bundle(inputs, options);
    const stdfs::path directory = options.output_dir / ("content-" + options.name);
    json images = json::array();
    for (const auto& request : inputs.images) {
        images.push_back({{"ref", request.ref_name.empty() ? default_ref_name(request.reference)
                                                           : request.ref_name},
                          {"source", request.reference.str()},
                          {"listed_at", request.where.str()}});
    }
    json plan = {{"name", options.name},
                 {"directory", directory.string()},
                 {"archive", (directory / (options.name + ".tar.zst")).string()},
                 {"platforms", options.platforms == PlatformSelection::all
                                   ? std::string("all")
                                   : std::string(options.arch.name())},
                 {"level", options.level},
                 {"split_size", options.split_size},
                 {"signing_key", options.signing_key ? options.signing_key->string() : ""},
                 {"images", images},
                 {"charts", json::array()},
                 {"files", json::array()}};
    for (const auto& file : resolved.files) {
        plan[file.name.starts_with("charts/") ? "charts" : "files"].push_back(file.record);
    }
    if (!resolved.base_record.is_null()) {
        plan["base"] = resolved.base_record;
        plan["base"]["blobs"] = resolved.base_blobs.size();
    }
    return plan;
}

std::string render_plan(const json& plan) {
    std::string out = fmt::format("content bundle {} -> {}\n", plan.value("name", std::string()),
                                  plan.value("archive", std::string()));
    out += fmt::format("  platforms {}, zstd level {}", plan.value("platforms", std::string()),
                       plan.value("level", 0));
    if (plan.value("split_size", 0ULL) != 0) {
        out += fmt::format(", split into parts of {}",
                           util::format_bytes(plan.value("split_size", 0ULL)));
    }
    if (!plan.value("signing_key", std::string()).empty()) {
        out += fmt::format(", signed with {}", plan.value("signing_key", std::string()));
    }
    out += "\n";
    for (const auto& image : plan.value("images", json::array())) {
        out += fmt::format("  image  {}  <- {} ({})\n", image.value("ref", std::string()),
                           image.value("source", std::string()),
                           image.value("listed_at", std::string()));
    }
    for (const auto& kind : {"charts", "files"}) {
        for (const auto& file : plan.value(kind, json::array())) {
            out += fmt::format(
                "  {}  {} ({})\n", kind == std::string_view("charts") ? "chart" : "file ",
                file.value("path", std::string()), util::format_bytes(file.value("size", 0ULL)));
        }
    }
    if (plan.contains("base")) {
        out += fmt::format("  incremental over {} (sha256:{}, {} blobs)\n",
                           plan["base"].value("bundle", std::string()),
                           plan["base"].value("sha256", std::string()),
                           plan["base"].value("blobs", 0ULL));
    }
    return out;
}

BuildResult build_bundle(const BundleInputs& inputs, const BuildOptions& options,
                         const Console& console) {
    ResolvedBundle resolved = resolve_bundle(inputs, options);
    const std::set<std::string>& base_blobs = resolved.base_blobs;
    json base_record = resolved.base_record;
    std::vector<StoredFile> files = std::move(resolved.files);

    // Fetch: every image into the cache (or found in its layout), each verified.
    const stdfs::path work_dir =
        options.open.work_dir.empty() ? stdfs::temp_directory_path() : options.open.work_dir;
    std::error_code work_error;
    stdfs::create_directories(work_dir, work_error);
    if (work_error) {
        throw build_failed("cannot create the work directory {}: {}", work_dir.string(),
                           work_error.message());
    }
    util::TempDir synth(work_dir, "edgeforge-content-");
    BuildOptions pulling = options;
    oci::show_pull_progress(pulling.open, console);
    Collector collector;
    for (const auto& request : inputs.images) {
        BundledImage bundled;
        bundled.source = request.text;
        bundled.ref_name =
            request.ref_name.empty() ? default_ref_name(request.reference) : request.ref_name;
        console.info("content: {} ({})", bundled.ref_name, request.text);
        try {
            if (options.platforms == PlatformSelection::all &&
                request.reference.transport != oci::Transport::docker_archive) {
                collect_all_platforms(collector, bundled, request, pulling);
            } else {
                collect_one_platform(collector, bundled, request, pulling, synth.path());
            }
        } catch (const Error& error) {
            throw build_failed("{}: cannot bundle image {}: {}", request.where.str(), request.text,
                               error.what());
        }
        std::sort(bundled.platforms.begin(), bundled.platforms.end());
        bundled.platforms.erase(std::unique(bundled.platforms.begin(), bundled.platforms.end()),
                                bundled.platforms.end());
        collector.images.push_back(std::move(bundled));
    }

    // The layout's index.json and the bundle manifest.
    json index = {{"schemaVersion", 2},
                  {"mediaType", oci::media_type::oci_index},
                  {"manifests", json::array()}};
    json manifest = {
        {"schemaVersion", 1}, {"kind", "edgeforge-content-bundle"}, {"name", options.name}};
    if (options.source_date_epoch) {
        manifest["created"] = *options.source_date_epoch;
    }
    manifest["images"] = json::array();
    for (const auto& image : collector.images) {
        for (auto entry : image.index_entries) {
            entry["annotations"] = {{std::string(k_ref_name_annotation), image.ref_name}};
            index["manifests"].push_back(entry);
        }
        const auto& top = image.index_entries.front();
        manifest["images"].push_back({{"ref", image.ref_name},
                                      {"source", image.source},
                                      {"mediaType", top.value("mediaType", std::string())},
                                      {"digest", top.value("digest", std::string())},
                                      {"platforms", image.platforms},
                                      {"size", image.size}});
    }
    std::vector<std::string> included;
    std::vector<std::string> skipped;
    std::uint64_t included_bytes = 0;
    std::uint64_t skipped_bytes = 0;
    for (const auto& [digest, blob] : collector.blobs) {
        if (base_blobs.count(digest) != 0) {
            skipped.push_back(digest);
            skipped_bytes += blob.size;
        } else {
            included.push_back(digest);
            included_bytes += blob.size;
        }
    }
    manifest["blobs"] = included;
    manifest["blobBytes"] = included_bytes;
    manifest["charts"] = json::array();
    manifest["files"] = json::array();
    std::uint64_t file_bytes = 0;
    for (const auto& file : files) {
        manifest[file.name.starts_with("charts/") ? "charts" : "files"].push_back(file.record);
        file_bytes += file.size;
    }
    if (options.existing_bundle) {
        base_record["blobs"] = skipped;
        base_record["blobBytes"] = skipped_bytes;
        manifest["base"] = base_record;
    }

    // Produce: everything under a temporary directory in the output directory.
    std::error_code error;
    const bool output_existed = stdfs::exists(options.output_dir, error);
    stdfs::create_directories(options.output_dir, error);
    if (error) {
        throw build_failed("cannot create the output directory {}: {}", options.output_dir.string(),
                           error.message());
    }
    struct RemoveIfCreated {
        const stdfs::path& directory;
        bool created;
        bool keep = false;
        ~RemoveIfCreated() {
            std::error_code ignored;
            if (created && !keep) {
                stdfs::remove(directory, ignored); // only when empty
            }
        }
    } output_guard{options.output_dir, !output_existed};

    BuildResult result;
    result.directory = options.output_dir / ("content-" + options.name);
    const std::string archive_name = options.name + ".tar.zst";
    {
        util::TempDir staging(options.output_dir, ".content-" + options.name + "-");
        const stdfs::path archive_path = staging.path() / archive_name;
        const std::int64_t mtime = options.source_date_epoch.value_or(0);
        Progress progress(console, "content", included_bytes + file_bytes);
        ZstdFileSink sink(archive_path, options.level, options.threads);
        console.info("content: writing {} ({} blobs, {}; zstd level {}, {} workers)", archive_name,
                     included.size(), util::format_bytes(included_bytes), options.level,
                     sink.workers());
        TarZstWriter tar(sink, mtime, progress);
        tar.bytes(std::string(k_bundle_manifest_name), manifest.dump(2) + "\n");
        tar.bytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
        tar.bytes("index.json", index.dump());
        tar.directory("blobs/");
        tar.directory("blobs/sha256/");
        for (const auto& digest : included) {
            const auto& blob = collector.blobs.at(digest);
            tar.file("blobs/sha256/" + digest.substr(7), blob.path, blob.size, digest,
                     blob.path.string());
        }
        std::set<std::string> directories;
        for (const auto& file : files) {
            // Parent directories first, each once (names are sorted, so parents come first).
            for (auto slash = file.name.find('/'); slash != std::string::npos;
                 slash = file.name.find('/', slash + 1)) {
                const std::string parent = file.name.substr(0, slash + 1);
                if (directories.insert(parent).second) {
                    tar.directory(parent);
                }
            }
            tar.file(file.name, file.source, file.size, "sha256:" + file.sha256,
                     file.source.string(), file.mode);
        }
        tar.close();
        sink.finish();
        progress.finish();
        result.size = sink.bytes();
        result.sha256 = sink.sha256();
        result.manifest = manifest;

        std::vector<std::string> outputs{archive_name};
        write_checksum_file(Artifact{archive_path, result.size, result.sha256});
        outputs.push_back(archive_name + ".sha256");
        if (options.signing_key) {
            util::write_file_atomically(
                staging.path() / (archive_name + ".sig"),
                sign_message(*options.signing_key, signed_message(result.sha256)));
            outputs.push_back(archive_name + ".sig");
        }
        if (options.split_size != 0) {
            console.info("content: splitting into parts of at most {}",
                         util::format_bytes(options.split_size));
            std::optional<util::AtomicFile> part;
            std::uint64_t number = 0;
            const PartsIndex parts_index = split_into_parts(
                archive_path, options.split_size,
                [&](const char* data, std::size_t size) {
                    if (!part) {
                        part.emplace(staging.path() / part_name(archive_name, number));
                    }
                    part->write(data, size);
                },
                [&](const BundlePart& done, std::uint64_t) {
                    part->commit();
                    part.reset();
                    ++number;
                    outputs.push_back(done.name);
                });
            const stdfs::path index_file = parts_index_path(staging.path() / archive_name);
            util::write_file_atomically(index_file, parts_index.text());
            outputs.push_back(index_file.filename().string());
            stdfs::remove(archive_path);
            outputs.erase(outputs.begin());
        }

        // Publish: move the new files in, then drop the leftovers of an earlier build.
        stdfs::create_directories(result.directory, error);
        if (error) {
            throw build_failed("cannot create {}: {}", result.directory.string(), error.message());
        }
        for (const auto& name : outputs) {
            stdfs::rename(staging.path() / name, result.directory / name);
            result.written.push_back(result.directory / name);
        }
        for (const auto& entry : stdfs::directory_iterator(result.directory)) {
            const std::string name = entry.path().filename().string();
            if (name.starts_with(archive_name) &&
                std::find(outputs.begin(), outputs.end(), name) == outputs.end()) {
                stdfs::remove(entry.path(), error);
            }
        }
        output_guard.keep = true;
    }
    result.archive = result.directory / archive_name;
    return result;
}

} // namespace edgeforge::content
