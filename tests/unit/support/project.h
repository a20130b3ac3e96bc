// Test support: a scratch project directory with its own environment and flags.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "build/config.h"
#include "support/errors.h"
#include "util/fs.h"

namespace edgeforge::testing {

// A scratch project directory with an injected environment, so tests never read the real one.
struct Project {
    util::TempDir dir;
    std::map<std::string, std::string> environment;
    std::vector<FlagValue> flags;

    void write(const std::string& name, const std::string& content) {
        std::filesystem::create_directories((dir.path() / name).parent_path());
        util::write_file_atomically(dir.path() / name, content);
    }
    // An (empty) OCI layout at `directory`: plans check that local image sources exist.
    void write_image_layout(const std::string& directory) {
        write(directory + "/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}\n");
    }
    ConfigInputs inputs() const {
        ConfigInputs in;
        in.working_dir = dir.path();
        in.environment = [env =
                              environment](const std::string& name) -> std::optional<std::string> {
            const auto it = env.find(name);
            return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        in.flags = flags;
        return in;
    }
    Config resolve() const { return resolve_config(inputs()); }
    // The message of the Error `action` throws (bad input), with the scratch path made stable.
    template <typename Action> std::string error_of(Action&& action) const {
        std::string text = testing::error_of(std::forward<Action>(action), ExitCode::bad_input);
        const std::string root = dir.path().string();
        for (auto pos = text.find(root); pos != std::string::npos; pos = text.find(root)) {
            text.replace(pos, root.size(), "<dir>");
        }
        return text;
    }
    // The message of the error configuration resolution throws.
    std::string error() const {
        return error_of([this] { resolve(); });
    }
};

} // namespace edgeforge::testing
