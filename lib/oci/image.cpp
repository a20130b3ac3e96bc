// Image sources (oci:, oci-archive:, docker-archive:, dir:, tar:, docker://) opened as one Image.
// About 900 lines: the six sources share the index/manifest/config checks of one Document model;
// descriptors, archives, registries and the blob cache live in their own files.
#include "oci/image.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <optional>
#include <system_error>

#include "oci/archive.h"
#include "oci/blob_cache.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::oci {
namespace {

using nlohmann::json;

constexpr int k_max_index_depth = 4;
// A registry image's config is downloaded whole and parsed in memory: 4 MiB, as for manifests.
constexpr std::uint64_t k_max_config_bytes = 4 << 20;
// Docker and containerd stop near 128 layers (overlayfs' limit); many more is a hostile or
// broken manifest, refused before anything is downloaded.
constexpr std::size_t k_max_layers = 1000;

constexpr std::array<std::string_view, 10> k_layer_media_types{
    media_type::oci_layer_tar,
    media_type::oci_layer_gzip,
    media_type::oci_layer_zstd,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    media_type::docker_layer_gzip,
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
};

// nlohmann's messages start with "[json.exception.parse_error.101] "; users need the rest.
std::string json_message(const std::exception& error) {
    std::string_view text = error.what();
    if (text.starts_with("[json.exception.")) {
        const auto end = text.find("] ");
        if (end != std::string_view::npos) {
            text.remove_prefix(end + 2);
        }
    }
    return std::string(text);
}

// Names the image and the JSON document in every message about the document's content.
class Document {
  public:
    Document(std::string_view image, std::filesystem::path file)
        : image_(image), file_(std::move(file)) {}

    json parse(std::string_view text) const {
        try {
            return util::parse_json(text);
        } catch (const json::exception& error) {
            throw bad_input("image {}: {} is not valid JSON: {}", image_, file_.string(),
                            json_message(error));
        }
    }

    template <typename... Args>
    [[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) const {
        throw bad_input("image {}: {}: {}", image_, file_.string(),
                        fmt::format(format, std::forward<Args>(args)...));
    }

    std::string string_field(const json& object, std::string_view key, bool required) const {
        const auto found = object.find(key);
        if (found == object.end() || found->is_null()) {
            if (required) {
                fail("'{}' is missing", key);
            }
            return {};
        }
        if (!found->is_string()) {
            fail("'{}' is not a string", key);
        }
        return found->get<std::string>();
    }

    const json& array_field(const json& object, std::string_view key) const {
        const auto found = object.find(key);
        if (found == object.end() || !found->is_array()) {
            fail("'{}' is missing or not an array", key);
        }
        return *found;
    }

    Descriptor descriptor(const json& value, std::string_view what) const {
        auto read = read_descriptor(value, what);
        if (!read.descriptor) {
            fail("{}", read.problem);
        }
        return std::move(*read.descriptor);
    }

    const std::filesystem::path& file() const { return file_; }

  private:
    std::string image_;
    std::filesystem::path file_;
};

std::string read_existing_file(const std::filesystem::path& file, std::string_view image) {
    try {
        return util::read_file(file);
    } catch (const std::system_error& error) {
        throw bad_input("image {}: cannot read {}: {}", image, file.string(),
                        error.code().message());
    }
}

// The architecture check shared by every source with metadata.
void check_platform(const Platform& platform, Arch arch, std::string_view image) {
    if (!platform.os.empty() && platform.os != "linux") {
        throw bad_input("image {} is a {} image; edgeforge builds Linux systems", image,
                        platform.os);
    }
    if (platform.architecture.empty()) {
        return;
    }
    const auto image_arch = Arch::parse(platform.architecture);
    if (!image_arch) {
        throw bad_input("image {} is for {}, but the build targets {}; use an {} image", image,
                        platform.architecture, arch.name(), arch.name());
    }
    if (*image_arch != arch) {
        throw bad_input("image {} is for {}, but the build targets {}; pass --arch {} or use an "
                        "{} image",
                        image, image_arch->name(), arch.name(), image_arch->name(), arch.name());
    }
}

// Takes the platform from the image's parsed config (OCI layouts and docker-archive alike) and
// checks it against the build's arch.
void read_config_platform(Image& image, const Document& config_document, Arch arch) {
    if (!image.config.is_object()) {
        config_document.fail("not a JSON object");
    }
    image.platform.os = config_document.string_field(image.config, "os", false);
    image.platform.architecture = config_document.string_field(image.config, "architecture", false);
    image.platform.variant = config_document.string_field(image.config, "variant", false);
    check_platform(image.platform, arch, image.name);
}

// Lower is better: arm64 images are v8 unless they say otherwise, and amd64 images without a
// variant (or v1) run on every x86-64 machine while v2/v3 need newer CPUs.
int variant_rank(Arch arch, std::string_view variant) {
    if (arch.id() == Arch::Id::arm64) {
        return variant == "v8" ? 0 : variant.empty() ? 1 : 2;
    }
    return variant.empty() ? 0 : variant == "v1" ? 1 : 2;
}

Descriptor choose_platform(const std::vector<Descriptor>& entries, Arch arch,
                           std::string_view image) {
    const Descriptor* best = nullptr;
    int best_rank = 0;
    std::vector<std::string> offered;
    for (const auto& entry : entries) {
        if (entry.platform.empty()) {
            continue;
        }
        if (entry.platform.architecture != "unknown") {
            offered.push_back(entry.platform.str());
        }
        const auto entry_arch = Arch::parse(entry.platform.architecture);
        if (!entry_arch || *entry_arch != arch ||
            (!entry.platform.os.empty() && entry.platform.os != "linux")) {
            continue;
        }
        const int rank = variant_rank(arch, entry.platform.variant);
        if (best == nullptr || rank < best_rank) {
            best = &entry;
            best_rank = rank;
        }
    }
    if (best != nullptr) {
        return *best;
    }
    std::string hint;
    for (const auto other : Arch::all()) {
        for (const auto& entry : entries) {
            const auto entry_arch = Arch::parse(entry.platform.architecture);
            if (entry_arch && *entry_arch == other && hint.empty()) {
                hint = fmt::format("pass --arch {} or ", other.name());
            }
        }
    }
    throw bad_input("image {} has no linux/{} image (it provides {}); {}use an image built for {}",
                    image, arch.name(),
                    offered.empty() ? "no platforms" : util::join(offered, ", "), hint,
                    arch.name());
}

// How messages name the files of a layout: by their path, or, for a layout extracted from an
// archive into a temporary directory, relative to the archive.
enum class PathDisplay { full, in_archive };

// An OCI image layout directory: index.json and blobs/sha256/<hex>.
class Layout {
  public:
    Layout(std::filesystem::path directory, std::string image, PathDisplay display)
        : directory_(std::move(directory)), image_(std::move(image)), display_(display) {}

