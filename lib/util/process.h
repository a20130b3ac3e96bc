// Runs external programs from an argv vector (never through a shell) and captures their output.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace util {

struct ProcessResult {
    int exit_code = -1; // exit status, or 128 + signal number when killed
    std::string standard_output;
    std::string standard_error;
};

struct ProcessOptions {
    // Extra environment entries ("NAME=value") added to the inherited environment.
    std::vector<std::string> extra_environment;
    std::optional<std::filesystem::path> working_directory;
    // When set, written to the child's standard input.
    std::optional<std::string> standard_input;
};

// Runs argv[0] (looked up on PATH) with the given arguments and waits for it.
// Throws std::system_error when the program cannot be started at all.
ProcessResult run_process(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// The full path of an executable found on PATH (or in the sbin directories Debian uses for
// tools such as mkfs.fat, which ordinary users often lack on PATH).
std::optional<std::filesystem::path> find_program(const std::string& name);

} // namespace util
