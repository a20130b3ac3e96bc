// Unit tests for boot/grub: template rendering, the live menu, the stub, the templates directory.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "boot/grub.h"
#include "core/error.h"
#include "util/fs.h"

using namespace edgeforge;
namespace stdfs = std::filesystem;

namespace {

// Sets an environment variable for the lifetime of the object, restoring the old value after.
class ScopedEnv {
  public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name); old != nullptr) {
            old_ = old;
        }
        if (value != nullptr) {
            ::setenv(name, value, 1);
        } else {
            ::unsetenv(name);
        }
    }
    ~ScopedEnv() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;

  private:
    const char* name_;
    std::optional<std::string> old_;
};

} // namespace

TEST_CASE("grub render_template substitutes every placeholder and leaves the rest alone") {
    const std::string text = "set timeout={{TIMEOUT}}\n"
                             "menuentry \"{{ TITLE }}\" {\n"
                             "    linux /boot/kernel {{CMDLINE}} {{CMDLINE}}\n"
                             "}\n"
                             "# braces in grub syntax stay: ${root} { }\n";
    const boot::TemplateValues values{
        {"TIMEOUT", "5"}, {"TITLE", "Kairos"}, {"CMDLINE", "a={{NOT_RESCANNED}}"}, {"UNUSED", "x"}};
    CHECK(boot::render_template(text, values, "test.cfg") ==
          "set timeout=5\n"
          "menuentry \"Kairos\" {\n"
          "    linux /boot/kernel a={{NOT_RESCANNED}} a={{NOT_RESCANNED}}\n"
          "}\n"
          "# braces in grub syntax stay: ${root} { }\n");
}

TEST_CASE("grub render_template rejects unknown and unterminated placeholders with their line") {
    const boot::TemplateValues values{{"A", "1"}, {"B", "2"}};
    CHECK_THROWS_WITH_AS(
        boot::render_template("x\ny {{A}} {{KERNEL_CMDLNE}}\n", values, "grub/grub.cfg"),
        "grub/grub.cfg:2: unknown placeholder {{KERNEL_CMDLNE}} (known: A, B)", Error);
    CHECK_THROWS_WITH_AS(boot::render_template("x\n\nlinux {{A\n}}\n", values, "t.cfg"),
                         "t.cfg:3: unterminated placeholder (a '{{' without '}}' on the same line)",
                         Error);
    try {
        boot::render_template("{{NOPE}}", values, "t");
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::bad_input);
    }
}

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

TEST_CASE("grub templates directory honours EDGEFORGE_TEMPLATES_DIR") {
    util::TempDir dir;
    stdfs::create_directories(dir.path() / "grub");
    util::write_file_atomically(dir.path() / "grub" / "grub-stub.cfg", "stub {{MENU_DIR}}\n");
    {
        const ScopedEnv env("EDGEFORGE_TEMPLATES_DIR", dir.path().c_str());
        CHECK(boot::templates_directory() == dir.path());
        CHECK(boot::render_grub_stub(boot::templates_directory()) == "stub /boot/grub2\n");
    }
    {
        const ScopedEnv env("EDGEFORGE_TEMPLATES_DIR", "/nonexistent/edgeforge-templates");
        CHECK_THROWS_WITH_AS(boot::templates_directory(),
                             "EDGEFORGE_TEMPLATES_DIR=/nonexistent/edgeforge-templates is not a "
                             "directory",
                             Error);
    }
    {
        const ScopedEnv env("EDGEFORGE_TEMPLATES_DIR", nullptr);
        CHECK(stdfs::exists(boot::templates_directory() / "grub" / "grub.cfg"));
    }
    CHECK_THROWS_WITH_AS(boot::render_template_file(dir.path(), "grub/missing.cfg", {}),
                         doctest::Contains("cannot read the template"), Error);
}
