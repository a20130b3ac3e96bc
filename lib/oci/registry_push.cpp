// Pushing to a registry: blob uploads (monolithic or chunked, in parallel), mounts, manifests.
#include "oci/registry.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <system_error>

#include <fcntl.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "oci/descriptor.h"
#include "oci/image.h"
#include "oci/registry_state.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::oci {
namespace stdfs = std::filesystem;

std::string RegistryClient::State::start_upload(Connection& connection, std::string_view repository,
                                                const std::string& scope, std::string_view what) {
    Request request;
    request.method = "POST";
    request.has_body = true;
    request.url = fmt::format("/v2/{}/blobs/uploads/", repository);
    const Response response = send(connection, request, scope, what);
    const auto location = response.header("Location");
    if (response.status != 202 || !location) {
        throw status_error(what, response, "");
    }
    return absolute(*location);
}

bool RegistryClient::blob_exists(std::string_view repository, std::string_view digest) {
    State::Lease connection(*state_);
    Request request;
    request.method = "HEAD";
    request.url = fmt::format("/v2/{}/blobs/{}", repository, digest);
    const std::string what = fmt::format("blob {} of {}", digest, repository);
    const Response response = state_->send(
        *connection, request, fmt::format("repository:{}:pull,push", repository), what);
    if (response.status == 200) {
        return true;
    }
    if (response.status == 404) {
        return false;
    }
    throw state_->status_error(what, response, "");
}

bool RegistryClient::mount_blob(std::string_view repository, std::string_view digest,
                                std::string_view from_repository) {
    State::Lease connection(*state_);
    Request request;
    request.method = "POST";
    request.has_body = true;
    request.url = fmt::format("/v2/{}/blobs/uploads/?mount={}&from={}", repository,
                              url_escape((*connection).handle.get(), digest),
                              url_escape((*connection).handle.get(), from_repository));
    const std::string what =
        fmt::format("mount of blob {} from {} into {}", digest, from_repository, repository);
    const Response response = state_->send(
        *connection, request,
        fmt::format("repository:{}:pull,push repository:{}:pull", repository, from_repository),
        what);
    if (response.status == 201) {
        return true;
    }
    if (response.status == 202) {
        return false; // an upload session was opened instead; it expires unused
    }
    throw state_->status_error(what, response, "");
}

void RegistryClient::upload_blob(std::string_view repository, const stdfs::path& file,
                                 std::string_view digest, std::uint64_t size) {
    State::Lease connection(*state_);
    const std::string what = fmt::format("upload of blob {} to {}", digest, repository);
    const std::string scope = fmt::format("repository:{}:pull,push", repository);
    const util::FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        throw build_failed("cannot read {} to push it: {}", file.string(),
                           std::generic_category().message(errno));
    }
    std::string location = state_->start_upload(*connection, repository, scope, what);
    const std::string digest_parameter = "digest=" + url_escape((*connection).handle.get(), digest);
    const std::uint64_t chunk = state_->options.upload_chunk_size;
    Request put;
    put.method = "PUT";
    put.has_body = true;
    put.small = false;
    put.headers.emplace_back("Content-Type: application/octet-stream");
    if (chunk == 0 || size <= chunk) {
        put.file_fd = fd.get();
        put.file_length = size;
    } else {
        // Chunked: PATCH each range, following the Location every response gives.
        for (std::uint64_t offset = 0; offset < size; offset += chunk) {
            const std::uint64_t length = std::min(chunk, size - offset);
            Request patch;
            patch.method = "PATCH";
            patch.has_body = true;
            patch.small = false;
            patch.url = location;
            patch.file_fd = fd.get();
            patch.file_offset = offset;
            patch.file_length = length;
            patch.headers.emplace_back("Content-Type: application/octet-stream");
            patch.headers.push_back(
                fmt::format("Content-Range: {}-{}", offset, offset + length - 1));
            const Response response = state_->send(*connection, patch, scope, what);
            const auto next = response.header("Location");
            if (response.status != 202 || !next) {
                throw state_->status_error(fmt::format("{} (chunk at byte {})", what, offset),
                                           response, "");
            }
            location = state_->absolute(*next);
        }
    }
    put.url = with_query(location, digest_parameter);
    const Response response = state_->send(*connection, put, scope, what);
    if (response.status != 201) {
        throw state_->status_error(what, response, "");
    }
}

