// Writes bootable hybrid ISO 9660 images with libisofs: the layout plan, reproducible
// attributes, boot records and the write itself (file streams in iso_streams, the live installer
// layout in live_iso). About 800 lines: the layout plan and the libisofs write share many
// file-local types and splitting them further would only export those.
#include "formats/iso_writer.h"
#include "formats/iso_streams.h"

#include <algorithm>
#include <array>
#include <exception>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>
// Without libburn, libisofs.h provides its copy of struct burn_source only on request.
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>

#include "boot/esp.h"
#include "base/error.h"
#include "formats/image_output.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge::formats {
namespace {

using namespace isostream;

constexpr std::size_t k_system_area_size = 32768;
constexpr std::uint64_t k_progress_step = 8 << 20;      // report progress every 8 MiB
constexpr std::uint32_t k_partition_offset_blocks = 16; // 2 KiB blocks, as xorriso's recipe
constexpr int k_esp_partition_number = 2;
constexpr std::uint8_t k_efi_platform_id = 0xef;
constexpr short k_bios_load_sectors = 4; // 2048 bytes: cdboot.img loads the rest itself
constexpr int k_boot_info_table = 1 << 0;
constexpr int k_grub2_boot_info = 1 << 9;
constexpr int k_system_area_grub2_mbr = 1 << 14;
constexpr int k_system_area_force_bootable = 1 << 15;

// ------------------------------------------------------------------------------ libisofs setup

// libisofs keeps global state (initialisation, message queue, "now" override), so writes are
// serialised and the library is set up once.
std::mutex& write_mutex() {
    static std::mutex mutex;
    return mutex;
}

void ensure_libisofs() {
    static std::once_flag once;
    static int result = 0;
    std::call_once(once, [] {
        result = iso_init();
        if (result >= 0) {
            char queue[] = "WARNING";
            char print[] = "NEVER";
            char prefix[] = "libisofs";
            iso_set_msgs_severities(queue, print, prefix);
            // A file that cannot be read (MISHAP) would otherwise be filled with zeros.
            char abort_at[] = "MISHAP";
            iso_set_abort_severity(abort_at);
        }
    });
    if (result < 0) {
        throw build_failed("cannot initialise libisofs: {}", iso_error_to_msg(result));
    }
}

struct LibisofsMessages {
    std::vector<std::string> errors;
    std::vector<std::string> warnings;
};

LibisofsMessages drain_messages() {
    LibisofsMessages messages;
    char minimum[] = "ALL";
    std::array<char, ISO_MSGS_MESSAGE_LEN> text{};
    std::array<char, 81> severity{};
    int code = 0;
    int image_id = 0;
    while (iso_obtain_msgs(minimum, &code, &image_id, text.data(), severity.data()) == 1) {
        const std::string_view level(severity.data());
        std::string message(util::trim(text.data()));
        if (level == "WARNING" || level == "HINT" || level == "NOTE" || level == "UPDATE" ||
            level == "DEBUG") {
            // libisofs repeats some warnings once per directory tree (ECMA-119, Joliet).
            if (level == "WARNING" && std::find(messages.warnings.begin(), messages.warnings.end(),
                                                message) == messages.warnings.end()) {
                messages.warnings.push_back(std::move(message));
            }
        } else {
            messages.errors.push_back(fmt::format("{} ({})", message, level));
        }
    }
    return messages;
}

struct ImageDeleter {
    void operator()(IsoImage* image) const { iso_image_unref(image); }
};
using ImagePtr = std::unique_ptr<IsoImage, ImageDeleter>;

struct WriteOptsDeleter {
    void operator()(IsoWriteOpts* options) const { iso_write_opts_free(options); }
};
using WriteOptsPtr = std::unique_ptr<IsoWriteOpts, WriteOptsDeleter>;

void check(int result, std::string_view what) {
    if (result < 0) {
        throw build_failed("libisofs: {}: {}", what, iso_error_to_msg(result));
    }
}

// Sets "now" for libisofs (node and volume times) while a write runs; the override is global.
class NowOverride {
  public:
    explicit NowOverride(std::optional<std::int64_t> now) {
        if (now) {
            auto value = static_cast<time_t>(*now);
            iso_nowtime(&value, 1);
        }
    }
    ~NowOverride() {
        time_t ignored = 0;
        iso_nowtime(&ignored, 2);
    }
    NowOverride(const NowOverride&) = delete;
    NowOverride& operator=(const NowOverride&) = delete;
};

// The burn_source libisofs produces the image through; its generator thread starts at
// creation. Destroying it unfinished cancels the generator and waits for it.
class BurnSource {
  public:
    BurnSource(IsoImage* image, IsoWriteOpts* options) : image_(image) {
        check(iso_image_create_burn_source(image, options, &source_), "cannot start writing");
    }
    ~BurnSource() {
        if (source_ == nullptr) {
            return;
        }
        if (!finished_ && source_->cancel != nullptr) {
            source_->cancel(source_);
        }
        wait_for_generator();
        // What libburn's burn_source_free() does for the last reference.
        if (--source_->refcount < 1) {
            if (source_->free_data != nullptr) {
                source_->free_data(source_);
            }
            std::free(source_);
        }
    }
    BurnSource(const BurnSource&) = delete;
    BurnSource& operator=(const BurnSource&) = delete;

