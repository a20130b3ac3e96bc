// Unit tests for build/canvos through configuration resolution: CanvOS's own .arg.template
// (tests/fixtures/canvos, copied from CanvOS) resolves, every CanvOS variable is known, values
// edgeforge cannot honour are refused, and CanvOS's base/agent rules apply.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "build/canvos.h"
#include "build/canvos_import.h"
#include "build/config.h"
#include "support/project.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::Project;
namespace stdfs = std::filesystem;

namespace {

std::string canvos_fixture(const std::string& name) {
    return util::read_file(stdfs::path(EDGEFORGE_SOURCE_DIR) / "tests/fixtures/canvos" / name);
}

const CanvosValue* canvos_value(const Config& config, std::string_view name) {
    for (const auto& value : config.canvos()) {
        if (value.variable->name == name) {
            return &value;
        }
    }
    return nullptr;
}

} // namespace

TEST_CASE("CanvOS's .arg.template resolves as CanvOS reads it") {
    Project project;
    project.write(".arg", canvos_fixture("arg.template"));
    const Config config = project.resolve();
    CHECK(config.warnings().empty());
    // IMAGE_REPO=$OS_DISTRIBUTION expands (it was taken literally before).
    CHECK(config.string("provider.repository") == "ubuntu");
    CHECK(config.string("provider.registry") == "ttl.sh");
    CHECK(config.string("provider.custom_tag") == "demo");
    CHECK(config.string("name") == "palette-edge-installer");
    // BASE_IMAGE is not in the template: CanvOS's rule, with 22.04 used as written.
    CHECK(config.string("base.image") ==
          "docker://us-docker.pkg.dev/palette-images/edge/"
          "kairos-ubuntu:22.04-core-{arch}-generic-v0.17.1");
    CHECK(config.get("base.image").origin == Origin::arg_file);
    CHECK(config.get("base.image").location.str().find("CanvOS rule") != std::string::npos);
    CHECK(config.list("agent.images") ==
          std::vector<std::string>{"docker://us-docker.pkg.dev/palette-images/edge/"
                                   "stylus-framework-linux-{arch}:v4.10.0-rc.2"});
    CHECK(config.string("agent.version") == "v4.10.0-rc.2");
    // CLUSTERCONFIG=spc.tgz and EDGE_CUSTOM_CONFIG at their template values, files absent.
    CHECK_FALSE(config.get("cluster_config").is_set());
    const auto* spc = canvos_value(config, "CLUSTERCONFIG");
    REQUIRE(spc != nullptr);
    CHECK(spc->effect == "none: spc.tgz does not exist (CanvOS copies it only when present)");
    // The four variables `config show` used to refuse are known, at their defaults.
    CHECK_FALSE(config.boolean("iso.interactive_default")); // FORCE_INTERACTIVE_INSTALL=false
    CHECK(config.get("iso.interactive_default").location.str() == ".arg:15:1");
    for (const char* name : {"UPDATE_KERNEL", "CIS_HARDENING", "EDGE_CUSTOM_CONFIG"}) {
        CAPTURE(name);
        const auto* value = canvos_value(config, name);
        REQUIRE(value != nullptr);
        CHECK(value->effect.starts_with("none: "));
    }
    const std::string table = render_config_table(config);
    CHECK(table.find("# CanvOS .arg variables that are not edgeforge settings") !=
          std::string::npos);
    CHECK(table.find("UPDATE_KERNEL") != std::string::npos);
}

