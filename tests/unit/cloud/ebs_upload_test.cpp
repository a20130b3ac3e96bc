// Unit tests for cloud/ebs_upload against tests/fixtures/fake-aws, a local endpoint that verifies
// every signature, block checksum and the aggregate checksum itself.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "cloud/ebs_upload.h"
#include "support/data.h"
#include "support/errors.h"
#include "support/fake_aws.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/process.h"

using namespace edgeforge;
using namespace edgeforge::cloud;
using edgeforge::testing::FakeAws;

namespace {

const std::string k_key_id = "AKIDEXAMPLE";
const std::string k_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr std::uint64_t k_block = k_ebs_block_size;

AwsClientOptions client_for(const FakeAws& server, std::string secret = k_secret) {
    AwsClientOptions options;
    options.credentials.access_key_id = k_key_id;
    options.credentials.secret_access_key = std::move(secret);
    options.region = "us-east-1";
    options.endpoint_url = server.endpoint();
    options.request_timeout = std::chrono::seconds(30);
    options.retry_base_delay = std::chrono::milliseconds(5);
    options.retry_max_delay = std::chrono::milliseconds(50);
    return options;
}

// A sparse 20.1 MiB image (blocks 0..40, the last one 100 KiB long) with data in blocks 0, 5,
// 10-12, 20 (ten bytes in the middle) and 40; block 11 is written but holds only zeros, so it is
// data to SEEK_DATA and must still not be uploaded. Everything else is a hole.
struct SparseImage {
    util::TempDir dir;
    std::filesystem::path path = dir.path() / "disk.raw";
    std::uint64_t size = 40 * k_block + 100 * 1024;

