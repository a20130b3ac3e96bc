// Raw disk images to EBS snapshots with the EBS direct APIs, and snapshots to AMIs with EC2
// RegisterImage.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "cloud/aws_http.h"
#include "base/arch.h"

namespace edgeforge::cloud {

// EBS direct APIs move snapshots in blocks of exactly this size.
constexpr std::uint64_t k_ebs_block_size = 512 * 1024;

struct SnapshotUploadOptions {
    std::filesystem::path image; // a raw disk image; its holes are never read
    std::string description;
    // StartSnapshot Timeout: EBS fails the snapshot if CompleteSnapshot does not come within it
    // (10 to 4320 minutes).
    std::chrono::minutes timeout{60};
    // StartSnapshot idempotency token: a retried StartSnapshot with the same token returns the
    // same snapshot. Empty means a random one for this upload.
    std::string client_token;
    unsigned parallel_uploads = 4; // PutSnapshotBlock calls in flight, each on its own connection
};

struct UploadProgress {
    std::uint64_t blocks_total = 0;    // blocks the image has data in (holes excluded)
    std::uint64_t blocks_done = 0;     // of those, uploaded or found to be all zeros
    std::uint64_t blocks_uploaded = 0; // of those, sent with PutSnapshotBlock
    std::uint64_t bytes_uploaded = 0;
};
// Called from the upload threads, one call at a time, after every block.
using UploadProgressCallback = std::function<void(const UploadProgress&)>;

struct SnapshotUpload {
    std::string snapshot_id;
    std::string status; // what CompleteSnapshot said: "completed" or "pending"
    std::uint64_t volume_size_gib = 0;
    std::uint64_t blocks_uploaded = 0;
    std::uint64_t blocks_skipped = 0; // blocks inside data extents that held only zeros
};

// StartSnapshot, PutSnapshotBlock for every block that is not all zeros (in parallel, retried),
// CompleteSnapshot with the LINEAR aggregate checksum. Blocks never written read as zeros in a
// snapshot without a parent, so holes and zero blocks are simply not sent.
SnapshotUpload upload_snapshot(const AwsClientOptions& aws, const SnapshotUploadOptions& options,
                               const UploadProgressCallback& progress = {});

// Polls EC2 DescribeSnapshots until the snapshot is completed. Throws when EC2 reports an error
// state or `timeout` passes.
void wait_for_snapshot(const AwsClientOptions& aws, const std::string& snapshot_id,
                       std::chrono::seconds timeout = std::chrono::minutes(30),
                       std::chrono::milliseconds poll_interval = std::chrono::seconds(5));

struct RegisterImageOptions {
    std::string name; // 3-128 characters: letters, digits, ( ) [ ] space . / - ' @ _
    std::string description;
    Arch arch;
    std::string root_device_name = "/dev/xvda";
    std::string volume_type = "gp3";
    bool delete_on_termination = true;
};

// Throws a bad_input Error when EC2 would refuse the name or description, so that is known before
// any upload starts.
void validate_register_image_options(const RegisterImageOptions& options);

// EC2 RegisterImage of a UEFI, ENA, HVM, IMDSv2-only image booting from the snapshot. Returns the
// image id.
std::string register_image(const AwsClientOptions& aws, const std::string& snapshot_id,
                           const RegisterImageOptions& options);

struct AmiUploadOptions {
    SnapshotUploadOptions snapshot;
    RegisterImageOptions image;
    std::chrono::seconds snapshot_wait_timeout = std::chrono::minutes(30);
    std::chrono::milliseconds snapshot_poll_interval = std::chrono::seconds(5);
};

struct AmiUpload {
    SnapshotUpload snapshot;
    std::string image_id;
};

// The whole path from a raw image to an AMI: validate, upload the snapshot, wait for it to be
// completed, register the image.
AmiUpload upload_ami(const AwsClientOptions& aws, const AmiUploadOptions& options,
                     const UploadProgressCallback& progress = {});

// Indices of the `block_size` blocks of the file that hold data according to SEEK_DATA/SEEK_HOLE,
// ascending; every block when the filesystem cannot tell.
std::vector<std::uint64_t> blocks_with_data(int fd, std::uint64_t size, std::uint64_t block_size);

} // namespace edgeforge::cloud