TEST_CASE("CanvOS base rule: Ubuntu 20/22 get .04, openSUSE Leap, FIPS repository, overrides") {
    Project project;
    project.write(".arg", "OS_DISTRIBUTION=ubuntu\nOS_VERSION=22\n");
    CHECK(project.resolve().string("base.image") ==
          "docker://us-docker.pkg.dev/palette-images/edge/"
          "kairos-ubuntu:22.04-core-{arch}-generic-v0.17.1");
    project.write(".arg", "OS_DISTRIBUTION=ubuntu\nOS_VERSION=24.04\nFIPS_ENABLED=true\n");
    CHECK(project.resolve().string("base.image") ==
          "docker://us-docker.pkg.dev/palette-images-fips/edge/"
          "kairos-ubuntu:24.04-core-{arch}-generic-v0.17.1");
    project.write(".arg", "OS_DISTRIBUTION=opensuse-leap\nOS_VERSION=15.6\n");
    CHECK(project.resolve().string("base.image") ==
          "docker://us-docker.pkg.dev/palette-images/edge/"
          "kairos-opensuse:leap-15.6-core-{arch}-generic-v0.17.1");
    project.write(".arg", "SPECTRO_PUB_REPO=localhost:5000/mirror\n"
                          "KAIROS_BASE_IMAGE_URL=$SPECTRO_PUB_REPO/kairos\n"
                          "KAIROS_INIT_VERSION=v0.9.9\nPE_VERSION=v4.7.1\n"
                          "OS_DISTRIBUTION=ubuntu\nOS_VERSION=20\n");
    Config config = project.resolve();
    CHECK(config.string("base.image") ==
          "docker://localhost:5000/mirror/kairos/kairos-ubuntu:20.04-core-{arch}-generic-v0.9.9");
    CHECK(config.list("agent.images") ==
          std::vector<std::string>{
              "docker://localhost:5000/mirror/edge/stylus-framework-linux-{arch}:v4.7.1"});
    CHECK(config.string("agent.version") == "v4.7.1");
    // An explicit BASE_IMAGE wins, and the rule's inputs say they are unused.
    project.write(".arg", "BASE_IMAGE=oci:images/base\nKAIROS_INIT_VERSION=v0.9.9\n");
    project.write_image_layout("images/base");
    config = project.resolve();
    CHECK(config.get("base.image").location.str() == ".arg:1:1");
    CHECK(canvos_value(config, "KAIROS_INIT_VERSION")->effect ==
          "none: BASE_IMAGE is set, so KAIROS_INIT_VERSION is not used");
    // Other distributions have no rule: BASE_IMAGE stays unset (the build asks for it).
    project.write(".arg", "OS_DISTRIBUTION=rhel\nOS_VERSION=9\n");
    CHECK_FALSE(project.resolve().get("base.image").is_set());
}

TEST_CASE("CanvOS variables edgeforge cannot honour are refused, naming the line") {
    Project project;
    project.write(".arg", "UPDATE_KERNEL=true\n"
                          "CIS_HARDENING=false\n"
                          "IS_MAAS=true\n"
                          "TWO_NODE=TRUE\n"
                          "INSTALL_NVIDIA_GPU_DRIVERS=false\n"
                          "NVIDIA_DRIVER_BRANCH=550\n");
    const std::string error = project.error();
    CHECK(error.starts_with("3 problems found:\n"));
    CHECK(error.find(".arg:1:1: UPDATE_KERNEL=true is not supported: edgeforge composes the base "
                     "image and does not modify the OS inside it;") != std::string::npos);
    CHECK(error.find(".arg:3:1: IS_MAAS=true is not supported") != std::string::npos);
    CHECK(error.find(".arg:4:1: TWO_NODE=TRUE is not supported") != std::string::npos);
    CHECK(error.find("CIS_HARDENING") == std::string::npos);
    CHECK(error.find("NVIDIA_DRIVER_BRANCH") == std::string::npos);
}

TEST_CASE("CanvOS IS_UKI=true: the -uki base, CanvOS's one-entry medium, CMDLINE, BRANDING, "
          "AUTO_ENROLL_SECUREBOOT_KEYS") {
    Project project;
    project.write(".arg", "OS_DISTRIBUTION=ubuntu\nOS_VERSION=24.04\nIS_UKI=true\n");
    Config config = project.resolve();
    CHECK(config.boolean("iso.uki"));
    CHECK(config.string("base.image") == "docker://us-docker.pkg.dev/palette-images/edge/"
                                         "kairos-ubuntu:24.04-core-{arch}-generic-v0.17.1-uki");
    // CanvOS's defaults for UKI media: CMDLINE=stylus.registration, its BRANDING, one entry.
    CHECK(config.string("iso.extra_cmdline") == "stylus.registration");
    CHECK(config.string("uki.branding") == "Palette eXtended Kubernetes Edge");
    CHECK(config.list("uki.entries") == std::vector<std::string>{"install"});
    CHECK(config.string("uki.secure_boot_enroll") == "manual");
    // Ubuntu 22 has no -uki flavour in CanvOS's rule.
    project.write(".arg", "OS_DISTRIBUTION=ubuntu\nOS_VERSION=22\nIS_UKI=true\n");
    CHECK(project.resolve().string("base.image") ==
          "docker://us-docker.pkg.dev/palette-images/edge/"
          "kairos-ubuntu:22.04-core-{arch}-generic-v0.17.1");

    project.write(".arg", "IS_UKI=true\nCMDLINE=stylus.registration rd.debug\n"
                          "BRANDING=ACME Edge\nAUTO_ENROLL_SECUREBOOT_KEYS=true\n"
                          "FORCE_INTERACTIVE_INSTALL=true\n");
    config = project.resolve();
    CHECK(config.string("iso.extra_cmdline") == "stylus.registration rd.debug");
    CHECK(config.string("uki.branding") == "ACME Edge");
    CHECK(config.get("uki.branding").location.str() == ".arg:3:1");
    CHECK(config.string("uki.secure_boot_enroll") == "force");
    CHECK(config.list("uki.entries") == std::vector<std::string>{"interactive-install", "install"});
    CHECK(canvos_value(config, "CMDLINE")->effect.starts_with("used: "));

    // Without IS_UKI they do nothing, and say so.
    project.write(".arg", "CMDLINE=rd.debug\nAUTO_ENROLL_SECUREBOOT_KEYS=true\n");
    config = project.resolve();
    CHECK_FALSE(config.boolean("iso.uki"));
    CHECK(config.string("uki.secure_boot_enroll") == "manual");
    CHECK(canvos_value(config, "CMDLINE")->effect == "none: read for IS_UKI=true builds only");
}