    std::uint64_t size() const {
        const off_t size = source_->get_size(source_);
        return size > 0 ? static_cast<std::uint64_t>(size) : 0;
    }
    // Up to `size` bytes; 0 at the end, negative on error.
    int read(unsigned char* buffer, int size) {
        return source_->read != nullptr ? source_->read(source_, buffer, size)
                                        : source_->read_xt(source_, buffer, size);
    }
    void finish() {
        finished_ = true;
        wait_for_generator();
    }

  private:
    void wait_for_generator() {
        while (iso_image_generator_is_running(image_) == 1) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    IsoImage* image_;
    burn_source* source_ = nullptr;
    bool finished_ = false;
};

// ------------------------------------------------------------------------------ layout plan

// One object on the ISO, before libisofs sees it.
struct PlannedNode {
    enum class Kind { directory, file, symlink, special };
    Kind kind = Kind::directory;
    std::uint32_t mode = 0755; // permission bits; for special files also the S_IF* type
    std::int64_t mtime = 0;
    // files
    FileStream::Kind data_kind = FileStream::Kind::bytes;
    std::filesystem::path host_path;
    const std::string* bytes = nullptr;
    std::shared_ptr<const fs::Inode> inode;
    const fs::SpillFile* spill = nullptr;
    std::uint64_t size = 0;
    // symlinks and special files
    std::string symlink_target;
    dev_t device = 0;
};

std::string_view kind_name(PlannedNode::Kind kind) {
    switch (kind) {
    case PlannedNode::Kind::directory:
        return "a directory";
    case PlannedNode::Kind::file:
        return "a file";
    case PlannedNode::Kind::symlink:
        return "a symbolic link";
    case PlannedNode::Kind::special:
        return "a special file";
    }
    return "an object";
}

// Checks and normalises an absolute ISO path: "/a/b" (no trailing slash, no empty, "." or ".."
// components); "/" stays "/".
std::string normalise_iso_path(std::string_view path) {
    if (path.empty() || path.front() != '/') {
        throw bad_input("ISO path '{}' is not absolute", path);
    }
    std::string out;
    for (const auto& part : util::split(path, '/')) {
        if (part.empty()) {
            continue;
        }
        if (part == "." || part == ".." || part.find('\0') != std::string::npos) {
            throw bad_input("ISO path '{}' contains '{}'", path, part);
        }
        out += '/';
        out += part;
    }
    return out.empty() ? "/" : out;
}

std::string parent_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == 0 ? "/" : path.substr(0, slash);
}

class LayoutPlan {
  public:
    explicit LayoutPlan(std::int64_t default_mtime) : default_mtime_(default_mtime) {
        PlannedNode root;
        root.mtime = default_mtime;
        nodes_.emplace("/", root);
    }

