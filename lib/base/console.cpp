// What edgeforge tells its user: messages on stderr, results on stdout, progress on long steps.
#include "base/console.h"

#include <algorithm>
#include <cstdio>

#include "util/strings.h"

namespace edgeforge {

Console::Console(ConsoleOptions options) : options_(options) {}

ProgressStyle Console::progress_style() const {
    if (!options_.progress || options_.verbosity == Verbosity::quiet) {
        return ProgressStyle::none;
    }
    if (options_.json) {
        return ProgressStyle::json;
    }
    return options_.stderr_is_terminal ? ProgressStyle::bar : ProgressStyle::lines;
}

void Console::print(std::string_view text) const {
    if (options_.json) {
        return;
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

void Console::print_json(const nlohmann::json& result) const {
    if (!options_.json) {
        return;
    }
    // Text from other people's files may hold bytes that are not UTF-8: shown as U+FFFD, never
    // an exception halfway through the output.
    const std::string text =
        result.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

void Console::write_err(std::string_view line) const {
    std::string text(line);
    if (text.empty() || text.back() != '\n') {
        text.push_back('\n');
    }
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
}

std::string render_progress_bar(std::string_view label, std::uint64_t done, std::uint64_t total,
                                double elapsed_seconds, std::size_t bar_width) {
    const double fraction =
        total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
    const auto filled = static_cast<std::size_t>(fraction * static_cast<double>(bar_width));
    std::string bar(filled, '#');
    bar.append(bar_width - filled, '.');
    std::string eta = "--";
    if (fraction >= 1.0) {
        eta = "0s";
    } else if (fraction > 0.0 && elapsed_seconds > 0.5) {
        eta = util::format_duration(elapsed_seconds * (1.0 - fraction) / fraction);
    }
    return fmt::format("{}  [{}] {:3.0f}%  {} / {}  ETA {}", label, bar, fraction * 100.0,
                       util::format_bytes(done), util::format_bytes(total), eta);
}

Progress::Progress(const Console& console, std::string label, std::uint64_t total_bytes)
    : console_(console), label_(std::move(label)), total_(total_bytes),
      style_(console.progress_style()), start_(std::chrono::steady_clock::now()),
      last_emit_(start_) {
    // A bar appears at once; log lines only for steps that take a while (see update()).
    if (style_ == ProgressStyle::bar) {
        emit(false);
    }
}

Progress::~Progress() {
    if (!finished_ && style_ == ProgressStyle::bar) {
        std::fputs("\n", stderr); // leave the interrupted bar on its own line
    }
}

void Progress::update(std::uint64_t done_bytes) {
    done_ = done_bytes;
    const auto now = std::chrono::steady_clock::now();
    const auto since = now - last_emit_;
    const int decile =
        total_ == 0 ? 10 : static_cast<int>(done_ * 10 / std::max<std::uint64_t>(total_, 1));
    bool due = false;
    switch (style_) {
    case ProgressStyle::none:
        return;
    case ProgressStyle::bar:
        due = since >= std::chrono::milliseconds(100);
        break;
    case ProgressStyle::lines:
    case ProgressStyle::json:
        // Logs get a line per 10% at most every 5 s, so short steps print only their summary.
        due = (decile != last_decile_ && since >= std::chrono::seconds(5)) ||
              since >= std::chrono::seconds(30);
        break;
    }
    if (due) {
        emit(false);
    }
}

void Progress::finish() {
    if (finished_) {
        return;
    }
    done_ = std::max(done_, total_);
    emit(true);
    finished_ = true;
}

void Progress::emit(bool final) {
    const auto now = std::chrono::steady_clock::now();
    last_emit_ = now;
    last_decile_ =
        total_ == 0 ? 10 : static_cast<int>(done_ * 10 / std::max<std::uint64_t>(total_, 1));
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    switch (style_) {
    case ProgressStyle::none:
        return;
    case ProgressStyle::bar: {
        const std::string line = "\r" + render_progress_bar(label_, done_, total_, elapsed) +
                                 "\033[K" + (final ? "\n" : "");
        std::fputs(line.c_str(), stderr);
        std::fflush(stderr);
        return;
    }
    case ProgressStyle::lines:
        console_.write_err(
            fmt::format("{}: {}% ({} of {}){}", label_, total_ == 0 ? 100 : done_ * 100 / total_,
                        util::format_bytes(done_), util::format_bytes(total_),
                        final ? fmt::format(" in {}", util::format_duration(elapsed)) : ""));
        return;
    case ProgressStyle::json: {
        const nlohmann::json event{{"event", final ? "done" : "progress"},
                                   {"step", label_},
                                   {"done_bytes", done_},
                                   {"total_bytes", total_},
                                   {"elapsed_seconds", elapsed}};
        console_.write_err(event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        return;
    }
    }
}

} // namespace edgeforge
