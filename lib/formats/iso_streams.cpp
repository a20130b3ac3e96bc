// The ISO writer's libisofs stream class (see iso_streams.h).
#include "formats/iso_streams.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/fs.h"

// libisofs.h leaves struct iso_stream undefined for C++ because its first member is called
// "class"; the header asks C++ users to declare a layout-identical copy, which this is.
struct iso_stream {
    IsoStreamIface* stream_class;
    int refcount;
    void* data;
};

namespace edgeforge::formats::isostream {
namespace {

FileStream& stream_data(IsoStream* stream) {
    return *static_cast<FileStream*>(stream->data);
}

int stream_open(IsoStream* stream) {
    FileStream& file = stream_data(stream);
    file.position = 0;
    try {
        bool whole_host_file = false;
        std::filesystem::path path;
        if (file.kind == FileStream::Kind::host_file) {
            path = file.host_path;
            whole_host_file = true;
        } else if (file.kind == FileStream::Kind::tree) {
            const auto& ref = file.inode->data;
            if (ref.kind == fs::DataRef::Kind::host_file || ref.kind == fs::DataRef::Kind::blob) {
                path = ref.path;
                whole_host_file = ref.kind == fs::DataRef::Kind::host_file;
            }
        }
        if (path.empty()) {
            return ISO_SUCCESS;
        }
        file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (file.fd < 0) {
            file.fail(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
            return iso_code(ISO_FILE_ERROR);
        }
        struct stat info {};
        if (whole_host_file && ::fstat(file.fd, &info) == 0 &&
            static_cast<std::uint64_t>(info.st_size) != file.size) {
            file.fail(fmt::format("{} changed while the image was being built (it was {} bytes, "
                                  "now {}); run the build again",
                                  path.string(), file.size, info.st_size));
            ::close(file.fd);
            file.fd = -1;
            return iso_code(ISO_FILE_ERROR);
        }
        return ISO_SUCCESS;
    } catch (const std::exception& error) {
        file.fail(error.what());
        return iso_code(ISO_FILE_ERROR);
    }
}

int stream_close(IsoStream* stream) {
    FileStream& file = stream_data(stream);
    if (file.fd >= 0) {
        ::close(file.fd);
        file.fd = -1;
    }
    return ISO_SUCCESS;
}

off_t stream_get_size(IsoStream* stream) {
    return static_cast<off_t>(stream_data(stream).size);
}

int stream_read(IsoStream* stream, void* buffer, size_t count) {
    FileStream& file = stream_data(stream);
    const std::uint64_t left = file.size - file.position;
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(left, count));
    if (chunk == 0) {
        return 0;
    }
    auto* out = static_cast<char*>(buffer);
    try {
        bool complete = true;
        switch (file.kind) {
        case FileStream::Kind::bytes:
            std::memcpy(out, file.bytes->data() + file.position, chunk);
            break;
        case FileStream::Kind::host_file:
            complete = util::pread_exact(file.fd, out, chunk, file.position);
            break;
        case FileStream::Kind::tree: {
            const auto& ref = file.inode->data;
            switch (ref.kind) {
            case fs::DataRef::Kind::none:
                std::memset(out, 0, chunk);
                break;
            case fs::DataRef::Kind::spill:
                file.spill->read(ref.offset + file.position, out, chunk);
                break;
            case fs::DataRef::Kind::host_file:
                complete = util::pread_exact(file.fd, out, chunk, file.position);
                break;
            case fs::DataRef::Kind::blob:
                complete = util::pread_exact(file.fd, out, chunk, ref.offset + file.position);
                break;
            }
            break;
        }
        }
        if (!complete) {
            file.fail(fmt::format("the data ends before the {} bytes expected; the file was "
                                  "truncated during the build",
                                  file.size));
            return iso_code(ISO_FILE_READ_ERROR);
        }
    } catch (const std::exception& error) {
        file.fail(fmt::format("cannot read the data: {}", error.what()));
        return iso_code(ISO_FILE_READ_ERROR);
    }
    file.position += chunk;
    return static_cast<int>(chunk);
}

int stream_is_repeatable(IsoStream*) {
    return 1;
}

void stream_get_id(IsoStream* stream, unsigned int* fs_id, dev_t* dev_id, ino_t* ino_id) {
    *fs_id = k_stream_fs_id;
    *dev_id = 0;
    *ino_id = stream_data(stream).id;
}

void stream_free(IsoStream* stream) {
    FileStream* file = &stream_data(stream);
    if (file->fd >= 0) {
        ::close(file->fd);
    }
    delete file;
}

int stream_update_size(IsoStream*) {
    return ISO_SUCCESS;
}

// Version 1: open..free plus update_size. Later versions add cmp_ino, which libisofs 1.5 calls
// without checking for NULL; version 1 streams are compared by get_id() instead.
IsoStreamIface k_stream_class{
    1,
    {'u', 's', 'e', 'r'},
    stream_open,
    stream_close,
    stream_get_size,
    stream_read,
    stream_is_repeatable,
    stream_get_id,
    stream_free,
    stream_update_size,
    nullptr,
    nullptr,
    nullptr,
};

} // namespace

IsoStream* make_stream(std::unique_ptr<FileStream> file) {
    auto* stream = static_cast<iso_stream*>(std::calloc(1, sizeof(iso_stream)));
    if (stream == nullptr) {
        throw std::bad_alloc();
    }
    stream->stream_class = &k_stream_class;
    stream->refcount = 1;
    stream->data = file.release();
    return stream;
}

} // namespace edgeforge::formats::isostream
