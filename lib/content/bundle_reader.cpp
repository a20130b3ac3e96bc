// Reading finished content bundles: bundle.json out of the archive (or its parts) without
// unpacking, the listing `content ls` prints, and `content verify`.
#include "content/bundle.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>

#include "content/bundle_files.h"
#include "content/parts.h"
#include "content/sign.h"
#include "oci/archive.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::content {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

// ---- reading bundle.json ------------------------------------------------------------------

// The parts of a split bundle read one after the other as one stream (libarchive's own
// archive_read_open_filenames() crashes on many small parts in the version Debian 12 ships).
class ConcatenatedParts {
  public:
    explicit ConcatenatedParts(std::vector<stdfs::path> parts)
        : parts_(std::move(parts)), buffer_(1u << 16) {}

    static la_ssize_t read(archive* handle, void* self, const void** data) {
        auto* parts = static_cast<ConcatenatedParts*>(self);
        for (;;) {
            if (!parts->fd_.valid()) {
                if (parts->next_ >= parts->parts_.size()) {
                    return 0;
                }
                const auto& part = parts->parts_[parts->next_++];
                parts->fd_.reset(::open(part.c_str(), O_RDONLY | O_CLOEXEC));
                if (!parts->fd_.valid()) {
                    archive_set_error(handle, errno, "cannot read %s", part.c_str());
                    return -1;
                }
            }
            const ssize_t got =
                ::read(parts->fd_.get(), parts->buffer_.data(), parts->buffer_.size());
            if (got < 0 && errno == EINTR) {
                continue;
            }
            if (got < 0) {
                archive_set_error(handle, errno, "read error");
                return -1;
            }
            if (got == 0) {
                parts->fd_.reset();
                continue;
            }
            *data = parts->buffer_.data();
            return got;
        }
    }

  private:
    std::vector<stdfs::path> parts_;
    std::size_t next_ = 0;
    util::FileDescriptor fd_;
    std::vector<char> buffer_;
};

json read_bundle_manifest_json(const stdfs::path& bundle) {
    const BundleFiles files = locate_bundle(bundle);
    ConcatenatedParts parts(files.parts); // outlives the reader that reads from it
    auto reader = oci::new_tar_reader();
    int status = ARCHIVE_OK;
    if (files.parts_index) {
        for (const auto& part : files.parts) {
            if (!stdfs::exists(part)) {
                throw bad_input("part {} of the bundle is missing", part.string());
            }
        }
        status =
            archive_read_open(reader.get(), &parts, nullptr, &ConcatenatedParts::read, nullptr);
    } else {
        status = archive_read_open_filename(reader.get(), files.archive.c_str(), 1 << 16);
    }
    if (status != ARCHIVE_OK) {
        throw bad_input("cannot read the bundle {}: {}", bundle.string(),
                        oci::archive_message(reader.get()));
    }
    archive_entry* entry = nullptr;
    status = archive_read_next_header(reader.get(), &entry);
    if (status < ARCHIVE_WARN || status == ARCHIVE_EOF) {
        throw bad_input("{} is not a content bundle (not a readable .tar.zst: {})", bundle.string(),
                        oci::archive_message(reader.get()));
    }
    if (oci::entry_pathname(entry) != k_bundle_manifest_name) {
        throw bad_input("{} is not an edgeforge content bundle: its first member is {}, not {}",
                        bundle.string(), oci::entry_pathname(entry), k_bundle_manifest_name);
    }
    std::string text;
    char buffer[65536];
    la_ssize_t got = 0;
    while ((got = archive_read_data(reader.get(), buffer, sizeof buffer)) > 0) {
        text.append(buffer, static_cast<std::size_t>(got));
        if (text.size() > (256u << 20)) {
            throw bad_input("{}: {} is implausibly large", bundle.string(), k_bundle_manifest_name);
        }
    }
    if (got < 0) {
        throw build_failed("{} is truncated or corrupt: {}", bundle.string(),
                           oci::archive_message(reader.get()));
    }
    try {
        // With the nesting limit: a bundle.json nested 100,000 deep overflowed the stack when
        // content ls copied it.
        return util::parse_json(text);
    } catch (const json::exception& error) {
        throw build_failed("{}: {} is not valid JSON: {}", bundle.string(), k_bundle_manifest_name,
                           error.what());
    }
}