    std::string shown(const std::filesystem::path& path) const {
        return display_ == PathDisplay::in_archive ? path.lexically_relative(directory_).string()
                                                   : path.string();
    }

    json read_index() const {
        std::error_code error;
        if (!std::filesystem::is_directory(directory_, error)) {
            throw bad_input("image {}: the directory {} does not exist", image_,
                            directory_.string());
        }
        const auto index_file = directory_ / "index.json";
        if (!std::filesystem::exists(index_file, error)) {
            if (display_ == PathDisplay::in_archive) {
                throw bad_input("image {}: the archive has no index.json; it is not an OCI image "
                                "archive (make one with `skopeo copy docker://IMAGE "
                                "oci-archive:FILE:TAG`)",
                                image_);
            }
            throw bad_input("image {}: {} not found; {} is not an OCI image layout (make one with "
                            "`skopeo copy docker://IMAGE oci:{}:TAG`)",
                            image_, index_file.string(), directory_.string(), directory_.string());
        }
        const auto layout_file = directory_ / "oci-layout";
        if (std::filesystem::exists(layout_file, error)) {
            const Document document(image_, shown(layout_file));
            const auto layout = document.parse(read_existing_file(layout_file, image_));
            if (!layout.is_object() || !layout.contains("imageLayoutVersion")) {
                document.fail("'imageLayoutVersion' is missing");
            }
        }
        const Document document(image_, shown(index_file));
        auto index = document.parse(read_existing_file(index_file, image_));
        if (!index.is_object()) {
            document.fail("not a JSON object");
        }
        return index;
    }

    std::filesystem::path blob_path(const std::string& digest) const {
        return directory_ / "blobs" / "sha256" / digest.substr(7);
    }

    // The blob's path once it is known to exist with the size its descriptor records.
    std::filesystem::path check_blob(const Descriptor& descriptor, std::string_view what) const {
        const auto path = blob_path(descriptor.digest);
        std::error_code error;
        const auto size = std::filesystem::file_size(path, error);
        if (error) {
            throw bad_input("image {}: blob {} ({}) is missing: {} does not exist; the layout is "
                            "incomplete, copy the image again",
                            image_, descriptor.digest, what, shown(path));
        }
        if (size != descriptor.size) {
            throw build_failed("image {}: blob {} ({}) is {} bytes, but its descriptor says {}; "
                               "the image is corrupt, copy it again",
                               image_, descriptor.digest, what, size, descriptor.size);
        }
        return path;
    }