std::string RegistryClient::put_manifest(std::string_view repository, std::string_view reference,
                                         std::string_view media_type, std::string_view body) {
    State::Lease connection(*state_);
    const std::string what = fmt::format("manifest {}{}{}", repository,
                                         reference.starts_with("sha256:") ? "@" : ":", reference);
    Request request;
    request.method = "PUT";
    request.has_body = true;
    request.body = body;
    request.url = fmt::format("/v2/{}/manifests/{}", repository, reference);
    request.headers.push_back(fmt::format("Content-Type: {}", media_type));
    const Response response = state_->send(
        *connection, request, fmt::format("repository:{}:pull,push", repository), what);
    if (response.status != 201 && response.status != 200) {
        throw state_->status_error(what, response, "");
    }
    return "sha256:" + util::sha256_hex(body);
}

namespace {

using nlohmann::json;

struct LayoutBlob {
    std::string media_type;
    std::string digest;
    std::uint64_t size = 0;
};

LayoutBlob layout_descriptor(const json& value, const stdfs::path& layout, std::string_view what) {
    if (!value.is_object() || !value.contains("digest") || !value["digest"].is_string() ||
        !value.contains("size") || !value["size"].is_number_unsigned()) {
        throw bad_input("layout {}: {} is not a valid descriptor", layout.string(), what);
    }
    LayoutBlob blob;
    blob.media_type = value.value("mediaType", "");
    blob.digest = value["digest"].get<std::string>();
    blob.size = value["size"].get<std::uint64_t>();
    if (!blob.digest.starts_with("sha256:") || blob.digest.size() != 71) {
        throw bad_input("layout {}: {} has the digest '{}'; only sha256 is supported",
                        layout.string(), what, blob.digest);
    }
    return blob;
}

class Pusher {
  public:
    Pusher(stdfs::path layout, const ImageReference& destination, const RegistryOptions& options,
           const PushOptions& push)
        : layout_(std::move(layout)), destination_(destination), push_(push),
          client_(destination.registry, options), parallel_(options.parallel_downloads) {}

    PushResult run(const LayoutBlob& top, const std::string& reference) {
        PushResult result;
        result.digest = push_manifest(top, reference);
        result.media_type = top.media_type;
        result.uploaded = uploaded_;
        result.skipped = skipped_;
        result.mounted = mounted_;
        return result;
    }

  private:
    stdfs::path blob_file(const LayoutBlob& blob) const {
        const stdfs::path file = layout_ / "blobs" / "sha256" / blob.digest.substr(7);
        std::error_code error;
        const auto size = stdfs::file_size(file, error);
        if (error) {
            throw bad_input("layout {}: blob {} is missing ({}); the layout is incomplete",
                            layout_.string(), blob.digest, file.string());
        }
        if (size != blob.size) {
            throw bad_input("layout {}: blob {} is {} bytes, but its descriptor says {}",
                            layout_.string(), blob.digest, size, blob.size);
        }
        return file;
    }

    void progress(const std::string& line) {
        if (push_.on_progress) {
            const std::lock_guard lock(progress_mutex_); // blobs go up on several threads
            push_.on_progress(line);
        }
    }

    void push_blob(const LayoutBlob& blob, std::string_view what) {
        const std::string& repository = destination_.repository;
        const stdfs::path file = blob_file(blob);
        if (client_.blob_exists(repository, blob.digest)) {
            ++skipped_;
            progress(fmt::format("{} {}: already in {}", what, blob.digest, repository));
            return;
        }
        for (const auto& from : push_.mount_from) {
            if (from != repository && client_.mount_blob(repository, blob.digest, from)) {
                ++mounted_;
                progress(fmt::format("{} {}: mounted from {}", what, blob.digest, from));
                return;
            }
        }
        // The bytes leave as they are in the layout, so check them first: a corrupt layout
        // must not become a corrupt registry image.
        verify_blob(file, blob.digest, "oci:" + layout_.string(), what);
        client_.upload_blob(repository, file, blob.digest, blob.size);
        ++uploaded_;
        progress(
            fmt::format("{} {}: uploaded ({})", what, blob.digest, util::format_bytes(blob.size)));
    }