    SparseImage() {
        util::FileDescriptor fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        REQUIRE(fd.valid());
        REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
        const auto put = [&](std::uint64_t offset, const std::string& bytes) {
            REQUIRE(::pwrite(fd.get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
                    static_cast<ssize_t>(bytes.size()));
        };
        put(0, testing::pseudo_random_bytes(k_block, 1));
        put(5 * k_block, testing::pseudo_random_bytes(k_block, 2));
        put(10 * k_block, testing::pseudo_random_bytes(k_block, 3) + std::string(k_block, '\0') +
                              testing::pseudo_random_bytes(k_block, 4));
        put(20 * k_block + 300 * 1024, "0123456789");
        put(40 * k_block, testing::pseudo_random_bytes(100 * 1024, 5));
    }

    // The hex SHA-256 of block `index` as EBS must receive it: zero-padded to 512 KiB.
    std::string block_sha256(std::uint64_t index) const {
        std::string block(k_block, '\0');
        util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        const std::uint64_t length = std::min(k_block, size - index * k_block);
        REQUIRE(util::pread_exact(fd.get(), block.data(), length, index * k_block));
        return util::sha256_hex(block);
    }
};

const std::vector<std::uint64_t> k_uploaded_blocks = {0, 5, 10, 12, 20, 40};

AmiUploadOptions ami_options(const SparseImage& image) {
    AmiUploadOptions options;
    options.snapshot.image = image.path;
    options.snapshot.description = "edgeforge test image";
    options.snapshot.timeout = std::chrono::minutes(30);
    options.snapshot.parallel_uploads = 3;
    options.image.name = "edgeforge-test (arm64) 1.0";
    options.image.description = "an edgeforge test AMI";
    options.image.arch = Arch(Arch::Id::arm64);
    options.snapshot_poll_interval = std::chrono::milliseconds(20);
    options.snapshot_wait_timeout = std::chrono::seconds(20);
    return options;
}

std::vector<std::uint64_t> as_indices(const nlohmann::json& json) {
    return json.get<std::vector<std::uint64_t>>();
}

} // namespace

TEST_CASE("fake-aws passes the AWS SigV4 test suite with its own signer") {
    const auto result =
        util::run_process({"python3", testing::fake_aws_script().string(), "--self-test",
                           std::string(EDGEFORGE_TEST_DATA) + "/aws-sig-v4-test-suite"});
    CHECK(result.exit_code == 0);
    CHECK(result.standard_output == "fake-aws self-test: 31 vectors, 0 mismatches\n");
}

TEST_CASE("ebs blocks_with_data follows SEEK_DATA and SEEK_HOLE") {
    const SparseImage image;
    util::FileDescriptor fd(::open(image.path.c_str(), O_RDONLY | O_CLOEXEC));
    const auto blocks = blocks_with_data(fd.get(), image.size, k_block);
    if (blocks.size() == 41) {
        MESSAGE("the filesystem of the temporary directory does not report holes");
    } else {
        CHECK(blocks == std::vector<std::uint64_t>{0, 5, 10, 11, 12, 20, 40});
    }
}

TEST_CASE("ebs upload_ami: sparse image, parallel retried blocks, verified aggregate, AMI") {
    // 503 for the first three PutSnapshotBlock calls, then one dropped connection; two "pending"
    // DescribeSnapshots answers before "completed"; session credentials.
    FakeAws server({"--session-token", "fake-session-token", "--fail-put-block", "3",
                    "--reset-put-block", "1", "--describe-pending", "2"});
    const SparseImage image;
    AwsClientOptions aws = client_for(server);
    aws.credentials.session_token = "fake-session-token";

    std::vector<UploadProgress> updates;
    const AmiUpload result = upload_ami(aws, ami_options(image),
                                        [&](const UploadProgress& now) { updates.push_back(now); });
    const auto summary = server.summary();
    INFO(summary.dump(2));
    INFO(server.log());

    CHECK(summary["signature_failures"].empty());
    CHECK(summary["rejected"].empty());
    REQUIRE(summary["snapshots"].size() == 1);
    REQUIRE(summary["snapshots"].contains(result.snapshot.snapshot_id));
    const auto& snapshot = summary["snapshots"][result.snapshot.snapshot_id];
    CHECK(as_indices(snapshot["blocks"]) == k_uploaded_blocks);
    for (const auto index : k_uploaded_blocks) {
        CAPTURE(index);
        CHECK(snapshot["block_sha256"][std::to_string(index)] == image.block_sha256(index));
    }
    CHECK(snapshot["zero_blocks"] == 0);
    CHECK(snapshot["duplicate_blocks"] == 0);
    CHECK(snapshot["changed_blocks_count"] == 6);
    CHECK(snapshot["aggregate_verified"] == true);
    CHECK(snapshot["status"] == "completed");
    CHECK(snapshot["volume_size"] == 1);
    CHECK(snapshot["timeout"] == 30);
    CHECK(snapshot["description"] == "edgeforge test image");

    // Every block arrived once, after the injected failures were retried.
    CHECK(summary["injected_failures"] == 3);
    CHECK(summary["injected_resets"] == 1);
    CHECK(summary["operations"]["StartSnapshot"] == 1);
    CHECK(summary["operations"]["PutSnapshotBlock"] == 6 + 3 + 1);
    CHECK(summary["operations"]["CompleteSnapshot"] == 1);
    CHECK(summary["describe_snapshots_calls"] == 3);

    CHECK(result.snapshot.blocks_uploaded == 6);
    CHECK(result.snapshot.volume_size_gib == 1);
    CHECK(result.snapshot.status == "pending");
    REQUIRE(summary["images"].size() == 1);
    CHECK(result.image_id == summary["images"][0]["image_id"]);
    CHECK(summary["images"][0]["params"] ==
          nlohmann::json{
              {"Name", "edgeforge-test (arm64) 1.0"},
              {"Description", "an edgeforge test AMI"},
              {"Architecture", "arm64"},
              {"BootMode", "uefi"},
              {"EnaSupport", "true"},
              {"VirtualizationType", "hvm"},
              {"ImdsSupport", "v2.0"},
              {"RootDeviceName", "/dev/xvda"},
              {"BlockDeviceMapping.1.DeviceName", "/dev/xvda"},
              {"BlockDeviceMapping.1.Ebs.SnapshotId", result.snapshot.snapshot_id},
              {"BlockDeviceMapping.1.Ebs.VolumeType", "gp3"},
              {"BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true"},
          });

    // Progress: one update per data block, ending with everything done.
    REQUIRE_FALSE(updates.empty());
    const UploadProgress& last = updates.back();
    CHECK(updates.size() == last.blocks_total);
    CHECK(last.blocks_done == last.blocks_total);
    CHECK(last.blocks_uploaded == 6);
    CHECK(last.bytes_uploaded == 6 * k_block);
    CHECK(result.snapshot.blocks_skipped == last.blocks_total - 6);
    CHECK(std::is_sorted(updates.begin(), updates.end(), [](const auto& a, const auto& b) {
        return a.blocks_done < b.blocks_done;
    }));
}

TEST_CASE("ebs upload: a wrong secret is refused with 403, named, and never shown") {
    FakeAws server;
    const SparseImage image;
    const std::string wrong_secret = "wrong/Secret+Key0123456789abcdefghijklmn";
    try {
        upload_ami(client_for(server, wrong_secret), ami_options(image));
        FAIL("expected an AwsError");
    } catch (const AwsError& error) {
        const std::string message = error.what();
        CHECK(message == "EBS StartSnapshot failed: HTTP 403 InvalidSignatureException: The "
                         "request signature we calculated does not match the signature you "
                         "provided. Check your AWS Secret Access Key and signing method.");
        CHECK(error.status() == 403);
        CHECK(error.aws_code() == "InvalidSignatureException");
        CHECK(message.find(wrong_secret) == std::string::npos);
        CHECK(message.find(k_secret) == std::string::npos);
    }
    const auto summary = server.summary();
    CHECK(summary["signature_failures"].size() == 1); // a 403 is not retried
    CHECK(summary["snapshots"].empty());
    CHECK(server.log().find(wrong_secret) == std::string::npos);
}

TEST_CASE("ebs upload: retries give up after max_attempts, naming the block and the snapshot") {
    FakeAws server({"--fail-put-block", "1000"});
    const SparseImage image;
    AwsClientOptions aws = client_for(server);
    aws.max_attempts = 3;
    SnapshotUploadOptions options = ami_options(image).snapshot;
    options.parallel_uploads = 1;
    std::string message;
    try {
        upload_snapshot(aws, options);
        FAIL("expected an AwsError");
    } catch (const AwsError& error) {
        message = error.what();
        CHECK(error.status() == 503);
        CHECK(error.aws_code() == "ServiceUnavailableException");
        CHECK(error.code() == ExitCode::build_failed);
    }
    CHECK(message == "EBS PutSnapshotBlock (block 0) failed after 3 attempts: HTTP 503 "
                     "ServiceUnavailableException: injected failure; snapshot "
                     "snap-00000000000000001 is left incomplete and EBS fails it after the "
                     "30-minute timeout");
    const auto summary = server.summary();
    CHECK(summary["operations"]["PutSnapshotBlock"] == 3);
    CHECK(summary["operations"].value("CompleteSnapshot", 0) == 0);
}

TEST_CASE("ebs upload: bad inputs are reported before any request is made") {
    FakeAws server;
    const SparseImage image;
    const AwsClientOptions aws = client_for(server);

    AmiUploadOptions options = ami_options(image);
    options.image.name = "no";
    CHECK(testing::error_of([&] { upload_ami(aws, options); }, ExitCode::bad_input) ==
          "AMI name 'no' must be 3 to 128 characters of letters, digits and ( ) [ ] space . / - ' "
          "@ _");
    options = ami_options(image);
    options.image.volume_type = "gp9";
    CHECK(testing::error_of([&] { upload_ami(aws, options); }, ExitCode::bad_input) ==
          "EBS volume type 'gp9' is not one of gp2, gp3, io1, io2, st1, sc1, standard");
    options = ami_options(image);
    options.snapshot.timeout = std::chrono::minutes(5);
    CHECK(testing::error_of([&] { upload_ami(aws, options); }, ExitCode::bad_input) ==
          "snapshot timeout of 5 minutes is outside 10 to 4320 minutes");
    options = ami_options(image);
    options.snapshot.parallel_uploads = 0;
    CHECK(testing::error_of([&] { upload_ami(aws, options); }, ExitCode::bad_input) ==
          "0 parallel uploads: use 1 to 64");
    options = ami_options(image);
    options.snapshot.image = image.dir.path() / "missing.raw";
    CHECK(testing::error_of([&] { upload_ami(aws, options); }, ExitCode::bad_input) ==
          "cannot open the disk image " + options.snapshot.image.string() +
              ": No such file or directory");
    util::write_file_atomically(image.dir.path() / "empty.raw", "");
    options.snapshot.image = image.dir.path() / "empty.raw";
    CHECK(testing::error_of([&] { upload_ami(aws, options); }, ExitCode::bad_input) ==
          "the disk image " + options.snapshot.image.string() + " is empty");

    CHECK(server.summary()["requests"] == 0);
}

TEST_CASE("ebs wait_for_snapshot gives up with the state it last saw") {
    FakeAws server({"--describe-pending", "1000"});
    const SparseImage image;
    const AwsClientOptions aws = client_for(server);
    const SnapshotUpload upload = upload_snapshot(aws, ami_options(image).snapshot);
    CHECK(upload.status == "pending");
    using std::chrono::milliseconds, std::chrono::seconds;
    CHECK(testing::error_of(
              [&] { wait_for_snapshot(aws, upload.snapshot_id, seconds(1), milliseconds(100)); },
              ExitCode::build_failed) ==
          "snapshot " + upload.snapshot_id + " is still pending (42%) after 1 s");
    // EC2 may not know a snapshot made through the EBS direct APIs yet: that is waited out too.
    CHECK(testing::error_of(
              [&] {
                  wait_for_snapshot(aws, "snap-0123456789abcdef0", seconds(1), milliseconds(100));
              },
              ExitCode::build_failed) ==
          "snapshot snap-0123456789abcdef0 is still not visible in EC2 after 1 s");
}

TEST_CASE("ebs upload_ami registers at once when CompleteSnapshot says completed") {
    FakeAws server({"--complete-status", "completed"});
    const SparseImage image;
    const AmiUpload result = upload_ami(client_for(server), ami_options(image));
    CHECK(result.snapshot.status == "completed");
    const auto summary = server.summary();
    CHECK(summary["describe_snapshots_calls"] == 0);
    REQUIRE(summary["images"].size() == 1);
    CHECK(summary["images"][0]["image_id"] == result.image_id);
}
