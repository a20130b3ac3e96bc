// The error type every layer throws for problems a user must act on, and its exit codes.
#include "base/error.h"

#include <algorithm>

namespace edgeforge {

std::string SourceLocation::str() const {
    if (line <= 0) {
        return file;
    }
    if (column <= 0) {
        return fmt::format("{}:{}", file, line);
    }
    return fmt::format("{}:{}:{}", file, line, column);
}

void Diagnostics::error(const SourceLocation& where, std::string message) {
    const std::string prefix = where.str();
    std::string text = prefix.empty() ? std::move(message) : prefix + ": " + message;
    // The same problem found twice (one input used for several arches or images) is one.
    if (std::find(messages_.begin(), messages_.end(), text) == messages_.end()) {
        messages_.push_back(std::move(text));
    }
}

void Diagnostics::absorb(const Error& failure) {
    for (auto& problem : failure.problems()) {
        error({}, std::move(problem));
    }
}

void Diagnostics::throw_if_any() const {
    if (messages_.empty()) {
        return;
    }
    if (messages_.size() == 1) {
        throw Error(ExitCode::bad_input, messages_.front());
    }
    std::string text = fmt::format("{} problems found:", messages_.size());
    for (const auto& message : messages_) {
        text += "\n  " + message;
    }
    throw Error(ExitCode::bad_input, text, messages_);
}

} // namespace edgeforge
