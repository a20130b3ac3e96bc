// The compressed-block cache of the squashfs writer (see squashfs_block_cache.h).
#include "fs/squashfs_block_cache.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "util/digest.h"
#include "util/fd.h"

namespace edgeforge::fs {
namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view k_magic = "edgeforge-squashfs-block 2\n";
// An entry is a header and at most one block (blocks are at most 1 MiB, and a compressed block
// is never larger than its input): anything larger is not an entry.
constexpr std::uintmax_t k_max_entry_bytes = (1u << 20) + 4096;

bool is_hex_key(std::string_view key) {
    return key.size() == 32 && std::all_of(key.begin(), key.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

} // namespace

std::string block_key(std::string_view block) {
    return util::xxh3_128_hex(block);
}

std::optional<SquashfsBlockEntry> parse_block_entry(std::string_view content, std::string_view key,
                                                    std::uint32_t size) {
    if (!is_hex_key(key) || content.size() > k_max_entry_bytes) {
        return std::nullopt;
    }
    // magic, key, size, raw flag, payload digest, each on its line; then the payload.
    std::string_view rest(content);
    if (!rest.starts_with(k_magic)) {
        return std::nullopt;
    }
    rest.remove_prefix(k_magic.size());
    std::string_view fields[4];
    for (auto& field : fields) {
        const std::size_t end = rest.find('\n');
        if (end == std::string_view::npos || end > 64) {
            return std::nullopt;
        }
        field = rest.substr(0, end);
        rest.remove_prefix(end + 1);
    }
    const bool raw = fields[2] == "1";
    if (fields[0] != key || fields[1] != std::to_string(size) || (!raw && fields[2] != "0") ||
        (raw && !rest.empty()) || (!raw && (rest.empty() || rest.size() >= size)) ||
        fields[3] != util::xxh3_128_hex(rest)) {
        return std::nullopt;
    }
    return SquashfsBlockEntry{std::string(rest), raw};
}

std::string format_block_entry(std::string_view key, std::uint32_t size,
                               const SquashfsBlockEntry& entry) {
    const std::string_view payload =
        entry.stored_raw ? std::string_view() : std::string_view(entry.compressed);
    std::string content(k_magic);
    content += fmt::format("{}\n{}\n{}\n{}\n", key, size, entry.stored_raw ? "1" : "0",
                           util::xxh3_128_hex(payload));
    content += payload;
    return content;
}

SquashfsBlockCache::SquashfsBlockCache(stdfs::path directory, std::string_view context,
                                       std::uint64_t max_bytes)
    : root_(std::move(directory)), context_dir_(root_ / util::sha256_hex(context).substr(0, 16)),
      max_bytes_(max_bytes) {}

stdfs::path SquashfsBlockCache::entry_path(const std::string& key) const {
    return context_dir_ / key.substr(0, 2) / key;
}

std::optional<SquashfsBlockCache::Hit> SquashfsBlockCache::find(const std::string& key,
                                                                std::uint32_t size) {
    if (!is_hex_key(key)) {
        return std::nullopt;
    }
    const stdfs::path path = entry_path(key);
    // Opened once and read from that descriptor: no FIFO (O_NONBLOCK, then only a regular file
    // is read), no symbolic link, and a bounded size.
    const util::FileDescriptor fd(
        ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd.valid()) {
        return std::nullopt; // no entry: the usual miss
    }
    struct stat st {};
    std::string data;
    bool readable = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0 &&
                    static_cast<std::uintmax_t>(st.st_size) <= k_max_entry_bytes;
    if (readable) {
        data.resize(static_cast<std::size_t>(st.st_size));
        try {
            readable = util::pread_exact(fd.get(), data.data(), data.size(), 0);
        } catch (const std::system_error&) {
            readable = false;
        }
    }
    const auto drop = [&]() -> std::optional<Hit> {
        std::error_code ignored;
        stdfs::remove(path, ignored);
        ++dropped_;
        return std::nullopt;
    };
    if (!readable) {
        return drop();
    }
    auto entry = parse_block_entry(data, key, size);
    if (!entry) {
        return drop();
    }
    // Used now: trimming removes the least recently used entries first.
    ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
    return entry;
}

void SquashfsBlockCache::reject(const std::string& key) {
    if (!is_hex_key(key)) {
        return;
    }
    std::error_code ignored;
    stdfs::remove(entry_path(key), ignored);
    ++dropped_;
}

void SquashfsBlockCache::store(const std::string& key, std::uint32_t size,
                               std::string_view compressed, bool stored_raw) {
    if (!is_hex_key(key)) {
        return;
    }
    const stdfs::path path = entry_path(key);
    std::error_code ec;
    stdfs::create_directories(path.parent_path(), ec);
    if (ec) {
        return;
    }
    std::ostringstream name;
    name << "." << key << "." << ::getpid() << "." << std::this_thread::get_id() << ".tmp";
    const stdfs::path temporary = path.parent_path() / name.str();
    const std::string content =
        format_block_entry(key, size, {std::string(stored_raw ? std::string_view() : compressed),
                                       stored_raw});
    {
        // No fsync: a torn entry fails its digest and is compressed again.
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        if (!out.flush()) {
            out.close();
            stdfs::remove(temporary, ec);
            return;
        }
    }
    stdfs::rename(temporary, path, ec);
    if (ec) {
        stdfs::remove(temporary, ec);
    }
}

void SquashfsBlockCache::trim() const {
    struct Entry {
        stdfs::path path;
        std::uintmax_t size;
        stdfs::file_time_type used;
    };
    std::vector<Entry> entries;
    std::uintmax_t total = 0;
    std::error_code ec;
    const auto stale = stdfs::file_time_type::clock::now() - std::chrono::minutes(10);
    for (stdfs::recursive_directory_iterator it(root_, ec), end; !ec && it != end;
         it.increment(ec)) {
        std::error_code entry_ec;
        if (!it->is_regular_file(entry_ec)) {
            continue;
        }
        Entry entry{it->path(), it->file_size(entry_ec), it->last_write_time(entry_ec)};
        if (entry_ec) {
            continue;
        }
        // Lock files of `cache prune` and entries another build is writing are left alone; a
        // temporary left by an interrupted build goes once it is old.
        const std::string name = entry.path.filename().string();
        if (name.starts_with('.') && (it.depth() == 0 || entry.used > stale)) {
            continue;
        }
        total += entry.size;
        entries.push_back(std::move(entry));
    }
    if (total <= max_bytes_) {
        return;
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.used < b.used; });
    // Down to 90%, so that the next build does not trim again at once.
    const std::uintmax_t goal = max_bytes_ / 10 * 9;
    for (const auto& entry : entries) {
        if (total <= goal) {
            break;
        }
        std::error_code remove_ec;
        if (stdfs::remove(entry.path, remove_ec)) {
            total -= entry.size;
        }
    }
}

} // namespace edgeforge::fs
