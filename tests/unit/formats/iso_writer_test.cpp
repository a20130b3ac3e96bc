// Unit tests for formats/iso_writer: hybrid BIOS/UEFI layout judged by xorriso and sgdisk,
// reproducibility, errors; and (EDGEFORGE_BOOT_TESTS=1) live ISOs of the fixture booted in QEMU.
#include <doctest/doctest.h>

#include "support/data.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "boot/efi.h"
#include "boot/esp.h"
#include "boot/grub.h"
#include "base/error.h"
#include "formats/iso_writer.h"
#include "fs/tree.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/process.h"
#include "util/strings.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

bool have_tools(std::initializer_list<const char*> tools) {
    for (const char* tool : tools) {
        if (!util::find_program(tool)) {
            MESSAGE("skipped: " << tool << " is not installed");
            return false;
        }
    }
    return true;
}

std::string run_ok(const std::vector<std::string>& argv) {
    const auto result = util::run_process(argv);
    INFO(argv.front(), " ", argv.size() > 1 ? argv[1] : "", ": ", result.standard_error);
    REQUIRE(result.exit_code == 0);
    return result.standard_output;
}

std::string xorriso(const stdfs::path& iso, std::vector<std::string> commands) {
    std::vector<std::string> argv{"xorriso", "-abort_on", "FAILURE", "-indev", iso.string()};
    argv.insert(argv.end(), commands.begin(), commands.end());
    return run_ok(argv);
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// A small rootfs-like input: kernel and initrd in a tree (spill data), a fake squashfs, user
// data, an overlay directory, an ESP with fake EFI binaries and, for amd64, the host's grub BIOS
// image.
struct SampleIso {
    util::TempDir dir;
    fs::SpillFile spill{dir.path()};
    std::shared_ptr<fs::Inode> kernel = std::make_shared<fs::Inode>();
    std::shared_ptr<fs::Inode> initrd = std::make_shared<fs::Inode>();
    formats::IsoDescription description;
    std::string user_data = "#cloud-config\nstylus:\n  site:\n    name: unit\n";

    SampleIso(Arch arch, std::optional<std::int64_t> epoch, bool bios = true) {
        const auto kernel_bytes = edgeforge::testing::pseudo_random_bytes(700 * 1024 + 3, 1);
        kernel->data = {
            fs::DataRef::Kind::spill, {}, spill.append(kernel_bytes), kernel_bytes.size()};
        const auto initrd_bytes = edgeforge::testing::pseudo_random_bytes(300 * 1024, 2);
        initrd->data = {
            fs::DataRef::Kind::spill, {}, spill.append(initrd_bytes), initrd_bytes.size()};
        spill.flush();
        util::write_file_atomically(
            dir.path() / "rootfs.squashfs",
            edgeforge::testing::pseudo_random_bytes(3 * 1024 * 1024 + 5, 3));
        util::write_file_atomically(dir.path() / "efi-boot",
                                    edgeforge::testing::pseudo_random_bytes(64 * 1024, 4));

        const auto overlay = dir.path() / "overlay";
        stdfs::create_directories(overlay / "opt" / "spectrocloud" / "content");
        util::write_file_atomically(overlay / "opt" / "spectrocloud" / "content" / "bundle.zst",
                                    edgeforge::testing::pseudo_random_bytes(65537, 5));
        util::write_file_atomically(overlay / "run.sh", "#!/bin/sh\necho hi\n");
        stdfs::permissions(overlay / "run.sh", stdfs::perms(0750));
        stdfs::create_symlink("run.sh", overlay / "link");

        boot::EfiBootFiles efi;
        efi.files.push_back(
            {std::string(arch.traits().efi_boot_file), dir.path() / "efi-boot", "t"});
        boot::EspOptions esp;
        esp.source_date_epoch = epoch;
        boot::build_esp_image(boot::live_esp_files(efi, "stub\n"), dir.path() / "uefi.img", esp);

        description.arch = arch;
        description.source_date_epoch = epoch;
        description.files = {
            {"/boot/kernel", formats::IsoTreeFile{kernel, &spill}, 0644},
            {"/boot/initrd", formats::IsoTreeFile{initrd, &spill}, 0644},
            {"/rootfs.squashfs", formats::IsoHostFile{dir.path() / "rootfs.squashfs"}, 0644},
            {"/config.yaml", formats::IsoBytes{user_data}, 0600},
            {"/boot/grub2/grub.cfg", formats::IsoBytes{"menu\n"}, 0644},
            {"/boot/uefi.img", formats::IsoHostFile{dir.path() / "uefi.img"}, 0644},
        };
        description.directories = {{"/", overlay}};
        description.efi_system_partition = dir.path() / "uefi.img";
        if (bios && arch.has_bios_boot()) {
            boot::BootAssetOptions assets;
            assets.work_directory = dir.path() / "assets";
            const fs::Tree empty;
            const auto files = boot::prepare_bios_boot_files(empty, spill, arch, assets);
            description.bios_boot = formats::IsoBiosBoot{files->eltorito_image, files->hybrid_mbr,
                                                         "/boot/eltorito.img"};
        }
    }
};

bool iso_tools_present(Arch arch) {
    if (!have_tools({"xorriso", "sgdisk", "mkfs.fat", "mcopy", "mmd"})) {
        return false;
    }
    if (arch.has_bios_boot() && !stdfs::exists("/usr/lib/grub/i386-pc/boot_hybrid.img")) {
        MESSAGE("skipped: grub-pc-bin is not installed");
        return false;
    }
    return true;
}

} // namespace

