// Merges a site's settings over the org user-data (per-site installers), with provenance.
#include "userdata/merge.h"

#include <algorithm>
#include <tuple>

#include <yaml-cpp/yaml.h>

#include "base/error.h"
#include "util/yaml_check.h"

namespace edgeforge::userdata {
namespace {

constexpr std::string_view k_append_suffix = "+";

std::string child_path(const std::string& parent, std::string_view key) {
    return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string item_path(const std::string& parent, std::size_t index) {
    return fmt::format("{}[{}]", parent, index);
}

SourceLocation location_of(const YAML::Node& node, std::string_view label) {
    SourceLocation where{std::string(label)};
    const YAML::Mark mark = node.Mark();
    if (!mark.is_null()) {
        where.line = mark.line + 1;
        where.column = mark.column + 1;
    }
    return where;
}

YAML::Node load(std::string_view text, std::string_view label) {
    // Before the merge walks and copies it: an alias bomb or a repeated key stops here.
    auto loaded = util::load_yaml(text);
    if (const auto& issue = loaded.issue) {
        if (issue->syntax_error) {
            throw bad_input("{}:{}:{}: YAML syntax error: {}; check the indentation (spaces, not "
                            "tabs) and quotes",
                            label, issue->line, issue->column, issue->message);
        }
        throw bad_input("{}:{}:{}: {}", label, issue->line, issue->column, issue->message);
    }
    return loaded.root;
}

class Merger {
  public:
    Merger(std::string_view org_label, std::string_view site_label)
        : org_label_(org_label), site_label_(site_label) {}

    std::map<std::string, SourceLocation> provenance;

    // Records `node` and everything below it as coming from one input.
    void record(const YAML::Node& node, const std::string& path, std::string_view label) {
        provenance[path] = location_of(node, label);
        if (node.IsMap()) {
            for (const auto& item : node) {
                if (item.first.IsScalar()) {
                    record(item.second, child_path(path, item.first.Scalar()), label);
                }
            }
        } else if (node.IsSequence()) {
            for (std::size_t i = 0; i < node.size(); ++i) {
                record(node[i], item_path(path, i), label);
            }
        }
    }

    YAML::Node merge_maps(const YAML::Node& org, const YAML::Node& site, const std::string& path) {
        YAML::Node result(YAML::NodeType::Map);
        // Site keys by their plain name, with whether they append.
        struct SiteEntry {
            YAML::Node key;
            YAML::Node value;
            bool append = false;
            bool used = false;
        };
        std::vector<std::pair<std::string, SiteEntry>> site_entries;
        for (const auto& item : site) {
            if (!item.first.IsScalar()) {
                throw bad_input("{}: keys must be plain names", location_of(item.first, site_label_).str());
            }
            std::string name = item.first.Scalar();
            const bool append = name.size() > 1 && name.ends_with(k_append_suffix);
            if (append) {
                name.resize(name.size() - k_append_suffix.size());
            }
            const auto same = std::find_if(site_entries.begin(), site_entries.end(),
                                           [&](const auto& entry) { return entry.first == name; });
            if (same != site_entries.end()) {
                throw bad_input("{}: '{}' is given twice (as '{}' and '{}+'); keep one: '{}' "
                                "replaces the org value, '{}+' appends to its list",
                                location_of(item.first, site_label_).str(),
                                child_path(path, name), name, name, name, name);
            }
            site_entries.emplace_back(name, SiteEntry{item.first, item.second, append});
        }
        auto find_site = [&](const std::string& name) -> SiteEntry* {
            for (auto& [entry_name, entry] : site_entries) {
                if (entry_name == name) {
                    return &entry;
                }
            }
            return nullptr;
        };

        for (const auto& item : org) {
            const std::string name = item.first.IsScalar() ? item.first.Scalar() : std::string();
            const std::string key_path = child_path(path, name);
            SiteEntry* entry = name.empty() ? nullptr : find_site(name);
            if (entry == nullptr) {
                result[YAML::Clone(item.first)] = YAML::Clone(item.second);
                record(item.second, key_path, org_label_);
                continue;
            }
            entry->used = true;
            if (entry->value.IsNull()) {
                continue; // removed by the site
            }
            result[name] = combine(item.second, *entry, key_path);
        }
        for (auto& [name, entry] : site_entries) {
            if (entry.used || entry.value.IsNull()) {
                continue;
            }
            result[name] = YAML::Clone(entry.value);
            record(entry.value, child_path(path, name), site_label_);
        }
        return result;
    }

  private:
    template <typename Entry>
    YAML::Node combine(const YAML::Node& org, const Entry& entry, const std::string& path) {
        const YAML::Node& site = entry.value;
        if (entry.append) {
            if (!site.IsSequence() || !(org.IsSequence() || org.IsNull())) {
                throw bad_input("{}: '{}+' appends list items, but {}; write '{}:' to replace "
                                "the value instead",
                                location_of(entry.key, site_label_).str(), path,
                                !site.IsSequence() ? "the site value is not a list"
                                                   : "the org value is not a list",
                                path.substr(path.rfind('.') + 1));
            }
            YAML::Node list(YAML::NodeType::Sequence);
            provenance[path] = location_of(entry.key, site_label_);
            std::size_t index = 0;
            for (const auto& source : {std::pair{org, org_label_}, std::pair{site, site_label_}}) {
                if (!source.first.IsSequence()) {
                    continue;
                }
                for (const auto& item : source.first) {
                    list.push_back(YAML::Clone(item));
                    record(item, item_path(path, index++), source.second);
                }
            }
            return list;
        }
        if (org.IsMap() && site.IsMap()) {
            provenance[path] = location_of(site, site_label_);
            return merge_maps(org, site, path);
        }
        record(site, path, site_label_);
        return YAML::Clone(site);
    }

    std::string org_label_;
    std::string site_label_;
};

} // namespace

MergedUserData merge_user_data(std::string_view org_text, std::string_view org_label,
                               std::string_view site_text, std::string_view site_label) {
    const YAML::Node org = load(org_text, org_label);
    const YAML::Node site = load(site_text, site_label);
    if (!org.IsMap()) {
        throw bad_input("{}: the org user-data must be a YAML mapping of keys such as 'stylus:'",
                        org_label);
    }
    if (!site.IsNull() && !site.IsMap()) {
        throw bad_input("{}: a site file must be a YAML mapping of the keys it sets, such as "
                        "'stylus: {{site: {{name: store-042}}}}'",
                        location_of(site, site_label).str());
    }
    Merger merger(org_label, site_label);
    merger.provenance[""] = SourceLocation{std::string(site_label)};
    const YAML::Node merged =
        site.IsNull() ? YAML::Clone(org) : merger.merge_maps(org, site, std::string());
    if (site.IsNull()) {
        merger.record(org, "", org_label);
    }
    YAML::Emitter out;
    out << merged;
    MergedUserData result;
    result.text = fmt::format("#cloud-config\n{}\n", out.c_str());
    result.provenance = std::move(merger.provenance);
    return result;
}

Report validate_merged(const MergedUserData& merged, std::string_view site_label) {
    Report report = validate_text(merged.text, std::string(site_label));
    for (auto& finding : report.findings) {
        // The nearest key path the merge knows: a finding about a missing key points at the
        // mapping that should hold it.
        std::string path = finding.key;
        while (true) {
            const auto found = merged.provenance.find(path);
            if (found != merged.provenance.end()) {
                finding.location = found->second;
                break;
            }
            if (path.empty()) {
                finding.location = SourceLocation{std::string(site_label)};
                break;
            }
            const auto cut = path.find_last_of(".[");
            path = cut == std::string::npos ? std::string() : path.substr(0, cut);
        }
    }
    std::stable_sort(report.findings.begin(), report.findings.end(),
                     [](const Finding& a, const Finding& b) {
                         return std::tie(a.location.file, a.location.line, a.location.column) <
                                std::tie(b.location.file, b.location.line, b.location.column);
                     });
    return report;
}

} // namespace edgeforge::userdata
