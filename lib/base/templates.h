// Data templates (grub.cfg, OVF, user-data, project files): where they live and how they render.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace edgeforge {

// The directory holding edgeforge's data templates (grub/, ovf/, user-data/, project/, sites/): the first of
// $EDGEFORGE_TEMPLATES_DIR, <executable>/../share/edgeforge/templates (installed) and the source
// tree's templates/. Throws Error (bad input) when EDGEFORGE_TEMPLATES_DIR names no directory,
// and Error (build failed) listing the places searched when none exists.
std::filesystem::path templates_directory();

// Placeholder name -> replacement text.
using TemplateValues = std::map<std::string, std::string, std::less<>>;

// Replaces every {{NAME}} in `text` by values[NAME]. Replacement text is not scanned again, so
// values may contain braces. `source` names the template in messages ("grub/grub.cfg").
// Throws Error (bad input) "<source>:<line>: unknown placeholder {{NAME}} (known: A, B)" for a
// name without a value and "<source>:<line>: unterminated placeholder" for a "{{" without "}}":
// a template that would boot with a literal "{{...}}" on the kernel command line must not pass.
std::string render_template(std::string_view text, const TemplateValues& values,
                            std::string_view source);

// Reads `relative` (e.g. "grub/grub.cfg") from `directory` and renders it. Throws Error (build
// failed) naming the file when it cannot be read.
std::string render_template_file(const std::filesystem::path& directory, std::string_view relative,
                                 const TemplateValues& values);

} // namespace edgeforge
