#include "oci/pull_progress.h"

#include <memory>

namespace edgeforge::oci {

void show_pull_progress(OpenOptions& options, const Console& console) {
    options.on_progress = [&console](const std::string& line) { console.info("{}", line); };
    auto bar = std::make_shared<std::unique_ptr<Progress>>(); // one bar per image being pulled
    options.on_pull_bytes = [&console, bar](std::uint64_t done, std::uint64_t total) {
        if (!*bar) {
            *bar = std::make_unique<Progress>(console, "pull layers", total);
        }
        (*bar)->update(done);
        if (done >= total) {
            (*bar)->finish();
            bar->reset();
        }
    };
}

} // namespace edgeforge::oci