namespace {

// The lines of `report` that start with `prefix`.
std::vector<std::string> lines_with(const std::string& report, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& line : util::split(report, '\n')) {
        if (line.starts_with(prefix)) {
            out.push_back(line);
        }
    }
    return out;
}

// "GPT start and size :   2  10944  2048" -> {10944, 2048}
std::pair<std::uint64_t, std::uint64_t> gpt_extent(const std::string& report, int partition) {
    const auto lines = lines_with(report, fmt::format("GPT start and size :   {}  ", partition));
    REQUIRE(lines.size() == 1);
    std::istringstream fields(lines[0].substr(lines[0].find(':') + 1));
    std::uint64_t number = 0;
    std::uint64_t start = 0;
    std::uint64_t size = 0;
    fields >> number >> start >> size;
    return {start, size};
}

std::string sha256_range(const stdfs::path& file, std::uint64_t offset, std::uint64_t size) {
    std::ifstream in(file, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    std::string data(static_cast<std::size_t>(size), '\0');
    in.read(data.data(), static_cast<std::streamsize>(size));
    return util::sha256_hex(data);
}

// Extracts one file of the ISO with xorriso and returns its SHA-256.
std::string iso_file_sha(const stdfs::path& iso, const std::string& path,
                         const stdfs::path& scratch) {
    const auto out = scratch / "extracted";
    stdfs::remove(out);
    xorriso(iso, {"-osirrox", "on", "-extract", path, out.string()});
    return util::sha256_file_hex(out);
}

std::string error_of(const std::function<void()>& action, ExitCode expected) {
    try {
        action();
    } catch (const Error& error) {
        CHECK(error.code() == expected);
        return error.what();
    }
    FAIL("expected an edgeforge::Error");
    return {};
}

} // namespace

