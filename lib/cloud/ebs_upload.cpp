// Raw disk images to EBS snapshots with the EBS direct APIs, and snapshots to AMIs with EC2
// RegisterImage.
#include "cloud/ebs_upload.h"

#include <atomic>
#include <cerrno>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include "util/base64.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/strings.h"
#include "util/json.h"

namespace edgeforge::cloud {
namespace {

constexpr std::uint64_t k_gib = 1024ull * 1024 * 1024;
constexpr std::uint64_t k_max_volume_gib = 65536; // the EBS snapshot size limit (64 TiB)
constexpr unsigned k_max_parallel_uploads = 64;
constexpr std::string_view k_ec2_api_version = "2016-11-15";

using Digest = std::array<std::uint8_t, 32>;

std::string random_client_token() {
    std::array<std::uint8_t, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        throw std::runtime_error("OpenSSL: no random bytes for a client token");
    }
    bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0f) | 0x40); // UUID version 4
    bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3f) | 0x80); // RFC 4122 variant
    const std::string hex = util::to_hex(bytes.data(), bytes.size());
    return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4),
                       hex.substr(16, 4), hex.substr(20));
}

// Ids go into URL paths and AMI mappings, so a strange answer must not slip through.
bool is_resource_id(std::string_view id, std::string_view prefix) {
    if (!id.starts_with(prefix) || id.size() == prefix.size() || id.size() > 64) {
        return false;
    }
    return std::all_of(id.begin() + static_cast<std::ptrdiff_t>(prefix.size()), id.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

nlohmann::json parse_json_response(const AwsResponse& response, std::string_view operation) {
    auto json = util::parse_json(response.body, false);
    if (!json.is_object()) {
        throw build_failed("{} returned HTTP {} without the expected JSON body", operation,
                           response.status);
    }
    return json;
}

std::string json_string(const nlohmann::json& json, const char* key) {
    return json.contains(key) && json[key].is_string() ? json[key].get<std::string>()
                                                       : std::string();
}

// One EC2 Query API call: a form-encoded POST to the endpoint root.
AwsResponse ec2_call(AwsServiceClient& ec2, const std::string& action,
                     const std::vector<std::pair<std::string, std::string>>& parameters,
                     std::string operation = {}) {
    std::string body = fmt::format("Action={}&Version={}", action, k_ec2_api_version);
    for (const auto& [name, value] : parameters) {
        body += '&' + uri_encode(name, SlashEncoding::encode) + '=' +
                uri_encode(value, SlashEncoding::encode);
    }
    AwsRequest request;
    request.operation = operation.empty() ? "EC2 " + action : std::move(operation);
    request.method = "POST";
    request.path = "/";
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
    request.body = body;
    return ec2.send(request);
}

struct OpenImage {
    util::FileDescriptor fd;
    std::uint64_t size = 0;
};

OpenImage open_image(const std::filesystem::path& image) {
    OpenImage open;
    open.fd.reset(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!open.fd.valid()) {
        throw bad_input("cannot open the disk image {}: {}", image.string(),
                        std::generic_category().message(errno));
    }
    struct stat status {};
    if (::fstat(open.fd.get(), &status) != 0 || !S_ISREG(status.st_mode)) {
        throw bad_input("the disk image {} is not a regular file", image.string());
    }
    open.size = static_cast<std::uint64_t>(status.st_size);
    if (open.size == 0) {
        throw bad_input("the disk image {} is empty", image.string());
    }
    return open;
}

void validate_snapshot_options(const SnapshotUploadOptions& options, std::uint64_t image_size) {
    if (options.timeout < std::chrono::minutes(10) ||
        options.timeout > std::chrono::minutes(4320)) {
        throw bad_input("snapshot timeout of {} minutes is outside 10 to 4320 minutes",
                        options.timeout.count());
    }
    if (options.parallel_uploads == 0 || options.parallel_uploads > k_max_parallel_uploads) {
        throw bad_input("{} parallel uploads: use 1 to {}", options.parallel_uploads,
                        k_max_parallel_uploads);
    }
    if (options.description.size() > 255) {
        throw bad_input("snapshot description is {} characters; EBS allows 255",
                        options.description.size());
    }
    if ((image_size + k_gib - 1) / k_gib > k_max_volume_gib) {
        throw bad_input("the disk image {} is {}; an EBS snapshot holds at most 64 TiB",
                        options.image.string(), util::format_bytes(image_size));
    }
}

// Shared by the upload threads.
struct BlockUploads {
    const std::vector<std::uint64_t>& candidates; // block indices with data, ascending
    std::vector<Digest> digests;                  // per candidate
    std::vector<char> uploaded;                   // per candidate: sent (1) or all zeros (0)
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mutex; // guards first_error, progress and the callback
    std::exception_ptr first_error;
    UploadProgress progress;

    explicit BlockUploads(const std::vector<std::uint64_t>& blocks)
        : candidates(blocks), digests(blocks.size()), uploaded(blocks.size(), 0) {
        progress.blocks_total = blocks.size();
    }
};

void upload_blocks(const AwsClientOptions& aws, int fd, std::uint64_t image_size,
                   const std::string& snapshot_id, BlockUploads& state,
                   const UploadProgressCallback& callback) {
    try {
        AwsServiceClient ebs(aws, "ebs");
        std::string block(k_ebs_block_size, '\0');
        while (!state.failed) {
            const std::size_t slot = state.next++;
            if (slot >= state.candidates.size()) {
                break;
            }
            const std::uint64_t index = state.candidates[slot];
            const std::uint64_t offset = index * k_ebs_block_size;
            const std::uint64_t length = std::min(k_ebs_block_size, image_size - offset);
            // The last block of an image that is not a multiple of 512 KiB is padded with zeros:
            // EBS only takes whole blocks, and the volume reads zeros there anyway.
            std::fill(block.begin(), block.end(), '\0');
            if (!util::pread_exact(fd, block.data(), length, offset)) {
                throw build_failed("the disk image changed size while it was being uploaded");
            }
            const bool all_zeros = block.find_first_not_of('\0') == std::string::npos;
            if (!all_zeros) {
                util::Sha256 hasher;
                hasher.update(block);
                const Digest digest = hasher.finish();
                const std::string checksum = util::base64_encode(digest);
                AwsRequest request;
                request.operation = fmt::format("EBS PutSnapshotBlock (block {})", index);
                request.method = "PUT";
                request.path = fmt::format("/snapshots/{}/blocks/{}", snapshot_id, index);
                request.headers = {{"Content-Type", "application/octet-stream"},
                                   {"x-amz-Data-Length", std::to_string(k_ebs_block_size)},
                                   {"x-amz-Checksum", checksum},
                                   {"x-amz-Checksum-Algorithm", "SHA256"}};
                request.body = block;
                request.payload_hash = util::to_hex(digest.data(), digest.size());
                const AwsResponse response = ebs.send(request);
                const auto echoed = response.header("x-amz-Checksum");
                if (echoed && *echoed != checksum) {
                    throw build_failed("{} returned checksum {} for a block whose checksum is {}",
                                       request.operation, *echoed, checksum);
                }
                state.digests[slot] = digest;
                state.uploaded[slot] = 1;
            }
            const std::lock_guard lock(state.mutex);
            ++state.progress.blocks_done;
            if (!all_zeros) {
                ++state.progress.blocks_uploaded;
                state.progress.bytes_uploaded += k_ebs_block_size;
            }
            if (callback) {
                callback(state.progress);
            }
        }
    } catch (...) {
        const std::lock_guard lock(state.mutex);
        if (!state.first_error) {
            state.first_error = std::current_exception();
        }
        state.failed = true;
    }
}

} // namespace

std::vector<std::uint64_t> blocks_with_data(int fd, std::uint64_t size, std::uint64_t block_size) {
    const std::uint64_t block_count = (size + block_size - 1) / block_size;
    std::vector<std::uint64_t> blocks;
    const auto all_blocks = [&] {
        blocks.clear();
        for (std::uint64_t i = 0; i < block_count; ++i) {
            blocks.push_back(i);
        }
        return blocks;
    };
    std::uint64_t offset = 0;
    while (offset < size) {
        const off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) {
                break; // only a hole from here to the end
            }
            if (errno == EINVAL || errno == EOPNOTSUPP) {
                return all_blocks(); // the filesystem does not know where its holes are
            }
            throw std::system_error(errno, std::generic_category(), "lseek(SEEK_DATA)");
        }
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            return all_blocks();
        }
        const auto data_start = static_cast<std::uint64_t>(data);
        const auto data_end = std::min(static_cast<std::uint64_t>(hole), size);
        if (data_start >= data_end) {
            break;
        }
        std::uint64_t first = data_start / block_size;
        if (!blocks.empty() && blocks.back() >= first) {
            first = blocks.back() + 1; // a block shared with the previous extent
        }
        for (std::uint64_t i = first; i <= (data_end - 1) / block_size; ++i) {
            blocks.push_back(i);
        }
        offset = data_end;
    }
    return blocks;
}

