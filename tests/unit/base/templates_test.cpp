// Unit tests for core/templates: rendering placeholders and finding the templates directory.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "boot/grub.h"
#include "base/error.h"
#include "base/templates.h"
#include "support/env.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::ScopedEnv;
namespace stdfs = std::filesystem;

TEST_CASE("render_template substitutes every placeholder and leaves the rest alone") {
    const std::string text = "set timeout={{TIMEOUT}}\n"
                             "menuentry \"{{ TITLE }}\" {\n"
                             "    linux /boot/kernel {{CMDLINE}} {{CMDLINE}}\n"
                             "}\n"
                             "# braces in grub syntax stay: ${root} { }\n";
    const TemplateValues values{
        {"TIMEOUT", "5"}, {"TITLE", "Kairos"}, {"CMDLINE", "a={{NOT_RESCANNED}}"}, {"UNUSED", "x"}};
    CHECK(render_template(text, values, "test.cfg") ==
          "set timeout=5\n"
          "menuentry \"Kairos\" {\n"
          "    linux /boot/kernel a={{NOT_RESCANNED}} a={{NOT_RESCANNED}}\n"
          "}\n"
          "# braces in grub syntax stay: ${root} { }\n");
}

TEST_CASE("render_template rejects unknown and unterminated placeholders with their line") {
    const TemplateValues values{{"A", "1"}, {"B", "2"}};
    CHECK_THROWS_WITH_AS(
        render_template("x\ny {{A}} {{KERNEL_CMDLNE}}\n", values, "grub/grub.cfg"),
        "grub/grub.cfg:2: unknown placeholder {{KERNEL_CMDLNE}} (known: A, B)", Error);
    CHECK_THROWS_WITH_AS(render_template("x\n\nlinux {{A\n}}\n", values, "t.cfg"),
                         "t.cfg:3: unterminated placeholder (a '{{' without '}}' on the same line)",
                         Error);
    try {
        render_template("{{NOPE}}", values, "t");
    } catch (const Error& error) {
        CHECK(error.code() == ExitCode::bad_input);
    }
}

TEST_CASE("templates directory honours EDGEFORGE_TEMPLATES_DIR") {
    util::TempDir dir;
    stdfs::create_directories(dir.path() / "grub");
    util::write_file_atomically(dir.path() / "grub" / "grub-stub.cfg", "stub {{MENU_DIR}}\n");
    {
        const ScopedEnv env("EDGEFORGE_TEMPLATES_DIR", dir.path().c_str());
        CHECK(templates_directory() == dir.path());
        CHECK(boot::render_grub_stub(templates_directory()) == "stub /boot/grub2\n");
    }
    {
        const ScopedEnv env("EDGEFORGE_TEMPLATES_DIR", "/nonexistent/edgeforge-templates");
        CHECK_THROWS_WITH_AS(templates_directory(),
                             "EDGEFORGE_TEMPLATES_DIR=/nonexistent/edgeforge-templates is not a "
                             "directory",
                             Error);
    }
    {
        const ScopedEnv env("EDGEFORGE_TEMPLATES_DIR", nullptr);
        CHECK(stdfs::exists(templates_directory() / "grub" / "grub.cfg"));
    }
    CHECK_THROWS_WITH_AS(render_template_file(dir.path(), "grub/missing.cfg", {}),
                         doctest::Contains("cannot read the template"), Error);
}