TEST_CASE("iso writer amd64: BIOS and EFI El Torito entries, grub2 hybrid MBR, GPT with the ESP") {
    const Arch arch(Arch::Id::amd64);
    if (!iso_tools_present(arch)) {
        return;
    }
    SampleIso sample(arch, 1700000000);
    const auto iso = sample.dir.path() / "out.iso";
    std::vector<std::pair<std::uint64_t, std::uint64_t>> progress;
    const auto result =
        formats::write_iso(sample.description, iso, [&](std::uint64_t done, std::uint64_t total) {
            progress.emplace_back(done, total);
        });
    CHECK(stdfs::file_size(iso) == result.size);
    REQUIRE_FALSE(progress.empty());
    CHECK(progress.back() == std::make_pair(result.size, result.size));
    // Joliet has no symbolic links; libisofs says so and leaves /link out of that tree only.
    CHECK(result.warnings ==
          std::vector<std::string>{"Cannot add /link to Joliet tree. Symlinks can only be added to "
                                   "a Rock Ridge tree."});

    const std::string report =
        xorriso(iso, {"-report_el_torito", "plain", "-report_system_area", "plain"});
    CAPTURE(report);
    CHECK(lines_with(report, "El Torito boot img :").size() == 2);
    CHECK(contains(report, "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4 "));
    CHECK(contains(report, "El Torito boot img :   2  UEFI  y   none  0x0000  0x00   2048 "));
    CHECK(contains(report, "El Torito img path :   1  /boot/eltorito.img\n"));
    CHECK(contains(report, "El Torito img opts :   1  boot-info-table grub2-boot-info\n"));
    CHECK(contains(
        report, "System area summary: MBR protective-msdos-label grub2-mbr cyl-align-off GPT\n"));
    CHECK(contains(report, "Partition offset   : 16\n"));
    // mbr_force_bootable: a dummy active partition beside the protective one
    CHECK(contains(report, "MBR partition      :   2   0x80  0x00            0            1\n"));
    CHECK(contains(report, "GPT partname local :   2  Appended2\n"));
    CHECK(contains(report, "GPT type GUID      :   2  28732ac11ff8d211ba4b00a0c93ec93b\n")); // ESP
    CHECK(contains(report, "GPT partname local :   1  ISO9660\n"));
    CHECK(lines_with(report, "GPT partname local :").size() == 2);

    // The appended partition is the ESP image, byte for byte.
    const auto [start, sectors] = gpt_extent(report, 2);
    CHECK(sectors * 512 == stdfs::file_size(sample.dir.path() / "uefi.img"));
    CHECK(sha256_range(iso, start * 512, sectors * 512) ==
          util::sha256_file_hex(sample.dir.path() / "uefi.img"));

    const std::string sgdisk = run_ok({"sgdisk", "-v", iso.string()});
    CHECK(contains(sgdisk, "No problems found."));

    const std::string listing = xorriso(iso, {"-find", "/", "-exec", "lsdl"});
    CAPTURE(listing);
    CHECK(contains(listing,
                   "-rw-r--r--    1 0        0          716803 Nov 14  2023 '/boot/kernel'\n"));
    CHECK(contains(listing,
                   "-rw-r--r--    1 0        0          307200 Nov 14  2023 '/boot/initrd'\n"));
    CHECK(contains(listing,
                   "-rw-------    1 0        0              45 Nov 14  2023 '/config.yaml'\n"));
    CHECK(contains(listing, "-rwxr-x---    1 0        0              18 Nov 14  2023 '/run.sh'\n"));
    CHECK(contains(
        listing, "lrwxrwxrwx    1 0        0               0 Nov 14  2023 '/link' -> 'run.sh'\n"));
    CHECK(contains(listing, "'/opt/spectrocloud/content/bundle.zst'\n"));
    CHECK(contains(listing, "'/boot/eltorito.img'\n"));
    CHECK(contains(listing, "'/boot/uefi.img'\n"));
    CHECK_FALSE(contains(listing, "boot.catalog")); // hidden
    CHECK(lines_with(listing, "").size() == 17);

    CHECK(iso_file_sha(iso, "/boot/kernel", sample.dir.path()) ==
          util::sha256_hex(fs::read_data(*sample.kernel, sample.spill)));
    CHECK(iso_file_sha(iso, "/rootfs.squashfs", sample.dir.path()) ==
          util::sha256_file_hex(sample.dir.path() / "rootfs.squashfs"));
    CHECK(iso_file_sha(iso, "/config.yaml", sample.dir.path()) ==
          util::sha256_hex(sample.user_data));
    const std::string pvd = xorriso(iso, {"-pvd_info"});
    CHECK(contains(pvd, "Volume Id    : COS_LIVE\n"));
    CHECK(contains(pvd, "Creation Time: 2023111422132000\n"));
}

TEST_CASE("iso writer arm64: only the EFI El Torito entry and the GPT ESP, no boot code") {
    const Arch arch(Arch::Id::arm64);
    if (!iso_tools_present(arch)) {
        return;
    }
    SampleIso sample(arch, 1700000000);
    const auto iso = sample.dir.path() / "out.iso";
    formats::write_iso(sample.description, iso);
    const std::string report =
        xorriso(iso, {"-report_el_torito", "plain", "-report_system_area", "plain"});
    CAPTURE(report);
    CHECK(lines_with(report, "El Torito boot img :").size() == 1);
    CHECK(contains(report, "El Torito boot img :   1  UEFI  y   none  0x0000  0x00   2048 "));
    CHECK_FALSE(contains(report, "BIOS"));
    CHECK(contains(report, "System area summary: MBR protective-msdos-label cyl-align-off GPT\n"));
    CHECK_FALSE(contains(report, "grub2-mbr"));
    CHECK(contains(report, "GPT type GUID      :   2  28732ac11ff8d211ba4b00a0c93ec93b\n"));
    CHECK(contains(run_ok({"sgdisk", "-v", iso.string()}), "No problems found."));
    const std::string listing = xorriso(iso, {"-find", "/", "-exec", "lsdl"});
    CHECK_FALSE(contains(listing, "eltorito"));
}

