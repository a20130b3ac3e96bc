// What edgeforge tells its user: messages on stderr, results on stdout, progress on long steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace edgeforge {

enum class Verbosity { quiet, normal, verbose };

// How progress is shown: a redrawn bar on a terminal, periodic plain lines in logs and CI,
// JSON lines on stderr with --json, or nothing with --quiet/--no-progress.
enum class ProgressStyle { none, bar, lines, json };

struct ConsoleOptions {
    Verbosity verbosity = Verbosity::normal;
    bool json = false;    // stdout carries one JSON document; people-text goes to stderr
    bool progress = true; // --no-progress turns it off
    bool stderr_is_terminal = false;
};

class Console {
  public:
    explicit Console(ConsoleOptions options = {});

    const ConsoleOptions& options() const { return options_; }
    ProgressStyle progress_style() const;

    // Step-level news ("building rootfs.squashfs"): stderr, hidden with --quiet.
    template <typename... Args>
    void info(fmt::format_string<Args...> format, Args&&... args) const {
        if (options_.verbosity != Verbosity::quiet) {
            write_err(fmt::format(format, std::forward<Args>(args)...));
        }
    }
    // Detail for -v.
    template <typename... Args>
    void detail(fmt::format_string<Args...> format, Args&&... args) const {
        if (options_.verbosity == Verbosity::verbose) {
            write_err(fmt::format(format, std::forward<Args>(args)...));
        }
    }
    template <typename... Args>
    void warning(fmt::format_string<Args...> format, Args&&... args) const {
        write_err("edgeforge: warning: " + fmt::format(format, std::forward<Args>(args)...));
    }
    // A problem that does not stop the command (one failed site of many); shown even with -q.
    template <typename... Args>
    void error(fmt::format_string<Args...> format, Args&&... args) const {
        write_err("edgeforge: error: " + fmt::format(format, std::forward<Args>(args)...));
    }
    // A command's human-readable output (tables, summaries): stdout unless --json.
    void print(std::string_view text) const;
    // A command's machine-readable result: stdout, only with --json.
    void print_json(const nlohmann::json& result) const;

    void write_err(std::string_view line) const;

  private:
    ConsoleOptions options_;
};

// Formats one progress bar line, e.g.
// "squashfs  [#########...........]  45%  120.0 MiB / 266.0 MiB  ETA 12s".
std::string render_progress_bar(std::string_view label, std::uint64_t done, std::uint64_t total,
                                double elapsed_seconds, std::size_t bar_width = 24);

// Progress of one long step in bytes. Cheap to call often: output is throttled.
class Progress {
  public:
    Progress(const Console& console, std::string label, std::uint64_t total_bytes);
    ~Progress();
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    void advance(std::uint64_t bytes) { update(done_ + bytes); }
    // For steps that learn their size only once they start (the ISO image size).
    void set_total(std::uint64_t total_bytes) { total_ = total_bytes; }
    void update(std::uint64_t done_bytes);
    void finish();

  private:
    void emit(bool final);

    const Console& console_;
    std::string label_;
    std::uint64_t total_;
    std::uint64_t done_ = 0;
    ProgressStyle style_;
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point last_emit_;
    int last_decile_ = -1;
    bool finished_ = false;
};

} // namespace edgeforge