    // A JSON blob (index, manifest, config), checked against its size and digest.
    json read_json_blob(const Descriptor& descriptor, std::string_view what) const {
        const auto path = check_blob(descriptor, what);
        const auto content = read_existing_file(path, image_);
        const auto actual = "sha256:" + util::sha256_hex(content);
        if (actual != descriptor.digest) {
            throw digest_mismatch(image_, descriptor.digest, what, actual);
        }
        return Document(image_, shown(path)).parse(content);
    }

    Document document(const Descriptor& descriptor) const {
        return Document(image_, shown(blob_path(descriptor.digest)));
    }

    Document index_document() const { return Document(image_, shown(directory_ / "index.json")); }

  private:
    std::filesystem::path directory_;
    std::string image_;
    PathDisplay display_;
};

std::vector<Descriptor> index_entries(const Document& document, const json& index) {
    std::vector<Descriptor> entries;
    const auto& manifests = document.array_field(index, "manifests");
    for (std::size_t i = 0; i < manifests.size(); ++i) {
        entries.push_back(document.descriptor(manifests[i], fmt::format("manifests[{}]", i)));
    }
    return entries;
}

// The entry of the layout's index.json the reference means: the one with the tag, or the only
// one; several entries under one tag (or untagged) are the platforms of one image.
Descriptor select_tagged(const std::vector<Descriptor>& entries, const ImageReference& reference,
                         Arch arch, std::string_view image, const Document& document) {
    std::vector<std::string> tags;
    for (const auto& entry : entries) {
        const auto tag = entry.ref_name();
        if (!tag.empty() && std::find(tags.begin(), tags.end(), tag) == tags.end()) {
            tags.push_back(tag);
        }
    }
    const std::string available =
        tags.empty() ? "it has no tagged images" : "available tags: " + util::join(tags, ", ");
    if (entries.empty()) {
        document.fail("the layout lists no images");
    }
    std::vector<Descriptor> matching;
    if (!reference.tag.empty()) {
        for (const auto& entry : entries) {
            const auto tag = entry.ref_name();
            if (tag == reference.tag || tag.ends_with(":" + reference.tag)) {
                matching.push_back(entry);
            }
        }
        if (matching.empty()) {
            throw bad_input("image {}: the layout has no tag '{}' ({})", image, reference.tag,
                            available);
        }
    } else {
        const bool any_platform =
            std::any_of(entries.begin(), entries.end(),
                        [](const auto& entry) { return !entry.platform.empty(); });
        if (entries.size() > 1 && tags.empty() && !any_platform) {
            throw bad_input("image {} holds {} untagged images and nothing tells them apart; "
                            "copy the one you mean into a layout of its own with a tag",
                            image, entries.size());
        }
        if (entries.size() > 1 && tags.size() > 1) {
            throw bad_input("image {} holds several images; add a tag to the reference, e.g. "
                            "{}{}:{} ({})",
                            image, transport_prefix(reference.transport), reference.path,
                            tags.front(), available);
        }
        matching = entries;
    }
    if (matching.size() == 1) {
        return matching.front();
    }
    return choose_platform(matching, arch, image);
}

bool looks_like_index(std::string_view media_type, const json& content) {
    if (!media_type.empty()) {
        return is_index_media_type(media_type);
    }
    return content.contains("manifests");
}

// The config and layer descriptors of an image manifest, checked: a container image config and
// layers edgeforge can unpack.
struct ManifestContent {
    Descriptor config;
    std::vector<Descriptor> layers;
};

ManifestContent parse_manifest(const Document& document, const json& manifest, const Image& image) {
    if (!manifest.is_object()) {
        document.fail("not a JSON object");
    }
    const auto type = document.string_field(manifest, "mediaType", false);
    if (!type.empty() && !is_manifest_media_type(type)) {
        document.fail("the media type '{}' is not an image manifest", type);
    }
    const auto config_value = manifest.find("config");
    if (config_value == manifest.end()) {
        document.fail("'config' is missing");
    }
    ManifestContent content;
    content.config = document.descriptor(*config_value, "config");
    if (content.config.media_type != media_type::oci_config &&
        content.config.media_type != media_type::docker_config) {
        throw bad_input("image {} is not a container image: its config has the media type '{}'",
                        image.name, content.config.media_type);
    }
    const auto& layers = document.array_field(manifest, "layers");
    if (layers.size() > k_max_layers) {
        document.fail("'layers' lists {} layers; edgeforge reads at most {} (Docker stops near "
                      "128): rebuild the image with fewer layers",
                      layers.size(), k_max_layers);
    }
    for (std::size_t i = 0; i < layers.size(); ++i) {
        auto layer_descriptor = document.descriptor(layers[i], fmt::format("layers[{}]", i));
        if (!is_layer_media_type(layer_descriptor.media_type)) {
            throw bad_input("image {}: layer {} has the media type '{}', which edgeforge cannot "
                            "unpack (it reads tar layers: plain, gzip or zstd)",
                            image.name, layer_descriptor.digest, layer_descriptor.media_type);
        }
        content.layers.push_back(std::move(layer_descriptor));
    }
    return content;
}

// Fills image.config, platform and layers from a manifest descriptor.
void read_manifest(const Layout& layout, const Descriptor& descriptor, Arch arch, Image& image) {
    const auto manifest = layout.read_json_blob(descriptor, "manifest");
    const auto content = parse_manifest(layout.document(descriptor), manifest, image);
    image.manifest_digest = descriptor.digest;
    image.manifest_path = layout.blob_path(descriptor.digest);
    image.manifest_media_type =
        descriptor.media_type.empty() ? std::string(media_type::oci_manifest) : descriptor.media_type;

    image.config = layout.read_json_blob(content.config, "config");
    image.config_digest = content.config.digest;
    image.config_path = layout.blob_path(content.config.digest);
    const auto config_document = layout.document(content.config);
    read_config_platform(image, config_document, arch);

    for (const auto& layer_descriptor : content.layers) {
        Layer layer;
        layer.kind = LayerKind::tar;
        layer.path = layout.check_blob(layer_descriptor, "layer");
        layer.media_type = layer_descriptor.media_type;
        layer.digest = layer_descriptor.digest;
        layer.size = layer_descriptor.size;
        image.layers.push_back(std::move(layer));
    }
}

void open_layout(const std::filesystem::path& directory, PathDisplay display,
                 const ImageReference& reference, Arch arch, Image& image) {
    const Layout layout(directory, image.name, display);
    const auto index = layout.read_index();
    const auto index_document = layout.index_document();
    auto descriptor = select_tagged(index_entries(index_document, index), reference, arch,
                                    image.name, index_document);
    for (int depth = 0;; ++depth) {
        if (depth > k_max_index_depth) {
            throw bad_input("image {}: image indexes are nested more than {} deep", image.name,
                            k_max_index_depth);
        }
        if (!descriptor.media_type.empty() && !is_index_media_type(descriptor.media_type) &&
            !is_manifest_media_type(descriptor.media_type)) {
            throw bad_input("image {}: {} has the media type '{}', which is neither an image "
                            "index nor an image manifest",
                            image.name, descriptor.digest, descriptor.media_type);
        }
        if (is_manifest_media_type(descriptor.media_type)) {
            read_manifest(layout, descriptor, arch, image);
            return;
        }
        // An index, or a descriptor without a media type: the content says which.
        const auto content = layout.read_json_blob(descriptor, "image index");
        const auto document = layout.document(descriptor);
        const auto own_type = content.is_object()
                                  ? document.string_field(content, "mediaType", false)
                                  : std::string();
        if (!content.is_object() ||
            !looks_like_index(own_type.empty() ? descriptor.media_type : own_type, content)) {
            read_manifest(layout, descriptor, arch, image);
            return;
        }
        descriptor = choose_platform(index_entries(document, content), arch, image.name);
    }
}

std::shared_ptr<util::TempDir> extraction_directory(const OpenOptions& options) {
    std::error_code error;
    const auto parent =
        options.work_dir.empty() ? std::filesystem::temp_directory_path() : options.work_dir;
    std::filesystem::create_directories(parent, error);
    if (error) {
        throw build_failed("cannot create the work directory {}: {}", parent.string(),
                           error.message());
    }
    try {
        return std::make_shared<util::TempDir>(parent, "edgeforge-image-");
    } catch (const std::system_error& failure) {
        throw build_failed("{}", failure.what());
    }
}

std::filesystem::path require_existing(const std::filesystem::path& path, std::string_view image,
                                       std::string_view what) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
        throw bad_input("image {}: {} {} does not exist", image, what, path.string());
    }
    return path;
}

