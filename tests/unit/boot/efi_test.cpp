// Unit tests for boot/efi: kernel/initrd discovery, EFI binaries from the rootfs, grub-mkimage.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "boot/efi.h"
#include "base/error.h"
#include "fs/tree.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

// A small rootfs built in memory; file data lives in a spill file or points at host files.
class TestRootfs {
  public:
    TestRootfs() : spill_(dir_.path()) {}

    void file(const std::string& path, const std::string& content) {
        auto inode = std::make_shared<fs::Inode>();
        if (!content.empty()) {
            inode->data.kind = fs::DataRef::Kind::spill;
            inode->data.offset = spill_.append(content);
            inode->data.size = content.size();
        }
        place(path, inode);
    }
    void host_file(const std::string& path, const stdfs::path& host) {
        auto inode = std::make_shared<fs::Inode>();
        inode->data.kind = fs::DataRef::Kind::host_file;
        inode->data.path = host;
        inode->data.size = stdfs::file_size(host);
        place(path, inode);
    }
    // Every regular file of a host directory (not recursive) below `path`.
    void host_directory(const std::string& path, const stdfs::path& host) {
        for (const auto& entry : stdfs::directory_iterator(host)) {
            if (entry.is_regular_file()) {
                host_file(path + "/" + entry.path().filename().string(), entry.path());
            }
        }
    }
    void symlink(const std::string& path, const std::string& target) {
        auto inode = std::make_shared<fs::Inode>();
        inode->type = fs::FileType::symlink;
        inode->mode = 0777;
        inode->symlink_target = target;
        place(path, inode);
    }
    void directory(const std::string& path) { parent_of(path + "/x"); }

    const fs::Tree& tree() const { return tree_; }
    const fs::SpillFile& spill() const { return spill_; }
    const stdfs::path& work() const { return dir_.path(); }

  private:
    fs::Inode& parent_of(const std::string& path) {
        fs::Inode* current = &tree_.root();
        const auto parts = fs::split_path(path);
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            auto [slot, inserted] = current->children.try_emplace(std::string(parts[i]));
            if (inserted) {
                slot->second = fs::make_directory(0755, 0);
            }
            current = slot->second.get();
        }
        return *current;
    }
    void place(const std::string& path, std::shared_ptr<fs::Inode> inode) {
        const auto parts = fs::split_path(path);
        parent_of(path).children[std::string(parts.back())] = std::move(inode);
    }

    util::TempDir dir_;
    fs::SpillFile spill_;
    fs::Tree tree_;
};

std::string content_of(const stdfs::path& path) {
    return util::read_file(path);
}

boot::BootAssetOptions options_in(const stdfs::path& work, const stdfs::path& host_grub) {
    boot::BootAssetOptions options;
    options.work_directory = work / "assets";
    options.host_grub_directory = host_grub;
    return options;
}

bool host_has(const std::string& grub_target) {
    return stdfs::exists(stdfs::path("/usr/lib/grub") / grub_target / "kernel.img");
}

} // namespace

TEST_CASE("efi kernel and initrd: first sorted match per pattern, symlinks resolved in the tree") {
    TestRootfs rootfs;
    rootfs.file("/boot/vmlinuz-6.1.0-9-amd64", "kernel 9");
    rootfs.file("/boot/vmlinuz-6.1.0-10-amd64", "kernel 10");
    rootfs.file("/boot/Image", "arm kernel");
    rootfs.symlink("/boot/initrd.img", "/boot/real/initrd-6.1");
    rootfs.file("/boot/real/initrd-6.1", "initrd");
    rootfs.file("/boot/initramfs-6.1", "second");
    const auto found = boot::find_kernel_and_initrd(rootfs.tree());
    CHECK(found.kernel_path == "/boot/vmlinuz-6.1.0-10-amd64"); // bytewise: "1" < "9"
    CHECK(fs::read_data(*found.kernel, rootfs.spill()) == "kernel 10");
    CHECK(found.initrd_path == "/boot/initrd.img");
    CHECK(fs::read_data(*found.initrd, rootfs.spill()) == "initrd");
}

