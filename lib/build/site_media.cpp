// `edgeforge build site-media`: a NoCloud seed ISO (CIDATA) carrying one site's settings.
#include "build/site_media.h"

#include <system_error>

#include <yaml-cpp/yaml.h>

#include "formats/iso_writer.h"
#include "userdata/validate.h"
#include "util/digest.h"
#include "util/fs.h"
#include "util/strings.h"

namespace edgeforge {

namespace {

// cloud-init's NoCloud source looks for a filesystem labelled CIDATA (any case).
constexpr std::string_view k_seed_volume_id = "CIDATA";

std::string meta_data_for(const std::string& user_data) {
    std::string meta =
        fmt::format("instance-id: edgeforge-{}\n", util::sha256_hex(user_data).substr(0, 16));
    try {
        const YAML::Node name = YAML::Load(user_data)["stylus"]["site"]["name"];
        if (name && name.IsScalar()) {
            meta += fmt::format("local-hostname: {}\n", name.Scalar());
        }
    } catch (const YAML::Exception&) {
        // Validation already accepted the document; no name is fine.
    }
    return meta;
}

} // namespace

Artifact build_site_media(const SiteMediaPlan& plan, const Console& console) {
    const userdata::Report report = userdata::validate_file(plan.user_data);
    for (const auto& finding : report.findings) {
        if (finding.severity == userdata::Severity::warning) {
            console.warning("{}: {}{}", finding.location.str(),
                            finding.key.empty() ? "" : finding.key + ": ", finding.message);
        }
    }
    if (report.errors() != 0) {
        std::string findings = userdata::render_report(report);
        if (!findings.empty() && findings.back() == '\n') {
            findings.pop_back();
        }
        throw Error(ExitCode::bad_input,
                    "the site user-data has errors; nothing was written:\n" + findings);
    }
    const std::string user_data = util::read_file(plan.user_data);

    formats::IsoDescription description;
    description.volume_id = std::string(k_seed_volume_id);
    description.files.push_back(formats::IsoFileEntry{"/user-data", formats::IsoBytes{user_data}});
    description.files.push_back(formats::IsoFileEntry{"/meta-data", formats::IsoBytes{meta_data_for(user_data)}});
    description.source_date_epoch = plan.source_date_epoch;
    description.content_digest = util::sha256_hex(user_data);

    std::error_code ec;
    std::filesystem::create_directories(plan.output.parent_path(), ec);
    if (ec) {
        throw build_failed("cannot create the output directory {}: {}",
                           plan.output.parent_path().string(), ec.message());
    }
    const formats::IsoWriteResult written = formats::write_iso(description, plan.output);
    console.info("site media: {} ({}, registration: {})", plan.output.string(),
                 util::format_bytes(written.size),
                 userdata::registration_mode_name(report.registration));
    return Artifact{plan.output, written.size, written.sha256};
}

} // namespace edgeforge
