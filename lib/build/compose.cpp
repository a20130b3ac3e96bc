// Composes the OS root filesystem (base + agents + overlay) into a cached rootfs.squashfs.
#include "build/compose.h"

#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>

#include "base/version.h"
#include "boot/efi.h"
#include "boot/uki.h"
#include "build/step_cache.h"
#include "fs/cpio.h"
#include "fs/squashfs.h"
#include "fs/tree.h"
#include "oci/image.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"
#include "util/zstd_stream.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

// What the ISO and disk writers need from the rootfs besides the squashfs.
// Bumped whenever the step's output changes for the same inputs (a writer fix, a new default),
// so caches filled by an older edgeforge of the same version are not reused.
constexpr int k_rootfs_step_revision = 3; // 3: inode times clamped to SOURCE_DATE_EPOCH

// Where CanvOS unpacks local-ui.tar (/opt/spectrocloud).
const std::vector<std::string> k_local_ui_directory = {"opt", "spectrocloud"};

const std::vector<std::string> k_boot_prefixes = {"/boot", "/usr/lib/grub", "/usr/lib/shim",
                                                  "/usr/share/efi", "/usr/lib/systemd/boot/efi"};

bool under_boot_prefix(std::string_view path) {
    for (const auto& prefix : k_boot_prefixes) {
        if (path == prefix || (path.starts_with(prefix) && path.size() > prefix.size() &&
                               path[prefix.size()] == '/')) {
            return true;
        }
    }
    return false;
}

// Writes the boot-related part of the tree to `destination` as host files and symlinks.
void export_boot_files(const fs::Tree& tree, const fs::SpillFile& spill,
                       const stdfs::path& destination) {
    stdfs::create_directories(destination);
    tree.walk([&](const fs::WalkEntry& entry) {
        if (!under_boot_prefix(entry.path)) {
            return;
        }
        const stdfs::path target = destination / std::string(entry.path.substr(1));
        std::error_code ec;
        stdfs::create_directories(target.parent_path(), ec);
        switch (entry.inode.type) {
        case fs::FileType::directory:
            stdfs::create_directories(target, ec);
            break;
        case fs::FileType::regular:
            boot::extract_file(entry.inode, spill, target);
            break;
        case fs::FileType::symlink:
            stdfs::create_symlink(entry.inode.symlink_target, target, ec);
            break;
        default:
            break; // devices and fifos have no business in /boot
        }
        if (ec) {
            throw build_failed("cannot export {} from the root filesystem to {}: {}", entry.path,
                               target.string(), ec.message());
        }
    });
}

