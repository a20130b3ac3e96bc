// Test support: tests/fixtures/fake-aws (a local, signature-verifying EBS/EC2 endpoint) run as a
// child process for the lifetime of one object.
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "util/fs.h"
#include "util/process.h"

extern char** environ;

namespace edgeforge::testing {

inline std::filesystem::path fake_aws_script() {
    return std::filesystem::path(EDGEFORGE_SOURCE_DIR) / "tests" / "fixtures" / "fake-aws";
}

// Starts fake-aws on a port the kernel picks (no race for a "free" port) and stops it when
// destroyed. util::run_process waits for its child, so this spawns the server itself.
class FakeAws {
  public:
    explicit FakeAws(const std::vector<std::string>& extra_arguments = {}) {
        const auto python = util::find_program("python3");
        if (!python) {
            throw std::runtime_error("python3 is needed to run tests/fixtures/fake-aws");
        }
        const auto port_file = dir_.path() / "port";
        std::vector<std::string> arguments = {python->string(), fake_aws_script().string(),
                                              "--port-file",    port_file.string(),
                                              "--summary",      summary_path().string()};
        arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
        std::vector<char*> argv;
        for (auto& argument : arguments) {
            argv.push_back(argument.data());
        }
        argv.push_back(nullptr);

        const std::string log_file = log_path().string();
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
        const int error =
            ::posix_spawn(&pid_, python->c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (error != 0) {
            throw std::runtime_error("cannot start fake-aws");
        }

        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!std::filesystem::exists(port_file)) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("fake-aws exited before listening:\n" + log());
            }
            if (std::chrono::steady_clock::now() > deadline) {
                stop();
                throw std::runtime_error("fake-aws did not start listening:\n" + log());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        port_ = std::stoi(util::read_file(port_file));
    }
    ~FakeAws() { stop(); }
    FakeAws(const FakeAws&) = delete;
    FakeAws& operator=(const FakeAws&) = delete;

    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    nlohmann::json summary() const {
        return nlohmann::json::parse(util::read_file(summary_path()));
    }
    std::string log() const {
        std::ifstream in(log_path());
        std::ostringstream text;
        text << in.rdbuf();
        return text.str();
    }

  private:
    std::filesystem::path summary_path() const { return dir_.path() / "summary.json"; }
    std::filesystem::path log_path() const { return dir_.path() / "log"; }

    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
        }
    }

    util::TempDir dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

} // namespace edgeforge::testing
