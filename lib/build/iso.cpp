// `edgeforge build iso`: the live installer ISO from a plan, end to end.
#include "build/iso.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <future>
#include <memory>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>

#include "base/templates.h"
#include "base/version.h"
#include "boot/efi.h"
#include "boot/grub.h"
#include "build/compose.h"
#include "build/medium.h"
#include "build/step_cache.h"
#include "formats/iso_writer.h"
#include "fs/tree.h"
#include "oci/merge.h"
#include "util/digest.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
namespace stdfs = std::filesystem;

namespace {

// A digest of everything on the ISO besides the cached rootfs, for the reproducible GPT GUIDs.
std::string layout_digest(const IsoPlan& plan, const ComposedRootfs& rootfs,
                          std::string_view user_data_sha256) {
    util::Sha256 hasher;
    hasher.update(rootfs.key);
    hasher.update(user_data_sha256);
    hash_medium_payload(plan, hasher);
    hasher.update(plan.extra_cmdline);
    hasher.update(fmt::format("interactive_default={} debug={}", plan.interactive_default,
                              plan.debug));
    return hasher.finish_hex();
}

} // namespace

namespace {

// Everything the ISO variants of one plan share: the composed root filesystem, the boot files,
// the ESP and the ISO description without /config.yaml. The description points into the
// members, so this object stays where it is made.
struct PreparedLiveIso {
    ComposedRootfs rootfs;
    fs::Tree boot_tree;
    std::unique_ptr<util::TempDir> work;
    std::unique_ptr<fs::SpillFile> no_spill;
    formats::LiveIsoPlan live;
};

// The ISO overlay's own live menu (CanvOS ships overlay/files-iso/boot/grub2/grub.cfg), rendered
// as CanvOS renders it ({{DEFAULT_ENTRY}}, DEBUG), to replace the overlay's copy; nullopt when
// the overlay has none.
std::optional<formats::IsoFileEntry> user_menu(const IsoPlan& plan) {
    constexpr std::uintmax_t k_max_menu_size = 1 << 20; // a grub.cfg is a few KiB
    if (!plan.iso_overlay) {
        return std::nullopt;
    }
    const stdfs::path file = *plan.iso_overlay / stdfs::path(boot::k_live_menu_dir).relative_path() /
                             "grub.cfg";
    std::error_code ec;
    if (!stdfs::is_regular_file(file, ec)) {
        return std::nullopt;
    }
    if (stdfs::file_size(file, ec) > k_max_menu_size) {
        throw bad_input("{}: larger than 1 MiB; a grub.cfg is a few KiB: is it the right file?",
                        file.string());
    }
    const std::string rendered =
        boot::render_user_menu(util::read_file(file), plan.interactive_default, plan.debug);
    return formats::IsoFileEntry{fmt::format("{}/grub.cfg", boot::k_live_menu_dir),
                                 formats::IsoBytes{rendered}, 0644};
}

// A cheap fingerprint of host files a step may use (the host's grub modules and grub-mkimage,
// taken when the base image has none): names, sizes and modification times, which a package
// update changes.
std::string host_files_fingerprint(const std::vector<stdfs::path>& roots) {
    util::Sha256 hasher;
    for (const auto& root : roots) {
        std::error_code ec;
        std::vector<std::string> lines;
        const auto add = [&](const stdfs::path& path) {
            struct stat st {};
            if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
                lines.push_back(fmt::format("{} {} {}.{}", path.string(), st.st_size,
                                            st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
            }
        };
        if (stdfs::is_directory(root, ec)) {
            for (stdfs::recursive_directory_iterator it(root, ec), end; !ec && it != end;
                 it.increment(ec)) {
                add(it->path());
            }
        } else {
            add(root);
        }
        std::sort(lines.begin(), lines.end());
        for (const auto& line : lines) {
            hasher.update(line + "\n");
        }
    }
    return hasher.finish_hex();
}

constexpr std::string_view k_live_boot_step = "live-boot";
constexpr int k_live_boot_revision = 3;
constexpr std::string_view k_live_boot_index = "assets.json";

// A path of the assets as recorded in the step entry: "work:" + its place in the work directory,
// "bootfs:" + its place among the root filesystem's exported boot files (the entry is keyed on
// their content, so it is taken back with another root filesystem entry's identical ones), or
// the absolute path of a file outside both (the host's).
std::string recorded_path(const stdfs::path& path, const stdfs::path& work,
                          const stdfs::path& bootfs) {
    for (const auto& [prefix, directory] :
         {std::pair<std::string_view, const stdfs::path&>{"work:", work}, {"bootfs:", bootfs}}) {
        const stdfs::path relative = path.lexically_relative(directory);
        if (!relative.empty() && *relative.begin() != "..") {
            return std::string(prefix) + relative.generic_string();
        }
    }
    return path.string();
}

// The boot files of the live ISO (boot loaders, grub images, uefi.img): from the step cache when
// an earlier build made them from the same boot files and settings, else made in the work
// directory and stored. A user-data or bundle change then skips grub-mkimage and the ESP.
formats::LiveBootAssets live_boot_assets(const IsoPlan& plan, const ComposedRootfs& rootfs,
                                         const formats::LiveIsoInputs& inputs,
                                         const Console& console) {
    StepCache cache(plan.cache_dir / "steps");
    const nlohmann::json key_inputs{
        {"step", k_live_boot_step},
        {"edgeforge", k_version},
        {"revision", k_live_boot_revision},
        // What the boot files are made from: the root filesystem's boot files, by content, so a
        // rebuild whose agent or overlay changed (a new root filesystem, the same /boot and
        // /usr/lib/grub) takes them from the cache too.
        {"bootfs", hash_directory(rootfs.bootfs)},
        {"arch", plan.arch.name()},
        {"source_date_epoch", plan.source_date_epoch ? nlohmann::json(*plan.source_date_epoch)
                                                     : nlohmann::json(nullptr)},
        {"grub_stub", util::sha256_hex(boot::render_grub_stub(templates_directory()))},
        {"host",
         host_files_fingerprint({"/usr/lib/grub", "/usr/bin/grub-mkimage", "/usr/lib/shim"})},
    };
    const std::string key = StepCache::key_of(key_inputs);
    const auto load = [&](const stdfs::path& entry) -> std::optional<formats::LiveBootAssets> {
        try {
            const nlohmann::json index =
                nlohmann::json::parse(util::read_file(entry / k_live_boot_index));
            const auto path = [&](const nlohmann::json& text) {
                const std::string value = text.get<std::string>();
                return value.starts_with("work:")     ? entry / value.substr(5)
                       : value.starts_with("bootfs:") ? rootfs.bootfs / value.substr(7)
                                                      : stdfs::path(value);
            };
            formats::LiveBootAssets assets;
            for (const auto& file : index.at("efi").at("files")) {
                assets.efi.files.push_back({file.at("name").get<std::string>(),
                                            path(file.at("path")),
                                            file.at("origin").get<std::string>()});
            }
            assets.efi.signed_chain = index.at("efi").at("signed_chain").get<bool>();
            assets.efi.built_grub = index.at("efi").at("built_grub").get<bool>();
            if (!index.at("bios").is_null()) {
                const auto& bios = index.at("bios");
                assets.bios =
                    boot::BiosBootFiles{path(bios.at("eltorito")), path(bios.at("hybrid_mbr")),
                                        bios.at("origin").get<std::string>()};
            }
            assets.esp_image = path(index.at("esp_image"));
            // Files outside the entry (another step's, the host's) must still be there.
            std::vector<stdfs::path> files{assets.esp_image};
            for (const auto& file : assets.efi.files) {
                files.push_back(file.host_path);
            }
            if (assets.bios) {
                files.push_back(assets.bios->eltorito_image);
                files.push_back(assets.bios->hybrid_mbr);
            }
            for (const auto& file : files) {
                std::error_code ec;
                if (!stdfs::is_regular_file(file, ec)) {
                    return std::nullopt;
                }
            }
            return assets;
        } catch (const std::exception&) {
            return std::nullopt; // a damaged entry: made again
        }
    };
    if (const auto entry = cache.find_directory(k_live_boot_step, key)) {
        if (auto assets = load(*entry)) {
            console.detail("iso: boot loaders and EFI system partition from the cache ({})",
                           key.substr(0, 12));
            return std::move(*assets);
        }
    }
    const StepCache::Lock lock = cache.lock(k_live_boot_step, key);
    if (const auto entry = cache.find_directory(k_live_boot_step, key)) {
        if (auto assets = load(*entry)) {
            return std::move(*assets);
        }
    }
    formats::LiveBootAssets made = formats::prepare_live_boot(inputs);
    // Keep the files the ISO takes from the work directory (not the grub module copies).
    util::TempDir produced(cache.work_dir(), "live-boot-");
    const stdfs::path& work = inputs.work_directory;
    nlohmann::json files = nlohmann::json::array();
    const auto keep = [&](const stdfs::path& file) {
        const std::string recorded = recorded_path(file, work, rootfs.bootfs);
        if (recorded.starts_with("work:")) {
            const stdfs::path copy = produced.path() / recorded.substr(5);
            stdfs::create_directories(copy.parent_path());
            stdfs::copy_file(file, copy, stdfs::copy_options::overwrite_existing);
        }
        return recorded;
    };
    for (const auto& file : made.efi.files) {
        files.push_back(
            {{"name", file.name}, {"path", keep(file.host_path)}, {"origin", file.origin}});
    }
    nlohmann::json bios = nullptr;
    if (made.bios) {
        bios = {{"eltorito", keep(made.bios->eltorito_image)},
                {"hybrid_mbr", keep(made.bios->hybrid_mbr)},
                {"origin", made.bios->origin}};
    }
    const nlohmann::json index{{"efi",
                                {{"files", files},
                                 {"signed_chain", made.efi.signed_chain},
                                 {"built_grub", made.efi.built_grub}}},
                               {"bios", bios},
                               {"esp_image", keep(made.esp_image)}};
    util::write_file_atomically(produced.path() / k_live_boot_index, index.dump(2) + "\n");
    try {
        (void)cache.store_directory(k_live_boot_step, key, produced.path(), key_inputs);
    } catch (const std::exception& error) {
        console.detail("iso: the boot files were not cached: {}", error.what());
    }
    return made;
}

std::unique_ptr<PreparedLiveIso> prepare_iso(const IsoPlan& plan, const Console& console,
                                             std::size_t variants) {
    std::error_code ec;
    stdfs::create_directories(plan.output_dir, ec);
    if (ec) {
        throw build_failed("cannot create the output directory {}: {}", plan.output_dir.string(),
                           ec.message());
    }

    // Everything on the ISO but the root filesystem is known now; check for it before the
    // root filesystem step too, so a full disk is reported before minutes of compression.
    const std::uint64_t payload =
        (64u << 20) + medium_payload_bytes(plan); // + kernel, initrd, boot images, ISO metadata
    check_free_space(plan.output_dir, payload * variants, "the ISO", "--output-dir");
    auto prepared = std::make_unique<PreparedLiveIso>();
    prepared->rootfs = compose_rootfs(plan, console);
    check_free_space(plan.output_dir,
                     (payload + stdfs::file_size(prepared->rootfs.squashfs)) * variants,
                     variants > 1 ? "the site ISOs" : "the ISO", "--output-dir");

    // The boot files of the rootfs as a small tree of host files: the same lookups the full
    // tree would answer, without merging the layers again on a cache hit.
    oci::apply_directory(prepared->rootfs.bootfs, prepared->boot_tree);
    prepared->work = std::make_unique<util::TempDir>(plan.output_dir, ".edgeforge-iso-");
    prepared->no_spill = std::make_unique<fs::SpillFile>(prepared->work->path());

    formats::LiveIsoInputs inputs;
    inputs.arch = plan.arch;
    inputs.rootfs = &prepared->boot_tree;
    inputs.spill = prepared->no_spill.get();
    inputs.squashfs = prepared->rootfs.squashfs;
    if (plan.iso_overlay) {
        inputs.overlay_directories.push_back(*plan.iso_overlay);
    }
    inputs.menu.arch = plan.arch;
    inputs.menu.extra_cmdline = plan.extra_cmdline;
    inputs.menu.interactive_default = plan.interactive_default;
    inputs.menu.debug = plan.debug;
    inputs.source_date_epoch = plan.source_date_epoch;
    inputs.work_directory = prepared->work->path();
    console.info("iso: preparing boot loaders and the EFI system partition");
    (void)boot::find_kernel_and_initrd(prepared->boot_tree); // no kernel: fail before any work
    prepared->live = formats::describe_live_iso(
        inputs, live_boot_assets(plan, prepared->rootfs, inputs, console));
    if (auto menu = user_menu(plan)) {
        prepared->live.description.overrides.push_back(std::move(*menu));
    }

    auto& files = prepared->live.description.files;
    for (auto& file : medium_payload_files(plan, console)) {
        files.push_back(std::move(file));
    }
    return prepared;
}

struct WrittenIso {
    Artifact iso;
    Artifact checksum; // set by finish_variant()
    std::unique_ptr<util::AtomicFile> uncommitted; // until finish_variant()
};

// Makes the written ISO durable under its final name and writes its .sha256 next to it.
void finish_variant(WrittenIso& written) {
    if (written.uncommitted) {
        try {
            written.uncommitted->commit();
        } catch (const std::system_error& error) {
            throw build_failed("cannot write the ISO image {}: {}", written.iso.path.string(),
                               error.what());
        }
        written.uncommitted.reset();
    }
    written.checksum = write_checksum_file(written.iso);
}

// Writes one ISO of the prepared layout with `user_data` as /config.yaml. The image is left
// uncommitted: finish_variant() gives it its final name and writes the .sha256.
WrittenIso write_iso_variant(const IsoPlan& plan, const PreparedLiveIso& prepared,
                             const std::string& user_data, const stdfs::path& iso_path,
                             const Console& console, std::string_view progress_label) {
    formats::IsoDescription description = prepared.live.description;
    description.files.push_back({"/config.yaml", formats::IsoBytes{user_data}, 0644});
    description.content_digest = layout_digest(plan, prepared.rootfs, util::sha256_hex(user_data));

    console.info("{}: writing {}", progress_label, iso_path.string());
    formats::IsoWriteResult written;
    {
        Progress progress(console, std::string(progress_label), 0);
        written = formats::write_iso(
            description, iso_path,
            [&](std::uint64_t done, std::uint64_t total) {
                progress.set_total(total);
                progress.update(done);
            },
            formats::IsoCommit::by_caller);
        progress.finish();
    }
    for (const auto& warning : written.warnings) {
        console.detail("libisofs: {}", warning);
    }
    WrittenIso result;
    result.iso = Artifact{iso_path, written.size, written.sha256};
    result.uncommitted = std::move(written.uncommitted);
    return result;
}

double seconds_since(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

} // namespace

IsoBuildResult build_iso(const IsoPlan& plan, const Console& console) {
    const auto started = std::chrono::steady_clock::now();
    const auto prepared = prepare_iso(plan, console, 1);
    WrittenIso written = write_iso_variant(plan, *prepared, util::read_file(plan.user_data),
                                           plan.iso_path(), console, "iso");
    finish_variant(written);
    IsoBuildResult result;
    result.iso = written.iso;
    result.checksum = written.checksum;
    const double seconds = seconds_since(started);
    result.summary = {{"rootfs", prepared->rootfs.summary},
                      {"secure_boot_chain", prepared->live.efi.signed_chain},
                      {"bios_boot", prepared->live.bios.has_value()},
                      {"seconds", seconds}};
    console.info("iso: {} ({}) in {}{}", plan.iso_path().string(),
                 util::format_bytes(written.iso.size), util::format_duration(seconds),
                 prepared->rootfs.cache_hit ? " (rootfs from cache)" : "");
    return result;
}

std::size_t SitesBuildResult::failed() const {
    return static_cast<std::size_t>(std::count_if(
        sites.begin(), sites.end(), [](const SiteResult& site) { return !site.error.empty(); }));
}

namespace {

nlohmann::json sites_index(const IsoPlan& plan, const std::vector<SiteResult>& sites) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& site : sites) {
        nlohmann::json entry{{"site", site.site},
                             {"file", site.file.string()},
                             {"status", site.error.empty() ? "built" : "failed"}};
        if (site.iso) {
            entry["iso"] = site.iso->path.filename().string();
            entry["size"] = site.iso->size;
            entry["sha256"] = site.iso->sha256;
            entry["user_data_sha256"] = site.user_data_sha256;
            entry["seconds"] = site.seconds;
        } else {
            entry["error"] = site.error;
        }
        list.push_back(std::move(entry));
    }
    return {{"name", plan.name},
            {"arch", plan.arch.name()},
            {"sites_dir", plan.sites_dir ? plan.sites_dir->string() : std::string()},
            {"sites", list}};
}

} // namespace

