// Unit tests for boot/grub: the live menu, the kernel command line and the stub.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "boot/grub.h"
#include "base/error.h"
#include "util/fs.h"

using namespace edgeforge;

TEST_CASE("grub live kernel command line follows the Kairos live convention per arch") {
    boot::LiveMenuOptions options;
    options.arch = Arch(Arch::Id::amd64);
    CHECK(boot::live_kernel_cmdline(options) ==
          "root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs "
          "rd.live.overlay.overlayfs console=tty1 console=ttyS0");
    options.arch = Arch(Arch::Id::arm64);
    options.extra_cmdline = "  quiet foo=\"a b\"  ";
    CHECK(boot::live_kernel_cmdline(options) ==
          "root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs "
          "rd.live.overlay.overlayfs console=tty1 console=ttyAMA0 quiet foo=\"a b\"");
    options.extra_cmdline = "x=$root";
    CHECK_THROWS_AS(boot::live_kernel_cmdline(options), Error);
    options.extra_cmdline = "a\nb";
    CHECK_THROWS_AS(boot::live_kernel_cmdline(options), Error);
}

TEST_CASE("grub live menu from the shipped template has the four entries and no placeholders") {
    boot::LiveMenuOptions options;
    options.arch = Arch(Arch::Id::amd64);
    options.timeout_seconds = 3;
    options.extra_cmdline = "edgeforge.wait=10";
    const std::string menu = boot::render_live_menu(options);
    const std::string cmdline = boot::live_kernel_cmdline(options);
    CHECK(menu.find("{{") == std::string::npos);
    CHECK(menu.find("set timeout=3\n") != std::string::npos);
    CHECK(menu.find("search --no-floppy --file --set=root /boot/kernel\n") != std::string::npos);
    for (const auto* extra : {" install-mode\n", " install-mode-interactive\n", " recovery-mode\n",
                              " rd.debug rd.shell\n"}) {
        CAPTURE(extra);
        CHECK(menu.find("    linux ($root)/boot/kernel " + cmdline + extra) != std::string::npos);
    }
    CHECK(menu.find("menuentry \"Install Kairos\" --id install {") != std::string::npos);
    CHECK(menu.find("    initrd ($root)/boot/initrd\n") != std::string::npos);
    CHECK(menu.find("set default=install\n") != std::string::npos);
}

TEST_CASE("grub live menu: FORCE_INTERACTIVE_INSTALL and DEBUG (CanvOS's options)") {
    boot::LiveMenuOptions options;
    options.arch = Arch(Arch::Id::amd64);
    options.interactive_default = true;
    options.debug = true;
    const std::string menu = boot::render_live_menu(options);
    CHECK(menu.find("set default=interactive-install\n") != std::string::npos);
    CHECK(menu.find("menuentry \"Install Kairos (interactive)\" --id interactive-install {") !=
          std::string::npos);
    CHECK(boot::live_kernel_cmdline(options).ends_with(
        " console=ttyS0 rd.immucore.debug console=tty0 rd.debug"));
}

TEST_CASE("a user's grub.cfg (CanvOS's own) is rendered as CanvOS renders it") {
    // tests/fixtures/canvos/overlay/files-iso/boot/grub2/grub.cfg is CanvOS's file (see NOTICE).
    const std::string canvos = util::read_file(
        std::filesystem::path(EDGEFORGE_SOURCE_DIR) /
        "tests/fixtures/canvos/overlay/files-iso/boot/grub2/grub.cfg");
    REQUIRE(canvos.find("set default={{DEFAULT_ENTRY}}\n") != std::string::npos);
    const std::string plain = boot::render_user_menu(canvos, false, false);
    CHECK(plain.find("{{DEFAULT_ENTRY}}") == std::string::npos);
    CHECK(plain.find("set default=0\n") != std::string::npos);
    CHECK(plain.size() == canvos.size() - std::string("{{DEFAULT_ENTRY}}").size() + 1);
    CHECK(plain.find("rd.immucore.debug") == std::string::npos);

    const std::string forced = boot::render_user_menu(canvos, true, true);
    CHECK(forced.find("set default=2\n") != std::string::npos);
    // Every kernel line with rd.immucore.sysrootwait, and only those, ends with the options.
    std::size_t sysrootwait_lines = 0;
    std::size_t debug_lines = 0;
    std::size_t start = 0;
    while (start < forced.size()) {
        const auto end = forced.find('\n', start);
        const std::string line = forced.substr(start, end - start);
        if (line.find("rd.immucore.sysrootwait") != std::string::npos) {
            ++sysrootwait_lines;
            CHECK(line.ends_with(" rd.immucore.debug console=tty0 rd.debug"));
        }
        if (line.find("rd.immucore.debug") != std::string::npos) {
            ++debug_lines;
        }
        start = end == std::string::npos ? forced.size() : end + 1;
    }
    CHECK(sysrootwait_lines >= 2);
    CHECK(debug_lines == sysrootwait_lines);
    // Without a trailing newline and with several placeholders on one line.
    CHECK(boot::render_user_menu("a {{DEFAULT_ENTRY}} b {{DEFAULT_ENTRY}}", true, false) ==
          "a 2 b 2");
}

TEST_CASE("grub stub searches for the kernel and loads the menu from /boot/grub2") {
    const std::string stub = boot::render_grub_stub();
    CHECK(stub.find("search --no-floppy --file --set=root /boot/kernel\n"
                    "set prefix=($root)/boot/grub2\n"
                    "configfile $prefix/grub.cfg\n") != std::string::npos);
}

