// `edgeforge inspect ARTIFACT`: what a built ISO, raw disk, QCOW2, VMDK or OVA holds.
#include "inspect/artifact.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>

#include <archive.h>
#include <archive_entry.h>
#include <fmt/format.h>
#include <guestfs.h>
#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include "base/console.h"
#include "base/error.h"
#include "oci/archive.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::inspect {
namespace {

namespace stdfs = std::filesystem;

constexpr std::string_view k_supported =
    "supported are ISO 9660 images, raw disks with a GPT or MBR partition table, QCOW2, VMDK "
    "(sparse) and OVA (tar with a VMDK), recognised by their content whatever the file is called";

std::uint16_t le16(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint16_t>(b[at] | b[at + 1] << 8);
}
std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint32_t>(b[at]) | static_cast<std::uint32_t>(b[at + 1]) << 8 |
           static_cast<std::uint32_t>(b[at + 2]) << 16 |
           static_cast<std::uint32_t>(b[at + 3]) << 24;
}
std::uint64_t le64(std::span<const std::uint8_t> b, std::size_t at) {
    return static_cast<std::uint64_t>(le32(b, at)) | static_cast<std::uint64_t>(le32(b, at + 4))
                                                         << 32;
}

bool bytes_at(std::span<const std::uint8_t> head, std::size_t at, std::string_view magic) {
    return head.size() >= at + magic.size() &&
           std::memcmp(head.data() + at, magic.data(), magic.size()) == 0;
}

// An MBR with the boot signature and at least one partition entry of a non-zero type whose
// status byte is valid (0x00 or 0x80): random data rarely passes all of it.
bool has_mbr_partition(std::span<const std::uint8_t> head) {
    if (head.size() < 512 || head[510] != 0x55 || head[511] != 0xAA) {
        return false;
    }
    bool any = false;
    for (std::size_t entry = 446; entry < 510; entry += 16) {
        const std::uint8_t status = head[entry];
        if (status != 0x00 && status != 0x80) {
            return false;
        }
        if (head[entry + 4] != 0 && le32(head, entry + 12) != 0) {
            any = true;
        }
    }
    return any;
}

std::string trim_padding(std::span<const std::uint8_t> bytes) {
    std::string text(bytes.begin(), bytes.end());
    const auto end = text.find_last_not_of(std::string_view(" \0", 2));
    return end == std::string::npos ? std::string() : text.substr(0, end + 1);
}

std::string platform_name(std::uint8_t id) {
    switch (id) {
    case 0x00:
        return "bios";
    case 0x01:
        return "powerpc";
    case 0x02:
        return "mac";
    case 0xEF:
        return "efi";
    default:
        return fmt::format("0x{:02x}", id);
    }
}

std::string emulation_name(std::uint8_t media) {
    switch (media & 0x0F) {
    case 0:
        return "none";
    case 1:
        return "1.2M floppy";
    case 2:
        return "1.44M floppy";
    case 3:
        return "2.88M floppy";
    case 4:
        return "hard disk";
    default:
        return fmt::format("0x{:02x}", media & 0x0F);
    }
}

ElToritoEntry boot_entry(std::span<const std::uint8_t> entry, std::uint8_t platform) {
    ElToritoEntry out;
    out.platform = platform_name(platform);
    out.bootable = entry[0] == 0x88;
    out.emulation = emulation_name(entry[1]);
    out.sector_count = le16(entry, 6);
    out.load_rba = le32(entry, 8);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Files on the host.

std::string errno_text(int error) {
    return std::error_code(error, std::generic_category()).message();
}

std::vector<std::uint8_t> read_head(const stdfs::path& path, std::uint64_t& file_size) {
    util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        throw bad_input("inspect: {}: cannot open it: {}; give the path of a built artifact ({})",
                        path.string(), errno_text(errno), k_supported);
    }
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) {
        throw bad_input("inspect: {}: cannot read it: {}", path.string(), errno_text(errno));
    }
    if (S_ISDIR(status.st_mode)) {
        throw bad_input("inspect: {}: is a directory; give the path of a built artifact ({})",
                        path.string(), k_supported);
    }
    if (!S_ISREG(status.st_mode) && !S_ISBLK(status.st_mode)) {
        throw bad_input("inspect: {}: is not a regular file; give the path of a built artifact "
                        "({})",
                        path.string(), k_supported);
    }
    file_size = static_cast<std::uint64_t>(status.st_size);
    std::vector<std::uint8_t> head(
        static_cast<std::size_t>(std::min<std::uint64_t>(file_size, k_detect_bytes)));
    try {
        if (!util::pread_exact(fd.get(), head.data(), head.size(), 0)) {
            throw bad_input("inspect: {}: the file shrank while being read", path.string());
        }
    } catch (const std::system_error& error) {
        throw bad_input("inspect: {}: cannot read it: {}", path.string(), error.what());
    }
    return head;
}

std::optional<IsoVolume> read_iso_file(const stdfs::path& path) {
    util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
        return std::nullopt;
    }
    return read_iso_volume([&](std::uint32_t block) {
        std::vector<std::uint8_t> bytes(2048);
        if (!util::pread_exact(fd.get(), bytes.data(), bytes.size(),
                               static_cast<std::uint64_t>(block) * 2048)) {
            bytes.clear();
        }
        return bytes;
    });
}

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
                               ova.string(), disk.string(), errno_text(errno));
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
                        ova.string(), k_supported);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// libguestfs.

