// Unit tests for the squashfs writer's caches: the block cache and the kept base region, judged
// by byte-identity with images written without them and by squashfs-tools.
#include <doctest/doctest.h>

#include "fs/squashfs_block_cache.h"
#include "fs/squashfs_region.h"
#include "squashfs_sample.h"

TEST_CASE("squashfs: the block cache gives byte-identical images and drops damaged entries") {
    util::TempDir cache;
    for (const auto compressor : {fs::SquashfsCompressor::zstd, fs::SquashfsCompressor::gzip,
                                  fs::SquashfsCompressor::xz, fs::SquashfsCompressor::lz4}) {
        CAPTURE(fs::squashfs_compressor_name(compressor));
        Sample sample;
        auto plain = fixed_time_options();
        plain.compressor = compressor;
        const auto cold = sample.image("cold.squashfs");
        fs::write_squashfs(sample.tree, sample.spill, plain, cold);

        auto cached = plain;
        cached.block_cache_dir = cache.path();
        const auto first = sample.image("first.squashfs");
        const auto filled = fs::write_squashfs(sample.tree, sample.spill, cached, first);
        CHECK(filled.block_cache);
        CHECK(filled.cache_misses >= 3); // the big file's full blocks, at least
        CHECK(util::read_file(first) == util::read_file(cold));

        // Every block again: copied from the cache, not compressed; the same bytes.
        const auto second = sample.image("second.squashfs");
        const auto warm = fs::write_squashfs(sample.tree, sample.spill, cached, second);
        CHECK(warm.cache_misses == 0);
        CHECK(warm.cache_hits == filled.cache_misses + filled.cache_hits);
        CHECK(warm.cache_reused_bytes >= 3 * k_mib);
        CHECK(util::read_file(second) == util::read_file(cold));

        // One changed file: only its blocks (and the fragment block its tail is in) compressed.
        sample.tree.root().children["big"] =
            spilled_file(sample.spill, non_repeating_text(k_mib + 99) + "changed", 0644, k_time);
        const auto changed_cold = sample.image("changed-cold.squashfs");
        fs::write_squashfs(sample.tree, sample.spill, plain, changed_cold);
        const auto changed = sample.image("changed.squashfs");
        const auto partial = fs::write_squashfs(sample.tree, sample.spill, cached, changed);
        CHECK(partial.cache_hits >= 1);
        CHECK(partial.cache_misses <= 3);
        CHECK(util::read_file(changed) == util::read_file(changed_cold));
    }

    // Damage every entry a different way: each is found bad, removed, and compressed again; the
    // image is still the cold one, and unsquashfs reads it.
    std::vector<stdfs::path> entries;
    for (const auto& item : stdfs::recursive_directory_iterator(cache.path())) {
        if (item.is_regular_file()) {
            entries.push_back(item.path());
        }
    }
    REQUIRE(entries.size() >= 4);
    std::size_t n = 0;
    for (const auto& entry : entries) {
        std::string bytes = util::read_file(entry);
        switch (n++ % 4) {
        case 0:
            bytes.back() = static_cast<char>(bytes.back() ^ 0x5a);
            break; // payload
        case 1:
            bytes.resize(bytes.size() / 2);
            break; // truncated
        case 2:
            bytes[0] = 'X';
            break; // header
        default:
            bytes += "trailing";
            break; // longer
        }
        util::write_file_atomically(entry, bytes);
    }
    Sample sample;
    auto options = fixed_time_options();
    const auto cold = sample.image("cold.squashfs");
    fs::write_squashfs(sample.tree, sample.spill, options, cold);
    options.block_cache_dir = cache.path();
    const auto image = sample.image("after-damage.squashfs");
    const auto stats = fs::write_squashfs(sample.tree, sample.spill, options, image);
    CHECK(stats.cache_dropped >= 1);
    CHECK(stats.cache_hits == 0);
    CHECK(util::read_file(image) == util::read_file(cold));
    CHECK(cat_file(image, "/home/user/big") == sample.big);

    // Entries with valid digests but another block's bytes (what someone with write access to
    // the cache could plant): decompressing them shows they are not this block's. Dropped.
    std::vector<stdfs::path> good;
    for (const auto& item : stdfs::recursive_directory_iterator(cache.path())) {
        if (item.is_regular_file() && !item.path().filename().string().starts_with('.')) {
            good.push_back(item.path());
        }
    }
    std::vector<std::pair<stdfs::path, fs::SquashfsBlockEntry>> swapped;
    for (const auto& path : good) {
        const std::string key = path.filename().string();
        for (const std::uint32_t size :
             {k_mib, static_cast<std::uint32_t>(sample.big.size() % k_mib)}) {
            if (auto entry = fs::parse_block_entry(util::read_file(path), key, size)) {
                swapped.emplace_back(path, *entry);
            }
        }
    }
    REQUIRE(swapped.size() >= 2);
    for (std::size_t i = 0; i < swapped.size(); ++i) {
        const auto& [path, entry] = swapped[i];
        const auto& other = swapped[(i + 1) % swapped.size()].second;
        if (entry.stored_raw || other.stored_raw) {
            continue;
        }
        const std::string content = util::read_file(path);
        const std::string size_line =
            content.substr(content.find('\n', content.find('\n') + 1) + 1);
        const auto size = static_cast<std::uint32_t>(std::stoul(size_line));
        util::write_file_atomically(path,
                                    fs::format_block_entry(path.filename().string(), size, other));
    }
    const auto planted = sample.image("planted.squashfs");
    const auto after = fs::write_squashfs(sample.tree, sample.spill, options, planted);
    CHECK(after.cache_dropped >= 1);
    CHECK(util::read_file(planted) == util::read_file(cold));

    // Trimmed to its bound, least recently used first.
    options.block_cache_max_bytes = 1;
    fs::write_squashfs(sample.tree, sample.spill, options, sample.image("trim.squashfs"));
    std::uintmax_t left = 0;
    for (const auto& item : stdfs::recursive_directory_iterator(cache.path())) {
        if (item.is_regular_file()) {
            left += item.file_size();
        }
    }
    CHECK(left == 0);
}

