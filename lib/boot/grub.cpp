// Renders the grub.cfg templates of live installer media: the menu and the stubs that chain to it.
#include "boot/grub.h"

#include "base/templates.h"

#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "util/strings.h"

namespace edgeforge::boot {
namespace {

// Characters that grub's script parser would interpret inside a `linux` line: a variable, a
// block, a command separator, an escape. Kernel options never need them.
void check_cmdline_text(std::string_view cmdline) {
    for (const char c : cmdline) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f || c == '$' || c == '{' || c == '}' || c == ';' ||
            c == '\\') {
            throw bad_input("extra kernel command line '{}': characters such as $ {{ }} ; \\ and "
                            "control characters are not allowed (grub would interpret them)",
                            cmdline);
        }
    }
}

} // namespace

std::string live_kernel_cmdline(const LiveMenuOptions& options) {
    std::string cmdline = fmt::format(
        "root=live:CDLABEL={} rd.live.dir=/ rd.live.squashimg={} rd.live.overlay.overlayfs "
        "console=tty1 console={}",
        options.volume_id, options.squashfs_name, options.arch.traits().serial_console);
    const std::string_view extra = util::trim(options.extra_cmdline);
    if (!extra.empty()) {
        check_cmdline_text(extra);
        cmdline += ' ';
        cmdline += extra;
    }
    if (options.debug) {
        cmdline += ' ';
        cmdline += k_debug_cmdline;
    }
    return cmdline;
}

TemplateValues live_menu_values(const LiveMenuOptions& options) {
    if (options.timeout_seconds < 0) {
        throw bad_input("grub menu timeout must not be negative (got {})", options.timeout_seconds);
    }
    for (const char c : options.title) {
        if (c == '"' || c == '$' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
            throw bad_input("grub menu title '{}' must not contain quotes, $, \\ or control "
                            "characters",
                            options.title);
        }
    }
    return TemplateValues{
        {"TITLE", options.title},
        {"TIMEOUT", std::to_string(options.timeout_seconds)},
        {"KERNEL_PATH", std::string(k_live_kernel_path)},
        {"INITRD_PATH", std::string(k_live_initrd_path)},
        {"MENU_DIR", std::string(k_live_menu_dir)},
        {"KERNEL_CMDLINE", live_kernel_cmdline(options)},
        {"DEFAULT_ENTRY", options.interactive_default ? "interactive-install" : "install"},
    };
}

std::string render_user_menu(std::string_view text, bool interactive_default, bool debug) {
    const std::string_view entry = interactive_default ? "2" : "0";
    std::string out;
    out.reserve(text.size());
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        const bool newline = end != std::string_view::npos;
        if (!newline) {
            end = text.size();
        }
        std::string_view line = text.substr(start, end - start);
        std::string rendered;
        for (auto at = line.find(k_default_entry_placeholder); at != std::string_view::npos;
             at = line.find(k_default_entry_placeholder)) {
            rendered += line.substr(0, at);
            rendered += entry;
            line.remove_prefix(at + k_default_entry_placeholder.size());
        }
        rendered += line;
        if (debug && rendered.find("rd.immucore.sysrootwait") != std::string::npos) {
            rendered += ' ';
            rendered += k_debug_cmdline;
        }
        out += rendered;
        if (newline) {
            out += '\n';
        }
        start = end + 1;
    }
    return out;
}

std::string render_live_menu(const LiveMenuOptions& options,
                             const std::filesystem::path& templates) {
    return render_template_file(templates, "grub/grub.cfg", live_menu_values(options));
}

std::string render_grub_stub(const std::filesystem::path& templates) {
    const TemplateValues values{
        {"KERNEL_PATH", std::string(k_live_kernel_path)},
        {"MENU_DIR", std::string(k_live_menu_dir)},
    };
    return render_template_file(templates, "grub/grub-stub.cfg", values);
}

} // namespace edgeforge::boot
