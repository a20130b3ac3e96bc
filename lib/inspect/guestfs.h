// Opens an artifact's disk read-only in a libguestfs appliance and reads its filesystems.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct guestfs_h;

namespace edgeforge {
class Console;
}

namespace edgeforge::inspect {

// The filesystem type and label blkid sees on a device (empty when it sees none).
struct BlockIdentity {
    std::string type;
    std::string label;
};

// One read-only libguestfs appliance with the artifact's disk attached.
class Guest {
  public:
    // Launches the appliance (the direct backend unless LIBGUESTFS_BACKEND says otherwise) with
    // `disk` attached read-only as qemu `format` ("raw", "qcow2", "vmdk"); messages name
    // `artifact`. When KVM fails it retries under TCG, unless LIBGUESTFS_BACKEND_SETTINGS is
    // set. Error (bad input) when qemu cannot read the image, build failed when the appliance
    // does not launch.
    Guest(const std::filesystem::path& artifact, const std::filesystem::path& disk,
          std::string_view format, const Console& console);
    ~Guest();
    Guest(const Guest&) = delete;
    Guest& operator=(const Guest&) = delete;

    double launch_seconds() const { return launch_seconds_; }
    bool tcg() const { return tcg_; }
    const std::string& backend() const { return backend_; }

    // The first line of libguestfs's last error.
    std::string error() const;
    // Error (build failed): "inspect: ARTIFACT: libguestfs could not WHAT: ERROR".
    [[noreturn]] void fail(std::string_view what) const;

    // The appliance's disks ("/dev/sda"); fails when libguestfs cannot list them.
    std::vector<std::string> devices() const;
    // The size of a block device in bytes; negative when libguestfs cannot tell.
    std::int64_t device_size(const std::string& device) const;
    // `size` bytes at `offset` of a block device (fewer at its end); nullopt on a libguestfs
    // error.
    std::optional<std::vector<std::uint8_t>>
    pread_device(const std::string& device, std::size_t size, std::uint64_t offset) const;
    BlockIdentity identify(const std::string& device) const;

    // Mounts the filesystem of `type` on `device` read-only at /; false on a libguestfs error.
    bool mount_ro(const std::string& device, const std::string& type);
    bool umount_all();
    void shutdown();

    // Files of the mounted filesystem.
    bool is_file(const std::string& path) const;
    bool is_dir(const std::string& path) const;
    std::vector<std::string> ls(const std::string& dir) const;
    std::uint64_t file_size(const std::string& path) const; // 0 when unknown
    std::optional<std::string> pread(const std::string& path, int count, std::int64_t offset) const;
    std::optional<std::string> read_file(const std::string& path) const;
    // The path as the filesystem spells it (FAT is case-insensitive), if it exists.
    std::optional<std::string> find(const std::string& path) const;

  private:
    struct Closer {
        void operator()(guestfs_h* handle) const;
    };

    guestfs_h* get() const { return handle_.get(); }
    bool launch(const std::filesystem::path& disk, std::string_view format, bool force_tcg,
                std::string& error_out, const std::function<void()>& before_launch);

    std::filesystem::path artifact_;
    std::unique_ptr<guestfs_h, Closer> handle_;
    std::string backend_;
    bool tcg_ = false;
    double launch_seconds_ = 0;
};

} // namespace edgeforge::inspect