TEST_CASE("iso writer output is byte-for-byte reproducible with SOURCE_DATE_EPOCH") {
    const Arch arch(Arch::Id::amd64);
    if (!iso_tools_present(arch)) {
        return;
    }
    // Separate inputs in separate directories: other paths, inode numbers and, after the
    // pause, another wall-clock second.
    SampleIso first(arch, 1700000000);
    const auto a = first.dir.path() / "a.iso";
    formats::write_iso(first.description, a);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    SampleIso second(arch, 1700000000);
    const auto b = second.dir.path() / "b.iso";
    formats::write_iso(second.description, b);
    CHECK(util::sha256_file_hex(a) == util::sha256_file_hex(b));

    // Without SOURCE_DATE_EPOCH the GPT GUID is random and the times are "now".
    SampleIso third(arch, std::nullopt);
    const auto c = third.dir.path() / "c.iso";
    formats::write_iso(third.description, c);
    CHECK(util::sha256_file_hex(a) != util::sha256_file_hex(c));
}

TEST_CASE("iso writer rejects descriptions it cannot lay out, before writing anything") {
    util::TempDir dir;
    const auto out = dir.path() / "x.iso";
    formats::IsoDescription description;
    description.files = {{"/boot", formats::IsoBytes{"x"}, 0644},
                         {"/boot/kernel", formats::IsoBytes{"k"}, 0644}};
    CHECK(error_of([&] { formats::write_iso(description, out); }, ExitCode::bad_input) ==
          "ISO path /boot/kernel: its parent /boot is a file, not a directory");
    description.files = {{"boot/kernel", formats::IsoBytes{"k"}, 0644}};
    CHECK(error_of([&] { formats::write_iso(description, out); }, ExitCode::bad_input) ==
          "ISO path 'boot/kernel' is not absolute");
    description.files = {{"/a/../b", formats::IsoBytes{"k"}, 0644}};
    CHECK(error_of([&] { formats::write_iso(description, out); }, ExitCode::bad_input) ==
          "ISO path '/a/../b' contains '..'");
    description.files = {{"/x", formats::IsoHostFile{dir.path() / "missing"}, 0644}};
    CHECK(error_of([&] { formats::write_iso(description, out); }, ExitCode::build_failed) ==
          "cannot read " + (dir.path() / "missing").string() + ": No such file or directory");
    description.files = {};
    description.arch = Arch(Arch::Id::arm64);
    description.bios_boot = formats::IsoBiosBoot{"/x", "/y", "/boot/eltorito.img"};
    CHECK(error_of([&] { formats::write_iso(description, out); }, ExitCode::bad_input) ==
          "arm64 has no BIOS boot; an ISO for it cannot carry a BIOS boot image");

    // An overlay file may replace a generated one; a file may not replace a directory.
    stdfs::create_directories(dir.path() / "overlay");
    util::write_file_atomically(dir.path() / "overlay" / "boot", "not a directory");
    description = {};
    description.files = {{"/boot/kernel", formats::IsoBytes{"k"}, 0644}};
    description.directories = {{"/", dir.path() / "overlay"}};
    CHECK(error_of([&] { formats::write_iso(description, out); }, ExitCode::bad_input) ==
          "ISO path /boot: a file would replace a directory");
    CHECK_FALSE(stdfs::exists(out));
}

TEST_CASE("iso writer overlays replace generated files and merge directories") {
    if (!have_tools({"xorriso"})) {
        return;
    }
    util::TempDir dir;
    stdfs::create_directories(dir.path() / "overlay" / "boot" / "grub2");
    util::write_file_atomically(dir.path() / "overlay" / "boot" / "grub2" / "grub.cfg", "custom\n");
    formats::IsoDescription description;
    description.source_date_epoch = 1700000000;
    description.files = {{"/boot/grub2/grub.cfg", formats::IsoBytes{"generated\n"}, 0644},
                         {"/boot/kernel", formats::IsoBytes{"k"}, 0644}};
    description.directories = {{"/", dir.path() / "overlay"}};
    const auto iso = dir.path() / "x.iso";
    formats::write_iso(description, iso);
    CHECK(iso_file_sha(iso, "/boot/grub2/grub.cfg", dir.path()) == util::sha256_hex("custom\n"));
    CHECK(iso_file_sha(iso, "/boot/kernel", dir.path()) == util::sha256_hex("k"));
    // No boot setup asked for: no El Torito, no partition table.
    const std::string report =
        xorriso(iso, {"-report_el_torito", "plain", "-report_system_area", "plain"});
    CHECK_FALSE(contains(report, "El Torito boot img"));
    CHECK_FALSE(contains(report, "GPT"));
}

