// Making a finished file durable apart from writing it.
#include "util/flush.h"

#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

#include "util/fd.h"

namespace util {

void flush_file(const std::filesystem::path& file) {
    const FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid() || ::fsync(fd.get()) != 0) {
        throw std::system_error(errno, std::generic_category(), "cannot flush " + file.string());
    }
}

void flush_directory(const std::filesystem::path& directory) {
    const FileDescriptor fd(
        ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.valid()) {
        ::fsync(fd.get());
    }
}

void rename_durably(const std::filesystem::path& from, const std::filesystem::path& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) {
        throw std::system_error(errno, std::generic_category(),
                                "cannot rename " + from.string() + " to " + to.string());
    }
    flush_directory(to.parent_path());
}

} // namespace util