TEST_CASE("squashfs: the base image's region is kept whole and copied back, byte-identical") {
    util::TempDir cache;
    Sample sample;
    const auto region = fs::SquashfsBaseRegion::snapshot(sample.tree, "sha256:base-layer\n");
    // The edge layers on top of the base: an agent.
    auto& root = sample.tree.root();
    root.children["agent"] =
        spilled_file(sample.spill, non_repeating_text(k_mib + 5) + "v1", 0755, k_time);
    auto plain = fixed_time_options();
    plain.base_region = region;
    auto cached = plain;
    cached.block_cache_dir = cache.path();

    // Laid out the same with a block cache or without: the region is part of the layout.
    const auto cold = sample.image("cold.squashfs");
    CHECK(fs::write_squashfs(sample.tree, sample.spill, plain, cold).region_reused_bytes == 0);
    CHECK(cat_file(cold, "/home/user/big") == sample.big);
    CHECK(cat_file(cold, "/agent") == non_repeating_text(k_mib + 5) + "v1");
    const auto first = sample.image("first.squashfs");
    CHECK(fs::write_squashfs(sample.tree, sample.spill, cached, first).region_reused_bytes == 0);
    CHECK(util::read_file(first) == util::read_file(cold));

    // A new agent: the region is copied whole, only the agent is compressed, and the image is
    // the one an empty cache gives.
    root.children["agent"] =
        spilled_file(sample.spill, non_repeating_text(k_mib + 5) + "v2", 0755, k_time);
    const auto cold2 = sample.image("cold2.squashfs");
    fs::write_squashfs(sample.tree, sample.spill, plain, cold2);
    const auto warm2 = sample.image("warm2.squashfs");
    const auto reused = fs::write_squashfs(sample.tree, sample.spill, cached, warm2);
    CHECK(reused.region_reused_bytes > 3 * k_mib);
    CHECK(reused.cache_compressed_bytes <= 2 * k_mib);
    CHECK(util::read_file(warm2) == util::read_file(cold2));
    CHECK(cat_file(warm2, "/home/user/big") == sample.big);
    CHECK(cat_file(warm2, "/agent") == non_repeating_text(k_mib + 5) + "v2");
    CHECK(pseudo_listing(warm2) == pseudo_listing(cold2));

    // A damaged region is dropped and compressed again: still the same image.
    std::size_t damaged = 0;
    for (const auto& item : stdfs::recursive_directory_iterator(cache.path())) {
        if (item.is_regular_file() && item.path().filename() == "region") {
            std::string bytes = util::read_file(item.path());
            bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x20);
            util::write_file_atomically(item.path(), bytes);
            ++damaged;
        }
    }
    REQUIRE(damaged == 1);
    const auto after_damage = sample.image("after-damage.squashfs");
    CHECK(fs::write_squashfs(sample.tree, sample.spill, cached, after_damage).region_reused_bytes ==
          0);
    CHECK(util::read_file(after_damage) == util::read_file(cold2));

    // A base file replaced by a later layer: another region (one without the old file), not
    // the kept one.
    root.children.at("home")->children.at("user")->children["big"] =
        spilled_file(sample.spill, "replaced\n", 0644, k_time);
    const auto cold3 = sample.image("cold3.squashfs");
    fs::write_squashfs(sample.tree, sample.spill, plain, cold3);
    const auto warm3 = sample.image("warm3.squashfs");
    CHECK(fs::write_squashfs(sample.tree, sample.spill, cached, warm3).region_reused_bytes == 0);
    CHECK(util::read_file(warm3) == util::read_file(cold3));
    CHECK(cat_file(warm3, "/home/user/big") == "replaced\n");

    // A base without an identity is laid out the same but never kept.
    auto unnamed = cached;
    unnamed.base_region = fs::SquashfsBaseRegion::snapshot(sample.tree, "");
    util::TempDir empty_cache;
    unnamed.block_cache_dir = empty_cache.path();
    fs::write_squashfs(sample.tree, sample.spill, unnamed, sample.image("unnamed.squashfs"));
    std::size_t kept = 0;
    for (const auto& item : stdfs::recursive_directory_iterator(empty_cache.path())) {
        kept += item.path().filename() == "regions" ? std::size_t{1} : std::size_t{0};
    }
    CHECK(kept == 0);
}

TEST_CASE("squashfs: region indexes read back, and anything else is refused") {
    fs::SquashfsRegionIndex index;
    index.start = 96;
    index.size = 4096;
    index.digest = std::string(32, 'a');
    index.fragments = {{96, 100}, {300, 0x1000100}};
    index.inodes = {std::string(80, 'x'), std::string(96, 'y')};
    index.produced.data_blocks = 3;
    const std::string text = fs::format_region_index(index);
    const auto back = fs::parse_region_index(text, 2);
    REQUIRE(back.has_value());
    CHECK(back->start == 96);
    CHECK(back->digest == index.digest);
    CHECK(back->fragments == index.fragments);
    CHECK(back->inodes == index.inodes);
    CHECK(back->produced.data_blocks == 3);
    CHECK_FALSE(fs::parse_region_index(text, 3).has_value()); // another number of files
    CHECK_FALSE(fs::parse_region_index(text.substr(0, text.size() - 1), 2).has_value());
    CHECK_FALSE(fs::parse_region_index(text + "x", 2).has_value());
    CHECK_FALSE(fs::parse_region_index("edgeforge-squashfs-region 1\n", 0).has_value());
}
