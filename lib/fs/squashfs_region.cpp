// The base region of a squashfs image (see squashfs_region.h).
#include "fs/squashfs_region.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <fmt/format.h>

#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"

namespace edgeforge::fs {

namespace {

constexpr std::string_view k_magic = "edgeforge-squashfs-region 2\n";
constexpr std::size_t k_max_index_bytes = 64U << 20;
constexpr std::size_t k_digest_chars = 32;
// An inode record: libsquashfs's fixed part and at most this many bytes of block sizes.
constexpr std::size_t k_max_record_bytes = 1U << 20;

void put_u32(std::string& out, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        out += static_cast<char>((value >> (8 * i)) & 0xFFU);
    }
}

void put_u64(std::string& out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) {
        out += static_cast<char>((value >> (8 * i)) & 0xFFU);
    }
}

// Reads fields front to back; any read past the end sets `failed` and returns zeros.
class Reader {
  public:
    explicit Reader(std::string_view data) : data_(data) {}
    bool failed() const { return failed_; }
    bool at_end() const { return data_.empty(); }

    std::string_view bytes(std::size_t count) {
        if (failed_ || count > data_.size()) {
            failed_ = true;
            return {};
        }
        const std::string_view taken = data_.substr(0, count);
        data_.remove_prefix(count);
        return taken;
    }
    std::uint64_t u64() { return number(8); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(number(4)); }

  private:
    std::uint64_t number(std::size_t size) {
        const std::string_view raw = bytes(size);
        std::uint64_t value = 0;
        for (std::size_t i = raw.size(); i-- > 0;) {
            value = (value << 8) | static_cast<std::uint8_t>(raw[i]);
        }
        return value;
    }

    std::string_view data_;
    bool failed_ = false;
};

} // namespace

std::shared_ptr<const SquashfsBaseRegion> SquashfsBaseRegion::snapshot(const Tree& tree,
                                                                       std::string identity) {
    auto region = std::make_shared<SquashfsBaseRegion>();
    region->identity = std::move(identity);
    // Depth first with an explicit stack: the tree's depth is the input's.
    std::vector<std::pair<std::shared_ptr<Inode>, std::string>> pending{{tree.root_ptr(), ""}};
    while (!pending.empty()) {
        auto [inode, path] = std::move(pending.back());
        pending.pop_back();
        if (inode->is_regular()) {
            if (region->base_paths.try_emplace(inode.get(), path).second) {
                region->keep_alive.push_back(inode);
            }
        } else if (inode->is_directory()) {
            for (const auto& [name, child] : inode->children) {
                pending.emplace_back(child, path + "/" + name);
            }
        }
    }
    return region;
}

std::string format_region_index(const SquashfsRegionIndex& index) {
    // The magic, the XXH3-128 of the body (a damaged index is refused whole), then the body.
    std::string out;
    for (const std::uint64_t value :
         {index.start, index.size, index.produced.data_blocks, index.produced.fragment_blocks,
          index.produced.duplicate_blocks, index.produced.sparse_blocks,
          index.produced.duplicate_fragments, index.data_bytes}) {
        put_u64(out, value);
    }
    std::string digest = index.digest;
    digest.resize(k_digest_chars, '0');
    out += digest;
    put_u32(out, static_cast<std::uint32_t>(index.fragments.size()));
    for (const auto& [location, size] : index.fragments) {
        put_u64(out, location);
        put_u32(out, size);
    }
    put_u32(out, static_cast<std::uint32_t>(index.inodes.size()));
    for (const std::string& record : index.inodes) {
        put_u32(out, static_cast<std::uint32_t>(record.size()));
        out += record;
    }
    return std::string(k_magic) + util::xxh3_128_hex(out) + out;
}

std::optional<SquashfsRegionIndex> parse_region_index(std::string_view content, std::size_t files) {
    if (content.size() > k_max_index_bytes || !content.starts_with(k_magic) ||
        content.size() < k_magic.size() + k_digest_chars) {
        return std::nullopt;
    }
    const std::string_view body = content.substr(k_magic.size() + k_digest_chars);
    if (content.substr(k_magic.size(), k_digest_chars) != util::xxh3_128_hex(body)) {
        return std::nullopt;
    }
    Reader in(body);
    SquashfsRegionIndex index;
    for (std::uint64_t* field :
         {&index.start, &index.size, &index.produced.data_blocks, &index.produced.fragment_blocks,
          &index.produced.duplicate_blocks, &index.produced.sparse_blocks,
          &index.produced.duplicate_fragments, &index.data_bytes}) {
        *field = in.u64();
    }
    index.digest = std::string(in.bytes(k_digest_chars));
    const std::uint32_t fragments = in.u32();
    // Each entry takes 12 bytes of the index: a count beyond what is left is a lie.
    if (in.failed() || fragments > content.size() / 12) {
        return std::nullopt;
    }
    index.fragments.reserve(fragments);
    for (std::uint32_t i = 0; i < fragments && !in.failed(); ++i) {
        const std::uint64_t location = in.u64();
        index.fragments.emplace_back(location, in.u32());
    }
    const std::uint32_t count = in.u32();
    if (in.failed() || count != files) {
        return std::nullopt;
    }
    index.inodes.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        const std::uint32_t size = in.u32();
        if (in.failed() || size > k_max_record_bytes) {
            return std::nullopt;
        }
        index.inodes.emplace_back(in.bytes(size));
    }
    if (in.failed() || !in.at_end()) {
        return std::nullopt;
    }
    return index;
}