TEST_CASE("iso writer fails naming a host file that changes while it is written, leaving nothing") {
    util::TempDir dir;
    util::write_file_atomically(dir.path() / "a-big.bin",
                                edgeforge::testing::pseudo_random_bytes(20 * 1024 * 1024, 7));
    util::write_file_atomically(dir.path() / "z-small.bin",
                                edgeforge::testing::pseudo_random_bytes(100000, 8));
    formats::IsoDescription description;
    description.files = {{"/a-big.bin", formats::IsoHostFile{dir.path() / "a-big.bin"}, 0644},
                         {"/z-small.bin", formats::IsoHostFile{dir.path() / "z-small.bin"}, 0644}};
    const auto out = dir.path() / "out.iso";
    bool truncated = false;
    const auto message = error_of(
        [&] {
            formats::write_iso(description, out, [&](std::uint64_t, std::uint64_t) {
                if (!truncated) { // data is laid out in path order: z-small.bin is still ahead
                    stdfs::resize_file(dir.path() / "z-small.bin", 10);
                    truncated = true;
                }
            });
        },
        ExitCode::build_failed);
    CHECK(truncated);
    CHECK(contains(message, "writing the ISO image " + out.string() + " failed"));
    CHECK(contains(message, "/z-small.bin: " + (dir.path() / "z-small.bin").string() +
                                " changed while the image was being built (it was 100000 bytes, "
                                "now 10); run the build again"));
    std::vector<std::string> names;
    for (const auto& entry : stdfs::directory_iterator(dir.path())) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"a-big.bin", "z-small.bin"});
}

TEST_CASE("iso writer lays out the live installer ISO from a rootfs tree") {
    const Arch arch(Arch::Id::amd64);
    if (!iso_tools_present(arch) || !stdfs::exists("/usr/lib/grub/x86_64-efi/kernel.img")) {
        return;
    }
    util::TempDir dir;
    fs::SpillFile spill(dir.path());
    fs::Tree tree;
    const auto add = [&](const std::string& path, const std::string& content) {
        fs::Inode* current = &tree.root();
        const auto parts = fs::split_path(path);
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            auto [slot, inserted] = current->children.try_emplace(std::string(parts[i]));
            if (inserted) {
                slot->second = fs::make_directory(0755, 0);
            }
            current = slot->second.get();
        }
        auto inode = std::make_shared<fs::Inode>();
        inode->data = {fs::DataRef::Kind::spill, {}, spill.append(content), content.size()};
        current->children[std::string(parts.back())] = inode;
    };
    add("/boot/vmlinuz-6.1", "kernel");
    add("/boot/initrd.img-6.1", "initrd");
    add("/usr/lib/shim/shimx64.efi.signed", "shim");
    spill.flush();
    util::write_file_atomically(dir.path() / "rootfs.squashfs", "squash");
    stdfs::create_directories(dir.path() / "overlay");
    util::write_file_atomically(dir.path() / "overlay" / "README.txt", "hello\n");

    formats::LiveIsoInputs inputs;
    inputs.arch = arch;
    inputs.rootfs = &tree;
    inputs.spill = &spill;
    inputs.squashfs = dir.path() / "rootfs.squashfs";
    inputs.user_data = "#cloud-config\n";
    inputs.overlay_directories = {dir.path() / "overlay"};
    inputs.source_date_epoch = 1700000000;
    inputs.work_directory = dir.path() / "work";
    stdfs::create_directories(inputs.work_directory);
    const auto plan = formats::prepare_live_iso(inputs);
    CHECK(plan.kernel.kernel_path == "/boot/vmlinuz-6.1");
    CHECK(plan.efi.built_grub); // shim without grub: grub-mkimage made grubx64.efi
    REQUIRE(plan.bios.has_value());
    const auto iso = dir.path() / "live.iso";
    formats::write_iso(plan.description, iso);

    const std::string listing = xorriso(iso, {"-find", "/", "-type", "f", "-exec", "echo"});
    CAPTURE(listing);
    for (const char* path :
         {"/.disk/info", "/EFI/BOOT/grub.cfg", "/README.txt", "/boot/eltorito.img",
          "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/initrd", "/boot/kernel",
          "/boot/uefi.img", "/config.yaml", "/rootfs.squashfs"}) {
        CHECK(contains(listing, "'" + std::string(path) + "'\n"));
    }
    CHECK(iso_file_sha(iso, "/boot/kernel", dir.path()) == util::sha256_hex("kernel"));
    CHECK(iso_file_sha(iso, "/boot/grub/grub.cfg", dir.path()) ==
          util::sha256_hex(boot::render_grub_stub()));
    const std::string esp = run_ok(
        {"env", "MTOOLS_SKIP_CHECK=1", "mdir", "-b", "-/", "-i", plan.esp_image.string(), "::/"});
    CHECK(esp == "::/EFI/\n::/EFI/BOOT/\n::/EFI/BOOT/BOOTX64.EFI\n::/EFI/BOOT/grub.cfg\n"
                 "::/EFI/BOOT/grubx64.efi\n");
}