// The digest a docker-archive member name carries: "blobs/sha256/<hex>" (Docker 25+) or
// "<hex>.json" (older configs).
std::string digest_from_member_name(std::string_view name) {
    if (name.starts_with("blobs/sha256/")) {
        const auto digest = "sha256:" + std::string(name.substr(13));
        return is_sha256_digest(digest) ? digest : std::string();
    }
    if (name.ends_with(".json") && name.find('/') == std::string_view::npos) {
        const auto digest = "sha256:" + std::string(name.substr(0, name.size() - 5));
        return is_sha256_digest(digest) ? digest : std::string();
    }
    return {};
}

void open_docker_archive(const ImageReference& reference, Arch arch, const OpenOptions& options,
                         Image& image) {
    const auto archive_file = require_existing(reference.path, image.name, "the archive");
    auto storage = extraction_directory(options);
    extract_archive(archive_file, storage->path(), image.name);
    const auto& root = storage->path();
    image.storage = storage;

    const auto manifest_file = root / "manifest.json";
    if (!std::filesystem::exists(manifest_file)) {
        throw bad_input("image {}: the archive has no manifest.json; is it `docker save` output?",
                        image.name);
    }
    const Document document(image.name, "manifest.json");
    const auto manifest = document.parse(read_existing_file(manifest_file, image.name));
    if (!manifest.is_array() || manifest.empty()) {
        document.fail("expected a list of images");
    }
    if (manifest.size() > 1) {
        std::vector<std::string> names;
        for (const auto& entry : manifest) {
            if (entry.is_object() && entry.contains("RepoTags") && entry["RepoTags"].is_array()) {
                for (const auto& tag : entry["RepoTags"]) {
                    if (tag.is_string()) {
                        names.push_back(tag.get<std::string>());
                    }
                }
            }
        }
        throw bad_input("image {}: the archive holds {} images ({}); save one image per archive "
                        "(docker save IMAGE)",
                        image.name, manifest.size(),
                        names.empty() ? "untagged" : util::join(names, ", "));
    }
    const auto& entry = manifest.front();
    if (!entry.is_object()) {
        document.fail("the image entry is not an object");
    }
    const auto config_name = document.string_field(entry, "Config", true);
    const auto config_path = resolve_inside(root, config_name);
    if (!config_path) {
        document.fail("the config '{}' is not in the archive", config_name);
    }
    const auto config_text = read_existing_file(*config_path, image.name);
    image.config_path = *config_path;
    image.config_digest = digest_from_member_name(config_name);
    if (!image.config_digest.empty()) {
        const auto actual = "sha256:" + util::sha256_hex(config_text);
        if (actual != image.config_digest) {
            throw digest_mismatch(image.name, image.config_digest, "config", actual);
        }
    }
    const Document config_document(image.name, config_name);
    image.config = config_document.parse(config_text);
    read_config_platform(image, config_document, arch);

    std::vector<std::string> diff_ids;
    if (const auto rootfs = image.config.find("rootfs");
        rootfs != image.config.end() && rootfs->is_object()) {
        if (const auto ids = rootfs->find("diff_ids"); ids != rootfs->end() && ids->is_array()) {
            for (const auto& id : *ids) {
                diff_ids.push_back(id.is_string() ? id.get<std::string>() : std::string());
            }
        }
    }
    const json no_sources = json::object();
    const auto sources_entry = entry.find("LayerSources");
    const json& sources =
        sources_entry != entry.end() && sources_entry->is_object() ? *sources_entry : no_sources;

    const auto& layers = document.array_field(entry, "Layers");
    if (layers.size() > k_max_layers) {
        document.fail("'Layers' lists {} layers; edgeforge reads at most {} (Docker stops near "
                      "128): rebuild the image with fewer layers",
                      layers.size(), k_max_layers);
    }
    for (std::size_t i = 0; i < layers.size(); ++i) {
        if (!layers[i].is_string()) {
            document.fail("Layers[{}] is not a string", i);
        }
        const auto name = layers[i].get<std::string>();
        const auto path = resolve_inside(root, name);
        if (!path) {
            document.fail("the layer '{}' is not in the archive", name);
        }
        std::error_code error;
        if (!std::filesystem::is_regular_file(*path, error)) {
            document.fail("the layer '{}' is not a file", name);
        }
        Layer layer;
        layer.kind = LayerKind::tar;
        layer.path = *path;
        layer.size = std::filesystem::file_size(*path, error);
        const auto compression = sniff_compression(*path);
        switch (compression) {
        case Compression::none:
            layer.media_type = media_type::oci_layer_tar;
            break;
        case Compression::gzip:
            layer.media_type = media_type::docker_layer_gzip;
            break;
        case Compression::zstd:
            layer.media_type = media_type::oci_layer_zstd;
            break;
        default:
            throw bad_input("image {}: the layer '{}' is compressed in a way docker-archive files "
                            "do not use (only plain, gzip and zstd tar layers are read)",
                            image.name, name);
        }
        // Which digest to hold the bytes to: the member name when it is one, the diff_id when the
        // layer is stored uncompressed (then they are the same bytes), or the compressed digest
        // Docker records in LayerSources.
        layer.digest = digest_from_member_name(name);
        const std::string diff_id = i < diff_ids.size() ? diff_ids[i] : std::string();
        if (layer.digest.empty() && compression == Compression::none && is_sha256_digest(diff_id)) {
            layer.digest = diff_id;
        }
        if (layer.digest.empty() && sources.contains(diff_id) && sources[diff_id].is_object()) {
            const auto digest = sources[diff_id].value("digest", std::string());
            if (is_sha256_digest(digest)) {
                layer.digest = digest;
            }
        }
        image.layers.push_back(std::move(layer));
    }
}

