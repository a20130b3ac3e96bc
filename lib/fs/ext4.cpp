// Builds ext4 filesystem images from a directory without root (mke2fs -d), reproducibly on request.
#include "fs/ext4.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "fs/ext4_place.h"
#include "fs/gpt.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"

namespace edgeforge::fs {
namespace {

// The features of Debian's and upstream's ext4 defaults in e2fsprogs 1.47.0, named so that the
// image does not change with the host's mke2fs.conf (newer ones add orphan_file, which kernels
// before 5.15 cannot mount read-write).
constexpr std::string_view k_ext4_features =
    "none,has_journal,ext_attr,resize_inode,dir_index,filetype,extent,64bit,flex_bg,"
    "sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum";
constexpr std::string_view k_inode_size = "256";
constexpr std::string_view k_bytes_per_inode = "16384";

struct TreeEntry {
    std::string path; // "/etc/hosts": where it lands in the image
    std::filesystem::path host_path;
    struct stat info {};
};

// The directory's entries below its root, sorted bytewise by path (the order mke2fs -d copies
// them in with LC_ALL=C), never following symlinks.
std::vector<TreeEntry> list_tree(const std::filesystem::path& directory) {
    std::vector<TreeEntry> entries;
    std::error_code error;
    std::filesystem::recursive_directory_iterator it(directory, error);
    for (; !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
        TreeEntry entry;
        entry.host_path = it->path();
        entry.path = "/" + it->path().lexically_relative(directory).generic_string();
        if (entry.path.find('\n') != std::string::npos) {
            throw bad_input("cannot copy {} into an ext4 image: debugfs, which sets owners and "
                            "times in the image, cannot name files with a newline in their "
                            "name; rename it",
                            entry.host_path.string());
        }
        if (::lstat(entry.host_path.c_str(), &entry.info) != 0) {
            error = std::error_code(errno, std::generic_category());
            break;
        }
        entries.push_back(std::move(entry));
    }
    if (error) {
        throw build_failed("cannot read the directory {} for an ext4 image: {}", directory.string(),
                           error.message());
    }
    std::sort(entries.begin(), entries.end(),
              [](const TreeEntry& a, const TreeEntry& b) { return a.path < b.path; });
    return entries;
}

// A digest of what the image will hold: names, types, permissions and contents (not owners and
// times, which the image does not take from the host when it is reproducible).
std::string tree_digest(const std::vector<TreeEntry>& entries,
                        const std::map<std::string, std::string>& content_ids) {
    util::Sha256 digest;
    for (const auto& entry : entries) {
        const auto mode = static_cast<unsigned>(entry.info.st_mode);
        digest.update(fmt::format("{}\n{:o}\n", entry.path, mode));
        const auto known = content_ids.find(entry.path);
        if (S_ISREG(entry.info.st_mode) && known != content_ids.end()) {
            digest.update(fmt::format("id {} {}", entry.info.st_size, known->second));
        } else if (S_ISREG(entry.info.st_mode)) {
            digest.update(util::sha256_file_hex(entry.host_path));
        } else if (S_ISLNK(entry.info.st_mode)) {
            std::error_code error;
            digest.update(std::filesystem::read_symlink(entry.host_path, error).string());
        } else if (S_ISCHR(entry.info.st_mode) || S_ISBLK(entry.info.st_mode)) {
            digest.update(std::to_string(entry.info.st_rdev));
        }
        digest.update("\n");
    }
    return digest.finish_hex();
}

// A path as one debugfs argument: debugfs's parser takes "..." with "" standing for a quote.
std::string debugfs_quote(std::string_view path) {
    std::string out = "\"";
    for (const char c : path) {
        out += c;
        if (c == '"') {
            out += '"';
        }
    }
    out += '"';
    return out;
}

std::string tool_path(const std::string& name) {
    const auto program = util::find_program(name);
    if (!program) {
        throw build_failed("{} is needed to build ext4 images but is not installed (install the "
                           "Debian package e2fsprogs)",
                           name);
    }
    return program->string();
}

// A tool's message on one line, naming the output rather than its temporary name.
std::string one_line(std::string_view text, const std::string& temp_path,
                     const std::string& output) {
    std::string message;
    for (const auto& line : util::split(text, '\n')) {
        if (!util::trim(line).empty()) {
            message += (message.empty() ? "" : "; ") + std::string(util::trim(line));
        }
    }
    for (auto at = message.find(temp_path); at != std::string::npos;
         at = message.find(temp_path, at + output.size())) {
        message.replace(at, temp_path.size(), output);
    }
    return message;
}

// Runs an e2fsprogs tool through env(1), so that the fake time replaces (or removes) an inherited
// value, and in the C locale: mke2fs -d copies directories in strcoll order.
util::ProcessResult run_e2fs_tool(const std::vector<std::string>& argv,
                                  std::optional<std::int64_t> source_date_epoch) {
    std::vector<std::string> command{"env", "LC_ALL=C"};
    if (source_date_epoch) {
        command.push_back(fmt::format("E2FSPROGS_FAKE_TIME={}", *source_date_epoch));
    } else {
        command.insert(command.begin() + 1, {"-u", "E2FSPROGS_FAKE_TIME"});
    }
    command.insert(command.end(), argv.begin(), argv.end());
    return util::run_process(command);
}

// The debugfs commands that give every copied inode root as its owner and, when reproducible,
// `time` as all four of its times (nanoseconds zeroed first: setting a time afterwards keeps its
// epoch bits).
std::string normalising_commands(const std::vector<TreeEntry>& entries,
                                 std::optional<std::int64_t> time) {
    std::string commands;
    for (const auto& entry : entries) {
        const std::string path = debugfs_quote(entry.path);
        commands += fmt::format("set_inode_field {} uid 0\nset_inode_field {} gid 0\n", path, path);
        if (time) {
            for (const std::string_view field : {"atime", "mtime", "ctime", "crtime"}) {
                commands += fmt::format("set_inode_field {} {}_extra 0\n", path, field);
                commands += fmt::format("set_inode_field {} {} @{}\n", path, field, *time);
            }
        }
    }
    return commands;
}

} // namespace

Ext4Image make_ext4_image(const std::filesystem::path& directory_or_empty, std::uint64_t size,
                          std::string_view label, const std::filesystem::path& output,
                          std::optional<std::int64_t> source_date_epoch,
                          const Ext4ImageOptions& options) {
    if (size == 0 || size % k_ext4_block_size != 0) {
        throw bad_input("the ext4 image {} would be {} bytes; give a size that is a positive "
                        "multiple of 4 KiB",
                        output.string(), size);
    }
    if (label.size() > k_ext4_label_max) {
        throw bad_input("ext4 label '{}' is {} bytes; an ext4 label holds at most {}", label,
                        label.size(), k_ext4_label_max);
    }
    if (source_date_epoch && *source_date_epoch < 0) {
        throw bad_input("SOURCE_DATE_EPOCH {} is before 1970; give seconds since 1970-01-01",
                        *source_date_epoch);
    }
    std::vector<TreeEntry> entries;
    if (!directory_or_empty.empty()) {
        std::error_code error;
        if (!std::filesystem::is_directory(directory_or_empty, error)) {
            throw bad_input("cannot copy {} into the ext4 image {}: it is not a directory",
                            directory_or_empty.string(), output.string());
        }
        entries = list_tree(directory_or_empty);
    }
    for (const auto& [path, host] : options.placed_files) {
        TreeEntry entry;
        entry.path = path;
        entry.host_path = host;
        if (::stat(host.c_str(), &entry.info) != 0) {
            throw build_failed("cannot read {} for the ext4 image {}: {}", host.string(),
                               output.string(), std::strerror(errno));
        }
        entries.push_back(std::move(entry));
    }
    std::sort(entries.begin(), entries.end(),
              [](const TreeEntry& a, const TreeEntry& b) { return a.path < b.path; });
    const std::string mke2fs = tool_path("mke2fs");
    const std::string debugfs = tool_path("debugfs");

    // -F: never stop to ask a question, nobody is there to answer; -q: errors only.
    std::vector<std::string> argv{mke2fs, "-q", "-F", "-t", "ext4"};
    // Block size, inode size and ratio and features fixed, not left to the host's mke2fs.conf.
    argv.insert(argv.end(),
                {"-b", std::to_string(k_ext4_block_size), "-I", std::string(k_inode_size)});
    argv.insert(argv.end(),
                {"-i", std::string(k_bytes_per_inode), "-O", std::string(k_ext4_features)});
    if (!label.empty()) {
        argv.insert(argv.end(), {"-L", std::string(label)});
    }
    // root_owner: the root directory is root's, not the builder's; no_copy_xattrs: the build
    // host's extended attributes (SELinux labels, say) are not the image's.
    std::string extended = "root_owner=0:0,no_copy_xattrs";
    if (source_date_epoch) {
        // mke2fs otherwise draws both at random.
        const std::string seed = fmt::format("{}\n{}\n{}\n{}", label, size, *source_date_epoch,
                                             tree_digest(entries, options.content_ids));
        argv.insert(argv.end(), {"-U", guid_from_seed("edgeforge-ext4-uuid\n" + seed).str()});
        extended += ",hash_seed=" + guid_from_seed("edgeforge-ext4-hash-seed\n" + seed).str();
    }
    argv.insert(argv.end(), {"-E", extended});
    if (!directory_or_empty.empty()) {
        argv.insert(argv.end(), {"-d", directory_or_empty.string()});
    }

    std::filesystem::path parent = output.parent_path();
    if (parent.empty()) {
        parent = ".";
    }
    Ext4Image result{output, {}};
    try {
        util::AtomicFile file(output, options.durability);
        if (::ftruncate(file.fd(), static_cast<off_t>(size)) != 0) {
            throw std::system_error(errno, std::generic_category(),
                                    "cannot size " + file.temp_path().string());
        }
        const std::string temp = file.temp_path().string();
        argv.push_back(temp);
        const auto made = run_e2fs_tool(argv, source_date_epoch);
        if (made.exit_code != 0) {
            throw build_failed(
                "mke2fs failed on the ext4 image {} (exit status {}): {}", output.string(),
                made.exit_code,
                one_line(made.standard_error.empty() ? made.standard_output : made.standard_error,
                         temp, output.string()));
        }
        std::vector<util::FileExtent> placed = place_ext4_files(
            file.temp_path(), options.placed_files, output, source_date_epoch, options.placed_data);
        if (options.placed_data == PlacedData::returned) {
            result.unwritten = std::move(placed);
        }
        if (!entries.empty()) {
            util::TempDir scratch(parent, ".edgeforge-ext4-");
            const auto script = scratch.path() / "normalise.debugfs";
            util::write_file_atomically(script, normalising_commands(entries, source_date_epoch));
            const auto fixed =
                run_e2fs_tool({debugfs, "-w", "-f", script.string(), temp}, source_date_epoch);
            // debugfs exits 0 even when a command fails; its messages on stderr tell, after the
            // version banner ("debugfs 1.47.0 (5-Feb-2023)").
            std::string_view problems = util::trim(fixed.standard_error);
            if (problems.starts_with("debugfs ")) {
                const auto banner_end = problems.find('\n');
                problems = banner_end == std::string_view::npos ? std::string_view()
                                                                : problems.substr(banner_end);
            }
            if (fixed.exit_code != 0 || !util::trim(problems).empty()) {
                throw build_failed(
                    "debugfs failed to set owners and times in the ext4 image {} "
                    "(exit status {}): {}",
                    output.string(), fixed.exit_code,
                    one_line(util::trim(problems).empty() ? fixed.standard_output : problems, temp,
                             output.string()));
            }
        }
        file.commit();
    } catch (const std::system_error& error) {
        throw build_failed("cannot write the ext4 image {}: {}; check that its directory exists, "
                           "is writable and has space",
                           output.string(), error.code().message());
    }
    return result;
}

} // namespace edgeforge::fs
