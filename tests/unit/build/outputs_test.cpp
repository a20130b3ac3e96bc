// Unit tests for build/outputs: the table is the one place outputs are listed; the `outputs`
// setting, doctor, help texts, plan_disk and `build all` follow it.
#include <doctest/doctest.h>

#include <algorithm>
#include <ranges>
#include <set>

#include "build/commands.h"
#include "build/disk.h"
#include "build/doctor.h"
#include "build/outputs.h"
#include "build/settings.h"
#include "support/project.h"

using namespace edgeforge;
using edgeforge::testing::Project;

namespace {

bool contains(const auto& list, std::string_view value) {
    return std::find(list.begin(), list.end(), value) != list.end();
}

void write_outputs(Project& project, const std::string& outputs) {
    project.write("edgeforge.yaml", "name: t\noutputs: [" + outputs + "]\n");
}

} // namespace

TEST_CASE("outputs: every row is complete and names are unique") {
    std::set<std::string_view> names;
    for (const auto& row : output_formats()) {
        CHECK_MESSAGE(names.insert(row.name).second, row.name);
        CHECK_MESSAGE(!row.description.empty(), row.name);
        CHECK_MESSAGE(!row.arches.empty(), row.name);
        CHECK_MESSAGE(static_cast<bool>(row.host), row.name);
        CHECK_MESSAGE((row.group == OutputGroup::disk) == static_cast<bool>(row.produce), row.name);
        if (!row.wraps.empty()) {
            CHECK_MESSAGE(find_output_format(row.wraps) != nullptr, row.name);
        }
        for (const auto key : row.settings) {
            CHECK_MESSAGE(find_setting(key) != nullptr, row.name << " reads unknown " << key);
        }
    }
    CHECK(find_output_format("no-such-output") == nullptr);
}

TEST_CASE("outputs: the `outputs` setting accepts exactly the table's build-all rows") {
    const Setting* setting = find_setting("outputs");
    REQUIRE(setting != nullptr);
    std::vector<std::string_view> expected;
    for (const auto& row : output_formats()) {
        if (row.in_build_all) {
            expected.push_back(row.name);
        }
    }
    CHECK(setting->allowed == expected);
    CHECK(contains(setting->allowed, "qcow2"));
    CHECK(contains(setting->allowed, "content"));
    CHECK(!contains(setting->allowed, "site-media"));
}

TEST_CASE("outputs: doctor checks what each output's row says it needs") {
    for (const auto& row : output_formats()) {
        if (!row.in_build_all) {
            continue;
        }
        Project project;
        write_outputs(project, std::string(row.name));
        const Config config = project.resolve();
        const DoctorReport report = run_doctor(config, false);
        std::vector<std::string> checked;
        for (const auto& check : report.checks) {
            checked.push_back(check.name);
        }
        for (const auto& requirement : row.host(config.arch())) {
            CHECK_MESSAGE(contains(checked, requirement.name),
                          row.name << " needs " << requirement.name);
        }
    }
    // A disk output needs mke2fs, the ISO does not; provider images need no boot tools.
    const auto names = [](const std::vector<HostRequirement>& requirements) {
        std::vector<std::string> out;
        for (const auto& requirement : requirements) {
            out.push_back(requirement.name);
        }
        return out;
    };
    CHECK(contains(names(host_requirements({"raw"}, Arch(Arch::Id::amd64))), "mke2fs"));
    CHECK(!contains(names(host_requirements({"iso"}, Arch(Arch::Id::amd64))), "mke2fs"));
    CHECK(host_requirements({"provider"}, Arch(Arch::Id::amd64)).empty());
}

TEST_CASE("outputs: help texts list every disk row") {
    const std::string help = output_names_text(OutputGroup::disk);
    for (const auto& row : output_formats()) {
        CHECK_MESSAGE((help.find(row.name) != std::string::npos) == (row.group == OutputGroup::disk),
                      row.name);
    }
}

TEST_CASE("outputs: `build all` runs the group of each listed row, in table order") {
    for (const auto& row : output_formats()) {
        if (!row.in_build_all) {
            continue;
        }
        Project project;
        write_outputs(project, std::string(row.name));
        CHECK(build_all_groups(project.resolve()) ==
              std::vector<std::string>{std::string(group_name(row.group))});
    }
    Project all;
    write_outputs(all, "provider, qcow2, iso, raw");
    CHECK(build_all_groups(all.resolve()) == std::vector<std::string>{"iso", "disk", "provider"});
}

TEST_CASE("outputs: a disk format's artifact name comes from its row") {
    DiskPlan plan;
    plan.installer.name = "edge";
    plan.installer.output_dir = "/out";
    for (const auto& row : output_formats()) {
        if (row.group == OutputGroup::disk) {
            CHECK(plan.artifact(row.name) == "/out/edge" + std::string(row.file_suffix));
        }
    }
    CHECK(plan.artifact("gce") == "/out/edge-gce.tar.gz");
    CHECK(plan.artifact("ami") == "/out/edge-ami.raw");
}