struct GuestfsCloser {
    void operator()(guestfs_h* handle) const { guestfs_close(handle); }
};
using GuestfsHandle = std::unique_ptr<guestfs_h, GuestfsCloser>;

struct FreeDeleter {
    void operator()(void* pointer) const { std::free(pointer); }
};
using CString = std::unique_ptr<char, FreeDeleter>;

std::vector<std::string> take_strings(char** strings) {
    std::vector<std::string> out;
    if (strings == nullptr) {
        return out;
    }
    for (char** s = strings; *s != nullptr; ++s) {
        out.emplace_back(*s);
        std::free(*s);
    }
    std::free(static_cast<void*>(strings));
    return out;
}

std::optional<std::string> take_string(char* text) {
    if (text == nullptr) {
        return std::nullopt;
    }
    CString owned(text);
    return std::string(owned.get());
}

bool env_set(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0';
}

// The first line of a libguestfs message (the rest is its generic debugging advice).
std::string first_line(const std::string& message) {
    return util::printable_line(message.substr(0, message.find('\n')), 400);
}

// What `qemu-img info` says is wrong with a disk image, or "" when it reads it.
std::string qemu_img_problem(const stdfs::path& disk, const std::string& format) {
    try {
        const util::ProcessResult result =
            util::run_process({"qemu-img", "info", "-f", format, disk.string()});
        if (result.exit_code == 0) {
            return "";
        }
        return util::printable_line(result.standard_error, 400);
    } catch (const std::system_error&) {
        return "";
    }
}

struct BlockIdentity {
    std::string type;
    std::string label;
};

// One read-only libguestfs appliance with the artifact's disk attached.
class Guest {
  public:
    Guest(const stdfs::path& artifact, const stdfs::path& disk, std::string_view format,
          const Console& console)
        : artifact_(artifact) {
        const auto start = std::chrono::steady_clock::now();
        std::string first_error;
        const auto announce = [&] {
            console.info("inspect: starting the libguestfs appliance for {} (without KVM, under "
                         "TCG, this takes tens of seconds)\n",
                         artifact.string());
        };
        if (!launch(disk, format, false, first_error, announce)) {
            // KVM that exists but fails (nested virtualisation) kills qemu at once: retry with
            // TCG unless the user chose the backend settings.
            std::string second_error;
            if (env_set("LIBGUESTFS_BACKEND_SETTINGS") ||
                !launch(disk, format, true, second_error, [] {})) {
                const std::string& message = second_error.empty() ? first_error : second_error;
                throw build_failed(
                    "inspect: {}: the libguestfs appliance failed to launch: {}; check it with "
                    "`LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg "
                    "libguestfs-test-tool` (Debian package libguestfs-tools); the appliance needs "
                    "supermin, qemu-system-x86 and a kernel: apt-get install supermin "
                    "linux-image-amd64",
                    artifact.string(), first_line(message));
            }
        }
        launch_seconds_ =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        console.detail("inspect: appliance up in {:.1f} s ({})\n", launch_seconds_,
                       tcg_ ? "TCG" : "default acceleration");
    }

    guestfs_h* get() const { return handle_.get(); }
    double launch_seconds() const { return launch_seconds_; }
    bool tcg() const { return tcg_; }
    const std::string& backend() const { return backend_; }

    std::string error() const {
        const char* message = guestfs_last_error(handle_.get());
        return message != nullptr ? first_line(message) : "unknown libguestfs error";
    }
    [[noreturn]] void fail(std::string_view what) const {
        throw build_failed("inspect: {}: libguestfs could not {}: {}", artifact_.string(), what,
                           error());
    }

    std::vector<std::string> devices() const {
        char** list = guestfs_list_devices(get());
        if (list == nullptr) {
            fail("list the disks");
        }
        return take_strings(list);
    }

    bool is_file(const std::string& path) const { return guestfs_is_file(get(), path.c_str()) > 0; }
    bool is_dir(const std::string& path) const { return guestfs_is_dir(get(), path.c_str()) > 0; }
    std::vector<std::string> ls(const std::string& dir) const {
        return take_strings(guestfs_ls(get(), dir.c_str()));
    }
    std::uint64_t file_size(const std::string& path) const {
        const std::int64_t size = guestfs_filesize(get(), path.c_str());
        return size < 0 ? 0 : static_cast<std::uint64_t>(size);
    }
    std::optional<std::string> pread(const std::string& path, int count,
                                     std::int64_t offset) const {
        std::size_t size = 0;
        char* bytes = guestfs_pread(get(), path.c_str(), count, offset, &size);
        if (bytes == nullptr) {
            return std::nullopt;
        }
        CString owned(bytes);
        return std::string(bytes, size);
    }
    std::optional<std::string> read_file(const std::string& path) const {
        std::size_t size = 0;
        char* bytes = guestfs_read_file(get(), path.c_str(), &size);
        if (bytes == nullptr) {
            return std::nullopt;
        }
        CString owned(bytes);
        return std::string(bytes, size);
    }
    // The filesystem type and label blkid sees on a device (empty when it sees none).
    BlockIdentity identify(const std::string& device) const {
        BlockIdentity out;
        const std::vector<std::string> pairs = take_strings(guestfs_blkid(get(), device.c_str()));
        for (std::size_t i = 0; i + 1 < pairs.size(); i += 2) {
            if (pairs[i] == "TYPE") {
                out.type = pairs[i + 1];
            } else if (pairs[i] == "LABEL") {
                out.label = pairs[i + 1];
            }
        }
        return out;
    }
    // The path as the filesystem spells it (FAT is case-insensitive), if it exists.
    std::optional<std::string> find(const std::string& path) const {
        auto found = take_string(guestfs_case_sensitive_path(get(), path.c_str()));
        if (!found || guestfs_exists(get(), found->c_str()) <= 0) {
            return std::nullopt;
        }
        return found;
    }