std::string render_listing(const json& manifest) {
    std::string out = fmt::format("bundle {}: {} images, {} charts, {} files; {} blobs ({})\n",
                                  manifest.value("name", std::string("?")),
                                  manifest.value("images", json::array()).size(),
                                  manifest.value("charts", json::array()).size(),
                                  manifest.value("files", json::array()).size(),
                                  manifest.value("blobs", json::array()).size(),
                                  util::format_bytes(manifest.value("blobBytes", 0ULL)));
    const auto images = manifest.value("images", json::array());
    if (!images.empty()) {
        out +=
            fmt::format("\n{:<48} {:<28} {:<20} {:>10}\n", "IMAGE", "PLATFORMS", "DIGEST", "SIZE");
        for (const auto& image : images) {
            std::vector<std::string> platforms;
            for (const auto& platform : image.value("platforms", json::array())) {
                platforms.push_back(platform.get<std::string>());
            }
            const auto digest = image.value("digest", std::string());
            out += fmt::format("{:<48} {:<28} {:<20} {:>10}\n", image.value("ref", std::string()),
                               util::join(platforms, ","), digest.substr(0, 19),
                               util::format_bytes(image.value("size", 0ULL)));
        }
    }
    const auto charts = manifest.value("charts", json::array());
    if (!charts.empty()) {
        out += fmt::format("\n{:<48} {:<24} {:>10}\n", "CHART", "NAME:VERSION", "SIZE");
        for (const auto& chart : charts) {
            out += fmt::format("{:<48} {:<24} {:>10}\n", chart.value("path", std::string()),
                               chart.value("name", std::string()) + ":" +
                                   chart.value("version", std::string()),
                               util::format_bytes(chart.value("size", 0ULL)));
        }
    }
    const auto files = manifest.value("files", json::array());
    if (!files.empty()) {
        out += fmt::format("\n{:<48} {:<6} {:>10}  {}\n", "FILE", "MODE", "SIZE", "SHA256");
        for (const auto& file : files) {
            out += fmt::format("{:<48} {:<6} {:>10}  {}\n", file.value("path", std::string()),
                               file.value("mode", std::string()),
                               util::format_bytes(file.value("size", 0ULL)),
                               file.value("sha256", std::string()).substr(0, 16));
        }
    }
    if (manifest.contains("base") && manifest["base"].is_object()) {
        const auto& base = manifest["base"];
        const auto blobs = base.value("blobs", json::array()).size();
        out +=
            fmt::format("\nincremental: {} blob{} ({}) {} expected from the base bundle {} "
                        "(sha256:{}); unpack it into the same directory first\n",
                        blobs, blobs == 1 ? "" : "s", blobs == 1 ? "is" : "are",
                        util::format_bytes(base.value("blobBytes", 0ULL)),
                        base.value("bundle", std::string()), base.value("sha256", std::string()));
    }
    return out;
}

// ---- verify -------------------------------------------------------------------------------

json VerifyResult::to_json() const {
    return {{"ok", ok}, {"sha256", sha256}, {"problems", problems}, {"checked", checked}};
}