// ------------------------------------------------------------------------------ boot tests

namespace {

// A tree over an unpacked host directory (file data stays in the host files), standing in for
// the layer merge until the boot test uses it.
void add_host_tree(fs::Inode& directory, const stdfs::path& host) {
    std::vector<stdfs::path> entries;
    for (const auto& entry : stdfs::directory_iterator(host)) {
        entries.push_back(entry.path());
    }
    for (const auto& path : entries) {
        struct stat info {};
        REQUIRE(::lstat(path.c_str(), &info) == 0);
        auto inode = std::make_shared<fs::Inode>();
        inode->mode = static_cast<std::uint32_t>(info.st_mode & 07777);
        inode->mtime = info.st_mtim.tv_sec;
        if (S_ISDIR(info.st_mode)) {
            inode->type = fs::FileType::directory;
            add_host_tree(*inode, path);
        } else if (S_ISLNK(info.st_mode)) {
            inode->type = fs::FileType::symlink;
            inode->symlink_target = stdfs::read_symlink(path).string();
        } else if (S_ISREG(info.st_mode)) {
            inode->data = {fs::DataRef::Kind::host_file, path, 0,
                           static_cast<std::uint64_t>(info.st_size)};
        } else {
            continue;
        }
        directory.children[path.filename().string()] = inode;
    }
}

struct BootRun {
    std::string name;
    std::vector<std::string> arguments;
};

} // namespace

