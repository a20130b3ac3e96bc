// Tar layers merged into a root filesystem tree: whiteouts, opaque directories, hard and
// symbolic links, pax headers, compressed streams. Input: the lower layer, then the upper one
// (plain tar, or gzip/zstd/xz: libarchive detects it), merged as an image's layers are.
#include "fs/tree.h"
#include "fuzz_support.h"
#include "oci/merge.h"

namespace {

void check_tree(const edgeforge::fs::Tree& tree, const edgeforge::fs::SpillFile& spill) {
    tree.walk([&](const edgeforge::fs::WalkEntry& entry) {
        // No name may escape the tree or be empty.
        if (entry.depth > 0 && (entry.name.empty() || entry.name == "." || entry.name == ".." ||
                                entry.name.find('/') != std::string_view::npos)) {
            __builtin_trap();
        }
        if (entry.inode.is_regular()) {
            std::uint64_t bytes = 0;
            edgeforge::fs::read_data(entry.inode, spill,
                                     [&](const char*, std::size_t count) { bytes += count; });
            if (bytes != entry.inode.size()) {
                __builtin_trap();
            }
        }
    });
    (void)tree.stats();
    (void)tree.link_counts();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace fuzz = edgeforge::fuzz;
    const auto parts = fuzz::split_input(data, size, 2);
    const auto& directory = fuzz::scratch().fresh();
    std::vector<edgeforge::oci::Layer> layers;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        edgeforge::oci::Layer layer;
        layer.path = directory / ("layer" + std::to_string(i) + ".tar");
        layer.media_type = "application/vnd.oci.image.layer.v1.tar";
        layer.size = parts[i].size();
        fuzz::write_file(layer.path, parts[i]);
        layers.push_back(layer);
    }
    fuzz::expect_errors([&] {
        edgeforge::fs::Tree tree;
        edgeforge::fs::SpillFile spill(directory);
        for (const auto& layer : layers) {
            edgeforge::oci::apply_layer(layer, "fuzz", tree, spill);
        }
        check_tree(tree, spill);
    });
    return 0;
}