SnapshotUpload upload_snapshot(const AwsClientOptions& aws, const SnapshotUploadOptions& options,
                               const UploadProgressCallback& progress) {
    const OpenImage image = open_image(options.image);
    validate_snapshot_options(options, image.size);
    const std::vector<std::uint64_t> candidates =
        blocks_with_data(image.fd.get(), image.size, k_ebs_block_size);

    SnapshotUpload result;
    result.volume_size_gib = (image.size + k_gib - 1) / k_gib;

    // StartSnapshot
    nlohmann::json start_body = {
        {"VolumeSize", result.volume_size_gib},
        {"Timeout", options.timeout.count()},
        {"ClientToken",
         options.client_token.empty() ? random_client_token() : options.client_token},
    };
    if (!options.description.empty()) {
        start_body["Description"] = options.description;
    }
    const std::string start_text = start_body.dump();
    AwsServiceClient ebs(aws, "ebs");
    AwsRequest start;
    start.operation = "EBS StartSnapshot";
    start.method = "POST";
    start.path = "/snapshots";
    start.headers = {{"Content-Type", "application/json"}};
    start.body = start_text;
    const auto started = parse_json_response(ebs.send(start), start.operation);
    result.snapshot_id = json_string(started, "SnapshotId");
    if (!is_resource_id(result.snapshot_id, "snap-")) {
        throw build_failed("EBS StartSnapshot returned no usable SnapshotId");
    }
    if (started.contains("BlockSize") && started["BlockSize"] != nlohmann::json(k_ebs_block_size)) {
        throw build_failed("EBS StartSnapshot: snapshot {} has block size {}, expected {}",
                           result.snapshot_id, started["BlockSize"].dump(), k_ebs_block_size);
    }

    // PutSnapshotBlock, in parallel.
    BlockUploads state(candidates);
    const std::size_t thread_count = std::min<std::size_t>(
        options.parallel_uploads, std::max<std::size_t>(1, candidates.size()));
    {
        std::vector<std::jthread> threads;
        for (std::size_t i = 0; i < thread_count; ++i) {
            threads.emplace_back(upload_blocks, std::cref(aws), image.fd.get(), image.size,
                                 std::cref(result.snapshot_id), std::ref(state),
                                 std::cref(progress));
        }
    }
    if (state.first_error) {
        const auto incomplete = [&](const Error& error) {
            return fmt::format("{}; snapshot {} is left incomplete and EBS fails it after the "
                               "{}-minute timeout",
                               error.what(), result.snapshot_id, options.timeout.count());
        };
        try {
            std::rethrow_exception(state.first_error);
        } catch (const AwsError& error) {
            throw AwsError(incomplete(error), error.status(), error.aws_code());
        } catch (const Error& error) {
            throw Error(error.code(), incomplete(error));
        }
    }

    // CompleteSnapshot with the LINEAR aggregate: SHA-256 over the raw digests of the blocks
    // written, in block index order.
    util::Sha256 aggregate;
    for (std::size_t slot = 0; slot < candidates.size(); ++slot) {
        if (state.uploaded[slot] != 0) {
            aggregate.update(state.digests[slot].data(), state.digests[slot].size());
            ++result.blocks_uploaded;
        } else {
            ++result.blocks_skipped;
        }
    }
    AwsRequest complete;
    complete.operation = "EBS CompleteSnapshot";
    complete.method = "POST";
    complete.path =
        fmt::format("/snapshots/{}/complete/{}", result.snapshot_id, result.blocks_uploaded);
    complete.headers = {{"x-amz-Checksum", util::base64_encode(aggregate.finish())},
                        {"x-amz-Checksum-Algorithm", "SHA256"},
                        {"x-amz-Checksum-Aggregation-Method", "LINEAR"}};
    const auto completed = parse_json_response(ebs.send(complete), complete.operation);
    result.status = json_string(completed, "Status");
    if (result.status == "error") {
        throw build_failed("EBS CompleteSnapshot: snapshot {} is in the error state",
                           result.snapshot_id);
    }
    return result;
}