    void add_file(const std::string& path, PlannedNode node) {
        if (path == "/") {
            throw bad_input("ISO path '/' cannot be a file");
        }
        add_parents(path);
        if (const auto found = nodes_.find(path);
            found != nodes_.end() && found->second.kind == PlannedNode::Kind::directory) {
            throw bad_input("ISO path {}: {} would replace a directory", path,
                            kind_name(node.kind));
        }
        nodes_.insert_or_assign(path, std::move(node));
    }

    void add_directory(const std::string& path, std::uint32_t mode, std::int64_t mtime) {
        add_parents(path);
        auto [slot, inserted] = nodes_.try_emplace(path);
        if (!inserted && slot->second.kind != PlannedNode::Kind::directory) {
            throw bad_input("ISO path {}: a directory would replace {}", path,
                            kind_name(slot->second.kind));
        }
        slot->second.kind = PlannedNode::Kind::directory;
        slot->second.mode = mode;
        slot->second.mtime = mtime;
    }

    // Copies the contents of a host directory below `base`.
    void add_host_directory(const std::string& base, const std::filesystem::path& directory) {
        std::error_code error;
        if (!std::filesystem::is_directory(directory, error)) {
            throw bad_input("ISO overlay {} is not a directory", directory.string());
        }
        add_directory(base, 0755, default_mtime_);
        std::filesystem::recursive_directory_iterator it(directory, error);
        if (error) {
            throw bad_input("cannot read the ISO overlay {}: {}", directory.string(),
                            error.message());
        }
        for (; it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
            if (error) {
                break;
            }
            const auto& host = it->path();
            const auto relative = host.lexically_relative(directory).generic_string();
            const std::string iso_path = base == "/" ? "/" + relative : base + "/" + relative;
            add_host_entry(iso_path, host);
        }
        if (error) {
            throw bad_input("cannot read the ISO overlay {}: {}", directory.string(),
                            error.message());
        }
    }

    const std::map<std::string, PlannedNode>& nodes() const { return nodes_; }

  private:
    void add_parents(const std::string& path) {
        std::string current;
        const auto parts = util::split(path, '/');
        for (std::size_t i = 1; i + 1 < parts.size(); ++i) {
            current += '/';
            current += parts[i];
            auto [slot, inserted] = nodes_.try_emplace(current);
            if (inserted) {
                slot->second.mtime = default_mtime_;
            } else if (slot->second.kind != PlannedNode::Kind::directory) {
                throw bad_input("ISO path {}: its parent {} is {}, not a directory", path, current,
                                kind_name(slot->second.kind));
            }
        }
    }

    void add_host_entry(const std::string& iso_path, const std::filesystem::path& host) {
        struct stat info {};
        if (::lstat(host.c_str(), &info) != 0) {
            throw bad_input("cannot read {}: {}", host.string(), std::strerror(errno));
        }
        const auto permissions = static_cast<std::uint32_t>(info.st_mode & 07777);
        const std::int64_t mtime = info.st_mtim.tv_sec;
        PlannedNode node;
        node.mode = permissions;
        node.mtime = mtime;
        switch (info.st_mode & S_IFMT) {
        case S_IFDIR:
            add_directory(iso_path, permissions, mtime);
            return;
        case S_IFREG:
            node.kind = PlannedNode::Kind::file;
            node.data_kind = FileStream::Kind::host_file;
            node.host_path = host;
            node.size = static_cast<std::uint64_t>(info.st_size);
            break;
        case S_IFLNK: {
            node.kind = PlannedNode::Kind::symlink;
            std::error_code error;
            node.symlink_target = std::filesystem::read_symlink(host, error).string();
            if (error) {
                throw bad_input("cannot read the symbolic link {}: {}", host.string(),
                                error.message());
            }
            break;
        }
        case S_IFCHR:
        case S_IFBLK:
        case S_IFIFO:
            node.kind = PlannedNode::Kind::special;
            node.mode = static_cast<std::uint32_t>(info.st_mode & (S_IFMT | 07777));
            node.device = info.st_rdev;
            break;
        default:
            throw bad_input("{}: sockets cannot be put on an ISO", host.string());
        }
        add_file(iso_path, std::move(node));
    }