// Takes a shared lock on the manifest, config and layer blobs of a pulled image, so that a
// `cache prune` running alongside leaves them alone while the image is in use. A blob pruned
// between its download and its lock is pulled again.
std::shared_ptr<const void> hold_blobs(RegistryClient& client, const std::string& repository,
                                       const std::vector<BlobRequest>& layers,
                                       const BlobCache& cache, const Image& image) {
    auto held = std::make_shared<std::vector<std::shared_ptr<BlobCache::Lock>>>();
    for (const auto& [digest, size] :
         {std::pair{image.manifest_digest, std::optional<std::uint64_t>()},
          std::pair{image.config_digest, std::optional<std::uint64_t>()}}) {
        if (auto blob = cache.hold(digest, size)) {
            held->push_back(std::move(blob->lock));
        }
    }
    std::vector<BlobRequest> wanted = layers;
    for (int attempt = 0; !wanted.empty(); ++attempt) {
        std::vector<BlobRequest> missing;
        for (const auto& request : wanted) {
            if (auto blob = cache.hold(request.digest, request.size)) {
                held->push_back(std::move(blob->lock));
            } else {
                missing.push_back(request);
            }
        }
        if (!missing.empty() && attempt >= 2) {
            throw build_failed("image {}: layer {} keeps disappearing from the cache {} (is "
                               "`edgeforge cache prune` running in a loop?); run the build again",
                               image.name, missing.front().digest,
                               cache.cache_dir().string());
        }
        if (!missing.empty()) {
            client.fetch_blobs(repository, missing, cache, {});
        }
        wanted = std::move(missing);
    }
    return held;
}

