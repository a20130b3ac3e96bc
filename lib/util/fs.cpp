// Files written atomically, temporary directories, and cleanup of temporaries on Ctrl-C.
#include "util/fs.h"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/flush.h"

namespace util {
namespace {

// Temporaries to remove on SIGINT/SIGTERM/SIGHUP. The handler may only use async-signal-safe calls,
// so paths live in fixed slots of plain C strings that are claimed and released atomically.
// A directory's slot holds its path prefixed with 'D' (files: 'F'), so the handler knows to
// remove the tree: it forks and execs rm -rf, the async-signal-safe way to do that.
constexpr std::size_t k_temporary_slots = 256;
std::array<std::atomic<char*>, k_temporary_slots> g_temporaries{};

void remove_tree_from_signal_handler(const char* path) {
    const pid_t child = ::fork();
    if (child == 0) {
        const char* argv[] = {"rm", "-rf", "--", path, nullptr};
        ::execv("/bin/rm", const_cast<char* const*>(argv));
        ::_exit(127);
    }
    if (child > 0) {
        int status = 0;
        ::waitpid(child, &status, 0);
    }
}

extern "C" void cleanup_on_signal(int signal_number) {
    for (auto& slot : g_temporaries) {
        char* entry = slot.exchange(nullptr);
        if (entry == nullptr) {
            continue;
        }
        if (entry[0] == 'D') {
            remove_tree_from_signal_handler(entry + 1);
        } else {
            ::unlink(entry + 1);
        }
    }
    // Ends with 128 + N (130 for SIGINT, 143 for SIGTERM), the shell's convention, rather than
    // by the signal: callers see an exit status, never a process killed by a signal.
    ::_exit(128 + signal_number);
}

void claim_slot(char kind, const std::filesystem::path& path) {
    const std::string text = kind + path.string();
    char* copy = ::strdup(text.c_str());
    for (auto& slot : g_temporaries) {
        char* expected = nullptr;
        if (slot.compare_exchange_strong(expected, copy)) {
            return;
        }
    }
    std::free(copy); // All slots taken: the temporary is still removed by its owner's destructor.
}

std::string random_suffix() {
    static thread_local std::mt19937_64 generator{std::random_device{}()};
    static constexpr char k_alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    std::string suffix;
    for (int i = 0; i < 8; ++i) {
        suffix.push_back(k_alphabet[generator() % (sizeof k_alphabet - 1)]);
    }
    return suffix;
}

std::system_error file_error(int error, const std::string& what,
                             const std::filesystem::path& path) {
    return std::system_error(error, std::generic_category(), what + " " + path.string());
}

} // namespace

void install_interrupt_cleanup() {
    static std::atomic<bool> installed{false};
    if (installed.exchange(true)) {
        return;
    }
    struct sigaction action {};
    action.sa_handler = cleanup_on_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::sigaction(SIGHUP, &action, nullptr); // a closed terminal or SSH session
}

void register_temporary(const std::filesystem::path& path) {
    claim_slot('F', path);
}

void register_temporary_directory(const std::filesystem::path& path) {
    claim_slot('D', path);
}

void unregister_temporary(const std::filesystem::path& path) {
    for (auto& slot : g_temporaries) {
        char* current = slot.load();
        if (current != nullptr && path == current + 1 &&
            slot.compare_exchange_strong(current, nullptr)) {
            std::free(current);
            return;
        }
    }
}

AtomicFile::AtomicFile(std::filesystem::path final_path, Durability durability)
    : final_path_(std::move(final_path)), durability_(durability) {
    const auto directory = final_path_.parent_path();
    for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
        temp_path_ =
            directory / ("." + final_path_.filename().string() + ".tmp-" + random_suffix());
        fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd_ < 0 && errno != EEXIST) {
            throw file_error(errno, "cannot create", temp_path_);
        }
    }
    if (fd_ < 0) {
        throw file_error(EEXIST, "cannot create a temporary file for", final_path_);
    }
    register_temporary(temp_path_);
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
    if (!committed_) {
        ::unlink(temp_path_.c_str());
        unregister_temporary(temp_path_);
    }
}

void AtomicFile::write(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
        const ssize_t written = ::write(fd_, bytes, size);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw file_error(errno, "cannot write", temp_path_);
        }
        bytes += written;
        size -= static_cast<std::size_t>(written);
    }
}

void AtomicFile::commit() {
    const bool durable = durability_ == Durability::durable;
    if (durable && ::fsync(fd_) != 0) {
        throw file_error(errno, "cannot flush", temp_path_);
    }
    ::close(fd_);
    fd_ = -1;
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
        throw file_error(errno, "cannot rename into place", final_path_);
    }
    committed_ = true;
    unregister_temporary(temp_path_);
    if (durable) {
        flush_directory(final_path_.parent_path());
    }
}

TempDir::TempDir(const std::filesystem::path& parent, std::string_view prefix) {
    std::string pattern = (parent / (std::string(prefix) + "XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw file_error(errno, "cannot create a temporary directory in", parent);
    }
    path_ = pattern;
    register_temporary_directory(path_);
}

TempDir::~TempDir() {
    unregister_temporary(path_);
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

void write_file_atomically(const std::filesystem::path& file, std::string_view content) {
    AtomicFile out(file);
    out.write(content);
    out.commit();
}

std::string read_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw file_error(errno, "cannot read", file);
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) {
        throw file_error(errno, "error reading", file);
    }
    return buffer.str();
}

std::uint64_t available_space(const std::filesystem::path& path) {
    struct statvfs info {};
    if (::statvfs(path.c_str(), &info) != 0) {
        throw file_error(errno, "cannot query free space of", path);
    }
    return static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize;
}

PartialDirectory::PartialDirectory(std::filesystem::path final_path)
    : final_path_(std::move(final_path)) {
    path_ = final_path_;
    path_ += ".partial";
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored); // an earlier interrupted build's
    register_temporary_directory(path_);
}

PartialDirectory::~PartialDirectory() {
    if (armed_) {
        unregister_temporary(path_);
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
}

void PartialDirectory::commit() {
    std::filesystem::remove_all(final_path_);
    std::filesystem::rename(path_, final_path_);
    unregister_temporary(path_);
    armed_ = false;
}

} // namespace util