namespace {

// Mirrors the directory tree `from` at `to` with hard links (copies where a link cannot be
// made), symbolic links kept as they are. false when something could not be placed.
bool link_tree(const stdfs::path& from, const stdfs::path& to) {
    std::error_code ec;
    stdfs::create_directories(to, ec);
    for (stdfs::recursive_directory_iterator it(from, ec), end; !ec && it != end;
         it.increment(ec)) {
        const stdfs::path target = to / it->path().lexically_relative(from);
        const auto status = it->symlink_status(ec);
        if (ec) {
            return false;
        }
        if (stdfs::is_symlink(status)) {
            stdfs::copy_symlink(it->path(), target, ec);
        } else if (stdfs::is_directory(status)) {
            stdfs::create_directories(target, ec);
        } else if (stdfs::is_regular_file(status)) {
            stdfs::create_hard_link(it->path(), target, ec);
            if (ec) {
                ec.clear();
                stdfs::copy_file(it->path(), target, ec);
            }
        }
        if (ec) {
            return false;
        }
    }
    return !ec;
}

// What the exported boot files are, known without reading them: each boot path's type and
// link target, and for a file its size and the base file it is (the base's identity and the
// file's path there). nullopt when a boot file comes from a layer above the base, or the base
// has no identity: the files are then exported from the tree and not kept.
std::optional<std::string> bootfs_identity(const fs::Tree& tree,
                                           const fs::SquashfsBaseRegion& base) {
    if (base.identity.empty()) {
        return std::nullopt;
    }
    util::Sha256 hash;
    hash.update(base.identity);
    bool known = true;
    tree.walk([&](const fs::WalkEntry& entry) {
        if (!known || !under_boot_prefix(entry.path)) {
            return;
        }
        std::string line =
            fmt::format("{}\n{}\n", entry.path, fs::file_type_name(entry.inode.type));
        if (entry.inode.is_symlink()) {
            line += entry.inode.symlink_target + "\n";
        } else if (entry.inode.is_regular()) {
            const auto found = base.base_paths.find(&entry.inode);
            if (found == base.base_paths.end()) {
                known = false;
                return;
            }
            line += fmt::format("{}\n{}\n", entry.inode.size(), found->second);
        }
        hash.update(line);
    });
    if (!known) {
        return std::nullopt;
    }
    return hash.finish_hex();
}

constexpr std::string_view k_bootfs_step = "bootfs";

// The boot files into `destination`: linked from the step cache when the same base gave the
// same ones before (a rebuild whose agent or overlay changed), else exported from the tree.
// Exported files are kept there for the next build by the returned function (which does nothing
// when there is nothing to keep), which the caller runs once the root filesystem is written:
// keeping them waits for the unpacked layer copies' checks, and its flushes would wait for the
// merge's write-back (0.4 s on a cold build) while both compressors sat idle. Keeping is best
// effort; it runs before `destination` moves.
std::function<void()> place_boot_files(const fs::Tree& tree, const fs::SpillFile& spill,
                                       const stdfs::path& destination,
                                       const fs::SquashfsBaseRegion* base, StepCache& cache,
                                       const std::function<void()>& before_keeping) {
    const auto identity = base != nullptr ? bootfs_identity(tree, *base) : std::nullopt;
    if (!identity) {
        export_boot_files(tree, spill, destination);
        return [] {};
    }
    nlohmann::json inputs{{"step", k_bootfs_step}, {"edgeforge", k_version}, {"files", *identity}};
    std::string key = StepCache::key_of(inputs);
    {
        // Under the step's lock: another build storing the entry never shows a partial one.
        const StepCache::Lock lock = cache.lock(k_bootfs_step, key);
        if (const auto entry = cache.find_directory(k_bootfs_step, key)) {
            if (link_tree(*entry / "tree", destination)) {
                return [] {};
            }
            std::error_code ignored;
            stdfs::remove_all(destination, ignored);
        }
    }
    export_boot_files(tree, spill, destination);
    return [&cache, before_keeping, destination, inputs = std::move(inputs), key = std::move(key)] {
        // What they were exported from is checked before they are kept under the base's name.
        before_keeping();
        try {
            const StepCache::Lock lock = cache.lock(k_bootfs_step, key);
            if (cache.find_directory(k_bootfs_step, key)) {
                return; // another build kept them meanwhile
            }
            util::TempDir staging(cache.work_dir(), "bootfs-");
            if (link_tree(destination, staging.path() / "tree")) {
                (void)cache.store_directory(k_bootfs_step, key, staging.path(), inputs);
            }
        } catch (const std::exception&) {
            // not kept: exported again next time
        }
    };
}

} // namespace

// The identity of an image's content for the cache key: digests where the source records them,
// content hashes where it does not (tar: files, dir: directories).
nlohmann::json image_identity(const oci::Image& image) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : image.layers) {
        if (!layer.digest.empty()) {
            layers.push_back(layer.digest);
        } else if (layer.kind == oci::LayerKind::directory) {
            layers.push_back("dir:" + hash_directory(layer.path));
        } else {
            layers.push_back("sha256:" + util::sha256_file_hex(layer.path));
        }
    }
    return {{"reference", image.name},
            {"manifest", image.manifest_digest},
            {"platform", image.platform.str()},
            {"layers", layers}};
}

fs::SquashfsOptions squashfs_options(const IsoPlan& plan) {
    fs::SquashfsOptions options;
    options.compressor = plan.squashfs.compressor;
    options.level = plan.squashfs.level;
    options.block_size = plan.squashfs.block_size;
    options.arch = plan.arch;
    options.modification_time = plan.source_date_epoch;
    if (plan.block_cache_bytes != 0) {
        options.block_cache_dir = plan.cache_dir / "blocks";
        options.block_cache_max_bytes = plan.block_cache_bytes;
    }
    return options;
}

} // namespace

