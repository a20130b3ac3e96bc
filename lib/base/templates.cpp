// Data templates (grub.cfg, OVF, user-data, project files): where they live and how they render.
#include "base/templates.h"

#include <cstdlib>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "base/error.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {
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

} // namespace edgeforge
