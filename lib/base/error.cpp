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

void Diagnostics::absorb_for_item(const Diagnostics& item, const std::vector<std::string>& names,
                                  std::string_view noun) {
    // Longest names first, so a tag is taken out before the version it contains.
    std::vector<std::string> sorted = names;
    std::sort(sorted.begin(), sorted.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    std::vector<std::string> seen;
    for (const auto& message : item.messages_) {
        std::string key = message;
        for (const auto& name : sorted) {
            if (name.empty()) {
                continue;
            }
            std::string rest;
            std::size_t from = 0;
            for (std::size_t at = key.find(name); at != std::string::npos;
                 at = key.find(name, from)) {
                rest.append(key, from, at - from).push_back('\x01');
                from = at + name.size();
            }
            rest.append(key, from, std::string::npos);
            key = std::move(rest);
        }
        if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
            continue; // one item counts once (the same problem on both of its arches)
        }
        seen.push_back(key);
        auto found = std::find_if(shared_.begin(), shared_.end(),
                                  [&key](const Shared& entry) { return entry.key == key; });
        if (found == shared_.end()) {
            if (std::find(messages_.begin(), messages_.end(), message) == messages_.end()) {
                shared_.push_back({key, messages_.size(), message, 1});
                messages_.push_back(message);
            }
            continue;
        }
        ++found->count;
        messages_[found->index] =
            fmt::format("{} {} have this problem; the first: {}", found->count, noun, found->first);
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