// The digest of each layer's uncompressed tar from the config's rootfs.diff_ids, which the image
// spec requires, one per layer in order (Docker writes them too): merge_layers() checks each
// layer against it and keeps unpacked gzip layers under it. A config that contradicts its
// manifest (another count, an entry that is not a sha256 digest) is bad input. Sources without a
// config (tar:, dir:) have none.
void read_diff_ids(Image& image) {
    if (!image.config.is_object()) {
        return;
    }
    const json* diff_ids = nullptr;
    if (const auto rootfs = image.config.find("rootfs");
        rootfs != image.config.end() && rootfs->is_object()) {
        if (const auto found = rootfs->find("diff_ids"); found != rootfs->end()) {
            diff_ids = &*found;
        }
    }
    if (diff_ids == nullptr || !diff_ids->is_array()) {
        throw bad_input("image {}: its config has no rootfs.diff_ids list (the digest of each "
                        "layer's uncompressed tar, which the image spec requires); the image is "
                        "malformed: build or push it again",
                        image.name);
    }
    if (diff_ids->size() != image.layers.size()) {
        throw bad_input("image {}: its config lists {} diff_id{} (rootfs.diff_ids) for {} "
                        "layer{}; the config does not belong to these layers: build or push the "
                        "image again",
                        image.name, diff_ids->size(), diff_ids->size() == 1 ? "" : "s",
                        image.layers.size(), image.layers.size() == 1 ? "" : "s");
    }
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
        const auto& id = (*diff_ids)[i];
        if (!id.is_string() || !is_sha256_digest(id.get<std::string>())) {
            throw bad_input("image {}: layer {} of {} ({}): its diff_id in the config "
                            "(rootfs.diff_ids[{}]) is {}, not a sha256 digest; the image is "
                            "malformed: build or push it again",
                            image.name, i + 1, image.layers.size(), image.layers[i].name(), i,
                            util::printable_line(id.dump(), 80));
        }
        // Whether it is the layer's is known once the layer is read (merge_layers()).
        image.layers[i].diff_id = id.get<std::string>();
    }
}

