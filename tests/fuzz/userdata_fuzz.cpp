// User-data and per-site files: validation as `validate user-data` does it, and a site file
// merged over the org user-data as `build iso --sites` does. Input: the org user-data, then
// the site file.
#include "fuzz_support.h"
#include "userdata/merge.h"
#include "userdata/validate.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fuzz = edgeforge::fuzz;
    namespace userdata = edgeforge::userdata;
    const auto parts = fuzz::split_input(data, size, 2);
    fuzz::expect_errors([&] {
        const auto report = userdata::validate_text(parts[0], "user-data.yaml");
        (void)userdata::render_report(report);
        (void)userdata::report_to_json(report).dump();
    });
    fuzz::expect_errors([&] {
        const auto merged =
            userdata::merge_user_data(parts[0], "user-data.yaml", parts[1], "sites/store.yaml");
        const auto report = userdata::validate_merged(merged, "sites/store.yaml");
        (void)userdata::render_report(report);
    });
    return 0;
}