SitesBuildResult build_iso_sites(const IsoPlan& plan, FailurePolicy policy,
                                 const Console& console) {
    const auto started = std::chrono::steady_clock::now();
    SitesBuildResult result;
    std::size_t buildable = 0;
    for (const auto& site : plan.sites) {
        if (!site.error.empty()) {
            if (policy == FailurePolicy::fail_fast) {
                throw bad_input("site {} ({}): {}\nNothing was built (--fail-fast).", site.name,
                                site.file.string(), site.error);
            }
            console.error("site {} fails: {}", site.name, site.error);
        } else {
            ++buildable;
        }
        for (const auto& warning : site.warnings) {
            console.warning("{}", warning);
        }
    }
    if (buildable == 0) {
        throw bad_input("no site of {} can be built; fix the site files above",
                        plan.sites_dir->string());
    }

    const auto prepared = prepare_iso(plan, console, buildable);
    const double shared_seconds = seconds_since(started);
    // Each ISO is fsynced and renamed on a second thread while the next one is written: the
    // disk flushes one image while the CPU produces the next.
    std::future<Artifact> committing; // the .sha256 of the site being committed
    std::size_t committing_index = 0;
    const auto wait_for_commit = [&] {
        if (!committing.valid()) {
            return;
        }
        SiteResult& site = result.sites[committing_index];
        try {
            site.checksum = committing.get();
        } catch (const Error& error) {
            if (policy == FailurePolicy::fail_fast) {
                throw;
            }
            site.error = error.what();
            site.iso.reset();
            site.checksum.reset();
            console.error("site {} failed: {}", site.site, site.error);
        }
    };
    std::size_t index = 0;
    for (const auto& site : plan.sites) {
        ++index;
        SiteResult outcome;
        outcome.site = site.name;
        outcome.file = site.file;
        outcome.error = site.error;
        result.sites.push_back(std::move(outcome));
        SiteResult& current = result.sites.back();
        if (!site.error.empty()) {
            continue;
        }
        const auto site_started = std::chrono::steady_clock::now();
        try {
            auto written = std::make_shared<WrittenIso>(write_iso_variant(
                plan, *prepared, site.user_data, plan.site_iso_path(site), console,
                fmt::format("site {}/{} {}", index, plan.sites.size(), site.name)));
            current.iso = written->iso;
            current.user_data_sha256 = util::sha256_hex(site.user_data);
            wait_for_commit();
            committing_index = index - 1;
            committing = std::async(std::launch::async, [written] {
                finish_variant(*written);
                return written->checksum;
            });
        } catch (const Error& error) {
            if (policy == FailurePolicy::fail_fast) {
                wait_for_commit();
                throw;
            }
            current.error = error.what();
            console.error("site {} failed: {}", site.name, current.error);
        }
        current.seconds = seconds_since(site_started);
    }
    wait_for_commit();

    const std::string index_text = sites_index(plan, result.sites).dump(2) + "\n";
    util::write_file_atomically(plan.sites_index_path(), index_text);
    result.index = Artifact{plan.sites_index_path(), index_text.size(), util::sha256_hex(index_text)};
    const double seconds = seconds_since(started);
    double per_site = 0;
    for (const auto& site : result.sites) {
        per_site += site.seconds;
    }
    const std::size_t built = result.sites.size() - result.failed();
    result.summary = {{"rootfs", prepared->rootfs.summary},
                      {"sites", result.sites.size()},
                      {"built", built},
                      {"failed", result.failed()},
                      {"shared_seconds", shared_seconds},
                      {"seconds_per_site", built == 0 ? 0.0 : per_site / static_cast<double>(built)},
                      {"seconds", seconds}};
    console.info("iso: {} of {} site installers in {} ({} shared, {} per site){}", built,
                 result.sites.size(), util::format_duration(seconds),
                 util::format_duration(shared_seconds),
                 util::format_duration(built == 0 ? 0.0 : per_site / static_cast<double>(built)),
                 prepared->rootfs.cache_hit ? " (rootfs from cache)" : "");
    return result;
}

nlohmann::json artifacts_to_json(const std::vector<Artifact>& artifacts,
                                 const nlohmann::json& summary) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& artifact : artifacts) {
        list.push_back({{"path", artifact.path.string()},
                        {"size", artifact.size},
                        {"sha256", artifact.sha256}});
    }
    return {{"artifacts", list}, {"summary", summary}};
}

} // namespace edgeforge