  private:
    bool launch(const stdfs::path& disk, std::string_view format, bool force_tcg,
                std::string& error_out, const std::function<void()>& before_launch) {
        handle_.reset(guestfs_create());
        if (!handle_) {
            error_out = "guestfs_create failed";
            return false;
        }
        guestfs_set_error_handler(get(), nullptr, nullptr);
        // The direct backend runs qemu itself: no libvirt daemon, no root.
        if (!env_set("LIBGUESTFS_BACKEND")) {
            guestfs_set_backend(get(), "direct");
        }
        backend_ = take_string(guestfs_get_backend(get())).value_or("?");
        if (force_tcg) {
            const char* settings[] = {"force_tcg", nullptr};
            guestfs_set_backend_settings(get(), const_cast<char* const*>(settings));
        }
        tcg_ = force_tcg ||
               (std::getenv("LIBGUESTFS_BACKEND_SETTINGS") != nullptr &&
                std::string_view(std::getenv("LIBGUESTFS_BACKEND_SETTINGS")).find("force_tcg") !=
                    std::string_view::npos);
        const std::string format_text(format);
        if (guestfs_add_drive_opts(get(), disk.c_str(), GUESTFS_ADD_DRIVE_OPTS_FORMAT,
                                   format_text.c_str(), GUESTFS_ADD_DRIVE_OPTS_READONLY, 1,
                                   -1) == -1) {
            // libguestfs puts a qemu-img overlay over the disk here; when qemu cannot read the
            // image, qemu-img info says why (libguestfs's own message does not).
            const std::string reason = qemu_img_problem(disk, format_text);
            if (!reason.empty()) {
                throw bad_input("inspect: {}: qemu cannot read it as {}: {}; the image is "
                                "damaged or truncated: rebuild it (edgeforge build disk)",
                                artifact_.string(), format_text, reason);
            }
            throw build_failed("inspect: {}: libguestfs cannot add the disk: {}",
                               artifact_.string(), error());
        }
        before_launch();
        if (guestfs_launch(get()) == -1) {
            error_out = error();
            return false;
        }
        return true;
    }

    stdfs::path artifact_;
    GuestfsHandle handle_;
    std::string backend_;
    bool tcg_ = false;
    double launch_seconds_ = 0;
};

// Keys whose values are credentials (edgeHostToken, passwd, ...): never printed.
bool looks_secret(std::string_view key) {
    const std::string lower = util::to_lower(key);
    for (const char* word : {"token", "password", "passwd", "secret", "key"}) {
        if (lower.find(word) != std::string::npos) {
            return true;
        }
    }
    return false;
}

// Hides the value of `key: value` lines whose key looks like a secret.
std::string mask_secret(const std::string& line) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) {
        return line;
    }
    const std::string_view value = util::trim(std::string_view(line).substr(colon + 1));
    if (!value.empty() && looks_secret(line.substr(0, colon))) {
        return line.substr(0, colon + 1) + " <hidden>";
    }
    return line;
}

void flatten_site(const YAML::Node& node, const std::string& prefix, nlohmann::json& out) {
    if (node.IsMap()) {
        for (const auto& item : node) {
            const std::string key = item.first.as<std::string>("");
            flatten_site(item.second, prefix.empty() ? key : prefix + "." + key, out);
        }
        return;
    }
    if (node.IsSequence()) {
        out[prefix] = fmt::format("[{} items]", node.size());
        return;
    }
    const std::string value = node.IsScalar() ? node.Scalar() : "";
    const auto dot = prefix.rfind('.');
    const bool secret = looks_secret(dot == std::string::npos ? prefix : prefix.substr(dot + 1));
    out[prefix] = secret && !value.empty() ? "<hidden>" : value;
}

nlohmann::json user_data_summary(const std::string& content) {
    nlohmann::json out;
    out["size"] = content.size();
    out["sha256"] = util::sha256_hex(content);
    const std::vector<std::string> lines = util::split(content, '\n');
    out["lines"] = lines.size() - (!lines.empty() && lines.back().empty() ? 1 : 0);
    nlohmann::json first = nlohmann::json::array();
    for (std::size_t i = 0; i < lines.size() && i < 5; ++i) {
        first.push_back(util::printable_line(mask_secret(lines[i]), 120));
    }
    out["first_lines"] = first;
    try {
        const YAML::Node document = YAML::Load(content);
        if (document.IsMap() && document["stylus"] && document["stylus"]["site"]) {
            nlohmann::json site = nlohmann::json::object();
            flatten_site(document["stylus"]["site"], "", site);
            out["stylus_site"] = site;
        }
    } catch (const YAML::Exception& error) {
        out["yaml_error"] = error.what();
    }
    return out;
}