void check_free_space(const stdfs::path& directory, std::uint64_t needed, std::string_view what,
                      std::string_view option) {
    std::uint64_t available = 0;
    try {
        available = util::available_space(directory);
    } catch (const std::system_error&) {
        return; // the write itself reports an unusable directory, with its reason
    }
    if (available < needed) {
        throw build_failed("not enough space in {} for {}: need about {}, have {}; free some "
                           "space or choose another {}",
                           directory.string(), what, util::format_bytes(needed),
                           util::format_bytes(available), option);
    }
}

namespace {

// Whether the cache has room for the unpacked copies of `layer_bytes` of layers (about 3x) on
// top of the merge's own work (4x, checked by check_free_space()).
bool has_room_for_copies(const stdfs::path& cache_dir, std::uint64_t layer_bytes) {
    try {
        return util::available_space(cache_dir) >= layer_bytes * 7;
    } catch (const std::system_error&) {
        return true; // the write itself reports an unusable directory, with its reason
    }
}

// CanvOS's local-ui.tar: unpacked into /opt/spectrocloud/ of the root filesystem as `tar -C
// /opt/spectrocloud -xf` does (modes, owners and times from the archive; times clamped to
// SOURCE_DATE_EPOCH with the rest of the tree), merged over what the agent put there. It goes
// through the layer merge, so an entry that would leave the directory (absolute name, "..", a
// path through a symbolic link, a hard link outside) is bad input naming the entry.
oci::MergeStats apply_local_ui(const stdfs::path& archive, fs::Tree& tree, fs::SpillFile& spill,
                               const Console& console) {
    console.info("rootfs: unpacking {} into /{}/", archive.string(),
                 util::join(k_local_ui_directory, "/"));
    oci::Layer layer;
    layer.kind = oci::LayerKind::tar;
    layer.path = archive;
    std::error_code ec;
    layer.size = stdfs::file_size(archive, ec);
    oci::MergeOptions options;
    options.under = k_local_ui_directory;
    options.context = "local UI archive " + archive.string();
    return oci::apply_layer(layer, "", tree, spill, options).stats;
}

} // namespace

namespace {

// The os-release the UKI's .osrel carries: /etc/os-release, else /usr/lib/os-release.
void export_os_release(const fs::Tree& tree, const fs::SpillFile& spill,
                       const stdfs::path& destination) {
    for (const char* path : {"/etc/os-release", "/usr/lib/os-release"}) {
        const auto inode = tree.resolve(path);
        if (inode && inode->is_regular()) {
            if (inode->size() > (1U << 20)) {
                throw bad_input("{} of the image is {} bytes; an os-release is a few hundred", path,
                                inode->size());
            }
            boot::extract_file(*inode, spill, destination);
            return;
        }
    }
    throw bad_input("the image has no /etc/os-release or /usr/lib/os-release: a UKI carries it "
                    "as its .osrel section (boot menus and systemd show it); add one to the "
                    "base image or the rootfs overlay");
}

// rootfs.initrd: the tree as a newc cpio (without /boot's files) compressed with zstd.
fs::CpioStats write_uki_initrd(const fs::Tree& tree, const fs::SpillFile& spill,
                               const stdfs::path& file, Progress& progress) {
    util::AtomicFile out(file);
    util::ZstdStream zstd(k_uki_initrd_zstd_level, 0,
                          [&](const char* data, std::size_t size) { out.write(data, size); });
    fs::CpioOptions options;
    options.emptied_directories = boot::k_uki_emptied_directories;
    fs::CpioStats stats;
    try {
        stats = fs::write_cpio(
            tree, spill, options,
            [&](const char* data, std::size_t size) { zstd.write(data, size); },
            [&](std::uint64_t done) { progress.update(done); });
        zstd.finish();
    } catch (const Error&) {
        throw;
    } catch (const std::runtime_error& e) {
        throw build_failed("writing {}: {}", file.string(), e.what());
    }
    out.commit();
    return stats;
}

} // namespace

