// The error type every layer throws for problems a user must act on, and its exit codes.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace edgeforge {

// Process exit codes, the contract scripts and CI pipelines rely on.
enum class ExitCode : int {
    success = 0,
    build_failed = 1, // the inputs were fine but producing an artifact failed
    bad_input = 2,    // bad usage, configuration, user-data or image reference
};

// Where in an input a problem was found: "edgeforge.yaml:4:3", ".arg:7", "--arch", "$VAR".
struct SourceLocation {
    std::string file; // a file path, or a description such as "--arch" or "environment"
    int line = 0;     // 1-based; 0 when not applicable
    int column = 0;   // 1-based; 0 when not applicable

    std::string str() const;
};

// A problem the user can fix. The message is printed as "edgeforge: error: <message>" by the
// single catch in main; the exit code says whether the input or the build was at fault.
class Error : public std::runtime_error {
  public:
    Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    // One error reporting several problems (Diagnostics): `message` lists them all.
    Error(ExitCode code, const std::string& message, std::vector<std::string> problems)
        : std::runtime_error(message), code_(code), problems_(std::move(problems)) {}
    ExitCode code() const { return code_; }
    // Each problem on its own: the listed ones, or the message when it is a single problem.
    std::vector<std::string> problems() const {
        return problems_.empty() ? std::vector<std::string>{what()} : problems_;
    }

  private:
    ExitCode code_;
    std::vector<std::string> problems_;
};

// A file could not be written or created (disk full, read-only, over quota; errno in
// error_number()): a build failure where the file is needed, but a caller writing an optional copy
// (an unpacked layer in the cache) catches it and goes on without the copy.
class WriteFailed : public Error {
  public:
    WriteFailed(const std::string& message, int error_number)
        : Error(ExitCode::build_failed, message), error_number_(error_number) {}
    int error_number() const { return error_number_; }

  private:
    int error_number_;
};

template <typename... Args> Error bad_input(fmt::format_string<Args...> format, Args&&... args) {
    return Error(ExitCode::bad_input, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args> Error build_failed(fmt::format_string<Args...> format, Args&&... args) {
    return Error(ExitCode::build_failed, fmt::format(format, std::forward<Args>(args)...));
}

// Collects every problem of one phase so they are reported together, then stops.
class Diagnostics {
  public:
    void error(const SourceLocation& where, std::string message);
    bool empty() const { return messages_.empty(); }
    std::size_t size() const { return messages_.size(); }
    const std::vector<std::string>& messages() const { return messages_; }
    // Takes over the problems an Error of another phase's Diagnostics listed (one or many).
    void absorb(const Error& error);
    // Takes over the problems found for one of many similar items (one provider image of a
    // matrix): a problem that differs between items only by the item's own names (`names`: its
    // tag, version, arch) is reported once, for the first item, with how many items share it
    // ("58 provider images have this problem; the first: ..."), not once per item.
    void absorb_for_item(const Diagnostics& item, const std::vector<std::string>& names,
                         std::string_view noun);
    // Throws one bad_input Error listing every collected message, if there are any.
    void throw_if_any() const;

  private:
    struct Shared {
        std::string key;   // the problem with the item's names taken out
        std::size_t index; // its entry in messages_
        std::string first; // the first item's message
        std::size_t count = 0;
    };
    std::vector<std::string> messages_;
    std::vector<Shared> shared_;
};

} // namespace edgeforge
