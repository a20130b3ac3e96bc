// OVA packages for vSphere: a streamOptimized VMDK, its OVF descriptor and manifest, in a tar.
#include "formats/ova.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <future>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include "base/error.h"
#include "base/templates.h"
#include "formats/vmdk.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/units.h"

namespace edgeforge::formats {
namespace stdfs = std::filesystem;
using util::round_up;

namespace {

// Characters that would break the XML of the descriptor or a tar member name.
void check_name(std::string_view name) {
    if (name.empty() || name.size() > 80) {
        throw bad_input("OVA name '{}' must have 1 to 80 characters", name);
    }
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '-' || c == '_' || c == '.';
        if (!ok) {
            throw bad_input("OVA name '{}' may only use letters, digits, '-', '_' and '.'", name);
        }
    }
}

struct ArchiveWriteDeleter {
    void operator()(archive* handle) const { archive_write_free(handle); }
};
struct EntryDeleter {
    void operator()(archive_entry* entry) const { archive_entry_free(entry); }
};

// Bytes libarchive writes, kept until `closed` (then dropped: what it writes when freed).
struct PrefixSink {
    std::string bytes;
    bool closed = false;
};

la_ssize_t prefix_write(archive*, void* client, const void* buffer, size_t size) {
    auto* sink = static_cast<PrefixSink*>(client);
    if (!sink->closed) {
        sink->bytes.append(static_cast<const char*>(buffer), size);
    }
    return static_cast<la_ssize_t>(size);
}

constexpr std::uint64_t k_tar_block = 512;
// libarchive's default record: the archive ends padded to a whole number of them.
constexpr std::uint64_t k_tar_record = 10240;

// The ustar bytes before the VMDK member's data: the .ovf and .mf members whole, then the
// VMDK's header for `vmdk_size` bytes of data, as libarchive writes them (pax_restricted: pax
// records only for a member over 8 GiB, which ustar cannot size).
std::string tar_prefix(const std::vector<std::pair<std::string, std::string>>& members,
                       const std::string& vmdk_name, std::uint64_t vmdk_size, time_t mtime) {
    PrefixSink sink;
    std::unique_ptr<archive, ArchiveWriteDeleter> writer(archive_write_new());
    archive_write_set_format_pax_restricted(writer.get());
    archive_write_set_bytes_per_block(writer.get(), 0); // unblocked: every byte comes through
    if (archive_write_open(writer.get(), &sink, nullptr, prefix_write, nullptr) != ARCHIVE_OK) {
        throw build_failed("cannot start the OVA's tar headers: {}",
                           archive_error_string(writer.get()));
    }
    const auto header = [&](const std::string& name, std::uint64_t size) {
        std::unique_ptr<archive_entry, EntryDeleter> entry(archive_entry_new());
        archive_entry_set_pathname(entry.get(), name.c_str());
        archive_entry_set_filetype(entry.get(), AE_IFREG);
        archive_entry_set_perm(entry.get(), 0644);
        archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
        archive_entry_set_mtime(entry.get(), mtime, 0);
        archive_entry_set_uname(entry.get(), "root");
        archive_entry_set_gname(entry.get(), "root");
        if (archive_write_header(writer.get(), entry.get()) != ARCHIVE_OK) {
            throw build_failed("cannot write the OVA's tar header for {}: {}", name,
                               archive_error_string(writer.get()));
        }
    };
    for (const auto& [name, content] : members) {
        header(name, content.size());
        if (archive_write_data(writer.get(), content.data(), content.size()) !=
            static_cast<la_ssize_t>(content.size())) {
            throw build_failed("cannot add {} to the OVA: {}", name,
                               archive_error_string(writer.get()));
        }
    }
    header(vmdk_name, vmdk_size);
    // The member data before the header went out padded (libarchive pads each member when the
    // next header comes), so the prefix ends where the VMDK's data starts.
    sink.closed = true;
    if (sink.bytes.size() % k_tar_block != 0) {
        throw std::logic_error("OVA tar prefix is not whole blocks");
    }
    return std::move(sink.bytes);
}

// Moves `size` bytes at `from` to `to` in the file open as `in` and `out` (ranges may overlap).
void move_bytes(int in, int out, std::uint64_t from, std::uint64_t to, std::uint64_t size) {
    std::vector<char> buffer(std::size_t{1} << 20);
    for (std::uint64_t done = 0; done < size;) {
        const std::uint64_t chunk = std::min<std::uint64_t>(buffer.size(), size - done);
        // Forward when moving down, from the end when moving up, so nothing is overwritten
        // before it is read.
        const std::uint64_t at = to < from ? done : size - done - chunk;
        if (!util::pread_exact(in, buffer.data(), chunk, from + at)) {
            throw std::system_error(EIO, std::generic_category(), "the VMDK data shrank");
        }
        util::pwrite_exact(out, buffer.data(), chunk, to + at);
        done += chunk;
    }
}

} // namespace

