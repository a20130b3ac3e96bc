// `edgeforge doctor`: checks up front every host tool and library the enabled outputs need.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "build/config.h"
#include "build/outputs.h"

namespace edgeforge {

struct DoctorCheck {
    std::string name;    // "mkfs.fat", "/usr/lib/grub/i386-pc"
    std::string package; // Debian package that provides it
    std::string purpose; // why edgeforge needs it
    Need need = Need::required;
    bool found = false;
    std::string location; // where it was found
};

struct DoctorReport {
    std::vector<DoctorCheck> checks;
    std::vector<std::pair<std::string, std::string>> libraries; // name, linked version
    std::vector<std::string> outputs;
    std::string arch;

    bool ok() const; // every required check passed
    std::vector<std::string> missing_packages(bool include_optional) const;
};

// Checks what the configured outputs and arch need; `include_tests` adds the e2e test tools.
DoctorReport run_doctor(const Config& config, bool include_tests);
std::string render_doctor_report(const DoctorReport& report);
nlohmann::json doctor_report_to_json(const DoctorReport& report);

// Versions of the libraries edgeforge is linked against, for `version` and `doctor`.
std::vector<std::pair<std::string, std::string>> linked_library_versions();

} // namespace edgeforge
