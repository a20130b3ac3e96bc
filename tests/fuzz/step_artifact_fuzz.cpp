// Step artifacts of the remote build cache (build/remote_cache): manifests and configs that
// whoever can push to the cache repository wrote. Input: a manifest, a NUL, then a config.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "base/error.h"
#include "build/remote_cache.h"
#include "build/step_cache.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace edgeforge;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const auto split = input.find('\0');
    const std::string_view manifest = input.substr(0, split);
    const std::string_view config =
        split == std::string_view::npos ? std::string_view() : input.substr(split + 1);
    try {
        const StepManifest parsed = parse_step_manifest(manifest);
        // What a pull writes into the entry: one safe name per layer, never a path.
        for (const auto& layer : parsed.layers) {
            const std::string& title = layer.annotations.at("org.opencontainers.image.title");
            if (title.empty() || title.front() == '.' || title.find('/') != std::string::npos ||
                title == "inputs.json") {
                std::abort();
            }
        }
    } catch (const Error&) {
    }
    const std::string key = StepCache::key_of(nlohmann::json{{"a", 1}});
    try {
        (void)parse_step_config(config, "rootfs", key);
    } catch (const Error&) {
    }
    return 0;
}
