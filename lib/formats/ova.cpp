// OVA packages for vSphere: a streamOptimized VMDK, its OVF descriptor and manifest, in a tar.
#include "formats/ova.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <system_error>

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

namespace edgeforge::formats {
namespace stdfs = std::filesystem;

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

struct TarSink {
    util::AtomicFile* file;
    util::Sha256 hash;
    std::uint64_t size = 0;
    std::string failure; // why a write failed (disk full), for the message
};

// libarchive's write callback: a C frame, so nothing may be thrown through it.
la_ssize_t tar_write(archive*, void* client, const void* buffer, size_t size) {
    auto* sink = static_cast<TarSink*>(client);
    try {
        sink->file->write(buffer, size);
    } catch (const std::exception& error) {
        sink->failure = error.what();
        return -1;
    }
    sink->hash.update(buffer, size);
    sink->size += size;
    return static_cast<la_ssize_t>(size);
}

} // namespace

OvaResult write_ova(const stdfs::path& raw_image, const stdfs::path& output,
                    const stdfs::path& work_directory, const OvaOptions& options) {
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
    const stdfs::path vmdk_path = work_directory / vmdk_name;

    VmdkOptions vmdk_options;
    vmdk_options.extent_file_name = vmdk_name;
    vmdk_options.content_digest = options.content_digest;
    const VmdkResult vmdk = write_vmdk_stream_optimized(raw_image, vmdk_path, vmdk_options);

    const stdfs::path templates =
        options.templates.empty() ? templates_directory() : options.templates;
    const TemplateValues values{
        {"NAME", options.name},
        {"DISK_FILE", vmdk_name},
        {"DISK_FILE_SIZE", std::to_string(vmdk.file_size)},
        {"DISK_CAPACITY", std::to_string(vmdk.capacity)},
        {"DISK_POPULATED_SIZE", std::to_string(vmdk.grains * 65536)},
        {"OS_ID", "101"},
        {"OS_TYPE", std::string(options.arch.traits().vmware_os_type)},
        {"HARDWARE_VERSION", fmt::format("{:02}", options.hardware_version)},
        {"CPUS", std::to_string(options.cpus)},
        {"MEMORY_MB", std::to_string(options.memory_bytes >> 20)},
        {"FIRMWARE", options.efi ? "efi" : "bios"},
    };
    OvaResult result;
    result.ovf = render_template_file(templates, "ovf/ova.ovf", values);
    result.manifest = fmt::format("SHA256({})= {}\nSHA256({})= {}\n", ovf_name,
                                  util::sha256_hex(result.ovf), vmdk_name, vmdk.sha256);
    result.capacity = vmdk.capacity;
    result.vmdk_size = vmdk.file_size;

    util::AtomicFile file(output);
    TarSink sink{&file, {}, 0, {}};
    std::unique_ptr<archive, ArchiveWriteDeleter> writer(archive_write_new());
    // ustar headers (pax records only for a member over 8 GiB, which ustar cannot size).
    archive_write_set_format_pax_restricted(writer.get());
    archive_write_set_bytes_per_block(writer.get(), 10240);
    if (archive_write_open(writer.get(), &sink, nullptr, tar_write, nullptr) != ARCHIVE_OK) {
        throw build_failed("cannot start {}: {}", output.string(),
                           (sink.failure.empty() ? archive_error_string(writer.get()) : sink.failure.c_str()));
    }
    const auto mtime =
        static_cast<time_t>(options.source_date_epoch.value_or(std::time(nullptr)));
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
            throw build_failed("cannot add {} to {}: {}", name, output.string(),
                               (sink.failure.empty() ? archive_error_string(writer.get()) : sink.failure.c_str()));
        }
    };
    const auto data = [&](const void* bytes, std::size_t size, const std::string& name) {
        if (archive_write_data(writer.get(), bytes, size) != static_cast<la_ssize_t>(size)) {
            throw build_failed("cannot add {} to {}: {}", name, output.string(),
                               (sink.failure.empty() ? archive_error_string(writer.get()) : sink.failure.c_str()));
        }
    };
    header(ovf_name, result.ovf.size());
    data(result.ovf.data(), result.ovf.size(), ovf_name);
    header(mf_name, result.manifest.size());
    data(result.manifest.data(), result.manifest.size(), mf_name);
    header(vmdk_name, vmdk.file_size);
    {
        util::FileDescriptor fd(::open(vmdk_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) {
            throw build_failed("cannot read {}: {}", vmdk_path.string(), std::strerror(errno));
        }
        std::vector<char> buffer(1u << 20);
        for (std::uint64_t done = 0; done < vmdk.file_size;) {
            const auto chunk = static_cast<std::size_t>(
                std::min<std::uint64_t>(buffer.size(), vmdk.file_size - done));
            if (!util::pread_exact(fd.get(), buffer.data(), chunk, done)) {
                throw build_failed("{} changed while it was packed", vmdk_path.string());
            }
            data(buffer.data(), chunk, vmdk_name);
            done += chunk;
        }
    }
    if (archive_write_close(writer.get()) != ARCHIVE_OK) {
        throw build_failed("cannot finish {}: {}", output.string(),
                           (sink.failure.empty() ? archive_error_string(writer.get()) : sink.failure.c_str()));
    }
    try {
        file.commit();
    } catch (const std::system_error& error) {
        throw build_failed("cannot write {}: {}", output.string(), error.what());
    }
    std::error_code ec;
    stdfs::remove(vmdk_path, ec);
    result.path = output;
    result.size = sink.size;
    result.sha256 = sink.hash.finish_hex();
    return result;
}

} // namespace edgeforge::formats