OvaResult write_ova(const stdfs::path& raw_image, const stdfs::path& output,
                    const OvaOptions& options) {
    check_name(options.name);
    if (options.cpus < 1 || options.cpus > 768) {
        throw bad_input("OVA CPUs must be 1 to 768 (got {})", options.cpus);
    }
    if (options.memory_bytes < (1ULL << 20) || options.memory_bytes % (1ULL << 20) != 0) {
        throw bad_input("OVA memory must be a whole number of MiB, at least 1 MiB (got {} bytes)",
                        options.memory_bytes);
    }
    if (options.hardware_version < 7 || options.hardware_version > 21) {
        throw bad_input("OVA hardware version must be 7 to 21 (vmx-07 to vmx-21; got {})",
                        options.hardware_version);
    }
    const std::string ovf_name = options.name + ".ovf";
    const std::string mf_name = options.name + ".mf";
    const std::string vmdk_name = options.name + "-disk1.vmdk";
    const stdfs::path templates =
        options.templates.empty() ? templates_directory() : options.templates;
    const auto mtime = static_cast<time_t>(options.source_date_epoch.value_or(std::time(nullptr)));
    const auto render_ovf = [&](std::uint64_t file_size, std::uint64_t capacity,
                                std::uint64_t populated) {
        const TemplateValues values{
            {"NAME", options.name},
            {"DISK_FILE", vmdk_name},
            {"DISK_FILE_SIZE", std::to_string(file_size)},
            {"DISK_CAPACITY", std::to_string(capacity)},
            {"DISK_POPULATED_SIZE", std::to_string(populated)},
            {"OS_ID", "101"},
            {"OS_TYPE", std::string(options.arch.traits().vmware_os_type)},
            {"HARDWARE_VERSION", fmt::format("{:02}", options.hardware_version)},
            {"CPUS", std::to_string(options.cpus)},
            {"MEMORY_MB", std::to_string(options.memory_bytes >> 20)},
            {"FIRMWARE", options.efi ? "efi" : "bios"},
        };
        return render_template_file(templates, "ovf/ova.ovf", values);
    };
    const auto manifest_for = [&](const std::string& ovf, const std::string& vmdk_sha256) {
        return fmt::format("SHA256({})= {}\nSHA256({})= {}\n", ovf_name, util::sha256_hex(ovf),
                           vmdk_name, vmdk_sha256);
    };

    // The .ovf and .mf come before the VMDK but name its size and digest, known only once it is
    // written. So the VMDK is written straight into the archive where its data most likely
    // starts: after members rendered with the raw disk's size standing in for the VMDK's
    // (its digits, which the 512-byte padding nearly always absorbs). When the real members
    // take another number of blocks, the data is moved; the bytes are the same either way.
    std::error_code ec;
    const std::uint64_t raw_size = stdfs::file_size(raw_image, ec);
    if (ec) {
        throw bad_input("cannot read the raw disk image {}: {}", raw_image.string(), ec.message());
    }
    const std::string guessed_ovf = render_ovf(raw_size, raw_size, raw_size);
    const std::uint64_t guessed_start =
        tar_prefix(
            {{ovf_name, guessed_ovf}, {mf_name, manifest_for(guessed_ovf, std::string(64, '0'))}},
            vmdk_name, raw_size, mtime)
            .size();

    util::AtomicFile file(output);
    VmdkOptions vmdk_options;
    vmdk_options.extent_file_name = vmdk_name;
    vmdk_options.content_digest = options.content_digest;
    const VmdkResult vmdk =
        write_vmdk_stream_optimized_into(raw_image, file.fd(), guessed_start, output, vmdk_options);
    OvaResult result;
    result.ovf = render_ovf(vmdk.file_size, vmdk.capacity, vmdk.grains * 65536);
    result.manifest = manifest_for(result.ovf, vmdk.sha256);
    result.capacity = vmdk.capacity;
    result.vmdk_size = vmdk.file_size;
    const std::string prefix = tar_prefix({{ovf_name, result.ovf}, {mf_name, result.manifest}},
                                          vmdk_name, vmdk.file_size, mtime);
    // The VMDK's data padded to a block, two zero blocks ending the archive, and zeros to a
    // whole record, as libarchive ends an archive.
    const std::uint64_t data_end = prefix.size() + vmdk.file_size;
    const std::uint64_t size =
        round_up(round_up(data_end, k_tar_block) + 2 * k_tar_block, k_tar_record);
    try {
        if (prefix.size() != guessed_start) {
            // The temporary is open write-only; reading it takes a descriptor of its own.
            const util::FileDescriptor in(::open(file.temp_path().c_str(), O_RDONLY | O_CLOEXEC));
            if (!in.valid()) {
                throw std::system_error(errno, std::generic_category(), "cannot read it back");
            }
            move_bytes(in.get(), file.fd(), guessed_start, prefix.size(), vmdk.file_size);
        }
        util::pwrite_exact(file.fd(), prefix.data(), prefix.size(), 0);
        // Cutting at the data's end first zeroes whatever a move left behind it.
        if (::ftruncate(file.fd(), static_cast<off_t>(data_end)) != 0 ||
            ::ftruncate(file.fd(), static_cast<off_t>(size)) != 0) {
            throw std::system_error(errno, std::generic_category(), "cannot size the archive");
        }
        // The flush to disk runs while the archive is read back for its digest.
        // (errno is the flushing thread's own: it comes back as the result.)
        auto flushed = std::async(std::launch::async,
                                  [fd = file.fd()] { return ::fsync(fd) == 0 ? 0 : errno; });
        // Read back: the prefix could only be written once the VMDK was complete, so the archive
        // cannot be hashed as it is written.
        result.sha256 = util::sha256_file_hex(file.temp_path());
        if (const int error = flushed.get(); error != 0) {
            throw std::system_error(error, std::generic_category(), "cannot flush");
        }
        file.commit();
    } catch (const std::system_error& error) {
        throw build_failed("cannot write {}: {}; check that its directory exists, is writable "
                           "and has space",
                           output.string(), error.what());
    }
    result.path = output;
    result.size = size;
    return result;
}

} // namespace edgeforge::formats