void wait_for_snapshot(const AwsClientOptions& aws, const std::string& snapshot_id,
                       std::chrono::seconds timeout, std::chrono::milliseconds poll_interval) {
    AwsServiceClient ec2(aws, "ec2");
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last_state = "not visible in EC2";
    while (true) {
        try {
            const AwsResponse response =
                ec2_call(ec2, "DescribeSnapshots", {{"SnapshotId.1", snapshot_id}});
            const std::string status = xml_element_text(response.body, "status").value_or("");
            if (status == "completed") {
                return;
            }
            if (status == "error") {
                throw build_failed(
                    "snapshot {} failed: {}", snapshot_id,
                    xml_element_text(response.body, "statusMessage").value_or("no reason given"));
            }
            last_state = fmt::format("{} ({})", status.empty() ? "unknown" : status,
                                     xml_element_text(response.body, "progress").value_or("?"));
        } catch (const AwsError& error) {
            // A snapshot made through the EBS direct APIs can take a moment to appear in EC2.
            if (error.aws_code() != "InvalidSnapshot.NotFound") {
                throw;
            }
        }
        if (std::chrono::steady_clock::now() + poll_interval > deadline) {
            throw build_failed("snapshot {} is still {} after {} s", snapshot_id, last_state,
                               timeout.count());
        }
        std::this_thread::sleep_for(poll_interval);
    }
}