namespace {

namespace stdfs = std::filesystem;

// XXH3-128 of `size` bytes at `offset` of `fd`, as 32 hex digits; nullopt on a read error.
std::optional<std::string> range_digest(int fd, std::uint64_t offset, std::uint64_t size) {
    XXH3_state_t* state = XXH3_createState();
    if (state == nullptr) {
        return std::nullopt;
    }
    XXH3_128bits_reset(state);
    std::vector<char> buffer(4U << 20);
    bool good = true;
    while (size > 0 && good) {
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size));
        const ssize_t got = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
        if (got < 0 && errno == EINTR) {
            continue;
        }
        good = got > 0;
        if (good) {
            XXH3_128bits_update(state, buffer.data(), static_cast<std::size_t>(got));
            offset += static_cast<std::uint64_t>(got);
            size -= static_cast<std::uint64_t>(got);
        }
    }
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state));
    XXH3_freeState(state);
    if (!good) {
        return std::nullopt;
    }
    return util::to_hex(canonical.digest, sizeof canonical.digest);
}

// The whole content of a small regular file opened without following links; nullopt otherwise.
std::optional<std::string> read_small_file(const stdfs::path& path, std::size_t limit) {
    const util::FileDescriptor fd(
        ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        static_cast<std::uint64_t>(st.st_size) > limit) {
        return std::nullopt;
    }
    std::string content(static_cast<std::size_t>(st.st_size), '\0');
    try {
        if (!util::pread_exact(fd.get(), content.data(), content.size(), 0)) {
            return std::nullopt;
        }
    } catch (const std::system_error&) {
        return std::nullopt;
    }
    return content;
}

} // namespace

void drop_region(const stdfs::path& entry) {
    std::error_code ignored;
    stdfs::remove_all(entry, ignored);
}

std::optional<KeptRegion> open_region(const stdfs::path& entry, std::size_t files,
                                      std::uint64_t start) {
    std::error_code ec;
    if (!stdfs::is_directory(stdfs::symlink_status(entry, ec))) {
        return std::nullopt; // no region kept: the usual miss
    }
    auto content = read_small_file(entry / "index", k_max_index_bytes);
    auto index = content ? parse_region_index(*content, files) : std::nullopt;
    util::FileDescriptor fd(
        ::open((entry / "region").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st {};
    const bool good = index && index->start == start && fd.valid() && ::fstat(fd.get(), &st) == 0 &&
                      S_ISREG(st.st_mode) &&
                      static_cast<std::uint64_t>(st.st_size) == index->size &&
                      range_digest(fd.get(), 0, index->size) == index->digest;
    if (!good) {
        drop_region(entry);
        return std::nullopt;
    }
    // Used now: trimming removes the least recently used entries first.
    ::futimens(fd.get(), nullptr);
    ::utimensat(AT_FDCWD, (entry / "index").c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
    return KeptRegion{std::move(*index), std::move(fd)};
}

bool copy_region(int region_fd, int image_fd, std::uint64_t offset, std::uint64_t size) {
    return util::copy_range(region_fd, 0, image_fd, offset, size);
}

void store_region(const stdfs::path& entry, SquashfsRegionIndex index, int image_fd) {
    std::error_code ec;
    if (stdfs::exists(stdfs::symlink_status(entry, ec))) {
        return; // another build kept it first
    }
    // One the reader would refuse (a huge file's block list, millions of files) is not kept.
    // The digest is not known yet, but it has a fixed width: the index's size is already final.
    const bool readable = std::none_of(index.inodes.begin(), index.inodes.end(),
                                       [](const std::string& record) {
                                           return record.size() > k_max_record_bytes;
                                       }) &&
                          format_region_index(index).size() <= k_max_index_bytes;
    if (!readable) {
        return;
    }
    std::random_device random;
    const stdfs::path temporary =
        entry.parent_path() /
        fmt::format(".{}.{}.{:x}.tmp", entry.filename().string(), ::getpid(), random());
    try {
        const auto digest = range_digest(image_fd, index.start, index.size);
        if (!digest) {
            return;
        }
        index.digest = *digest;
        stdfs::create_directories(temporary);
        const util::FileDescriptor region(
            ::open((temporary / "region").c_str(),
                   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
        bool good =
            region.valid() && util::copy_range(image_fd, index.start, region.get(), 0, index.size);
        if (good) {
            util::write_file_atomically(temporary / "index", format_region_index(index));
        }
        if (good) {
            stdfs::rename(temporary, entry, ec);
            good = !ec;
        }
        if (!good) {
            stdfs::remove_all(temporary, ec);
        }
    } catch (...) {
        stdfs::remove_all(temporary, ec);
    }
}

} // namespace edgeforge::fs
