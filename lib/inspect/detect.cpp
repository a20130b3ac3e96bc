// Tells the artifact kinds edgeforge builds apart by their first bytes, never by their name.
#include "inspect/detect.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "base/error.h"
#include "util/fd.h"
#include "util/bytes.h"

namespace edgeforge::inspect {
namespace {

using util::le16;
using util::le32;
using util::le64;

namespace stdfs = std::filesystem;


using util::bytes_at;

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

std::string errno_text(int error) {
    return std::error_code(error, std::generic_category()).message();
}

} // namespace

std::vector<std::uint8_t> read_artifact_head(const stdfs::path& path, std::uint64_t& file_size) {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever (it is refused below
    // as not a regular file); reads of regular files and block devices do not change.
    util::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) {
        throw bad_input("inspect: {}: cannot open it: {}; give the path of a built artifact ({})",
                        path.string(), errno_text(errno), k_supported_formats);
    }
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0) {
        throw bad_input("inspect: {}: cannot read it: {}", path.string(), errno_text(errno));
    }
    if (S_ISDIR(status.st_mode)) {
        throw bad_input("inspect: {}: is a directory; give the path of a built artifact ({})",
                        path.string(), k_supported_formats);
    }
    if (!S_ISREG(status.st_mode) && !S_ISBLK(status.st_mode)) {
        throw bad_input("inspect: {}: is not a regular file; give the path of a built artifact "
                        "({})",
                        path.string(), k_supported_formats);
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
    const std::vector<std::uint8_t> head = read_artifact_head(path, size);
    if (size == 0) {
        throw bad_input("inspect: {}: the file is empty, not a built artifact; {}", path.string(),
                        k_supported_formats);
    }
    const ArtifactFormat format = detect_format(head);
    if (format == ArtifactFormat::unknown) {
        throw bad_input("inspect: {}: not a built artifact (no ISO 9660 volume, partition table, "
                        "QCOW2, VMDK or tar header found); {}",
                        path.string(), k_supported_formats);
    }
    return format;
}

} // namespace edgeforge::inspect