// Pulls a registry image into the blob cache: the manifest (through an index to the platform of
// `arch`), the config and the layers, each verified against its digest on the way in.
void open_registry(const ImageReference& reference, Arch arch, const OpenOptions& options,
                   Image& image) {
    const BlobCache cache(options.cache_dir.empty() ? default_cache_dir() : options.cache_dir);
    RegistryClient client(reference.registry, options.registry);
    const std::string& repository = reference.repository;
    // How blob errors name the image: "edge/agent:latest".
    const std::string shown =
        repository + (reference.digest.empty() ? ":" + reference.tag : "@" + reference.digest);
    const auto progress = [&](const std::string& line) {
        if (options.on_progress) {
            options.on_progress(line);
        }
    };
    auto response = client.get_manifest(repository, reference.digest.empty() ? reference.tag
                                                                             : reference.digest);
    for (int depth = 0;; ++depth) {
        if (depth > k_max_index_depth) {
            throw bad_input("image {}: image indexes are nested more than {} deep", image.name,
                            k_max_index_depth);
        }
        // Manifests are content-addressed too; keeping them lets a later pull by digest and
        // `cache ls` see what was pulled.
        cache.store_bytes(response.digest, response.body);
        const Document document(image.name, "manifest " + response.digest);
        const auto content = document.parse(response.body);
        if (!content.is_object()) {
            document.fail("not a JSON object");
        }
        std::string type = response.media_type;
        if (!is_index_media_type(type) && !is_manifest_media_type(type)) {
            if (!type.empty() && type != "application/json") {
                throw bad_input("image {}: the registry served '{}' for it, which is neither an "
                                "image index nor an image manifest",
                                image.name, type);
            }
            type = content.contains("manifests") ? std::string(media_type::oci_index)
                                                 : std::string(media_type::oci_manifest);
        }
        if (is_index_media_type(type)) {
            const auto chosen = choose_platform(index_entries(document, content), arch, image.name);
            response = client.get_manifest(repository, chosen.digest);
            continue;
        }
        const auto manifest = parse_manifest(document, content, image);
        image.manifest_digest = response.digest;
        image.manifest_path = cache.blob_path(response.digest);
        image.manifest_media_type = type;

        if (manifest.config.size > k_max_config_bytes) {
            throw bad_input("image {}: its config {} is {} by its descriptor, larger than {}; "
                            "that is not an image config",
                            image.name, manifest.config.digest,
                            util::format_bytes(manifest.config.size),
                            util::format_bytes(k_max_config_bytes));
        }
        const auto config_path = client.fetch_blob(
            repository, BlobRequest{manifest.config.digest, manifest.config.size, "config", shown},
            cache);
        const Document config_document(image.name, "config " + manifest.config.digest);
        image.config = config_document.parse(read_existing_file(config_path, image.name));
        image.config_digest = manifest.config.digest;
        image.config_path = config_path;
        read_config_platform(image, config_document, arch);

        std::vector<BlobRequest> requests;
        std::uint64_t missing_bytes = 0;
        std::size_t missing = 0;
        for (const auto& layer : manifest.layers) {
            requests.push_back(BlobRequest{layer.digest, layer.size, "layer", shown});
            if (!cache.find(layer.digest, layer.size)) {
                ++missing;
                missing_bytes += layer.size;
            }
        }
        std::vector<std::filesystem::path> paths;
        if (options.metadata_only) {
            for (const auto& request : requests) {
                paths.push_back(cache.blob_path(request.digest));
            }
        } else {
            if (missing > 0) {
                progress(fmt::format("pulling {}: {} of {} layers ({})", image.name, missing,
                                     requests.size(), util::format_bytes(missing_bytes)));
            }
            std::uint64_t done = 0;
            const auto on_bytes = [&](std::uint64_t bytes) {
                // A download restarted from scratch counts twice; the bar must not overshoot.
                done = std::min(done + bytes, missing_bytes);
                options.on_pull_bytes(done, missing_bytes);
            };
            paths = client.fetch_blobs(
                repository, requests, cache,
                options.on_pull_bytes ? on_bytes : std::function<void(std::uint64_t)>());
        }
        if (!options.metadata_only) {
            image.storage = hold_blobs(client, repository, requests, cache, image);
        }
        for (std::size_t i = 0; i < manifest.layers.size(); ++i) {
            Layer layer;
            layer.kind = LayerKind::tar;
            layer.path = paths[i];
            layer.media_type = manifest.layers[i].media_type;
            layer.digest = manifest.layers[i].digest;
            layer.size = manifest.layers[i].size;
            image.layers.push_back(std::move(layer));
        }
        return;
    }
}