TEST_CASE("efi kernel discovery skips dangling links and falls back to the later patterns") {
    TestRootfs rootfs;
    rootfs.symlink("/boot/vmlinuz", "vmlinuz-gone");
    rootfs.file("/boot/zImage-5.10", "z");
    rootfs.file("/boot/Image.gz", "image");
    rootfs.file("/boot/initramfs-linux.img", "i");
    const auto found = boot::find_kernel_and_initrd(rootfs.tree());
    CHECK(found.kernel_path == "/boot/Image.gz"); // Image* comes before zImage*
    CHECK(found.initrd_path == "/boot/initramfs-linux.img");
}

TEST_CASE("efi kernel and initrd errors name every path searched") {
    TestRootfs empty;
    CHECK_THROWS_WITH_AS(boot::find_kernel_and_initrd(empty.tree()),
                         "no kernel in the image: none of /boot/vmlinuz*, /boot/Image*, "
                         "/boot/zImage*, /boot/uImage* is a regular file",
                         Error);
    TestRootfs no_initrd;
    no_initrd.file("/boot/vmlinuz-1", "k");
    no_initrd.directory("/boot/initrd.d");
    CHECK_THROWS_WITH_AS(boot::find_kernel_and_initrd(no_initrd.tree()),
                         "no initrd in the image: none of /boot/initrd*, /boot/initramfs* is a "
                         "regular file",
                         Error);
    try {
        boot::find_kernel_and_initrd(empty.tree());
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::bad_input);
    }
}

TEST_CASE("efi boot files: signed shim and the CD grub from the rootfs, renamed for shim") {
    TestRootfs rootfs;
    rootfs.file("/usr/lib/shim/shimx64.efi.signed", "shim");
    rootfs.file("/usr/lib/shim/mmx64.efi.signed", "mok");
    rootfs.file("/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed", "gcd");
    rootfs.file("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub");
    const auto efi =
        boot::prepare_efi_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::amd64),
                                     options_in(rootfs.work(), "/nonexistent"));
    REQUIRE(efi.files.size() == 3);
    CHECK(efi.files[0].name == "BOOTX64.EFI");
    CHECK(content_of(efi.files[0].host_path) == "shim");
    CHECK(efi.files[0].origin == "rootfs:/usr/lib/shim/shimx64.efi.signed");
    CHECK(efi.files[1].name == "grubx64.efi");
    CHECK(content_of(efi.files[1].host_path) == "gcd");
    CHECK(efi.files[2].name == "mmx64.efi");
    CHECK(efi.signed_chain);
    CHECK_FALSE(efi.built_grub);
}

TEST_CASE("efi boot files: grub alone becomes BOOTAA64.EFI; /usr/share/efi layouts work") {
    TestRootfs rootfs;
    rootfs.file("/usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed", "grub-arm");
    auto efi = boot::prepare_efi_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::arm64),
                                            options_in(rootfs.work(), "/nonexistent"));
    REQUIRE(efi.files.size() == 1);
    CHECK(efi.files[0].name == "BOOTAA64.EFI");
    CHECK(content_of(efi.files[0].host_path) == "grub-arm");
    CHECK_FALSE(efi.signed_chain);

    TestRootfs suse;
    suse.file("/usr/share/efi/x86_64/shim.efi", "suse shim");
    suse.file("/usr/share/efi/x86_64/grub.efi", "suse grub");
    suse.file("/usr/share/efi/x86_64/MokManager.efi", "suse mok");
    efi = boot::prepare_efi_boot_files(suse.tree(), suse.spill(), Arch(Arch::Id::amd64),
                                       options_in(suse.work(), "/nonexistent"));
    REQUIRE(efi.files.size() == 3);
    CHECK(content_of(efi.files[0].host_path) == "suse shim");
    CHECK(efi.files[1].name == "grubx64.efi");
    CHECK(content_of(efi.files[1].host_path) == "suse grub");
    CHECK(efi.files[2].name == "mmx64.efi");
    CHECK(efi.signed_chain);
}