    std::int64_t default_mtime_;
    std::map<std::string, PlannedNode> nodes_;
};

std::uint64_t host_file_size(const std::filesystem::path& path) {
    std::error_code error;
    const auto size = std::filesystem::file_size(path, error);
    if (error) {
        throw build_failed("cannot read {}: {}", path.string(), error.message());
    }
    return size;
}

std::int64_t host_mtime(const std::filesystem::path& path) {
    struct stat info {};
    return ::stat(path.c_str(), &info) == 0 ? info.st_mtim.tv_sec : 0;
}

PlannedNode planned_file(const IsoFileEntry& entry, std::int64_t default_mtime) {
    PlannedNode node;
    node.kind = PlannedNode::Kind::file;
    node.mode = entry.mode & 07777;
    node.mtime = default_mtime;
    if (const auto* host = std::get_if<IsoHostFile>(&entry.source)) {
        node.data_kind = FileStream::Kind::host_file;
        node.host_path = host->path;
        node.size = host_file_size(host->path);
        node.mtime = host_mtime(host->path);
    } else if (const auto* bytes = std::get_if<IsoBytes>(&entry.source)) {
        node.data_kind = FileStream::Kind::bytes;
        node.bytes = &bytes->bytes;
        node.size = bytes->bytes.size();
    } else {
        const auto& tree = std::get<IsoTreeFile>(entry.source);
        if (!tree.inode || !tree.inode->is_regular()) {
            throw bad_input("ISO path {}: the tree file is not a regular file", entry.iso_path);
        }
        if (tree.inode->data.kind == fs::DataRef::Kind::spill && tree.spill == nullptr) {
            throw std::invalid_argument("IsoTreeFile with spill data but no SpillFile");
        }
        node.data_kind = FileStream::Kind::tree;
        node.inode = tree.inode;
        node.spill = tree.spill;
        node.size = tree.inode->size();
        node.mtime = tree.inode->mtime;
    }
    return node;
}

// ------------------------------------------------------------------------------ reproducibility

// The GPT disk GUID for reproducible images, from the inputs: the caller's content digest, or
// the layout plus every file's content.
std::array<std::uint8_t, 16> derive_gpt_guid(const IsoDescription& description,
                                             const LayoutPlan& plan) {
    util::Sha256 hash;
    hash.update(fmt::format("edgeforge-iso-gpt-guid\n{}\n{}\n{}\n", description.volume_id,
                            description.arch.name(), description.source_date_epoch.value_or(0)));
    const auto add_host_file = [&](const std::filesystem::path& path) {
        hash.update(util::sha256_file_hex(path));
        hash.update("\n");
    };
    if (!description.content_digest.empty()) {
        hash.update(description.content_digest);
    } else {
        for (const auto& [path, node] : plan.nodes()) {
            hash.update(fmt::format("{}\n{}\n{:o}\n{}\n{}\n", path, static_cast<int>(node.kind),
                                    node.mode, node.size, node.symlink_target));
            if (node.kind != PlannedNode::Kind::file) {
                continue;
            }
            switch (node.data_kind) {
            case FileStream::Kind::bytes:
                hash.update(util::sha256_hex(*node.bytes));
                break;
            case FileStream::Kind::host_file:
                add_host_file(node.host_path);
                break;
            case FileStream::Kind::tree: {
                util::Sha256 content;
                fs::read_data(*node.inode, *node.spill, [&](const char* data, std::size_t size) {
                    content.update(data, size);
                });
                hash.update(content.finish_hex());
                break;
            }
            }
        }
        if (description.efi_system_partition) {
            add_host_file(*description.efi_system_partition);
        }
        if (description.bios_boot) {
            add_host_file(description.bios_boot->hybrid_mbr);
        }
    }
    auto guid = hash.finish();
    std::array<std::uint8_t, 16> out{};
    std::copy_n(guid.begin(), out.size(), out.begin());
    // RFC 4122 version 4 and variant bits, in the byte order libisofs expects (see
    // iso_write_opts_set_gpt_guid).
    out[7] = static_cast<std::uint8_t>((out[7] & 0x0f) | 0x40);
    out[8] = static_cast<std::uint8_t>((out[8] & 0x3f) | 0x80);
    return out;
}

// "YYYYMMDDhhmmss00": the volume times (and the seed of the isohybrid MBR id) libisofs derives
// from a fixed string instead of the clock.
std::string volume_uuid(std::int64_t epoch) {
    const auto seconds = static_cast<time_t>(epoch);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    return fmt::format("{:04}{:02}{:02}{:02}{:02}{:02}00", utc.tm_year + 1900, utc.tm_mon + 1,
                       utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
}

// ------------------------------------------------------------------------------ building

void set_attributes(IsoNode* node, std::uint32_t mode, std::int64_t mtime) {
    iso_node_set_permissions(node, static_cast<mode_t>(mode & 07777));
    iso_node_set_uid(node, 0);
    iso_node_set_gid(node, 0);
    const auto time = static_cast<time_t>(mtime);
    iso_node_set_mtime(node, time);
    iso_node_set_atime(node, time);
    iso_node_set_ctime(node, time);
}

// `newest` (SOURCE_DATE_EPOCH) clamps every node's time: files newer than it get it.
void build_tree(IsoImage* image, const LayoutPlan& plan, StreamErrors& errors,
                std::optional<std::int64_t> newest) {
    const auto clamped = [&](std::int64_t mtime) { return newest ? std::min(mtime, *newest) : mtime; };
    std::map<std::string, IsoDir*> directories;
    IsoDir* root = iso_image_get_root(image);
    directories.emplace("/", root);
    ino_t next_id = 1;
    for (const auto& [path, node] : plan.nodes()) {
        if (path == "/") {
            set_attributes(reinterpret_cast<IsoNode*>(root), node.mode, clamped(node.mtime));
            continue;
        }
        IsoDir* parent = directories.at(parent_of(path));
        const std::string name = path.substr(path.rfind('/') + 1);
        IsoNode* created = nullptr;
        int result = 0;
        switch (node.kind) {
        case PlannedNode::Kind::directory: {
            IsoDir* directory = nullptr;
            result = iso_image_add_new_dir(image, parent, name.c_str(), &directory);
            created = reinterpret_cast<IsoNode*>(directory);
            directories.emplace(path, directory);
            break;
        }
        case PlannedNode::Kind::file: {
            auto file = std::make_unique<FileStream>();
            file->kind = node.data_kind;
            file->iso_path = path;
            file->host_path = node.host_path;
            file->bytes = node.bytes;
            file->inode = node.inode;
            file->spill = node.spill;
            file->size = node.size;
            file->id = next_id++;
            file->errors = &errors;
            IsoStream* stream = make_stream(std::move(file));
            IsoFile* iso_file = nullptr;
            result = iso_image_add_new_file(image, parent, name.c_str(), stream, &iso_file);
            if (result < 0) {
                iso_stream_unref(stream);
            }
            created = reinterpret_cast<IsoNode*>(iso_file);
            break;
        }
        case PlannedNode::Kind::symlink: {
            IsoSymlink* link = nullptr;
            result = iso_image_add_new_symlink(image, parent, name.c_str(),
                                               node.symlink_target.c_str(), &link);
            created = reinterpret_cast<IsoNode*>(link);
            break;
        }
        case PlannedNode::Kind::special: {
            IsoSpecial* special = nullptr;
            result = iso_image_add_new_special(
                image, parent, name.c_str(), static_cast<mode_t>(node.mode), node.device, &special);
            created = reinterpret_cast<IsoNode*>(special);
            break;
        }
        }
        check(result, fmt::format("cannot add {}", path));
        set_attributes(created, node.mode, clamped(node.mtime));
    }
}

void set_up_boot(IsoImage* image, const IsoDescription& description) {
    const std::string catalog = normalise_iso_path(description.boot_catalog_path);
    ElToritoBootImage* bios = nullptr;
    if (description.bios_boot) {
        const std::string path = normalise_iso_path(description.bios_boot->image_iso_path);
        check(
            iso_image_set_boot_image(image, path.c_str(), ELTORITO_NO_EMUL, catalog.c_str(), &bios),
            "cannot set the BIOS El Torito boot image " + path);
        el_torito_set_load_size(bios, k_bios_load_sectors);
        check(el_torito_set_isolinux_options(bios, k_boot_info_table | k_grub2_boot_info, 0),
              "cannot enable the boot info table");
    }
    if (description.efi_system_partition) {
        const std::string interval =
            fmt::format("--interval:appended_partition_{}:all::", k_esp_partition_number);
        ElToritoBootImage* efi = nullptr;
        if (bios == nullptr) {
            check(iso_image_set_boot_image(image, interval.c_str(), ELTORITO_NO_EMUL,
                                           catalog.c_str(), &efi),
                  "cannot set the EFI El Torito boot image");
        } else {
            check(iso_image_add_boot_image(image, interval.c_str(), ELTORITO_NO_EMUL, 0, &efi),
                  "cannot add the EFI El Torito boot image");
        }
        check(el_torito_set_boot_platform_id(efi, k_efi_platform_id), "cannot set platform 0xEF");
    }
    if (description.bios_boot || description.efi_system_partition) {
        check(iso_image_set_boot_catalog_hidden(
                  image, LIBISO_HIDE_ON_RR | LIBISO_HIDE_ON_JOLIET | LIBISO_HIDE_ON_1999 |
                             LIBISO_HIDE_ON_HFSPLUS | LIBISO_HIDE_ON_FAT),
              "cannot hide the boot catalog");
    }
}

std::vector<char> read_system_area(const std::filesystem::path& path) {
    const auto size = host_file_size(path);
    if (size == 0 || size > k_system_area_size) {
        throw build_failed("{} is {} bytes; a hybrid MBR image must have 1 to {} bytes",
                           path.string(), size, k_system_area_size);
    }
    std::vector<char> area(k_system_area_size, 0);
    const std::string content = util::read_file(path);
    std::copy(content.begin(), content.end(), area.begin());
    return area;
}

WriteOptsPtr make_write_options(const IsoDescription& description, const LayoutPlan& plan,
                                std::vector<char>& system_area, std::string& uuid) {
    IsoWriteOpts* raw = nullptr;
    check(iso_write_opts_new(&raw, 0), "cannot create write options");
    WriteOptsPtr options(raw);
    IsoWriteOpts* o = options.get();
    check(iso_write_opts_set_iso_level(o, 3), "ISO level 3");
    check(iso_write_opts_set_rockridge(o, 1), "Rock Ridge");
    // RRIP 1.12 PX entries carry inode numbers that libisofs hands out to directories and
    // symbolic links in the order of their memory addresses, so they differ between runs. 1.10
    // PX entries have none; Linux and grub ignore them anyway (inodes come from the layout).
    check(iso_write_opts_set_rrip_version_1_10(o, 1), "Rock Ridge 1.10");
    check(iso_write_opts_set_joliet(o, 1), "Joliet");
    check(iso_write_opts_set_joliet_longer_paths(o, 1), "Joliet longer paths");
    // Local time would make the bytes depend on the builder's time zone.
    check(iso_write_opts_set_always_gmt(o, 1), "GMT timestamps");
    check(iso_write_opts_set_dir_rec_mtime(o, 1 | 2 | 4), "directory record mtimes");
    if (description.source_date_epoch) {
        const auto epoch = static_cast<time_t>(*description.source_date_epoch);
        check(iso_write_opts_set_replace_timestamps(o, 2), "replace timestamps");
        check(iso_write_opts_set_default_timestamp(o, epoch), "default timestamp");
        uuid = volume_uuid(*description.source_date_epoch);
        check(iso_write_opts_set_pvd_times(o, epoch, epoch, 0, 0, uuid.data()), "volume times");
        auto guid = derive_gpt_guid(description, plan);
        check(iso_write_opts_set_gpt_guid(o, guid.data(), 1), "GPT GUID");
    }
    if (description.bios_boot) {
        system_area = read_system_area(description.bios_boot->hybrid_mbr);
        check(iso_write_opts_set_system_area(
                  o, system_area.data(), k_system_area_grub2_mbr | k_system_area_force_bootable, 0),
              "cannot set the hybrid MBR");
    }
    check(iso_write_opts_set_part_offset(o, k_partition_offset_blocks, 0, 0), "partition offset");
    if (description.efi_system_partition) {
        std::string path = description.efi_system_partition->string();
        check(iso_write_opts_set_partition_img(o, k_esp_partition_number, k_efi_platform_id,
                                               path.data(), 0),
              "cannot append the EFI system partition " + path);
        check(iso_write_opts_set_appended_as_gpt(o, 1), "appended partitions as GPT");
    }
    return options;
}

LayoutPlan make_plan(const IsoDescription& description) {
    const std::int64_t default_mtime =
        description.source_date_epoch.value_or(static_cast<std::int64_t>(std::time(nullptr)));
    LayoutPlan plan(default_mtime);
    for (const auto& entry : description.files) {
        plan.add_file(normalise_iso_path(entry.iso_path), planned_file(entry, default_mtime));
    }
    if (description.bios_boot) {
        IsoFileEntry eltorito{description.bios_boot->image_iso_path,
                              IsoHostFile{description.bios_boot->eltorito_image}, 0644};
        plan.add_file(normalise_iso_path(eltorito.iso_path), planned_file(eltorito, default_mtime));
    }
    for (const auto& entry : description.directories) {
        plan.add_host_directory(normalise_iso_path(entry.iso_path), entry.host_directory);
    }
    for (const auto& entry : description.overrides) {
        plan.add_file(normalise_iso_path(entry.iso_path), planned_file(entry, default_mtime));
    }
    // The catalog's directory must exist; the catalog itself must not collide with a file.
    const std::string catalog = normalise_iso_path(description.boot_catalog_path);
    if (description.bios_boot || description.efi_system_partition) {
        if (plan.nodes().contains(catalog)) {
            throw bad_input("ISO path {} is reserved for the El Torito boot catalog", catalog);
        }
        if (parent_of(catalog) != "/") {
            plan.add_directory(parent_of(catalog), 0755, default_mtime);
        }
    }
    return plan;
}

void check_description(const IsoDescription& description) {
    if (description.volume_id.empty() || description.volume_id.size() > 32) {
        throw bad_input("ISO volume id '{}' must have 1 to 32 characters", description.volume_id);
    }
    if (description.bios_boot && !description.arch.has_bios_boot()) {
        throw bad_input("{} has no BIOS boot; an ISO for it cannot carry a BIOS boot image",
                        description.arch.name());
    }
}

std::string join_messages(const std::vector<std::string>& messages) {
    return util::join(messages, "; ");
}

} // namespace

IsoWriteResult write_iso(const IsoDescription& description, const std::filesystem::path& output,
                         const IsoProgress& progress, IsoCommit commit) {
    check_description(description);
    const LayoutPlan plan = make_plan(description);

    const std::lock_guard lock(write_mutex());
    ensure_libisofs();
    drain_messages();           // leftovers of an earlier write must not be blamed on this one
    StreamErrors stream_errors; // outlives the image, whose streams report into it
    const NowOverride now(description.source_date_epoch);

    IsoImage* raw_image = nullptr;
    check(iso_image_new(description.volume_id.c_str(), &raw_image), "cannot create the image");
    const ImagePtr image(raw_image);
    iso_image_set_application_id(image.get(), "EDGEFORGE");
    build_tree(image.get(), plan, stream_errors, description.source_date_epoch);
    set_up_boot(image.get(), description);

    std::vector<char> system_area;
    std::string uuid;
    const WriteOptsPtr options = make_write_options(description, plan, system_area, uuid);

    std::filesystem::path directory = output.parent_path();
    if (directory.empty()) {
        directory = ".";
    }
    IsoWriteResult result;
    {
        BurnSource source(image.get(), options.get());
        result.size = source.size();
        std::uint64_t available = 0;
        std::unique_ptr<util::AtomicFile> file;
        try {
            available = util::available_space(directory);
            if (result.size <= available) {
                file = std::make_unique<util::AtomicFile>(output);
            }
        } catch (const std::system_error& error) {
            throw build_failed("cannot write the ISO image {}: {}", output.string(), error.what());
        }
        if (result.size > available) {
            throw build_failed("not enough space in {}: need {}, have {}", directory.string(),
                               util::format_bytes(result.size), util::format_bytes(available));
        }
        std::vector<unsigned char> buffer(2048);
        ImageOutput out(*file);
        std::uint64_t written = 0;
        std::uint64_t reported = 0;
        const auto fail = [&](std::string_view what) {
            auto reasons = stream_errors.take();
            const auto messages = drain_messages();
            reasons.insert(reasons.end(), messages.errors.begin(), messages.errors.end());
            return build_failed("writing the ISO image {} failed: {}{}", output.string(), what,
                                reasons.empty() ? "" : ": " + join_messages(reasons));
        };
        while (written < result.size) {
            const auto want =
                static_cast<int>(std::min<std::uint64_t>(out.room(), result.size - written));
            unsigned char* space = out.space();
            const int got = source.read(space, want);
            if (got <= 0) {
                throw fail(got == 0 ? "the image ended early" : "libisofs reported an error");
            }
            try {
                out.produced(static_cast<std::size_t>(got));
                if (written + static_cast<std::uint64_t>(got) == result.size) {
                    out.finish(result.size);
                }
            } catch (const std::system_error& error) {
                throw build_failed("cannot write the ISO image {}: {}", output.string(),
                                   error.code().message());
            }
            written += static_cast<std::uint64_t>(got);
            if (progress && (written - reported >= k_progress_step || written == result.size)) {
                progress(written, result.size);
                reported = written;
            }
        }
        if (source.read(buffer.data(), 2048) != 0) {
            throw fail("libisofs produced more data than announced");
        }
        source.finish();
        if (auto errors = stream_errors.take(); !errors.empty()) {
            throw build_failed("writing the ISO image {} failed: {}", output.string(),
                               join_messages(errors));
        }
        const auto messages = drain_messages();
        if (!messages.errors.empty()) {
            throw build_failed("writing the ISO image {} failed: {}", output.string(),
                               join_messages(messages.errors));
        }
        result.warnings = messages.warnings;
        result.sha256 = out.sha256();
        if (commit == IsoCommit::by_caller) {
            result.uncommitted = std::move(file);
            return result;
        }
        try {
            file->commit();
        } catch (const std::system_error& error) {
            throw build_failed("cannot write the ISO image {}: {}", output.string(), error.what());
        }
    }
    return result;
}

} // namespace edgeforge::formats
