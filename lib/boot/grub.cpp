// Renders the grub.cfg templates of live installer media: the menu and the stubs that chain to it.
#include "boot/grub.h"

#include <cstdlib>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge::boot {
namespace {

constexpr std::string_view k_open = "{{";
constexpr std::string_view k_close = "}}";

bool directory_exists(const std::filesystem::path& path) {
    std::error_code error;
    return std::filesystem::is_directory(path, error);
}

// <dir of the running executable>/../share/edgeforge/templates, empty when /proc/self/exe
// cannot be read.
std::filesystem::path installed_templates_directory() {
    std::error_code error;
    const auto executable = std::filesystem::read_symlink("/proc/self/exe", error);
    if (error) {
        return {};
    }
    return executable.parent_path().parent_path() / "share" / "edgeforge" / "templates";
}

int line_of(std::string_view text, std::size_t offset) {
    int line = 1;
    for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
        if (text[i] == '\n') {
            ++line;
        }
    }
    return line;
}

std::string known_names(const TemplateValues& values) {
    std::vector<std::string> names;
    for (const auto& [name, value] : values) {
        names.push_back(name);
    }
    return names.empty() ? std::string("none") : util::join(names, ", ");
}

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

std::filesystem::path templates_directory() {
    std::vector<std::string> searched;
    if (const char* env = std::getenv("EDGEFORGE_TEMPLATES_DIR"); env != nullptr && *env != '\0') {
        if (!directory_exists(env)) {
            throw bad_input("EDGEFORGE_TEMPLATES_DIR={} is not a directory", env);
        }
        return env;
    }
    searched.emplace_back("$EDGEFORGE_TEMPLATES_DIR (unset)");
    if (auto installed = installed_templates_directory(); !installed.empty()) {
        if (directory_exists(installed)) {
            return installed;
        }
        searched.push_back(installed.lexically_normal().string());
    }
    std::filesystem::path source = std::filesystem::path(EDGEFORGE_SOURCE_DIR) / "templates";
    if (directory_exists(source)) {
        return source;
    }
    searched.push_back(source.string());
    throw build_failed("cannot find edgeforge's templates directory; searched {}",
                       util::join(searched, ", "));
}

std::string render_template(std::string_view text, const TemplateValues& values,
                            std::string_view source) {
    std::string out;
    out.reserve(text.size());
    std::size_t position = 0;
    while (position < text.size()) {
        const std::size_t open = text.find(k_open, position);
        if (open == std::string_view::npos) {
            out.append(text.substr(position));
            break;
        }
        out.append(text.substr(position, open - position));
        const std::size_t close = text.find(k_close, open + k_open.size());
        const std::size_t newline = text.find('\n', open);
        if (close == std::string_view::npos ||
            (newline != std::string_view::npos && newline < close)) {
            throw bad_input("{}:{}: unterminated placeholder (a '{{{{' without '}}}}' on the same "
                            "line)",
                            source, line_of(text, open));
        }
        const std::string_view name =
            util::trim(text.substr(open + k_open.size(), close - open - k_open.size()));
        const auto found = values.find(name);
        if (found == values.end()) {
            throw bad_input("{}:{}: unknown placeholder {{{{{}}}}} (known: {})", source,
                            line_of(text, open), name, known_names(values));
        }
        out.append(found->second);
        position = close + k_close.size();
    }
    return out;
}

std::string render_template_file(const std::filesystem::path& directory, std::string_view relative,
                                 const TemplateValues& values) {
    const std::filesystem::path file = directory / relative;
    std::string text;
    try {
        text = util::read_file(file);
    } catch (const std::system_error& error) {
        throw build_failed("cannot read the template {}: {}", file.string(),
                           error.code().message());
    }
    return render_template(text, values, file.string());
}

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
    };
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
