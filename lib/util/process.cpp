// Runs external programs from an argv vector (never through a shell) and captures their output.
#include "util/process.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/strings.h"

extern char** environ;

namespace util {
namespace {

struct Pipe {
    FileDescriptor read_end;
    FileDescriptor write_end;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            throw std::system_error(errno, std::generic_category(), "pipe");
        }
        read_end.reset(fds[0]);
        write_end.reset(fds[1]);
    }
};

} // namespace

std::optional<std::filesystem::path> find_program(const std::string& name) {
    if (name.find('/') != std::string::npos) {
        if (::access(name.c_str(), X_OK) == 0) {
            return std::filesystem::path(name);
        }
        return std::nullopt;
    }
    const char* path_env = std::getenv("PATH");
    std::vector<std::string> directories =
        split_list(path_env != nullptr ? path_env : "/usr/bin:/bin", ':');
    for (const char* extra : {"/usr/sbin", "/sbin", "/usr/local/sbin"}) {
        directories.emplace_back(extra);
    }
    for (const auto& directory : directories) {
        const auto candidate = std::filesystem::path(directory) / name;
        if (::access(candidate.c_str(), X_OK) == 0 && !std::filesystem::is_directory(candidate)) {
            return candidate;
        }
    }
    return std::nullopt;
}

ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options) {
    if (argv.empty()) {
        throw std::invalid_argument("run_process: empty argv");
    }
    // A child that exits without reading its input must not kill us with SIGPIPE.
    static const bool sigpipe_ignored = (std::signal(SIGPIPE, SIG_IGN), true);
    (void)sigpipe_ignored;
    const auto program = find_program(argv[0]);
    if (!program) {
        throw std::system_error(ENOENT, std::generic_category(),
                                "cannot run '" + argv[0] + "': not found on PATH");
    }

    Pipe out_pipe;
    Pipe err_pipe;
    Pipe in_pipe;

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe.read_end.get(), STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out_pipe.write_end.get(), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err_pipe.write_end.get(), STDERR_FILENO);
    if (options.working_directory) {
        posix_spawn_file_actions_addchdir_np(&actions, options.working_directory->c_str());
    }

    // Extra entries replace inherited ones of the same name (getenv takes the first match).
    const auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
    std::vector<std::string> environment_storage;
    for (char** entry = environ; *entry != nullptr; ++entry) {
        const std::string_view inherited(*entry);
        const bool overridden =
            std::any_of(options.extra_environment.begin(), options.extra_environment.end(),
                        [&](const std::string& extra) { return name_of(extra) == name_of(inherited); });
        if (!overridden) {
            environment_storage.emplace_back(inherited);
        }
    }
    for (const auto& extra : options.extra_environment) {
        environment_storage.push_back(extra);
    }
    std::vector<char*> environment;
    for (auto& entry : environment_storage) {
        environment.push_back(entry.data());
    }
    environment.push_back(nullptr);

    std::vector<std::string> argv_storage = argv;
    std::vector<char*> arguments;
    for (auto& argument : argv_storage) {
        arguments.push_back(argument.data());
    }
    arguments.push_back(nullptr);

    pid_t pid = 0;
    const int spawn_error = ::posix_spawn(&pid, program->c_str(), &actions, nullptr,
                                          arguments.data(), environment.data());
    posix_spawn_file_actions_destroy(&actions);
    if (spawn_error != 0) {
        throw std::system_error(spawn_error, std::generic_category(),
                                "cannot run '" + argv[0] + "'");
    }
    out_pipe.write_end.reset();
    err_pipe.write_end.reset();
    in_pipe.read_end.reset();

    ProcessResult result;
    const std::string input = options.standard_input.value_or("");
    std::size_t input_offset = 0;
    if (input.empty()) {
        in_pipe.write_end.reset();
    } else {
        // Non-blocking, so a large input never blocks us while the child waits for us to
        // drain its output.
        ::fcntl(in_pipe.write_end.get(), F_SETFL,
                ::fcntl(in_pipe.write_end.get(), F_GETFL) | O_NONBLOCK);
    }

    // Drain both output pipes and feed stdin without deadlocking on full pipe buffers.
    while (out_pipe.read_end.get() >= 0 || err_pipe.read_end.get() >= 0) {
        pollfd fds[3];
        nfds_t count = 0;
        const auto add = [&](int fd, short events) {
            if (fd >= 0) {
                fds[count++] = pollfd{fd, events, 0};
            }
        };
        add(out_pipe.read_end.get(), POLLIN);
        add(err_pipe.read_end.get(), POLLIN);
        add(in_pipe.write_end.get(), POLLOUT);
        if (::poll(fds, count, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        for (nfds_t i = 0; i < count; ++i) {
            if (fds[i].revents == 0) {
                continue;
            }
            if (fds[i].fd == in_pipe.write_end.get()) {
                const ssize_t written =
                    ::write(fds[i].fd, input.data() + input_offset, input.size() - input_offset);
                if (written > 0) {
                    input_offset += static_cast<std::size_t>(written);
                }
                if ((written < 0 && errno != EAGAIN) || input_offset >= input.size()) {
                    in_pipe.write_end.reset();
                }
                continue;
            }
            char buffer[65536];
            const ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
            if (got <= 0) {
                if (fds[i].fd == out_pipe.read_end.get()) {
                    out_pipe.read_end.reset();
                } else {
                    err_pipe.read_end.reset();
                }
                continue;
            }
            auto& sink = fds[i].fd == out_pipe.read_end.get() ? result.standard_output
                                                              : result.standard_error;
            sink.append(buffer, static_cast<std::size_t>(got));
        }
    }
    in_pipe.write_end.reset();

    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "waitpid");
        }
    }
    if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.exit_code = 128 + WTERMSIG(status);
    }
    return result;
}

} // namespace util