    std::string push_manifest(const LayoutBlob& descriptor, const std::string& reference) {
        const stdfs::path file = blob_file(descriptor);
        const std::string body = util::read_file(file);
        if ("sha256:" + util::sha256_hex(body) != descriptor.digest) {
            throw build_failed("layout {}: manifest {} is corrupt (its content does not match "
                               "its digest)",
                               layout_.string(), descriptor.digest);
        }
        const auto document = util::parse_json(body, false);
        if (!document.is_object()) {
            throw bad_input("layout {}: {} is not a JSON object", layout_.string(),
                            descriptor.digest);
        }
        std::string media_type = document.value("mediaType", descriptor.media_type);
        if (media_type.empty()) {
            media_type = document.contains("manifests") ? std::string(media_type::oci_index)
                                                        : std::string(media_type::oci_manifest);
        }
        if (is_index_media_type(media_type)) {
            const auto& manifests = document.at("manifests");
            for (std::size_t i = 0; i < manifests.size(); ++i) {
                const auto child =
                    layout_descriptor(manifests[i], layout_, fmt::format("manifests[{}]", i));
                push_manifest(child, child.digest);
            }
        } else {
            // The config and the layers go up at once, as many at a time as blobs come down.
            std::vector<std::pair<LayoutBlob, std::string>> blobs{
                {layout_descriptor(document.at("config"), layout_, "config"), "config"}};
            const auto& layers = document.at("layers");
            for (std::size_t i = 0; i < layers.size(); ++i) {
                blobs.emplace_back(
                    layout_descriptor(layers[i], layout_, fmt::format("layers[{}]", i)), "layer");
            }
            run_parallel(blobs.size(), parallel_,
                         [&](std::size_t i) { push_blob(blobs[i].first, blobs[i].second); });
        }
        const std::string digest =
            client_.put_manifest(destination_.repository, reference, media_type, body);
        progress(fmt::format("{} {}: pushed as {}",
                             is_index_media_type(media_type) ? "index" : "manifest", digest,
                             reference));
        return digest;
    }

    stdfs::path layout_;
    const ImageReference& destination_;
    const PushOptions& push_;
    RegistryClient client_;
    unsigned parallel_;
    std::atomic<std::size_t> uploaded_{0};
    std::atomic<std::size_t> skipped_{0};
    std::atomic<std::size_t> mounted_{0};
    std::mutex progress_mutex_;
};

} // namespace

PushResult push_layout(const stdfs::path& layout, std::string_view tag,
                       const ImageReference& destination, const RegistryOptions& options,
                       const PushOptions& push) {
    if (!destination.is_registry()) {
        throw bad_input("cannot push to {}: not a registry reference", destination.str());
    }
    const stdfs::path index_file = layout / "index.json";
    std::string text;
    try {
        text = util::read_file(index_file);
    } catch (const std::system_error&) {
        throw bad_input("layout {}: {} not found; it is not an OCI image layout", layout.string(),
                        index_file.string());
    }
    const auto index = util::parse_json(text, false);
    if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
        throw bad_input("layout {}: index.json has no 'manifests' list", layout.string());
    }
    std::vector<std::pair<LayoutBlob, std::string>> entries; // descriptor, tag
    for (std::size_t i = 0; i < index["manifests"].size(); ++i) {
        const auto& entry = index["manifests"][i];
        std::string entry_tag;
        if (entry.contains("annotations") && entry["annotations"].is_object()) {
            entry_tag = entry["annotations"].value(std::string(k_ref_name_annotation), std::string());
        }
        entries.emplace_back(layout_descriptor(entry, layout, fmt::format("manifests[{}]", i)),
                             entry_tag);
    }
    const LayoutBlob* chosen = nullptr;
    std::vector<std::string> tags;
    for (const auto& [descriptor, entry_tag] : entries) {
        if (!entry_tag.empty()) {
            tags.push_back(entry_tag);
        }
        if (!tag.empty() && (entry_tag == tag || entry_tag.ends_with(":" + std::string(tag)))) {
            chosen = &descriptor;
        }
    }
    if (tag.empty() && entries.size() == 1) {
        chosen = &entries.front().first;
    }
    if (chosen == nullptr) {
        throw bad_input("layout {} has no {} (tags: {})", layout.string(),
                        tag.empty() ? std::string("single image; name a tag")
                                    : fmt::format("tag '{}'", tag),
                        tags.empty() ? "none" : util::join(tags, ", "));
    }
    if (!destination.digest.empty() && destination.digest != chosen->digest) {
        throw bad_input("cannot push {} as {}: its digest is {}", layout.string(),
                        destination.str(), chosen->digest);
    }
    const std::string reference = destination.digest.empty() ? destination.tag : destination.digest;
    Pusher pusher(layout, destination, options, push);
    return pusher.run(*chosen, reference);
}

} // namespace edgeforge::oci
