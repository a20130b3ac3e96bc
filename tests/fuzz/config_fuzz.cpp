// A project's settings files: edgeforge.yaml, .arg and .installer.env, with ${VAR} expansion,
// resolved as every command does, then shown as `config show` does. Input: the three files.
#include <map>
#include <stdexcept>

#include "build/config.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fuzz = edgeforge::fuzz;
    const auto parts = fuzz::split_input(data, size, 3);
    const auto& directory = fuzz::scratch().fresh();
    fuzz::write_file(directory / "edgeforge.yaml", parts[0]);
    fuzz::write_file(directory / ".arg", parts[1]);
    fuzz::write_file(directory / ".installer.env", parts[2]);

    // A fixed environment, so that findings reproduce on any machine.
    static const std::map<std::string, std::string> environment = {
        {"HOME", "/home/fuzz"}, {"VERSION", "v1.2.3"}, {"EMPTY", ""}};
    edgeforge::ConfigInputs inputs;
    inputs.working_dir = directory;
    inputs.environment = [](const std::string& name) -> std::optional<std::string> {
        const auto found = environment.find(name);
        return found == environment.end() ? std::nullopt : std::optional(found->second);
    };
    fuzz::expect_errors([&] {
        const auto config = edgeforge::resolve_config(inputs);
        (void)edgeforge::render_config_table(config);
        (void)edgeforge::config_to_json(config).dump();
    });
    // expand_variables() alone answers an unset variable with std::invalid_argument, which
    // resolve_config() turns into Error with the position (its documented contract).
    try {
        (void)edgeforge::expand_variables(parts[0], inputs.environment);
    } catch (const std::invalid_argument&) {
    }
    return 0;
}