TEST_CASE("CanvOS optional files: template names may be missing, other names may not") {
    Project project;
    project.write(".arg", "CLUSTERCONFIG=other.tgz\nEDGE_CUSTOM_CONFIG=custom.yaml\n");
    const std::string error = project.error();
    CHECK(error.find(".arg:1:15: CLUSTERCONFIG: 'other.tgz' does not exist") != std::string::npos);
    CHECK(error.find(".arg:2:20: EDGE_CUSTOM_CONFIG: 'custom.yaml' does not exist") !=
          std::string::npos);
    project.write(".arg", "CLUSTERCONFIG=spc.tgz\n");
    project.write("spc.tgz", "archive");
    const Config config = project.resolve();
    CHECK(config.path("cluster_config") == project.dir.path() / "spc.tgz");
    CHECK(canvos_value(config, "CLUSTERCONFIG") == nullptr);
}

TEST_CASE("an unknown .arg name suggests the closest CanvOS or edgeforge name") {
    Project project;
    project.write(".arg", "UPDATE_KERNAL=false\n");
    CHECK(project.error() ==
          ".arg:1:1: unknown setting 'UPDATE_KERNAL' (did you mean 'UPDATE_KERNEL'?); .arg takes "
          "the settings README's Configuration table lists and CanvOS's .arg variables (README: "
          "Coming from CanvOS)");
}

TEST_CASE("init --from-canvos: the written edgeforge.yaml gives the settings .arg gives") {
    Project canvos;
    canvos.write(".arg", canvos_fixture("arg.template") + "S3_BUCKET=my-bucket\n");
    canvos.write("k8s_version.json", canvos_fixture("k8s_version.json"));
    canvos.write("user-data", canvos_fixture("user-data.template"));
    canvos.write("local-ui.tar", "");
    canvos.write("content-apps/apps.zst", "");
    const Config from_arg = canvos.resolve();
    const CanvosImport imported =
        import_canvos_project(canvos.dir.path(), canvos.inputs().environment);
    CHECK(imported.yaml.find("repository: \"ubuntu\"  # .arg:") != std::string::npos);
    CHECK(imported.yaml.find("versions_file: \"k8s_version.json\"") != std::string::npos);
    // A left-out variable says why; files edgeforge finds itself are listed, not set.
    bool s3_listed = false;
    for (const auto& line : imported.left_out) {
        s3_listed = s3_listed || (line.starts_with("S3_BUCKET=my-bucket (") &&
                                  line.find("EBS direct APIs") != std::string::npos);
    }
    CHECK(s3_listed);
    CHECK(imported.found.size() == 3);

    // The same settings from the YAML alone, in a directory without .arg.
    Project yaml;
    yaml.write("edgeforge.yaml", imported.yaml);
    yaml.write("k8s_version.json", canvos_fixture("k8s_version.json"));
    const Config from_yaml = yaml.resolve();
    int compared = 0;
    for (const auto& value : from_arg.values()) {
        if (value.origin != Origin::arg_file) {
            continue;
        }
        ++compared;
        const ResolvedValue& other = from_yaml.get(value.setting->key);
        CHECK_MESSAGE(other.origin == Origin::config_file, value.setting->key);
        CHECK_MESSAGE(other.values == value.values, value.setting->key);
    }
    CHECK(compared >= 10);
    CHECK(from_yaml.string("base.image") == from_arg.string("base.image"));
}

TEST_CASE("init --from-canvos refuses what it cannot carry, naming the .arg line") {
    Project canvos;
    canvos.write(".arg", "OS_DISTRIBUTION=ubuntu\nCIS_HARDENING=true\n");
    const std::string message =
        canvos.error_of([&] { import_canvos_project(canvos.dir.path(), canvos.inputs().environment); });
    CHECK(message.find("cannot be carried over") != std::string::npos);
    CHECK(message.find(".arg:2") != std::string::npos);
    CHECK_FALSE(stdfs::exists(canvos.dir.path() / "edgeforge.yaml"));
    Project empty;
    CHECK(empty.error_of([&] { import_canvos_project(empty.dir.path()); })
              .find("has no .arg file") != std::string::npos);
}
