// Shared by the libFuzzer targets of tests/fuzz (see README.md there).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "util/fs.h"

namespace edgeforge::fuzz {

// Targets that read several files take them from one input, separated by this line, so that
// the seed corpora stay readable text (and the dictionary teaches the fuzzer the separator).
inline constexpr std::string_view k_separator = "\n--8<--\n";

// The first `count` parts of the input; missing parts are empty.
inline std::vector<std::string_view> split_input(const std::uint8_t* data, std::size_t size,
                                                 std::size_t count) {
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> parts;
    while (parts.size() + 1 < count) {
        const auto at = rest.find(k_separator);
        if (at == std::string_view::npos) {
            break;
        }
        parts.push_back(rest.substr(0, at));
        rest.remove_prefix(at + k_separator.size());
    }
    parts.push_back(rest);
    parts.resize(count);
    return parts;
}

// A scratch directory for one input: a fresh util::TempDir in $TMPDIR, the previous input's
// removed first (and the last one at exit, or by the interrupt cleanup).
class Scratch {
  public:
    const std::filesystem::path& fresh() {
        current_.reset();
        current_.emplace(std::filesystem::temp_directory_path(), "edgeforge-fuzz-");
        return current_->path();
    }

  private:
    std::optional<util::TempDir> current_;
};

inline Scratch& scratch() {
    static Scratch instance;
    return instance;
}

inline void write_file(const std::filesystem::path& file, std::string_view bytes) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        throw std::runtime_error("fuzz harness: cannot write " + file.string());
    }
}

// Runs `body`. edgeforge::Error is how edgeforge answers bad input, so it is caught; anything
// else (another exception, a crash, a sanitizer report, a leak) escapes and is a finding.
template <typename Body> void expect_errors(Body&& body) {
    try {
        body();
    } catch (const Error&) {
    }
}

} // namespace edgeforge::fuzz