VerifyResult verify_bundle(const stdfs::path& bundle, const VerifyOptions& options) {
    const BundleFiles files = locate_bundle(bundle);
    VerifyResult result;
    const std::string archive_name = files.archive.filename().string();
    const stdfs::path directory =
        files.parts_index ? files.parts_index->parent_path() : files.archive.parent_path();
    const stdfs::path checksum_file = directory / (archive_name + ".sha256");
    const stdfs::path signature_file = directory / (archive_name + ".sig");
    std::error_code error;
    // Missing inputs are bad input (2), found before any hashing.
    if (!files.parts_index && !stdfs::exists(checksum_file, error)) {
        throw bad_input("{} has no checksum file {}", bundle.string(), checksum_file.string());
    }
    if (options.public_key) {
        if (::access(options.public_key->c_str(), R_OK) != 0) {
            throw bad_input("cannot read the public key {}: {}", options.public_key->string(),
                            std::strerror(errno));
        }
        if (!stdfs::exists(signature_file, error)) {
            throw bad_input("{} is not signed: {} does not exist", bundle.string(),
                            signature_file.string());
        }
    }

    if (files.parts_index) {
        util::Sha256 whole;
        std::uint64_t total = 0;
        std::vector<char> buffer(k_buffer_size);
        const auto& parts = files.index.parts;
        for (std::size_t i = 0; i < files.parts.size(); ++i) {
            const auto& part = files.parts[i];
            util::FileDescriptor fd(::open(part.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd.valid()) {
                throw bad_input("cannot read part {}: {}", part.string(), std::strerror(errno));
            }
            util::Sha256 hasher;
            std::uint64_t size = 0;
            for (;;) {
                const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
                if (got < 0 && errno == EINTR) {
                    continue;
                }
                if (got < 0) {
                    throw build_failed("cannot read {}: {}", part.string(), std::strerror(errno));
                }
                if (got == 0) {
                    break;
                }
                hasher.update(buffer.data(), static_cast<std::size_t>(got));
                whole.update(buffer.data(), static_cast<std::size_t>(got));
                size += static_cast<std::uint64_t>(got);
            }
            total += size;
            const std::string actual = hasher.finish_hex();
            const auto expected_size = parts[i].size;
            const auto& expected = parts[i].sha256;
            if (size != expected_size || actual != expected) {
                result.problems.push_back(fmt::format(
                    "part {} does not match the parts index: {} bytes sha256:{}, expected {} "
                    "bytes sha256:{}",
                    part.filename().string(), size, actual, expected_size, expected));
            }
        }
        result.sha256 = whole.finish_hex();
        const auto& expected = files.index.sha256;
        if (result.sha256 != expected || total != files.index.size) {
            result.problems.push_back(fmt::format(
                "the reassembled parts hash to sha256:{} ({} bytes), the parts index says "
                "sha256:{}",
                result.sha256, total, expected));
        } else {
            result.checked.push_back(
                fmt::format("{} parts reassemble to sha256:{}", files.parts.size(), result.sha256));
        }
    } else {
        result.sha256 = util::sha256_file_hex(files.archive);
    }
    if (stdfs::exists(checksum_file, error)) {
        const std::string expected = read_checksum_file(checksum_file);
        if (expected != result.sha256) {
            result.problems.push_back(fmt::format(
                "{} hashes to sha256:{}, but {} says sha256:{}: the bundle is corrupt or was "
                "changed",
                archive_name, result.sha256, checksum_file.filename().string(), expected));
        } else {
            result.checked.push_back(fmt::format("sha256:{} matches {}", result.sha256,
                                                 checksum_file.filename().string()));
        }
    }
    if (options.public_key) {
        std::string signature;
        try {
            signature = util::read_file(signature_file);
        } catch (const std::system_error& failure) {
            throw bad_input("cannot read {}: {}", signature_file.string(),
                            failure.code().message());
        }
        if (verify_message(*options.public_key, signed_message(result.sha256), signature)) {
            result.checked.push_back(fmt::format("signature {} is valid for {}",
                                                 signature_file.filename().string(),
                                                 options.public_key->string()));
        } else {
            result.problems.push_back(fmt::format(
                "signature {} does not match: the bundle was changed or was not signed by the "
                "key of {}",
                signature_file.filename().string(), options.public_key->string()));
        }
    }
    result.ok = result.problems.empty();
    return result;
}

} // namespace edgeforge::content