TEST_CASE("iso boot test: the fixture's live ISO boots under SeaBIOS, OVMF, Secure Boot, AAVMF") {
    const char* enabled = std::getenv("EDGEFORGE_BOOT_TESTS");
    if (enabled == nullptr || std::string(enabled) != "1") {
        MESSAGE(
            "skipped: set EDGEFORGE_BOOT_TESTS=1 to build the fixture's live ISOs and boot them");
        return;
    }
    const stdfs::path source(EDGEFORGE_SOURCE_DIR);
    const char* only = std::getenv("EDGEFORGE_BOOT_TESTS_ONLY"); // e.g. "amd64-seabios-cdrom"
    const char* keep = std::getenv("EDGEFORGE_BOOT_TESTS_KEEP"); // a directory to copy ISOs to
    const std::string user_data = "#cloud-config\n# edgeforge iso boot test\nstylus:\n  site:\n"
                                  "    name: iso-boot-test\n";
    const std::string config_sha = util::sha256_hex(user_data);

    for (const Arch arch : Arch::all()) {
        const auto layout =
            edgeforge::testing::fixtures_dir() / fmt::format("base-{}", arch.name());
        if (!stdfs::exists(layout / "index.json")) {
            MESSAGE("skipped " << arch.name() << ": no fixture at " << layout.string()
                               << " (tests/fixtures/build-fixtures)");
            continue;
        }
        util::TempDir work;
        const auto rootfs_dir = work.path() / "rootfs";
        run_ok({(source / "tests" / "e2e" / "oci-unpack").string(), layout.string(),
                rootfs_dir.string()});
        for (const char* mount_point : {"proc", "sys", "dev", "run", "tmp"}) {
            stdfs::create_directories(rootfs_dir / mount_point);
        }
        const auto squashfs = work.path() / "rootfs.squashfs";
        run_ok({"env", "SOURCE_DATE_EPOCH=1700000000", "mksquashfs", rootfs_dir.string(),
                squashfs.string(), "-noappend", "-all-root", "-comp", "zstd", "-Xcompression-level",
                "1", "-quiet", "-no-progress"});
        util::TempDir spill_dir;
        fs::SpillFile spill(spill_dir.path());
        fs::Tree tree;
        add_host_tree(tree.root(), rootfs_dir);

        // A content bundle (extra file) and an ISO overlay, which the fixture's init lists.
        const std::string bundle = edgeforge::testing::pseudo_random_bytes(65537, 9);
        stdfs::create_directories(work.path() / "overlay" / "opt" / "spectrocloud" /
                                  "clusterconfig");
        util::write_file_atomically(work.path() / "overlay" / "opt" / "spectrocloud" /
                                        "clusterconfig" / "spc.tgz",
                                    "cluster config\n");

        formats::LiveIsoInputs inputs;
        inputs.arch = arch;
        inputs.rootfs = &tree;
        inputs.spill = &spill;
        inputs.squashfs = squashfs;
        inputs.user_data = user_data;
        inputs.extra_files = {
            {"/opt/spectrocloud/content/bundle.zst", formats::IsoBytes{bundle}, 0644}};
        inputs.overlay_directories = {work.path() / "overlay"};
        inputs.menu.timeout_seconds = 1;
        inputs.source_date_epoch = 1700000000;
        inputs.work_directory = work.path() / "assets";
        stdfs::create_directories(inputs.work_directory);
        const auto start = std::chrono::steady_clock::now();
        const auto plan = formats::prepare_live_iso(inputs);
        const auto iso = work.path() / fmt::format("live-{}.iso", arch.name());
        const auto written = formats::write_iso(plan.description, iso);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        {
            // The same inputs in another work directory give the same bytes (ESP, grub images
            // and ISO all derived from the inputs and SOURCE_DATE_EPOCH).
            inputs.work_directory = work.path() / "assets-again";
            stdfs::create_directories(inputs.work_directory);
            const auto again = formats::prepare_live_iso(inputs);
            const auto copy = work.path() / "again.iso";
            formats::write_iso(again.description, copy);
            CHECK(util::sha256_file_hex(copy) == util::sha256_file_hex(iso));
            stdfs::remove(copy);
        }
        std::string efi_files;
        for (const auto& file : plan.efi.files) {
            efi_files += " " + file.name + "<-" + file.origin;
        }
        MESSAGE(arch.name() << ": ISO " << util::format_bytes(written.size) << " in "
                            << took.count() << " s; kernel " << plan.kernel.kernel_path
                            << ", initrd " << plan.kernel.initrd_path << "; EFI:" << efi_files
                            << (plan.bios ? "; BIOS from " + plan.bios->origin : std::string()));
        if (keep != nullptr) {
            stdfs::copy_file(iso, stdfs::path(keep) / iso.filename(),
                             stdfs::copy_options::overwrite_existing);
        }

        // Variants without the rootfs's signed grub: grub-mkimage builds it from the rootfs's
        // modules, once behind the signed shim (amd64) and once alone as BOOT<X>.EFI.
        const auto variant = [&](const std::string& label, bool keep_shim) {
            fs::Tree stripped;
            add_host_tree(stripped.root(), rootfs_dir);
            auto& lib = stripped.root().children.at("usr")->children.at("lib")->children;
            lib.at("grub")->children.erase(fmt::format("{}-signed", arch.traits().grub_efi_target));
            if (!keep_shim) {
                lib.erase("shim");
            }
            formats::LiveIsoInputs changed = inputs;
            changed.rootfs = &stripped;
            changed.work_directory = work.path() / ("assets-" + label);
            stdfs::create_directories(changed.work_directory);
            const auto variant_plan = formats::prepare_live_iso(changed);
            CHECK(variant_plan.efi.built_grub);
            CHECK(variant_plan.efi.files.size() == (keep_shim ? 2u : 1u));
            const auto path = work.path() / fmt::format("live-{}-{}.iso", arch.name(), label);
            formats::write_iso(variant_plan.description, path);
            MESSAGE(arch.name() << " " << label << ": EFI " << variant_plan.efi.files.back().name
                                << "<-" << variant_plan.efi.files.back().origin);
            return path.string();
        };
        const std::string built_grub = variant("built-grub", false);

        std::vector<BootRun> runs;
        if (arch.has_bios_boot()) {
            runs.push_back({"seabios-cdrom", {"--firmware", "seabios", "--cdrom", iso.string()}});
            runs.push_back(
                {"seabios-disk", {"--firmware", "seabios", "--disk", iso.string(), "--snapshot"}});
            runs.push_back(
                {"seabios-usb", {"--firmware", "seabios", "--usb", iso.string(), "--snapshot"}});
            runs.push_back({"ovmf-cdrom", {"--firmware", "ovmf", "--cdrom", iso.string()}});
            runs.push_back(
                {"ovmf-disk", {"--firmware", "ovmf", "--disk", iso.string(), "--snapshot"}});
            runs.push_back(
                {"ovmf-usb", {"--firmware", "ovmf", "--usb", iso.string(), "--snapshot"}});
            runs.push_back({"ovmf-secboot-cdrom",
                            {"--firmware", "ovmf-secboot", "--cdrom", iso.string(), "--expect",
                             "secureboot: Secure boot enabled"}});
            const std::string shim_built_grub = variant("shim-built-grub", true);
            runs.push_back(
                {"built-grub-ovmf-cdrom", {"--firmware", "ovmf", "--cdrom", built_grub}});
            runs.push_back({"built-grub-ovmf-disk",
                            {"--firmware", "ovmf", "--disk", built_grub, "--snapshot"}});
            runs.push_back(
                {"shim-built-grub-ovmf-cdrom", {"--firmware", "ovmf", "--cdrom", shim_built_grub}});
        } else {
            runs.push_back({"aavmf-cdrom", {"--firmware", "aavmf", "--cdrom", iso.string()}});
            runs.push_back(
                {"aavmf-disk", {"--firmware", "aavmf", "--disk", iso.string(), "--snapshot"}});
            runs.push_back(
                {"aavmf-usb", {"--firmware", "aavmf", "--usb", iso.string(), "--snapshot"}});
            runs.push_back(
                {"built-grub-aavmf-cdrom", {"--firmware", "aavmf", "--cdrom", built_grub}});
            runs.push_back({"built-grub-aavmf-disk",
                            {"--firmware", "aavmf", "--disk", built_grub, "--snapshot"}});
        }
        // Boots run in parallel (one TCG vCPU each), at most EDGEFORGE_BOOT_TESTS_JOBS (2).
        const char* jobs_env = std::getenv("EDGEFORGE_BOOT_TESTS_JOBS");
        const std::size_t jobs = jobs_env != nullptr ? std::stoul(jobs_env) : 2;
        struct Outcome {
            std::string name;
            util::ProcessResult result;
            double seconds = 0;
        };
        std::vector<std::future<Outcome>> running;
        std::vector<Outcome> outcomes;
        for (const auto& run : runs) {
            const std::string name = fmt::format("{}-{}", arch.name(), run.name);
            if (only != nullptr && name.find(only) == std::string::npos) {
                continue;
            }
            std::vector<std::string> argv{
                (source / "tests" / "e2e" / "qemu-boot").string(), "--arch",
                std::string(arch.name()), "--timeout", "300", "--expect",
                "EDGEFORGE: config.yaml sha256=" + config_sha, "--expect",
                "EDGEFORGE: squashfs mounted", "--expect", "EDGEFORGE: rootfs-dirs ok", "--expect",
                fmt::format("EDGEFORGE: content bundle.zst size={} sha256={}", bundle.size(),
                            util::sha256_hex(bundle)),
                "--expect",
                "EDGEFORGE: clusterconfig spc.tgz size=15 sha256=" +
                    util::sha256_hex("cluster config\n"),
                "--expect", "EDGEFORGE: done",
                // grub without its menu drops to its shell: fail at once instead of timing out
                "--fail", "grub> "};
            argv.insert(argv.end(), run.arguments.begin(), run.arguments.end());
            if (keep != nullptr) {
                argv.insert(argv.end(), {"--log", (stdfs::path(keep) / (name + ".log")).string()});
            }
            while (running.size() >= std::max<std::size_t>(jobs, 1)) {
                for (auto it = running.begin(); it != running.end(); ++it) {
                    if (it->wait_for(std::chrono::milliseconds(100)) == std::future_status::ready) {
                        outcomes.push_back(it->get());
                        running.erase(it);
                        break;
                    }
                }
            }
            running.push_back(std::async(std::launch::async, [name, argv] {
                const auto boot_start = std::chrono::steady_clock::now();
                Outcome outcome{name, util::run_process(argv), 0};
                outcome.seconds =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - boot_start)
                        .count();
                return outcome;
            }));
        }
        for (auto& future : running) {
            outcomes.push_back(future.get());
        }
        for (const auto& outcome : outcomes) {
            MESSAGE(outcome.name << ": " << (outcome.result.exit_code == 0 ? "PASS" : "FAIL")
                                 << " in " << outcome.seconds << " s");
            CHECK_MESSAGE(outcome.result.exit_code == 0, outcome.name, "\n",
                          outcome.result.standard_output, outcome.result.standard_error);
        }
    }
}