TEST_CASE("efi boot files: without binaries or modules the error names the package and paths") {
    TestRootfs rootfs;
    util::TempDir empty_host;
    CHECK_THROWS_WITH_AS(
        boot::prepare_efi_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::arm64),
                                     options_in(rootfs.work(), empty_host.path())),
        ("cannot make a grub EFI image for arm64: the image has no grub EFI binary and no grub "
         "modules were found (install the Debian package grub-efi-arm64-bin on this machine, or "
         "add grub to the image); searched /usr/lib/shim/shimaa64.efi.signed, "
         "/usr/share/efi/aarch64/shim.efi, /usr/lib/grub/arm64-efi-signed/gcdaa64.efi.signed, "
         "/usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed, /usr/share/efi/aarch64/grub.efi, "
         "rootfs:/usr/lib/grub/arm64-efi, host:" +
         (empty_host.path() / "arm64-efi").string())
            .c_str(),
        Error);
    try {
        boot::prepare_efi_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::amd64),
                                     options_in(rootfs.work(), empty_host.path()));
        FAIL("expected an error");
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::build_failed);
        CHECK(std::string(error.what()).find("grub-efi-amd64-bin") != std::string::npos);
    }
}

TEST_CASE("efi boot files: grub-mkimage builds grub from the host's or the rootfs's modules") {
    if (!host_has("x86_64-efi")) {
        MESSAGE("skipped: grub-efi-amd64-bin is not installed");
        return;
    }
    TestRootfs rootfs;
    rootfs.file("/usr/lib/shim/shimx64.efi.signed", "shim");
    auto efi = boot::prepare_efi_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::amd64),
                                            options_in(rootfs.work(), "/usr/lib/grub"));
    REQUIRE(efi.files.size() == 2);
    CHECK(efi.built_grub);
    CHECK_FALSE(efi.signed_chain);
    CHECK(efi.files[1].name == "grubx64.efi"); // shim chainloads it
    CHECK(efi.files[1].origin == "grub-mkimage -O x86_64-efi (host:/usr/lib/grub/x86_64-efi)");
    CHECK(content_of(efi.files[1].host_path).substr(0, 2) == "MZ"); // a PE image

    TestRootfs with_modules;
    with_modules.host_directory("/usr/lib/grub/x86_64-efi", "/usr/lib/grub/x86_64-efi");
    util::TempDir empty_host;
    efi = boot::prepare_efi_boot_files(with_modules.tree(), with_modules.spill(),
                                       Arch(Arch::Id::amd64),
                                       options_in(with_modules.work(), empty_host.path()));
    REQUIRE(efi.files.size() == 1);
    CHECK(efi.files[0].name == "BOOTX64.EFI");
    CHECK(efi.files[0].origin == "grub-mkimage -O x86_64-efi (rootfs:/usr/lib/grub/x86_64-efi)");
    CHECK(content_of(efi.files[0].host_path).substr(0, 2) == "MZ");
}

TEST_CASE("efi BIOS boot files: El Torito grub image for amd64, none for arm64") {
    TestRootfs rootfs;
    CHECK_FALSE(boot::prepare_bios_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::arm64),
                                              options_in(rootfs.work(), "/usr/lib/grub"))
                    .has_value());
    util::TempDir empty_host;
    CHECK_THROWS_WITH_AS(
        boot::prepare_bios_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::amd64),
                                      options_in(rootfs.work(), empty_host.path())),
        ("cannot make the BIOS boot image for amd64: no grub i386-pc modules were found (install "
         "the Debian package grub-pc-bin on this machine, or add it to the image); searched "
         "rootfs:/usr/lib/grub/i386-pc, host:" +
         (empty_host.path() / "i386-pc").string())
            .c_str(),
        Error);
    if (!host_has("i386-pc")) {
        MESSAGE("skipped: grub-pc-bin is not installed");
        return;
    }
    const auto bios =
        boot::prepare_bios_boot_files(rootfs.tree(), rootfs.spill(), Arch(Arch::Id::amd64),
                                      options_in(rootfs.work(), "/usr/lib/grub"));
    REQUIRE(bios.has_value());
    CHECK(bios->origin == "host:/usr/lib/grub/i386-pc");
    CHECK(bios->hybrid_mbr == "/usr/lib/grub/i386-pc/boot_hybrid.img");
    const std::string image = content_of(bios->eltorito_image);
    const std::string cdboot = content_of("/usr/lib/grub/i386-pc/cdboot.img");
    CHECK(image.size() > 2048);
    CHECK(image.substr(0, cdboot.size()) == cdboot); // cdboot.img, then the core image
}