std::string describe(const Image& image) {
    const auto count = image.layers.size();
    switch (image.reference.transport) {
    case Transport::directory:
        return fmt::format("{} (root filesystem directory)", image.name);
    case Transport::tarball:
        return fmt::format("{} (root filesystem tarball, {})", image.name,
                           util::format_bytes(image.layer_bytes()));
    default:
        return fmt::format("{} ({}, {} {}, {})", image.name,
                           image.platform.empty() ? "no platform" : image.platform.str(), count,
                           count == 1 ? "layer" : "layers",
                           util::format_bytes(image.layer_bytes()));
    }
}

} // namespace

bool is_index_media_type(std::string_view type) {
    return type == media_type::oci_index || type == media_type::docker_manifest_list;
}

bool is_manifest_media_type(std::string_view type) {
    return type == media_type::oci_manifest || type == media_type::docker_manifest;
}

bool is_layer_media_type(std::string_view type) {
    return std::find(k_layer_media_types.begin(), k_layer_media_types.end(), type) !=
           k_layer_media_types.end();
}

std::string Layer::name() const {
    return digest.empty() ? path.string() : digest;
}

std::uint64_t Image::layer_bytes() const {
    std::uint64_t total = 0;
    for (const auto& layer : layers) {
        total += layer.size;
    }
    return total;
}

Error digest_mismatch(std::string_view image, std::string_view digest, std::string_view what,
                      std::string_view actual) {
    return build_failed("image {}: blob {} ({}) is corrupt: its content hashes to {}; copy the "
                        "image again",
                        image, digest, what, actual);
}

void verify_blob(const std::filesystem::path& file, std::string_view digest, std::string_view image,
                 std::string_view what) {
    std::string actual;
    try {
        actual = "sha256:" + util::sha256_file_hex(file);
    } catch (const std::system_error& error) {
        throw bad_input("image {}: cannot read {} ({}): {}", image, file.string(), what,
                        error.code().message());
    }
    if (actual != digest) {
        throw digest_mismatch(image, digest, what, actual);
    }
}

std::filesystem::path default_cache_dir() {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
        return std::filesystem::path(xdg) / "edgeforge";
    }
    if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
        return std::filesystem::path(home) / ".cache" / "edgeforge";
    }
    return std::filesystem::temp_directory_path() / "edgeforge-cache";
}

Image open_image(const ImageReference& reference, Arch arch, const OpenOptions& options) {
    Image image;
    image.reference = reference;
    image.name = reference.str();
    switch (reference.transport) {
    case Transport::registry:
        open_registry(reference, arch, options, image);
        break;
    case Transport::oci_layout:
        open_layout(reference.path, PathDisplay::full, reference, arch, image);
        break;
    case Transport::oci_archive: {
        const auto archive_file = require_existing(reference.path, image.name, "the archive");
        auto storage = extraction_directory(options);
        extract_archive(archive_file, storage->path(), image.name);
        image.storage = storage;
        open_layout(storage->path(), PathDisplay::in_archive, reference, arch, image);
        break;
    }
    case Transport::docker_archive:
        open_docker_archive(reference, arch, options, image);
        break;
    case Transport::directory: {
        std::error_code error;
        if (!std::filesystem::is_directory(reference.path, error)) {
            throw bad_input("image {}: the directory {} does not exist", image.name,
                            reference.path);
        }
        Layer layer;
        layer.kind = LayerKind::directory;
        layer.path = std::filesystem::absolute(reference.path);
        image.layers.push_back(std::move(layer));
        break;
    }
    case Transport::tarball: {
        std::error_code error;
        const auto size = std::filesystem::file_size(reference.path, error);
        if (error) {
            throw bad_input("image {}: the tarball {} does not exist or is not a file", image.name,
                            reference.path);
        }
        Layer layer;
        layer.kind = LayerKind::tar;
        layer.path = std::filesystem::absolute(reference.path);
        layer.size = size;
        image.layers.push_back(std::move(layer));
        break;
    }
    }
    read_diff_ids(image);
    image.description = describe(image);
    return image;
}

} // namespace edgeforge::oci
