// Unit tests for boot/grub: the live menu, the kernel command line and the stub.
#include <doctest/doctest.h>

#include <string>

#include "boot/grub.h"
#include "base/error.h"

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
}

TEST_CASE("grub stub searches for the kernel and loads the menu from /boot/grub2") {
    const std::string stub = boot::render_grub_stub();
    CHECK(stub.find("search --no-floppy --file --set=root /boot/kernel\n"
                    "set prefix=($root)/boot/grub2\n"
                    "configfile $prefix/grub.cfg\n") != std::string::npos);
}

