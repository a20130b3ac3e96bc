// Unit tests for formats/ova: member order, manifest format, OVF contents, the disk inside,
// determinism and bad options, judged with tar, Python's XML parser and qemu-img.
#include <doctest/doctest.h>

#include <filesystem>
#include <random>
#include <string>

#include "base/error.h"
#include "formats/ova.h"
#include "support/disk_images.h"
#include "support/errors.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"

using namespace edgeforge;
using namespace edgeforge::testing;
namespace stdfs = std::filesystem;

namespace {

formats::OvaOptions options_for(std::string name) {
    formats::OvaOptions options;
    options.name = std::move(name);
    options.cpus = 4;
    options.memory_bytes = 4ULL << 30;
    options.hardware_version = 15;
    options.source_date_epoch = 1700000000;
    return options;
}

} // namespace

TEST_CASE("ova: .ovf, .mf and .vmdk in that order, manifest lines vSphere accepts, same disk") {
    if (!have_qemu_img()) {
        return;
    }
    util::TempDir dir;
    RawDisk raw(dir.path() / "disk.raw", 96ULL << 20);
    raw.write(0, compressible_bytes(3 << 20)).write((96ULL << 20) - 4096, "end of disk");
    const stdfs::path ova = dir.path() / "edge.ova";
    const formats::OvaResult result = formats::write_ova(raw.path(), ova, options_for("edge"));
    CHECK(result.size == stdfs::file_size(ova));
    CHECK(result.sha256 == util::sha256_file_hex(ova));
    CHECK(result.capacity == 96ULL << 20);
    CHECK_FALSE(stdfs::exists(dir.path() / "edge-disk1.vmdk")); // the work copy is gone

    const util::ProcessResult listing = util::run_process({"tar", "-tf", ova.string()});
    REQUIRE(listing.exit_code == 0);
    CHECK(listing.standard_output == "edge.ovf\nedge.mf\nedge-disk1.vmdk\n");
    const util::ProcessResult format = util::run_process({"file", "-b", ova.string()});
    if (format.exit_code == 0) {
        CHECK(format.standard_output.find("POSIX tar archive") != std::string::npos);
    }

    const stdfs::path unpacked = dir.path() / "unpacked";
    stdfs::create_directories(unpacked);
    REQUIRE(util::run_process({"tar", "-xf", ova.string(), "-C", unpacked.string()}).exit_code ==
            0);
    const std::string manifest = util::read_file(unpacked / "edge.mf");
    CHECK(manifest == "SHA256(edge.ovf)= " + util::sha256_file_hex(unpacked / "edge.ovf") +
                          "\nSHA256(edge-disk1.vmdk)= " +
                          util::sha256_file_hex(unpacked / "edge-disk1.vmdk") + "\n");
    check_same_disk(raw.path(), unpacked / "edge-disk1.vmdk", "vmdk");
    CHECK(qemu_img_info(unpacked / "edge-disk1.vmdk", "vmdk")["format-specific"]["data"]
                       ["create-type"] == "streamOptimized");

    // The descriptor is well-formed XML whose sizes and hardware match.
    const std::string check_ovf = R"(
import sys, xml.etree.ElementTree as ET
ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
      "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
      "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
      "vmw": "http://www.vmware.com/schema/ovf"}
root = ET.parse(sys.argv[1]).getroot()
a = lambda name: "{%s}%s" % (ns["ovf"], name)
f = root.find("ovf:References/ovf:File", ns)
d = root.find("ovf:DiskSection/ovf:Disk", ns)
items = {i.find("rasd:ResourceType", ns).text: i for i in root.iter("{%s}Item" % ns["ovf"])}
config = {c.get("{%s}key" % ns["vmw"]): c.get("{%s}value" % ns["vmw"]) for c in root.iter("{%s}Config" % ns["vmw"])}
print(f.get(a("href")), f.get(a("size")), d.get(a("capacity")),
      items["3"].find("rasd:VirtualQuantity", ns).text, items["4"].find("rasd:VirtualQuantity", ns).text,
      items["6"].find("rasd:ResourceSubType", ns).text, items["10"].find("rasd:ResourceSubType", ns).text,
      root.find(".//vssd:VirtualSystemType", ns).text, config["firmware"])
)";
    const util::ProcessResult parsed = util::run_process(
        {"python3", "-c", check_ovf, (unpacked / "edge.ovf").string()});
    INFO(parsed.standard_error);
    REQUIRE(parsed.exit_code == 0);
    CHECK(parsed.standard_output ==
          fmt::format("edge-disk1.vmdk {} {} 4 4096 VirtualSCSI VmxNet3 vmx-15 efi\n",
                      stdfs::file_size(unpacked / "edge-disk1.vmdk"), 96ULL << 20));

    // Reproducible with a fixed epoch.
    const stdfs::path again = dir.path() / "again.ova";
    formats::write_ova(raw.path(), again, options_for("edge"));
    CHECK(util::sha256_file_hex(again) == result.sha256);
}