nlohmann::json squashfs_summary(const Guest& guest, const std::string& path) {
    nlohmann::json out = {{"path", path}, {"size", guest.file_size(path)}};
    const auto bytes = guest.pread(path, static_cast<int>(k_squashfs_head_bytes), 0);
    if (!bytes) {
        out["problem"] = "cannot read the superblock: " + guest.error();
        return out;
    }
    const auto parsed = parse_squashfs_superblock(
        {reinterpret_cast<const std::uint8_t*>(bytes->data()), bytes->size()});
    if (!parsed.superblock) {
        out["problem"] = parsed.problem;
        return out;
    }
    const SquashfsSuperblock& sb = *parsed.superblock;
    out["compression"] = sb.compression();
    if (sb.compression_level) {
        out["compression_level"] = *sb.compression_level;
    }
    if (sb.xz_dictionary_size) {
        out["xz_dictionary_size"] = *sb.xz_dictionary_size;
    }
    out["block_size"] = sb.block_size;
    out["inode_count"] = sb.inode_count;
    out["fragment_count"] = sb.fragment_count;
    out["bytes_used"] = sb.bytes_used;
    out["version"] = fmt::format("{}.{}", sb.version_major, sb.version_minor);
    out["modification_time"] = sb.modification_time;
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
    const std::int64_t virtual_size = guestfs_blockdev_getsize64(guest.get(), device.c_str());
    if (virtual_size < 0) {
        guest.fail("read the disk size");
    }
    report["virtual_size"] = virtual_size;

    // The partition table is read here from the disk's first sectors: one round trip to the
    // appliance instead of a parted run per field, which costs seconds each under TCG.
    const PartitionTable table = read_partition_table([&](std::uint64_t offset, std::size_t size) {
        std::vector<std::uint8_t> bytes;
        if (offset >= static_cast<std::uint64_t>(virtual_size)) {
            return bytes;
        }
        size = static_cast<std::size_t>(
            std::min<std::uint64_t>(size, static_cast<std::uint64_t>(virtual_size) - offset));
        std::size_t got = 0;
        char* data = guestfs_pread_device(guest.get(), device.c_str(), static_cast<int>(size),
                                          static_cast<std::int64_t>(offset), &got);
        if (data == nullptr) {
            guest.fail("read the partition table");
        }
        CString owned(data);
        bytes.assign(data, data + got);
        return bytes;
    });
    report["partition_table"] = table.type;
    if (table.hybrid_mbr) {
        report["hybrid_mbr"] = true;
    }
    if (!table.problem.empty()) {
        report["partition_table_problem"] = table.problem;
    }
    nlohmann::json partitions = nlohmann::json::array();
    nlohmann::json filesystems = nlohmann::json::array();
    for (const PartitionEntry& p : table.partitions) {
        nlohmann::json part = {{"number", p.number}, {"start", p.start}, {"size", p.size}};
        if (!p.gpt_type.empty()) {
            std::string code;
            part["gpt_type"] = p.gpt_type;
            part["type_name"] = gpt_type_name(p.gpt_type, code);
            part["type_code"] = code;
            part["name"] = p.name;
        }
        if (p.mbr_type) {
            part["mbr_type"] = fmt::format("0x{:02x}", *p.mbr_type);
            part["bootable"] = p.bootable;
        }
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
        const int mounted =
            type == "iso9660"
                ? guestfs_mount_vfs(guest.get(), "ro", "iso9660", fs_device.c_str(), "/")
                : guestfs_mount_ro(guest.get(), fs_device.c_str(), "/");
        if (mounted == -1) {
            filesystem["problem"] = "cannot mount: " + guest.error();
            continue;
        }
        scan_filesystem(guest, filesystem, filesystem["label"].get<std::string>(), report);
        if (guestfs_umount_all(guest.get()) == -1) {
            guest.fail("unmount " + fs_device);
        }
    }
    report["filesystems"] = filesystems;
    guestfs_shutdown(guest.get());
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

std::string_view format_name(ArtifactFormat format) {
    switch (format) {
    case ArtifactFormat::iso:
        return "iso";
    case ArtifactFormat::raw:
        return "raw";
    case ArtifactFormat::qcow2:
        return "qcow2";
    case ArtifactFormat::vmdk:
        return "vmdk";
    case ArtifactFormat::ova:
        return "ova";
    case ArtifactFormat::unknown:
        break;
    }
    return "unknown";
}

ArtifactFormat detect_format(std::span<const std::uint8_t> head) {
    if (bytes_at(head, 0, "QFI\xfb")) {
        return ArtifactFormat::qcow2;
    }
    if (bytes_at(head, 0, "KDMV")) {
        return ArtifactFormat::vmdk;
    }
    if (bytes_at(head, 257, "ustar")) {
        return ArtifactFormat::ova;
    }
    if (bytes_at(head, 0x8001, "CD001")) {
        return ArtifactFormat::iso;
    }
    if (bytes_at(head, 512, "EFI PART") || bytes_at(head, 4096, "EFI PART") ||
        has_mbr_partition(head)) {
        return ArtifactFormat::raw;
    }
    return ArtifactFormat::unknown;
}

ArtifactFormat detect_file_format(const stdfs::path& path) {
    std::uint64_t size = 0;
    const std::vector<std::uint8_t> head = read_head(path, size);
    if (size == 0) {
        throw bad_input("inspect: {}: the file is empty, not a built artifact; {}", path.string(),
                        k_supported);
    }
    const ArtifactFormat format = detect_format(head);
    if (format == ArtifactFormat::unknown) {
        throw bad_input("inspect: {}: not a built artifact (no ISO 9660 volume, partition table, "
                        "QCOW2, VMDK or tar header found); {}",
                        path.string(), k_supported);
    }
    return format;
}

std::string_view SquashfsSuperblock::compression() const {
    switch (compression_id) {
    case 1:
        return "gzip";
    case 2:
        return "lzma";
    case 3:
        return "lzo";
    case 4:
        return "xz";
    case 5:
        return "lz4";
    case 6:
        return "zstd";
    default:
        return "unknown";
    }
}

SquashfsParse parse_squashfs_superblock(std::span<const std::uint8_t> bytes) {
    SquashfsParse out;
    if (bytes.size() < 96) {
        out.problem =
            fmt::format("too short for a squashfs superblock ({} of 96 bytes)", bytes.size());
        return out;
    }
    if (!bytes_at(bytes, 0, "hsqs")) {
        out.problem = bytes_at(bytes, 0, "sqsh") ? "a big-endian squashfs (not supported)"
                                                 : "no squashfs magic (hsqs)";
        return out;
    }
    SquashfsSuperblock sb;
    sb.inode_count = le32(bytes, 4);
    sb.modification_time = le32(bytes, 8);
    sb.block_size = le32(bytes, 12);
    sb.fragment_count = le32(bytes, 16);
    sb.compression_id = le16(bytes, 20);
    const std::uint16_t block_log = le16(bytes, 22);
    sb.flags = le16(bytes, 24);
    sb.id_count = le16(bytes, 26);
    sb.version_major = le16(bytes, 28);
    sb.version_minor = le16(bytes, 30);
    sb.bytes_used = le64(bytes, 40);
    if (sb.version_major != 4 || sb.version_minor != 0) {
        out.problem = fmt::format("squashfs version {}.{} (only 4.0 is read)", sb.version_major,
                                  sb.version_minor);
        return out;
    }
    if (sb.compression() == "unknown") {
        out.problem = fmt::format("unknown compressor id {}", sb.compression_id);
        return out;
    }
    if (block_log < 12 || block_log > 20 || sb.block_size != (1u << block_log)) {
        out.problem = fmt::format("inconsistent block size {} (log {})", sb.block_size, block_log);
        return out;
    }
    // Compressor options: a metadata block (2-byte header, stored uncompressed) of 8 bytes.
    constexpr std::uint16_t k_compressor_options = 0x0400;
    if ((sb.flags & k_compressor_options) != 0 && bytes.size() >= k_squashfs_head_bytes &&
        (le16(bytes, 96) & 0x8000) != 0) {
        const std::size_t length = le16(bytes, 96) & 0x7FFF;
        if (sb.compression_id == 1 || sb.compression_id == 6) { // gzip, zstd: level first
            sb.compression_level = length >= 4 ? std::optional(le32(bytes, 98)) : std::nullopt;
        } else if (sb.compression_id == 3 && length >= 8) { // lzo: algorithm, level
            sb.compression_level = le32(bytes, 102);
        } else if (sb.compression_id == 4 && length >= 4) { // xz: dictionary size, filters
            sb.xz_dictionary_size = le32(bytes, 98);
        }
    }
    out.superblock = sb;
    return out;
}

std::optional<IsoVolume>
read_iso_volume(const std::function<std::vector<std::uint8_t>(std::uint32_t)>& read_block) {
    const std::vector<std::uint8_t> pvd = read_block(16);
    if (pvd.size() < 2048 || pvd[0] != 1 || !bytes_at(pvd, 1, "CD001")) {
        return std::nullopt;
    }
    IsoVolume volume;
    volume.volume_id = trim_padding(std::span(pvd).subspan(40, 32));
    volume.volume_bytes = static_cast<std::uint64_t>(le32(pvd, 80)) * le16(pvd, 128);
    const std::vector<std::uint8_t> record = read_block(17);
    if (record.size() < 2048 || record[0] != 0 || !bytes_at(record, 1, "CD001") ||
        !bytes_at(record, 7, "EL TORITO SPECIFICATION")) {
        return volume;
    }
    const std::uint32_t catalog_block = le32(record, 0x47);
    volume.boot_catalog_block = catalog_block;
    const std::vector<std::uint8_t> catalog = read_block(catalog_block);
    // The validation entry: header id 1 and key 55 AA.
    if (catalog.size() < 2048 || catalog[0] != 1 || catalog[30] != 0x55 || catalog[31] != 0xAA) {
        return volume;
    }
    const std::span<const std::uint8_t> entries(catalog);
    volume.boot_entries.push_back(boot_entry(entries.subspan(32, 32), catalog[1]));
    std::size_t at = 64;
    while (at + 32 <= catalog.size()) {
        const std::uint8_t header = catalog[at];
        if (header != 0x90 && header != 0x91) {
            break;
        }
        const std::uint8_t platform = catalog[at + 1];
        const std::uint16_t count = le16(entries, at + 2);
        at += 32;
        for (std::uint16_t i = 0; i < count && at + 32 <= catalog.size(); ++i, at += 32) {
            // Section entry extensions (0x44) continue the previous entry's selection criteria.
            if (catalog[at] == 0x44) {
                --i;
                continue;
            }
            volume.boot_entries.push_back(boot_entry(entries.subspan(at, 32), platform));
        }
        if (header == 0x91) {
            break;
        }
    }
    return volume;
}

std::string gpt_type_name(std::string_view guid, std::string& code) {
    struct Known {
        std::string_view guid, name, code;
    };
    static constexpr Known k_known[] = {
        {"C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "EFI system partition", "EF00"},
        {"0FC63DAF-8483-4772-8E79-3D69D8477DE4", "Linux filesystem", "8300"},
        {"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "Microsoft basic data", "0700"},
        {"21686148-6449-6E6F-744E-656564454649", "BIOS boot partition", "EF02"},
        {"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap", "8200"},
        {"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "Linux x86-64 root", "8304"},
        {"B921B045-1DF0-41C3-AF44-4C6F280D3FAE", "Linux ARM64 root", "8305"},
        {"E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM", "8E00"},
        {"A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID", "FD00"},
    };
    for (const auto& known : k_known) {
        if (util::iequals(known.guid, guid)) {
            code = std::string(known.code);
            return std::string(known.name);
        }
    }
    code.clear();
    return "";
}

namespace {

std::string guid_text(std::span<const std::uint8_t> b) {
    return fmt::format("{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
                       le32(b, 0), le16(b, 4), le16(b, 6), b[8], b[9], b[10], b[11], b[12], b[13],
                       b[14], b[15]);
}

// A GPT name: UTF-16LE, NUL-terminated, 36 code units, as UTF-8.
std::string utf16_name(std::span<const std::uint8_t> b) {
    std::string out;
    for (std::size_t i = 0; i + 1 < b.size(); i += 2) {
        std::uint32_t unit = le16(b, i);
        if (unit == 0) {
            break;
        }
        if (unit >= 0xD800 && unit <= 0xDBFF && i + 3 < b.size()) {
            const std::uint32_t low = le16(b, i + 2);
            if (low >= 0xDC00 && low <= 0xDFFF) {
                unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                i += 2;
            }
        }
        if (unit < 0x80) {
            out += static_cast<char>(unit);
        } else if (unit < 0x800) {
            out += static_cast<char>(0xC0 | unit >> 6);
            out += static_cast<char>(0x80 | (unit & 0x3F));
        } else if (unit < 0x10000) {
            out += static_cast<char>(0xE0 | unit >> 12);
            out += static_cast<char>(0x80 | (unit >> 6 & 0x3F));
            out += static_cast<char>(0x80 | (unit & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | unit >> 18);
            out += static_cast<char>(0x80 | (unit >> 12 & 0x3F));
            out += static_cast<char>(0x80 | (unit >> 6 & 0x3F));
            out += static_cast<char>(0x80 | (unit & 0x3F));
        }
    }
    return out;
}

std::uint32_t crc32_of(std::span<const std::uint8_t> bytes) {
    return static_cast<std::uint32_t>(::crc32(0L, bytes.data(), static_cast<uInt>(bytes.size())));
}

} // namespace

PartitionTable read_partition_table(
    const std::function<std::vector<std::uint8_t>(std::uint64_t, std::size_t)>& read) {
    PartitionTable table;
    const std::vector<std::uint8_t> mbr = read(0, 1024);
    if (mbr.size() < 512 || mbr[510] != 0x55 || mbr[511] != 0xAA) {
        if (mbr.size() >= 520 && bytes_at(mbr, 512, "EFI PART")) {
            table.problem = "GPT header without an MBR boot signature";
        } else {
            return table;
        }
    }
    std::vector<PartitionEntry> mbr_entries;
    bool protective = false;
    for (std::uint32_t i = 0; i < 4 && mbr.size() >= 512; ++i) {
        const std::span<const std::uint8_t> entry(mbr.data() + 446 + 16 * i, 16);
        if (entry[4] == 0) {
            continue;
        }
        if (entry[4] == 0xEE) {
            protective = true;
            continue;
        }
        PartitionEntry part;
        part.number = i + 1;
        part.mbr_type = entry[4];
        part.bootable = entry[0] == 0x80;
        part.start = static_cast<std::uint64_t>(le32(entry, 8)) * 512;
        part.size = static_cast<std::uint64_t>(le32(entry, 12)) * 512;
        mbr_entries.push_back(part);
    }
    if (mbr.size() >= 604 && bytes_at(mbr, 512, "EFI PART")) {
        const std::span<const std::uint8_t> header(mbr.data() + 512, 512);
        const std::uint32_t header_size = le32(header, 12);
        table.type = "gpt";
        table.hybrid_mbr = !mbr_entries.empty();
        if (header_size < 92 || header_size > 512) {
            table.problem = fmt::format("GPT header size {} is invalid", header_size);
            return table;
        }
        std::vector<std::uint8_t> copy(header.begin(), header.begin() + header_size);
        std::fill(copy.begin() + 16, copy.begin() + 20, std::uint8_t{0});
        if (crc32_of(copy) != le32(header, 16)) {
            table.problem = "GPT header CRC mismatch";
        }
        const std::uint64_t entries_lba = le64(header, 72);
        const std::uint32_t count = le32(header, 80);
        const std::uint32_t entry_size = le32(header, 84);
        if (entry_size < 128 || count > 1024 || entry_size > 4096) {
            table.problem =
                fmt::format("GPT entry array of {} x {} bytes is invalid", count, entry_size);
            return table;
        }
        const std::size_t array_size = static_cast<std::size_t>(count) * entry_size;
        const std::vector<std::uint8_t> array = read(entries_lba * 512, array_size);
        if (array.size() < array_size) {
            table.problem = "the GPT entry array lies past the end of the disk";
            return table;
        }
        if (crc32_of(array) != le32(header, 88) && table.problem.empty()) {
            table.problem = "GPT entry array CRC mismatch";
        }
        for (std::uint32_t i = 0; i < count; ++i) {
            const std::span<const std::uint8_t> entry(array.data() + std::size_t{i} * entry_size,
                                                      entry_size);
            if (std::all_of(entry.begin(), entry.begin() + 16,
                            [](std::uint8_t b) { return b == 0; })) {
                continue;
            }
            PartitionEntry part;
            part.number = i + 1;
            part.gpt_type = guid_text(entry.subspan(0, 16));
            const std::uint64_t first = le64(entry, 32);
            const std::uint64_t last = le64(entry, 40);
            part.start = first * 512;
            part.size = last >= first ? (last - first + 1) * 512 : 0;
            part.name = utf16_name(entry.subspan(56, 72));
            table.partitions.push_back(part);
        }
        return table;
    }
    if (protective) {
        table.type = "gpt";
        table.problem = "protective MBR without a GPT header at LBA 1";
        return table;
    }
    if (!mbr_entries.empty()) {
        table.type = "mbr";
        table.partitions = mbr_entries;
    }
    return table;
}

nlohmann::json inspect_artifact(const stdfs::path& path, const Console& console) {
    const ArtifactFormat format = detect_file_format(path);
    nlohmann::json report;
    report["artifact"] = path.string();
    report["format"] = format_name(format);
    std::error_code size_error;
    report["file_size"] = stdfs::file_size(path, size_error);

    if (format == ArtifactFormat::iso) {
        if (const auto volume = read_iso_file(path)) {
            nlohmann::json entries = nlohmann::json::array();
            for (const auto& entry : volume->boot_entries) {
                entries.push_back({{"platform", entry.platform},
                                   {"bootable", entry.bootable},
                                   {"emulation", entry.emulation},
                                   {"load_block", entry.load_rba},
                                   {"sectors", entry.sector_count}});
            }
            report["iso"] = {{"volume_id", volume->volume_id},
                             {"volume_size", volume->volume_bytes},
                             {"el_torito", entries}};
            if (volume->boot_catalog_block) {
                report["iso"]["boot_catalog_block"] = *volume->boot_catalog_block;
            }
        }
    }
    if (format == ArtifactFormat::ova) {
        util::TempDir temp(stdfs::temp_directory_path(), "edgeforge-inspect-");
        const stdfs::path disk = temp.path() / "disk.vmdk";
        const OvaContents ova = extract_ova_disk(path, disk);
        report["ova"] = {{"members", ova.members}, {"disk", ova.disk_name}};
        // The extracted disk must be a VMDK too, or qemu's error would be all the user sees.
        std::uint64_t disk_size = 0;
        if (detect_format(read_head(disk, disk_size)) != ArtifactFormat::vmdk) {
            throw bad_input("inspect: {}: its {} is not a sparse VMDK (no KDMV header); rebuild "
                            "it with `edgeforge build disk --format ova`",
                            path.string(), ova.disk_name);
        }
        inspect_with_guestfs(path, disk, "vmdk", format, console, report);
        return report;
    }
    inspect_with_guestfs(path, path, drive_format(format), format, console, report);
    return report;
}

namespace {

std::string located(const nlohmann::json& item) {
    const std::string label = item.value("label", "");
    return label.empty() ? item.value("device", "") : label;
}

} // namespace

std::string render_artifact_report(const nlohmann::json& report) {
    std::string out;
    auto line = [&](std::string_view key, const std::string& value) {
        out += fmt::format("{:<11} {}\n", key, value);
    };
    line("artifact", report.value("artifact", ""));
    line("format", report.value("format", ""));
    const auto file_size = report.value("file_size", std::uint64_t{0});
    const auto virtual_size = report.value("virtual_size", std::uint64_t{0});
    line("size",
         fmt::format("{} file ({} bytes), {} virtual ({} bytes)", util::format_bytes(file_size),
                     file_size, util::format_bytes(virtual_size), virtual_size));
    if (report.contains("ova")) {
        std::vector<std::string> members;
        for (const auto& member : report["ova"]["members"]) {
            members.push_back(
                fmt::format("{} ({})", member.value("name", ""),
                            util::format_bytes(member.value("size", std::uint64_t{0}))));
        }
        line("ova", util::join(members, ", "));
        line("disk", report["ova"].value("disk", ""));
    }
    if (report.contains("iso")) {
        const auto& iso = report["iso"];
        line("volume", fmt::format("{} ({})", iso.value("volume_id", ""),
                                   util::format_bytes(iso.value("volume_size", std::uint64_t{0}))));
        std::vector<std::string> entries;
        for (const auto& entry : iso["el_torito"]) {
            entries.push_back(fmt::format(
                "{}{} (emulation {}, block {}, {} sectors)", entry.value("platform", ""),
                entry.value("bootable", false) ? "" : " not bootable", entry.value("emulation", ""),
                entry.value("load_block", 0), entry.value("sectors", 0)));
        }
        line("el torito",
             entries.empty() ? "none (not bootable as a CD)" : util::join(entries, "; "));
    }
    std::string table = report.value("partition_table", "none");
    if (report.value("hybrid_mbr", false)) {
        table += " (with a hybrid MBR)";
    }
    if (report.contains("partition_table_problem")) {
        table += "; problem: " + report.value("partition_table_problem", "");
    }
    line("partitions", table);
    const auto& partitions = report.value("partitions", nlohmann::json::array());
    if (!partitions.empty()) {
        out += fmt::format("  {:>2}  {:>12}  {:>10}  {:<28}  {:<16}  {:<8}  {}\n", "#", "start",
                           "size", "type", "name", "fs", "label");
        for (const auto& part : partitions) {
            std::string type = part.value("type_name", "");
            if (part.contains("type_code") && !part["type_code"].get<std::string>().empty()) {
                type += " (" + part["type_code"].get<std::string>() + ")";
            } else if (type.empty()) {
                type = part.value("gpt_type", part.value("mbr_type", ""));
            }
            out += fmt::format("  {:>2}  {:>12}  {:>10}  {:<28}  {:<16}  {:<8}  {}\n",
                               part.value("number", 0), part.value("start", std::uint64_t{0}),
                               util::format_bytes(part.value("size", std::uint64_t{0})), type,
                               part.value("name", ""), part.value("filesystem", ""),
                               part.value("label", ""));
        }
    }
    for (const auto& fs : report.value("filesystems", nlohmann::json::array())) {
        if (fs.contains("problem")) {
            line("warning", fmt::format("{}: {}", fs.value("device", ""), fs.value("problem", "")));
        }
    }
    const auto items = [&](const char* key) { return report.value(key, nlohmann::json::array()); };
    if (items("esp").empty()) {
        line("esp", "none (no /EFI/BOOT on any filesystem)");
    }
    for (const auto& esp : items("esp")) {
        std::vector<std::string> files;
        for (const auto& file : esp["boot_files"]) {
            files.push_back(file.get<std::string>());
        }
        line("esp", fmt::format("{}: {}; grub.cfg {}", located(esp),
                                files.empty() ? "no .EFI files" : util::join(files, " "),
                                esp.value("grub_cfg", false) ? "present" : "missing"));
    }
    for (const auto& menu : items("grub_cfg")) {
        line("grub.cfg", fmt::format("{} on {}", menu.value("path", ""), located(menu)));
    }
    for (const char* kind : {"kernel", "initrd"}) {
        if (items(kind).empty()) {
            line(kind, "not found");
        }
        for (const auto& item : items(kind)) {
            line(kind, fmt::format("{} on {} ({})", item.value("path", ""), located(item),
                                   util::format_bytes(item.value("size", std::uint64_t{0}))));
        }
    }
    if (items("squashfs").empty()) {
        line("squashfs", "not found (no /rootfs.squashfs)");
    }
    for (const auto& sq : items("squashfs")) {
        if (sq.contains("problem")) {
            line("squashfs", fmt::format("{} on {}: {}", sq.value("path", ""), located(sq),
                                         sq.value("problem", "")));
            continue;
        }
        std::string compression = sq.value("compression", "");
        if (sq.contains("compression_level")) {
            compression += fmt::format(" level {}", sq.value("compression_level", 0));
        }
        line("squashfs",
             fmt::format("{} on {}: {}, {}, block size {}, {} inodes, {} fragments, squashfs {}",
                         sq.value("path", ""), located(sq),
                         util::format_bytes(sq.value("size", std::uint64_t{0})), compression,
                         sq.value("block_size", 0), sq.value("inode_count", 0),
                         sq.value("fragment_count", 0), sq.value("version", "")));
    }
    if (items("user_data").empty()) {
        line("user-data", "not found (no /config.yaml, no *.yaml on COS_OEM)");
    }
    for (const auto& ud : items("user_data")) {
        if (ud.contains("problem")) {
            line("user-data", fmt::format("{} on {}: cannot read it: {}", ud.value("path", ""),
                                          located(ud), ud.value("problem", "")));
            continue;
        }
        line("user-data",
             fmt::format("{} on {}: {}, {} lines, sha256 {}", ud.value("path", ""), located(ud),
                         util::format_bytes(ud.value("size", std::uint64_t{0})),
                         ud.value("lines", 0), ud.value("sha256", "")));
        if (ud.contains("stylus_site")) {
            for (const auto& [key, value] : ud["stylus_site"].items()) {
                line("", fmt::format("stylus.site.{} = {}", key,
                                     value.is_string() ? value.get<std::string>() : value.dump()));
            }
        } else {
            for (const auto& text : ud.value("first_lines", nlohmann::json::array())) {
                line("", "| " + text.get<std::string>());
            }
        }
    }
    if (report.contains("libguestfs")) {
        const auto& g = report["libguestfs"];
        line("libguestfs",
             fmt::format("{} backend{}, appliance launched in {:.1f} s", g.value("backend", ""),
                         g.value("tcg", false) ? ", TCG" : "", g.value("launch_seconds", 0.0)));
    }
    return out;
}

} // namespace edgeforge::inspect
