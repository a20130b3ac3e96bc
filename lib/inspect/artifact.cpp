// `edgeforge inspect ARTIFACT`: what a built ISO, raw disk, QCOW2, VMDK or OVA holds.
#include "inspect/artifact.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fmt/ranges.h>

#include "base/error.h"
#include "formats/iso_reader.h"
#include "fs/gpt.h"
#include "fs/squashfs_superblock.h"
#include "inspect/guestfs.h"
#include "inspect/structure.h"
#include "inspect/report.h"
#include "oci/archive.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge::inspect {
namespace {

namespace stdfs = std::filesystem;

struct OvaContents {
    nlohmann::json members = nlohmann::json::array();
    std::string disk_name;
};

// Lists the OVA's members and copies its first VMDK to `disk`.
OvaContents extract_ova_disk(const stdfs::path& ova, const stdfs::path& disk) {
    OvaContents out;
    const oci::TarFileErrors errors{
        [&](const std::string& reason) {
            return bad_input("inspect: {}: cannot read the OVA: {}", ova.string(), reason);
        },
        [&](const std::string& reason) {
            return bad_input("inspect: {}: the OVA's tar is damaged: {}; rebuild it with "
                             "`edgeforge build disk --format ova`",
                             ova.string(), reason);
        }};
    oci::for_each_tar_entry(ova, errors, [&](archive* reader, archive_entry* entry) {
        const std::string name = oci::entry_pathname(entry);
        const auto size = static_cast<std::uint64_t>(archive_entry_size(entry));
        out.members.push_back({{"name", name}, {"size", size}});
        const bool is_vmdk =
            name.size() > 5 && util::to_lower(name.substr(name.size() - 5)) == ".vmdk";
        if (!is_vmdk || !out.disk_name.empty()) {
            return true;
        }
        out.disk_name = name;
        util::FileDescriptor fd(
            ::open(disk.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        if (!fd.valid()) {
            throw build_failed("inspect: {}: cannot write the temporary copy of its disk {}: {}",
                               ova.string(), disk.string(),
                               std::error_code(errno, std::generic_category()).message());
        }
        const void* block = nullptr;
        std::size_t block_size = 0;
        la_int64_t offset = 0;
        while (true) {
            const int read = archive_read_data_block(reader, &block, &block_size, &offset);
            if (read == ARCHIVE_EOF) {
                break;
            }
            if (read < ARCHIVE_WARN) {
                throw bad_input("inspect: {}: cannot read {} from the OVA: {}", ova.string(), name,
                                oci::archive_message(reader));
            }
            util::pwrite_exact(fd.get(), block, block_size, static_cast<std::uint64_t>(offset));
        }
        return true;
    });
    if (out.disk_name.empty()) {
        throw bad_input("inspect: {}: a tar archive without a .vmdk member, so not an OVA; {}",
                        ova.string(), k_supported_formats);
    }
    return out;
}

nlohmann::json squashfs_summary(const Guest& guest, const std::string& path) {
    nlohmann::json out = {{"path", path}, {"size", guest.file_size(path)}};
    const auto bytes = guest.pread(path, static_cast<int>(fs::k_squashfs_head_bytes), 0);
    if (!bytes) {
        out["problem"] = "cannot read the superblock: " + guest.error();
        return out;
    }
    add_squashfs(fs::parse_squashfs_superblock(
                     {reinterpret_cast<const std::uint8_t*>(bytes->data()), bytes->size()}),
                 out);
    return out;
}

// What one mounted filesystem holds that inspect reports: EFI boot files, GRUB menus, the live
// layout (kernel, initrd, rootfs.squashfs) and user-data.
void scan_filesystem(const Guest& guest, const nlohmann::json& where, const std::string& label,
                     nlohmann::json& report) {
    auto tagged = [&](nlohmann::json item) {
        item["device"] = where["device"];
        item["label"] = label;
        return item;
    };
    // The ESP is the FAT filesystem with /EFI/BOOT (an ISO's own /EFI/BOOT holds only a stub).
    const bool fat = where.value("type", "") == "vfat";
    if (auto boot_dir = fat ? guest.find("/EFI/BOOT") : std::nullopt;
        boot_dir && guest.is_dir(*boot_dir)) {
        nlohmann::json esp = tagged({});
        nlohmann::json files = nlohmann::json::array();
        for (const auto& name : guest.ls(*boot_dir)) {
            if (name.size() > 4 && util::to_lower(name.substr(name.size() - 4)) == ".efi") {
                files.push_back(boot_dir->substr(1) + "/" + name);
            }
        }
        esp["boot_files"] = files;
        esp["grub_cfg"] = static_cast<bool>(guest.find(*boot_dir + "/grub.cfg"));
        report["esp"].push_back(esp);
    }
    for (const char* menu : {"/EFI/BOOT/grub.cfg", "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg",
                             "/grub/grub.cfg", "/grub2/grub.cfg"}) {
        if (auto found = guest.find(menu); found && guest.is_file(*found)) {
            report["grub_cfg"].push_back(tagged({{"path", *found}}));
        }
    }
    if (guest.is_file("/rootfs.squashfs")) {
        report["squashfs"].push_back(tagged(squashfs_summary(guest, "/rootfs.squashfs")));
    }
    for (const char* kind : {"kernel", "initrd"}) {
        std::optional<std::string> found;
        if (guest.is_dir("/boot")) {
            const std::string fixed = std::string("/boot/") + kind;
            if (guest.is_file(fixed)) {
                found = fixed;
            } else {
                for (const auto& name : guest.ls("/boot")) {
                    const bool match =
                        std::string_view(kind) == "kernel"
                            ? name.starts_with("vmlinuz") || name.starts_with("Image")
                            : name.starts_with("initrd") || name.starts_with("initramfs");
                    if (match && guest.is_file("/boot/" + name)) {
                        found = "/boot/" + name;
                        break;
                    }
                }
            }
        }
        if (found) {
            report[kind].push_back(tagged({{"path", *found}, {"size", guest.file_size(*found)}}));
        }
    }
    std::vector<std::string> user_data;
    if (guest.is_file("/config.yaml")) {
        user_data.push_back("/config.yaml");
    }
    if (label == "COS_OEM") {
        for (const auto& name : guest.ls("/")) {
            const std::string lower = util::to_lower(name);
            if ((lower.ends_with(".yaml") || lower.ends_with(".yml")) &&
                guest.is_file("/" + name)) {
                user_data.push_back("/" + name);
            }
        }
    }
    for (const auto& path : user_data) {
        const auto content = guest.read_file(path);
        nlohmann::json item =
            content ? user_data_summary(*content) : nlohmann::json{{"problem", guest.error()}};
        item["path"] = path;
        report["user_data"].push_back(tagged(item));
    }
}

bool mountable_type(std::string_view type) {
    return type == "vfat" || type == "ext2" || type == "ext3" || type == "ext4" ||
           type == "iso9660" || type == "xfs" || type == "btrfs";
}

void inspect_with_guestfs(const stdfs::path& artifact, const stdfs::path& disk,
                          std::string_view drive_format, ArtifactFormat format,
                          const Console& console, nlohmann::json& report) {
    Guest guest(artifact, disk, drive_format, console);
    report["libguestfs"] = {{"backend", guest.backend()},
                            {"tcg", guest.tcg()},
                            {"launch_seconds", std::round(guest.launch_seconds() * 10) / 10}};
    const std::vector<std::string> devices = guest.devices();
    if (devices.empty()) {
        guest.fail("see the disk");
    }
    const std::string& device = devices.front();
    const std::int64_t virtual_size = guest.device_size(device);
    if (virtual_size < 0) {
        guest.fail("read the disk size");
    }
    report["virtual_size"] = virtual_size;

    // The partition table is read here from the disk's first sectors: one round trip to the
    // appliance instead of a parted run per field, which costs seconds each under TCG.
    const fs::PartitionTable table =
        fs::read_partition_table([&](std::uint64_t offset, std::size_t size) {
            if (offset >= static_cast<std::uint64_t>(virtual_size)) {
                return std::vector<std::uint8_t>();
            }
            size = static_cast<std::size_t>(
                std::min<std::uint64_t>(size, static_cast<std::uint64_t>(virtual_size) - offset));
            auto bytes = guest.pread_device(device, size, offset);
            if (!bytes) {
                guest.fail("read the partition table");
            }
            return std::move(*bytes);
        });
    // The virtual disk of a QCOW2 or VMDK is only seen here; its table must fit it too.
    if (const auto problems = partition_table_problems(table, static_cast<std::uint64_t>(virtual_size));
        !problems.empty()) {
        throw bad_input("inspect: {}: not a readable disk: {}. It is damaged: build it again",
                        artifact.string(), fmt::join(problems, "; "));
    }
    add_partition_table(table, report);
    nlohmann::json partitions = nlohmann::json::array();
    nlohmann::json filesystems = nlohmann::json::array();
    for (const fs::PartitionEntry& p : table.partitions) {
        nlohmann::json part = partition_report(p);
        const std::string partition_device = device + std::to_string(p.number);
        part["device"] = partition_device;
        const BlockIdentity identity = guest.identify(partition_device);
        part["filesystem"] = identity.type;
        part["label"] = identity.label;
        partitions.push_back(part);
        // A hybrid ISO's first partition is a second view of the ISO 9660 volume.
        if (mountable_type(identity.type) &&
            !(format == ArtifactFormat::iso && identity.type == "iso9660")) {
            filesystems.push_back({{"device", partition_device},
                                   {"partition", p.number},
                                   {"type", identity.type},
                                   {"label", identity.label}});
        }
    }
    if (format == ArtifactFormat::iso) {
        const std::string volume_id =
            report.contains("iso") ? report["iso"].value("volume_id", "") : std::string();
        const nlohmann::json whole = {
            {"device", device}, {"partition", nullptr}, {"type", "iso9660"}, {"label", volume_id}};
        filesystems.insert(filesystems.begin(), whole);
    } else if (table.partitions.empty()) {
        // A bare filesystem without a partition table.
        const BlockIdentity identity = guest.identify(device);
        if (mountable_type(identity.type)) {
            filesystems.push_back({{"device", device},
                                   {"partition", nullptr},
                                   {"type", identity.type},
                                   {"label", identity.label}});
        }
    }
    report["partitions"] = partitions;
    for (const char* key : {"esp", "grub_cfg", "squashfs", "kernel", "initrd", "user_data"}) {
        report[key] = nlohmann::json::array();
    }
    for (auto& filesystem : filesystems) {
        const std::string fs_device = filesystem["device"];
        const std::string type = filesystem["type"];
        if (!guest.mount_ro(fs_device, type)) {
            filesystem["problem"] = "cannot mount: " + guest.error();
            continue;
        }
        scan_filesystem(guest, filesystem, filesystem["label"].get<std::string>(), report);
        if (!guest.umount_all()) {
            guest.fail("unmount " + fs_device);
        }
    }
    report["filesystems"] = filesystems;
    guest.shutdown();
}

std::string drive_format(ArtifactFormat format) {
    switch (format) {
    case ArtifactFormat::qcow2:
        return "qcow2";
    case ArtifactFormat::vmdk:
    case ArtifactFormat::ova:
        return "vmdk";
    default:
        return "raw";
    }
}

} // namespace

nlohmann::json inspect_artifact(const stdfs::path& path, const Console& console) {
    const ArtifactFormat format = detect_file_format(path);
    // Damaged headers are bad input, found before anything is reported as fact.
    check_structure(path, format);
    nlohmann::json report;
    report["artifact"] = path.string();
    report["format"] = format_name(format);
    std::error_code size_error;
    report["file_size"] = stdfs::file_size(path, size_error);

    if (format == ArtifactFormat::iso) {
        if (const auto volume = formats::read_iso_volume_file(path)) {
            report["iso"] = iso_report(*volume);
        }
    }
    if (format == ArtifactFormat::ova) {
        util::TempDir temp(stdfs::temp_directory_path(), "edgeforge-inspect-");
        const stdfs::path disk = temp.path() / "disk.vmdk";
        const OvaContents ova = extract_ova_disk(path, disk);
        report["ova"] = {{"members", ova.members}, {"disk", ova.disk_name}};
        // The extracted disk must be a VMDK too, or qemu's error would be all the user sees.
        std::uint64_t disk_size = 0;
        if (detect_format(read_artifact_head(disk, disk_size)) != ArtifactFormat::vmdk) {
            throw bad_input("inspect: {}: its {} is not a sparse VMDK (no KDMV header); rebuild "
                            "it with `edgeforge build disk --format ova`",
                            path.string(), ova.disk_name);
        }
        check_structure(disk, ArtifactFormat::vmdk);
        inspect_with_guestfs(path, disk, "vmdk", format, console, report);
        return report;
    }
    inspect_with_guestfs(path, path, drive_format(format), format, console, report);
    return report;
}

} // namespace edgeforge::inspect