namespace {

// The images of the step, opened: registry images with manifest and config only unless
// `with_layers` (a cache hit needs no layer).
std::vector<oci::Image> open_rootfs_images(const IsoPlan& plan, const Console& console,
                                           const stdfs::path& work, bool with_layers) {
    oci::OpenOptions open_options;
    open_options.work_dir = work;
    open_options.cache_dir = plan.cache_dir;
    open_options.registry = plan.registry;
    open_options.metadata_only = !with_layers;
    oci::show_pull_progress(open_options, console);
    std::vector<oci::Image> images;
    images.push_back(oci::open_image(plan.base, plan.arch, open_options));
    for (const auto& agent : plan.agents) {
        images.push_back(oci::open_image(agent, plan.arch, open_options));
    }
    return images;
}

RootfsStepInputs step_inputs(const IsoPlan& plan, const std::vector<oci::Image>& images,
                             const Console& console, RootfsForm form) {
    RootfsStepInputs step;
    step.images = nlohmann::json::array();
    // The key holds what the images are, not where they were read from: the same images in
    // another checkout (or a build's own temporary layout) are the same step.
    nlohmann::json image_contents = nlohmann::json::array();
    for (const auto& image : images) {
        console.detail("image {}", image.description);
        step.images.push_back(image_identity(image));
        image_contents.push_back(step.images.back());
        image_contents.back().erase("reference");
        step.layer_bytes += image.layer_bytes();
    }
    step.inputs = {
        {"step", "rootfs"},
        {"edgeforge", k_version},
        {"revision", k_rootfs_step_revision},
        {"arch", plan.arch.name()},
        {"images", image_contents},
        {"overlay", plan.rootfs_overlay ? nlohmann::json(hash_directory(*plan.rootfs_overlay))
                                        : nlohmann::json(nullptr)},
        {"local_ui", plan.local_ui ? nlohmann::json(util::sha256_file_hex(*plan.local_ui))
                                   : nlohmann::json(nullptr)},
        {"mount_points", k_rootfs_mount_points},
        {"boot_files", k_boot_prefixes},
        {"squashfs",
         {{"compression", fs::squashfs_compressor_name(plan.squashfs.compressor)},
          // The level that runs, so a change of the default level is a different key.
          {"level", fs::effective_squashfs_level(plan.squashfs.compressor, plan.squashfs.level)},
          {"block_size", plan.squashfs.block_size}}},
        {"source_date_epoch", plan.source_date_epoch ? nlohmann::json(*plan.source_date_epoch)
                                                     : nlohmann::json(nullptr)},
    };
    if (form == RootfsForm::uki_initrd) {
        step.inputs["form"] = {{"uki_initrd",
                                {{"compression", "zstd"},
                                 {"level", k_uki_initrd_zstd_level},
                                 {"init", boot::k_uki_init_program},
                                 {"emptied", boot::k_uki_emptied_directories}}}};
        step.inputs.erase("squashfs");
    }
    step.key = StepCache::key_of(step.inputs);
    return step;
}

} // namespace

RootfsStepInputs rootfs_step_inputs(const IsoPlan& plan, const Console& console, RootfsForm form) {
    const stdfs::path work = StepCache(plan.cache_dir / "steps").work_dir();
    return step_inputs(plan, open_rootfs_images(plan, console, work, false), console, form);
}