void validate_register_image_options(const RegisterImageOptions& options) {
    const auto allowed = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("()[] ./-'@_").find(c) != std::string_view::npos;
    };
    if (options.name.size() < 3 || options.name.size() > 128 ||
        !std::all_of(options.name.begin(), options.name.end(), allowed)) {
        throw bad_input("AMI name '{}' must be 3 to 128 characters of letters, digits and "
                        "( ) [ ] space . / - ' @ _",
                        options.name);
    }
    if (options.description.size() > 255) {
        throw bad_input("AMI description is {} characters; EC2 allows 255",
                        options.description.size());
    }
    if (!options.root_device_name.starts_with("/dev/")) {
        throw bad_input("root device name '{}' must start with /dev/ (such as /dev/xvda)",
                        options.root_device_name);
    }
    static constexpr std::string_view k_volume_types[] = {"gp2", "gp3", "io1",     "io2",
                                                          "st1", "sc1", "standard"};
    if (std::find(std::begin(k_volume_types), std::end(k_volume_types), options.volume_type) ==
        std::end(k_volume_types)) {
        throw bad_input("EBS volume type '{}' is not one of gp2, gp3, io1, io2, st1, sc1, standard",
                        options.volume_type);
    }
}

std::string register_image(const AwsClientOptions& aws, const std::string& snapshot_id,
                           const RegisterImageOptions& options) {
    validate_register_image_options(options);
    // RegisterImage defaults Architecture to i386 and BootMode to the architecture's default,
    // so every fact is spelled out.
    std::vector<std::pair<std::string, std::string>> parameters = {
        {"Name", options.name},
        {"Architecture", std::string(options.arch.traits().aws_architecture)},
        {"BootMode", "uefi"},
        {"EnaSupport", "true"},
        {"VirtualizationType", "hvm"},
        {"ImdsSupport", "v2.0"},
        {"RootDeviceName", options.root_device_name},
        {"BlockDeviceMapping.1.DeviceName", options.root_device_name},
        {"BlockDeviceMapping.1.Ebs.SnapshotId", snapshot_id},
        {"BlockDeviceMapping.1.Ebs.VolumeType", options.volume_type},
        {"BlockDeviceMapping.1.Ebs.DeleteOnTermination",
         options.delete_on_termination ? "true" : "false"},
    };
    if (!options.description.empty()) {
        parameters.emplace_back("Description", options.description);
    }
    AwsServiceClient ec2(aws, "ec2");
    const AwsResponse response = ec2_call(ec2, "RegisterImage", parameters);
    const std::string image_id = xml_element_text(response.body, "imageId").value_or("");
    if (!is_resource_id(image_id, "ami-")) {
        throw build_failed("EC2 RegisterImage returned no usable imageId");
    }
    return image_id;
}

AmiUpload upload_ami(const AwsClientOptions& aws, const AmiUploadOptions& options,
                     const UploadProgressCallback& progress) {
    validate_register_image_options(options.image);
    AmiUpload result;
    result.snapshot = upload_snapshot(aws, options.snapshot, progress);
    if (result.snapshot.status != "completed") {
        wait_for_snapshot(aws, result.snapshot.snapshot_id, options.snapshot_wait_timeout,
                          options.snapshot_poll_interval);
    }
    result.image_id = register_image(aws, result.snapshot.snapshot_id, options.image);
    return result;
}

} // namespace edgeforge::cloud
