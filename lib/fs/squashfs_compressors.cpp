// The squashfs compressors edgeforge offers: their names and the one rule for their levels.
#include <fmt/format.h>

#include <sqfs/compressor.h>

#include "fs/squashfs.h"

namespace edgeforge::fs {

std::string_view squashfs_compressor_name(SquashfsCompressor compressor) {
    switch (compressor) {
    case SquashfsCompressor::zstd:
        return "zstd";
    case SquashfsCompressor::gzip:
        return "gzip";
    case SquashfsCompressor::xz:
        return "xz";
    case SquashfsCompressor::lz4:
        return "lz4";
    }
    return "zstd";
}

std::optional<SquashfsCompressor> parse_squashfs_compressor(std::string_view name) {
    for (const auto compressor : {SquashfsCompressor::zstd, SquashfsCompressor::gzip,
                                  SquashfsCompressor::xz, SquashfsCompressor::lz4}) {
        if (squashfs_compressor_name(compressor) == name) {
            return compressor;
        }
    }
    return std::nullopt;
}

std::vector<std::string_view> squashfs_compressor_names() {
    return {"zstd", "gzip", "xz", "lz4"};
}

SquashfsLevelRange squashfs_level_range(SquashfsCompressor compressor) {
    switch (compressor) {
    case SquashfsCompressor::zstd:
        return {SQFS_ZSTD_MIN_LEVEL, SQFS_ZSTD_MAX_LEVEL};
    case SquashfsCompressor::gzip:
        return {SQFS_GZIP_MIN_LEVEL, SQFS_GZIP_MAX_LEVEL};
    case SquashfsCompressor::xz:
        // xz has a level 0, but 0 means "the default" here, as everywhere in edgeforge.
        return {1, SQFS_XZ_MAX_LEVEL};
    case SquashfsCompressor::lz4:
        return {0, 0};
    }
    return {};
}

std::optional<std::string> squashfs_level_problem(SquashfsCompressor compressor, int level) {
    const auto range = squashfs_level_range(compressor);
    if (level == 0 || (level >= range.low && level <= range.high)) {
        return std::nullopt;
    }
    const auto name = squashfs_compressor_name(compressor);
    if (range.high == 0) {
        return fmt::format("level {} does not fit the {} compressor: {} has no levels; use 0",
                           level, name, name);
    }
    return fmt::format("level {} does not fit the {} compressor: {} takes {} to {} (0 picks its "
                       "default)",
                       level, name, name, range.low, range.high);
}

int effective_squashfs_level(SquashfsCompressor compressor, int level) {
    if (level != 0) {
        return level;
    }
    switch (compressor) {
    case SquashfsCompressor::zstd:
        return k_default_zstd_level;
    case SquashfsCompressor::gzip:
        return SQFS_GZIP_DEFAULT_LEVEL;
    case SquashfsCompressor::xz:
        return SQFS_XZ_DEFAULT_LEVEL;
    case SquashfsCompressor::lz4:
        return 0;
    }
    return 0;
}

} // namespace edgeforge::fs
