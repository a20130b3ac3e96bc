// The one libisofs stream class of edgeforge's ISO writer: every file's bytes (host files,
// in-memory bytes, tree files backed by a spill file) go through it, with read errors collected
// for the writer's message. Internal to the ISO writer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
// Without libburn, libisofs.h provides its copy of struct burn_source only on request.
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>

#include "fs/tree.h"

namespace edgeforge::formats::isostream {

// Our stream class's file-system id for iso_stream_get_id(): distinct from libisofs's own ids
// (1 to 6), so that no stream of ours is ever mistaken for one of libisofs's.
inline constexpr unsigned int k_stream_fs_id = 0x45464f52;

inline int iso_code(unsigned int code) {
    return static_cast<int>(code);
}

// Read errors of our streams, reported from libisofs's writer thread.
class StreamErrors {
  public:
    void add(std::string message) {
        const std::lock_guard lock(mutex_);
        messages_.push_back(std::move(message));
    }
    std::vector<std::string> take() {
        const std::lock_guard lock(mutex_);
        return std::exchange(messages_, {});
    }

  private:
    std::mutex mutex_;
    std::vector<std::string> messages_;
};

// The bytes of one file on the ISO. Every file goes through this one stream class (never
// libisofs's local-file streams): their ids, which order the file data in the image, then come
// from the sorted ISO paths instead of host inode numbers, so the layout is reproducible.
struct FileStream {
    enum class Kind { host_file, bytes, tree };
    Kind kind = Kind::bytes;
    std::string iso_path;                   // for messages
    std::filesystem::path host_path;        // host_file; tree files with host data
    const std::string* bytes = nullptr;     // bytes (owned by the description)
    std::shared_ptr<const fs::Inode> inode; // tree
    const fs::SpillFile* spill = nullptr;   // tree
    std::uint64_t size = 0;
    ino_t id = 0;
    StreamErrors* errors = nullptr;

    // While open
    int fd = -1;
    std::uint64_t position = 0;

    void fail(const std::string& message) { errors->add(fmt::format("{}: {}", iso_path, message)); }
};

// Hands `file` to a new IsoStream (the stream owns it from then on).
IsoStream* make_stream(std::unique_ptr<FileStream> file);

} // namespace edgeforge::formats::isostream
