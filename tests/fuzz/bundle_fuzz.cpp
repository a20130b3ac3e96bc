// Content bundles as they arrive at an air-gapped site: the archive (tar.zst with bundle.json)
// read by `content ls`, and a split bundle's parts index checked by `content verify`. Input: the
// archive bytes, then the parts index JSON (whose parts name content.tar.zst.part-000 ...), then
// the bytes of part 000.
#include "content/bundle.h"
#include "content/parts.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fuzz = edgeforge::fuzz;
    namespace content = edgeforge::content;
    const auto parts = fuzz::split_input(data, size, 3);
    const auto& directory = fuzz::scratch().fresh();
    const auto archive = directory / "apps.tar.zst";
    fuzz::write_file(archive, parts[0]);
    fuzz::expect_errors([&] {
        const auto manifest = content::read_bundle_manifest_json(archive);
        (void)content::render_listing(manifest);
    });
    fuzz::expect_errors([&] { (void)content::verify_bundle(archive, {}); });

    const auto split = directory / "split";
    std::filesystem::create_directories(split);
    fuzz::write_file(split / "content.tar.zst.parts.json", parts[1]);
    fuzz::write_file(split / "content.tar.zst.part-000", parts[2]);
    fuzz::expect_errors([&] { (void)content::PartsIndex::read(split / "content.tar.zst.parts.json"); });
    fuzz::expect_errors([&] {
        const auto result = content::verify_bundle(split / "content.tar.zst.parts.json", {});
        (void)result.to_json().dump();
    });
    return 0;
}
