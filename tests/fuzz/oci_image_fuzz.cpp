// OCI image layouts as others publish them: index.json, the manifest, the config and a layer,
// opened for amd64 and merged. Input: the index, the manifest, the config and the layer. The
// fuzzer cannot compute digests, so the harness writes each blob under its real digest and
// replaces the words @CONFIG@, @LAYER@ and @MANIFEST@ (and @CONFIG_SIZE@, @LAYER_SIZE@,
// @MANIFEST_SIZE@) in the JSON with the digests and sizes of the other parts.
#include <string>

#include "base/arch.h"
#include "fs/tree.h"
#include "fuzz_support.h"
#include "oci/image.h"
#include "oci/merge.h"
#include "oci/reference.h"
#include "util/digest.h"

namespace {

std::string substitute(std::string_view text, std::string_view word, std::string_view value) {
    std::string out;
    std::size_t at = 0;
    while (true) {
        const auto found = text.find(word, at);
        out.append(text.substr(at, found == std::string_view::npos ? text.npos : found - at));
        if (found == std::string_view::npos) {
            return out;
        }
        out.append(value);
        at = found + word.size();
    }
}

// Writes `bytes` as a blob and returns its digest.
std::string write_blob(const std::filesystem::path& layout, std::string_view bytes) {
    const std::string hex = util::sha256_hex(bytes);
    edgeforge::fuzz::write_file(layout / "blobs" / "sha256" / hex, bytes);
    return "sha256:" + hex;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fuzz = edgeforge::fuzz;
    const auto parts = fuzz::split_input(data, size, 4);
    const auto& directory = fuzz::scratch().fresh();
    const auto layout = directory / "layout";
    std::filesystem::create_directories(layout / "blobs" / "sha256");
    fuzz::write_file(layout / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");

    const std::string layer_digest = write_blob(layout, parts[3]);
    std::string config = substitute(parts[2], "@LAYER@", layer_digest);
    const std::string config_digest = write_blob(layout, config);
    std::string manifest = substitute(parts[1], "@CONFIG@", config_digest);
    manifest = substitute(manifest, "@LAYER@", layer_digest);
    manifest = substitute(manifest, "@CONFIG_SIZE@", std::to_string(config.size()));
    manifest = substitute(manifest, "@LAYER_SIZE@", std::to_string(parts[3].size()));
    const std::string manifest_digest = write_blob(layout, manifest);
    std::string index = substitute(parts[0], "@MANIFEST@", manifest_digest);
    index = substitute(index, "@MANIFEST_SIZE@", std::to_string(manifest.size()));
    fuzz::write_file(layout / "index.json", index);

    fuzz::expect_errors([&] {
        const auto reference = edgeforge::oci::parse_reference("oci:" + layout.string());
        edgeforge::oci::OpenOptions options;
        options.work_dir = directory;
        options.cache_dir = directory / "cache";
        const auto image = edgeforge::oci::open_image(reference, edgeforge::Arch(edgeforge::Arch::Id::amd64), options);
        edgeforge::fs::Tree tree;
        edgeforge::fs::SpillFile spill(directory);
        edgeforge::oci::merge_layers(image, tree, spill);
    });
    return 0;
}