TEST_CASE("ova: the VMDK written into the archive moves when the .ovf takes other tar blocks") {
    if (!have_qemu_img()) {
        return;
    }
    // The VMDK goes straight into the archive after members rendered with the raw disk's size
    // for the VMDK's sizes. A descriptor made only of those sizes and filler crosses a 512-byte
    // block boundary between that guess and the real sizes, so the data has to move: down when
    // the real numbers are shorter (a sparse 1 MiB disk: a VMDK of about 70 KB), up when they
    // are longer (64 KiB of random bytes: a VMDK over 100 KB).
    struct Case {
        std::string name;
        std::uint64_t raw_size;
        bool random;
        std::size_t filler;
    };
    const auto digits = [](std::uint64_t value) { return std::to_string(value).size(); };
    for (const Case& c : {Case{"down", 1 << 20, false, 498}, Case{"up", 1 << 16, true, 501}}) {
        CAPTURE(c.name);
        util::TempDir dir;
        const stdfs::path templates = dir.path() / "templates";
        stdfs::create_directories(templates / "ovf");
        util::write_file_atomically(templates / "ovf" / "ova.ovf",
                                    std::string(c.filler, 'x') +
                                        "{{DISK_FILE_SIZE}} {{DISK_POPULATED_SIZE}}");
        RawDisk raw(dir.path() / "disk.raw", c.raw_size);
        if (c.random) {
            std::mt19937_64 generator(7);
            std::string bytes(c.raw_size, '\0');
            for (auto& byte : bytes) {
                byte = static_cast<char>(generator());
            }
            raw.write(0, bytes);
        } else {
            raw.write(0, compressible_bytes(4096));
        }
        auto options = options_for("edge");
        options.templates = templates;
        const stdfs::path ova = dir.path() / "edge.ova";
        const formats::OvaResult result = formats::write_ova(raw.path(), ova, options);
        CHECK(result.size == stdfs::file_size(ova));
        CHECK(result.size % 10240 == 0);
        CHECK(result.sha256 == util::sha256_file_hex(ova));

        const stdfs::path unpacked = dir.path() / "unpacked";
        stdfs::create_directories(unpacked);
        REQUIRE(
            util::run_process({"tar", "-xf", ova.string(), "-C", unpacked.string()}).exit_code ==
            0);
        const std::string ovf = util::read_file(unpacked / "edge.ovf");
        const std::uint64_t vmdk_size = stdfs::file_size(unpacked / "edge-disk1.vmdk");
        CHECK(ovf == std::string(c.filler, 'x') + std::to_string(vmdk_size) + " 65536");
        // The guess and the real descriptor take a different number of tar blocks.
        const std::size_t guessed = c.filler + 2 * digits(c.raw_size) + 1;
        CHECK((guessed + 511) / 512 != (ovf.size() + 511) / 512);
        CHECK(util::read_file(unpacked / "edge.mf") ==
              "SHA256(edge.ovf)= " + util::sha256_hex(ovf) + "\nSHA256(edge-disk1.vmdk)= " +
                  util::sha256_file_hex(unpacked / "edge-disk1.vmdk") + "\n");
        check_same_disk(raw.path(), unpacked / "edge-disk1.vmdk", "vmdk");
    }
}

TEST_CASE("ova: options out of range are bad input and write nothing") {
    util::TempDir dir;
    RawDisk raw(dir.path() / "disk.raw", 1 << 20);
    const stdfs::path ova = dir.path() / "x.ova";
    auto options = options_for("bad name");
    CHECK(error_of([&] { formats::write_ova(raw.path(), ova, options); }, ExitCode::bad_input) ==
          "OVA name 'bad name' may only use letters, digits, '-', '_' and '.'");
    options = options_for("ok");
    options.cpus = 0;
    CHECK(error_of([&] { formats::write_ova(raw.path(), ova, options); }, ExitCode::bad_input) ==
          "OVA CPUs must be 1 to 768 (got 0)");
    options = options_for("ok");
    options.memory_bytes = (1ULL << 20) + 1;
    CHECK(error_of([&] { formats::write_ova(raw.path(), ova, options); }, ExitCode::bad_input) ==
          "OVA memory must be a whole number of MiB, at least 1 MiB (got 1048577 bytes)");
    options = options_for("ok");
    options.hardware_version = 22;
    CHECK(error_of([&] { formats::write_ova(raw.path(), ova, options); }, ExitCode::bad_input) ==
          "OVA hardware version must be 7 to 21 (vmx-07 to vmx-21; got 22)");
    CHECK_FALSE(stdfs::exists(ova));
}
