// Opens an artifact's disk read-only in a libguestfs appliance and reads its filesystems.
#include "inspect/guestfs.h"

#include <chrono>
#include <cstdlib>
#include <system_error>

#include <guestfs.h>

#include "base/console.h"
#include "base/error.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::inspect {
namespace {

namespace stdfs = std::filesystem;

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

} // namespace

void Guest::Closer::operator()(guestfs_h* handle) const {
    guestfs_close(handle);
}

Guest::Guest(const stdfs::path& artifact, const stdfs::path& disk, std::string_view format,
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

Guest::~Guest() = default;

std::string Guest::error() const {
    const char* message = guestfs_last_error(handle_.get());
    return message != nullptr ? first_line(message) : "unknown libguestfs error";
}

void Guest::fail(std::string_view what) const {
    throw build_failed("inspect: {}: libguestfs could not {}: {}", artifact_.string(), what,
                       error());
}

std::vector<std::string> Guest::devices() const {
    char** list = guestfs_list_devices(get());
    if (list == nullptr) {
        fail("list the disks");
    }
    return take_strings(list);
}

std::int64_t Guest::device_size(const std::string& device) const {
    return guestfs_blockdev_getsize64(get(), device.c_str());
}

std::optional<std::vector<std::uint8_t>>
Guest::pread_device(const std::string& device, std::size_t size, std::uint64_t offset) const {
    std::size_t got = 0;
    char* data = guestfs_pread_device(get(), device.c_str(), static_cast<int>(size),
                                      static_cast<std::int64_t>(offset), &got);
    if (data == nullptr) {
        return std::nullopt;
    }
    CString owned(data);
    return std::vector<std::uint8_t>(data, data + got);
}

BlockIdentity Guest::identify(const std::string& device) const {
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

bool Guest::mount_ro(const std::string& device, const std::string& type) {
    const int mounted = type == "iso9660"
                            ? guestfs_mount_vfs(get(), "ro", "iso9660", device.c_str(), "/")
                            : guestfs_mount_ro(get(), device.c_str(), "/");
    return mounted != -1;
}

bool Guest::umount_all() {
    return guestfs_umount_all(get()) != -1;
}

void Guest::shutdown() {
    guestfs_shutdown(get());
}

bool Guest::is_file(const std::string& path) const {
    return guestfs_is_file(get(), path.c_str()) > 0;
}

bool Guest::is_dir(const std::string& path) const {
    return guestfs_is_dir(get(), path.c_str()) > 0;
}

std::vector<std::string> Guest::ls(const std::string& dir) const {
    return take_strings(guestfs_ls(get(), dir.c_str()));
}

std::uint64_t Guest::file_size(const std::string& path) const {
    const std::int64_t size = guestfs_filesize(get(), path.c_str());
    return size < 0 ? 0 : static_cast<std::uint64_t>(size);
}

std::optional<std::string> Guest::pread(const std::string& path, int count,
                                        std::int64_t offset) const {
    std::size_t size = 0;
    char* bytes = guestfs_pread(get(), path.c_str(), count, offset, &size);
    if (bytes == nullptr) {
        return std::nullopt;
    }
    CString owned(bytes);
    return std::string(bytes, size);
}

std::optional<std::string> Guest::read_file(const std::string& path) const {
    std::size_t size = 0;
    char* bytes = guestfs_read_file(get(), path.c_str(), &size);
    if (bytes == nullptr) {
        return std::nullopt;
    }
    CString owned(bytes);
    return std::string(bytes, size);
}

std::optional<std::string> Guest::find(const std::string& path) const {
    auto found = take_string(guestfs_case_sensitive_path(get(), path.c_str()));
    if (!found || guestfs_exists(get(), found->c_str()) <= 0) {
        return std::nullopt;
    }
    return found;
}

bool Guest::launch(const stdfs::path& disk, std::string_view format, bool force_tcg,
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
                               format_text.c_str(), GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, -1) == -1) {
        // libguestfs puts a qemu-img overlay over the disk here; when qemu cannot read the
        // image, qemu-img info says why (libguestfs's own message does not).
        const std::string reason = qemu_img_problem(disk, format_text);
        if (!reason.empty()) {
            throw bad_input("inspect: {}: qemu cannot read it as {}: {}; the image is "
                            "damaged or truncated: rebuild it (edgeforge build disk)",
                            artifact_.string(), format_text, reason);
        }
        throw build_failed("inspect: {}: libguestfs cannot add the disk: {}", artifact_.string(),
                           error());
    }
    before_launch();
    if (guestfs_launch(get()) == -1) {
        error_out = error();
        return false;
    }
    return true;
}

} // namespace edgeforge::inspect