ComposedRootfs compose_rootfs(const IsoPlan& plan, const Console& console, RootfsForm form) {
    const bool uki = form == RootfsForm::uki_initrd;
    const auto started = std::chrono::steady_clock::now();
    const RemoteStepCache remote(plan.remote_cache, plan.cache_dir, console);
    StepCache cache(plan.cache_dir / "steps", remote);
    const stdfs::path work = cache.work_dir();

    // Open every image first: a wrong tag or arch must fail before anything is merged. Registry
    // layers are pulled only when the step is not cached here or in the remote cache.
    std::vector<oci::Image> images = open_rootfs_images(plan, console, work, false);
    const RootfsStepInputs step = step_inputs(plan, images, console, form);
    const nlohmann::json& inputs = step.inputs;
    const nlohmann::json& image_inputs = step.images;
    const std::uint64_t layer_bytes = step.layer_bytes;
    ComposedRootfs result;
    result.key = step.key;
    result.summary = {{"key", result.key}, {"images", image_inputs}, {"layer_bytes", layer_bytes}};

    const auto lock = cache.lock("rootfs", result.key);
    if (plan.remote_cache.enabled()) {
        result.summary["remote_cache"] = {
            {"pulled", false}, {"pushed", false}, {"present", false}, {"push_failed", false}};
    }
    // What the remote cache did with the step: uploaded it, found it there, or failed.
    const auto record_push = [&](PushOutcome outcome) {
        if (outcome == PushOutcome::pushed) {
            result.summary["remote_cache"]["pushed"] = true;
        } else if (outcome == PushOutcome::present) {
            result.summary["remote_cache"]["present"] = true;
        } else if (outcome == PushOutcome::failed) {
            result.summary["remote_cache"]["push_failed"] = true;
        }
    };
    const StepLayout layout =
        uki ? StepLayout{{"bootfs", true}, {"os-release", false}, {"rootfs.initrd", false}}
            : StepLayout{{"bootfs", true}, {"rootfs.squashfs", false}};
    if (const auto entry = cache.find_or_pull_directory("rootfs", result.key, layout)) {
        const stdfs::path& directory = entry->directory;
        result.entry = directory;
        result.bootfs = directory / "bootfs";
        result.cache_hit = true;
        result.summary["cache_hit"] = true;
        if (entry->pulled) {
            result.summary["remote_cache"]["pulled"] = true;
        }
        if (uki) {
            result.initrd = directory / "rootfs.initrd";
            result.os_release = directory / "os-release";
        } else {
            result.squashfs = directory / "rootfs.squashfs";
        }
        const stdfs::path& product = uki ? result.initrd : result.squashfs;
        std::error_code error;
        if (!stdfs::is_regular_file(product, error) || !stdfs::is_directory(result.bootfs, error) ||
            (uki && !stdfs::is_regular_file(result.os_release, error))) {
            throw build_failed("the cached rootfs step {} lacks {}, bootfs/{}; remove it with "
                               "'edgeforge cache prune' and build again",
                               directory.string(), product.filename().string(),
                               uki ? " or os-release" : "");
        }
        // A step found here reaches the shared cache when the build asks for that (build rootfs,
        // the first stage) or when it came from another repository than the one pushed to.
        // Other builds leave it: checking the repository costs a hash of the whole step.
        const bool pulled_elsewhere = entry->pulled && plan.remote_cache.from &&
                                      plan.remote_cache.to &&
                                      plan.remote_cache.from->str() != plan.remote_cache.to->str();
        if (plan.remote_cache.to &&
            ((!entry->pulled && plan.remote_cache.push_cached) || pulled_elsewhere)) {
            record_push(cache.push_directory("rootfs", result.key, directory, layout,
                                             StepSharing::shareable));
        }
        console.info("rootfs: reusing {} {} ({}, key {})", entry->pulled ? "pulled" : "cached",
                     product.filename().string(), util::format_bytes(stdfs::file_size(product)),
                     result.key.substr(0, 12));
        return result;
    }

    const bool from_registry = plan.base.is_registry() ||
                               std::any_of(plan.agents.begin(), plan.agents.end(),
                                           [](const auto& agent) { return agent.is_registry(); });
    if (from_registry) {
        images = open_rootfs_images(plan, console, work, true); // now with their layers
        if (step_inputs(plan, images, console, form).key != result.key) {
            throw build_failed("an image changed while the build ran (a tag was moved to another "
                               "manifest between the cache lookup and the pull); build again");
        }
    }
    // The spill file holds the uncompressed file data (about 3x the compressed layers for a
    // typical OS) and the squashfs about as much as the layers: check before hours of work.
    check_free_space(work, layer_bytes * 4, "merging and compressing the root filesystem",
                     "--cache-dir");
    util::TempDir staging(work, "rootfs-");
    fs::Tree tree;
    fs::SpillFile spill(staging.path());
    oci::MergeStats merged;
    std::shared_ptr<const fs::SquashfsBaseRegion> base_region;
    // The unpacked copies' digests, still being checked on threads of their own while the root
    // filesystem is written: finished before the step is kept, and before an error that a
    // corrupt copy could be the cause of is reported (the copy's error is the one to see).
    std::vector<std::shared_ptr<oci::DeferredCopyCheck>> copy_checks;
    const auto finish_copy_checks = [&] {
        for (const auto& check : copy_checks) {
            check->finish();
        }
    };
    try {
        {
            console.info("rootfs: merging {} image{} ({} of layers)", images.size(),
                         images.size() == 1 ? "" : "s", util::format_bytes(layer_bytes));
            Progress progress(console, "merge layers", layer_bytes);
            std::uint64_t done_before = 0;
            bool write_copies = plan.unpacked_layer_cache;
            if (write_copies && !has_room_for_copies(plan.cache_dir, layer_bytes)) {
                write_copies = false;
                console.warning(
                    "rootfs: {} has too little free space to keep unpacked layer copies "
                    "as well (about {} more); merging without them, which the build "
                    "does not need: later builds inflate these layers again",
                    plan.cache_dir.string(), util::format_bytes(layer_bytes * 3));
            }
            for (const auto& image : images) {
                oci::MergeOptions options;
                if (plan.unpacked_layer_cache) {
                    options.unpacked_layers = plan.cache_dir;
                }
                options.write_unpacked_layers = write_copies;
                options.defer_copy_checks = true;
                options.copies_unwritable = [&](const std::string& reason) {
                    write_copies = false;
                    console.warning("rootfs: the cache cannot take unpacked layer copies ({}); "
                                    "merging without them, which the build does not need: later "
                                    "builds inflate these layers again. Free space in {} (or set "
                                    "--unpacked-layer-cache=false to stop keeping copies)",
                                    reason, plan.cache_dir.string());
                };
                options.progress = [&](std::uint64_t done, std::uint64_t) {
                    progress.update(done_before + done);
                };
                const oci::MergeResult image_merged =
                    oci::merge_layers(image, tree, spill, options);
                merged += image_merged.total;
                for (const auto& layer : image_merged.layers) {
                    if (layer.pending_check) {
                        copy_checks.push_back(layer.pending_check);
                    }
                }
                done_before += image.layer_bytes();
                if (!base_region) {
                    // The base image's files: a region of the squashfs of their own, which the
                    // next build on this base copies whole. Named by its layers' digests, each
                    // checked in this merge; a layer without one leaves it unnamed (never kept).
                    std::string identity;
                    for (const auto& layer : image_merged.layers) {
                        if (layer.digest.empty()) {
                            identity.clear();
                            break;
                        }
                        identity += layer.digest + "\n";
                    }
                    base_region = fs::SquashfsBaseRegion::snapshot(tree, std::move(identity));
                }
            }
            if (plan.rootfs_overlay) {
                merged += oci::apply_directory(*plan.rootfs_overlay, tree,
                                               oci::DirectoryOptions::overlay());
            }
            if (plan.local_ui) {
                merged += apply_local_ui(*plan.local_ui, tree, spill, console);
            }
            progress.finish();
            if (merged.cached_layers + merged.unpacked_layers > 0) {
                console.detail("rootfs: {} layer{} read from unpacked copies in the cache, {} "
                               "unpacked into it",
                               merged.cached_layers, merged.cached_layers == 1 ? "" : "s",
                               merged.unpacked_layers);
            }
        }
        const std::int64_t mount_point_time =
            plan.source_date_epoch.value_or(static_cast<std::int64_t>(std::time(nullptr)));
        tree.ensure_directories(k_rootfs_mount_points, mount_point_time);
        if (tree.root().mtime == 0) { // layers rarely carry an entry for the root itself
            tree.root().mtime = mount_point_time;
        }
        spill.flush();

        const stdfs::path produced = staging.path() / "entry";
        stdfs::create_directories(produced);
        const auto keep_boot_files = place_boot_files(tree, spill, produced / "bootfs",
                                                      base_region.get(), cache, finish_copy_checks);
        const auto stats = tree.stats();
        if (uki) {
            // Fail now, naming what is missing, rather than after minutes of compression.
            (void)boot::find_kernel(tree);
            export_os_release(tree, spill, produced / "os-release");
            boot::prepare_uki_rootfs(tree, mount_point_time);
            fs::CpioStats written;
            {
                console.info("rootfs: writing the UKI initrd ({} files, {} of data, zstd {})",
                             stats.inodes, util::format_bytes(stats.data_bytes),
                             k_uki_initrd_zstd_level);
                Progress progress(console, "initrd", stats.data_bytes);
                written = write_uki_initrd(tree, spill, produced / "rootfs.initrd", progress);
                progress.finish();
            }
            if (written.skipped_xattr_count > 0) {
                console.warning(
                    "{} extended attribute(s) cannot be stored in an initrd (cpio has no "
                    "place for them; Kairos's UKIs lose them too) and were left out, "
                    "e.g. {}: file capabilities among them stop working in the booted OS",
                    written.skipped_xattr_count,
                    written.skipped_xattrs.empty() ? "?" : written.skipped_xattrs.front());
            }
            finish_copy_checks();
            keep_boot_files();
            const auto stored = cache.store_and_push_directory(
                "rootfs", result.key, produced, inputs, layout, StepSharing::shareable);
            result.entry = stored.directory;
            record_push(stored.push);
            result.initrd = result.entry / "rootfs.initrd";
            result.os_release = result.entry / "os-release";
            result.bootfs = result.entry / "bootfs";
            const std::uint64_t initrd_bytes = stdfs::file_size(result.initrd);
            const double seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            result.summary["cache_hit"] = false;
            result.summary["entries"] = merged.entries;
            result.summary["data_bytes"] = stats.data_bytes;
            result.summary["cpio_bytes"] = written.bytes_out;
            result.summary["initrd_bytes"] = initrd_bytes;
            result.summary["skipped_xattrs"] = written.skipped_xattr_count;
            result.summary["seconds"] = seconds;
            console.info("rootfs: {} -> {} initrd in {}", util::format_bytes(written.bytes_out),
                         util::format_bytes(initrd_bytes), util::format_duration(seconds));
            return result;
        }
        // Fail now, naming the paths searched, rather than after minutes of compression.
        (void)boot::find_kernel_and_initrd(tree);

        fs::SquashfsStats written;
        {
            console.info("rootfs: writing rootfs.squashfs ({} files, {} of data, {})", stats.inodes,
                         util::format_bytes(stats.data_bytes),
                         fs::squashfs_compressor_name(plan.squashfs.compressor));
            Progress progress(console, "squashfs", stats.data_bytes);
            fs::SquashfsOptions options = squashfs_options(plan);
            options.base_region = base_region;
            options.before_keeping_region = finish_copy_checks;
            written = fs::write_squashfs(
                tree, spill, options, produced / "rootfs.squashfs",
                [&](std::uint64_t done, std::uint64_t) { progress.update(done); });
            progress.finish();
        }
        if (written.skipped_xattr_count > 0) {
            console.warning(
                "{} extended attribute(s) cannot be stored in squashfs and were left out "
                "(as mksquashfs does), e.g. {}",
                written.skipped_xattr_count,
                written.skipped_xattrs.empty() ? "?" : written.skipped_xattrs.front());
        }
        finish_copy_checks();
        keep_boot_files();
        const auto stored = cache.store_and_push_directory("rootfs", result.key, produced, inputs,
                                                           layout, StepSharing::shareable);
        result.entry = stored.directory;
        record_push(stored.push);
        result.squashfs = result.entry / "rootfs.squashfs";
        result.bootfs = result.entry / "bootfs";
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        result.summary["cache_hit"] = false;
        result.summary["entries"] = merged.entries;
        result.summary["whiteouts"] = merged.whiteouts;
        result.summary["layers_from_unpacked_cache"] = merged.cached_layers;
        result.summary["layers_unpacked"] = merged.unpacked_layers;
        result.summary["data_bytes"] = stats.data_bytes;
        result.summary["squashfs_bytes"] = written.bytes_out;
        result.summary["seconds"] = seconds;
        // Bytes taken from the block cache: single blocks, and the base image's region whole.
        const std::uint64_t reused = written.cache_reused_bytes + written.region_reused_bytes;
        if (written.block_cache) {
            result.summary["block_cache"] = {
                {"hits", written.cache_hits},
                {"reused_bytes", reused},
                {"base_region_reused_bytes", written.region_reused_bytes},
                {"misses", written.cache_misses},
                {"compressed_bytes", written.cache_compressed_bytes},
                {"dropped", written.cache_dropped}};
            if (written.cache_dropped > 0) {
                console.warning("{} damaged block cache entr{} in {} dropped and compressed again",
                                written.cache_dropped,
                                written.cache_dropped == 1 ? "y was" : "ies were",
                                (plan.cache_dir / "blocks").string());
            }
        }
        console.info("rootfs: {} -> {} ({:.0f}%) in {}{}", util::format_bytes(written.bytes_in),
                     util::format_bytes(written.bytes_out), written.compression_ratio * 100.0,
                     util::format_duration(seconds),
                     written.block_cache && reused > 0
                         ? fmt::format("; {} reused from the block cache ({} as the base image's "
                                       "region), {} compressed",
                                       util::format_bytes(reused),
                                       util::format_bytes(written.region_reused_bytes),
                                       util::format_bytes(written.cache_compressed_bytes))
                         : std::string());
        return result;
    } catch (const Error&) {
        finish_copy_checks();
        throw;
    }
}

} // namespace edgeforge
