// The readers behind `inspect ARTIFACT`, on the artifact's bytes held in memory: format
// detection, the ISO 9660 volume and El Torito catalog, GPT and MBR partition tables, QCOW2 and
// sparse VMDK headers, and the squashfs superblock. The input is the whole artifact.
#include <span>

#include "formats/iso_reader.h"
#include "fs/gpt.h"
#include "fs/squashfs_superblock.h"
#include "fuzz_support.h"
#include "inspect/detect.h"
#include "inspect/structure.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace inspect = edgeforge::inspect;
    const std::span<const std::uint8_t> artifact(data, size);
    const inspect::ReadAt read = [&](std::uint64_t offset, std::size_t count) {
        std::vector<std::uint8_t> bytes;
        if (offset < size) {
            const auto available = static_cast<std::size_t>(size - offset);
            const auto begin = artifact.begin() + static_cast<std::ptrdiff_t>(offset);
            bytes.assign(begin, begin + static_cast<std::ptrdiff_t>(std::min(count, available)));
        }
        return bytes;
    };
    edgeforge::fuzz::expect_errors([&] {
        const auto format =
            inspect::detect_format(artifact.first(std::min(size, inspect::k_detect_bytes)));
        // Every format's checks, not only the detected one's: each must cope with any bytes.
        for (const auto each : {inspect::ArtifactFormat::iso, inspect::ArtifactFormat::raw,
                                inspect::ArtifactFormat::qcow2, inspect::ArtifactFormat::vmdk,
                                format}) {
            (void)inspect::structure_problems(each, size, read);
        }
        (void)edgeforge::fs::read_partition_table(read);
        (void)edgeforge::formats::read_iso_volume(
            [&](std::uint32_t block) { return read(std::uint64_t{block} * 2048, 2048); });
        (void)edgeforge::fs::parse_squashfs_superblock(artifact);
    });
    return 0;
}
