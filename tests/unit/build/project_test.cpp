// Unit tests for core/project: `edgeforge init` and the generated .installer.env template.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "build/plan.h"
#include "build/project.h"
#include "support/project.h"
#include "userdata/validate.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::Project;
namespace stdfs = std::filesystem;

TEST_CASE("init writes a starter project that resolves, plans and validates") {
    Project project;
    InitOptions options;
    options.directory = project.dir.path() / "site-installer";
    options.arch = Arch(Arch::Id::arm64);
    options.base_image = "oci:images/base:v1";
    options.agent_images = {"oci:images/agent", "docker://registry.example.com/edge/extra:2"};
    const InitResult result = init_project(options);
    CHECK(result.written.size() == 7);
    for (const char* file : {"edgeforge.yaml", "user-data", ".installer.env", "Makefile",
                             "overlays/files/README.edgeforge", "overlays/files-iso/README.txt",
                             "content/README.txt"}) {
        CHECK_MESSAGE(stdfs::is_regular_file(options.directory / file), file);
    }
    const userdata::Report report = userdata::validate_file(options.directory / "user-data");
    CHECK(report.passes(true));

    ConfigInputs inputs = project.inputs();
    inputs.working_dir = options.directory;
    const Config config = resolve_config(inputs);
    CHECK(config.arch().name() == "arm64");
    CHECK(config.string("name") == "palette-edge-installer"); // ISO_IMAGE from .installer.env
    CHECK(config.get("name").origin == Origin::installer_env);
    CHECK(config.path("base.image").empty() == false);
    CHECK(config.list("agent.images").size() == 2);
    CHECK(config.path("user_data") == options.directory / "user-data");

    const std::string makefile = util::read_file(options.directory / "Makefile");
    CHECK(makefile.find("iso:\n\t$(EDGEFORGE) build iso\n") != std::string::npos);
    CHECK(makefile.find("sites:\n\t$(EDGEFORGE) build iso --sites sites\n") != std::string::npos);
}

TEST_CASE("init without images leaves commented placeholders and the plan says what to set") {
    Project project;
    InitOptions options;
    options.directory = project.dir.path();
    init_project(options);
    const std::string yaml = util::read_file(project.dir.path() / "edgeforge.yaml");
    CHECK(yaml.find("  # image: docker://quay.io/kairos/ubuntu:24.04-core-amd64-generic\n") !=
          std::string::npos);
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_iso(config); })
              .find("no base image: set base.image in edgeforge.yaml") != std::string::npos);
}

TEST_CASE("init never overwrites without --force and writes nothing when it refuses") {
    Project project;
    project.write("user-data", "#cloud-config\nmine: true\n");
    InitOptions options;
    options.directory = project.dir.path();
    CHECK(project.error_of([&] { init_project(options); }) ==
          "<dir> already has user-data; nothing was written. Use another directory, or --force "
          "to overwrite them");
    CHECK_FALSE(stdfs::exists(project.dir.path() / "edgeforge.yaml"));
    CHECK(util::read_file(project.dir.path() / "user-data") == "#cloud-config\nmine: true\n");

    options.force = true;
    init_project(options);
    CHECK(util::read_file(project.dir.path() / "user-data").starts_with("#cloud-config\n# Org"));
}

TEST_CASE("init checks image references and the target first") {
    Project project;
    InitOptions options;
    options.directory = project.dir.path();
    options.base_image = "docker://Registry/UPPER";
    CHECK(project.error_of([&] { init_project(options); }).find("docker://Registry/UPPER") !=
          std::string::npos);
    CHECK(stdfs::is_empty(project.dir.path()));

    project.write("file", "x");
    options.base_image.clear();
    options.directory = project.dir.path() / "file";
    CHECK(project.error_of([&] { init_project(options); }) ==
          "cannot create a project in <dir>/file: it is a file, not a directory");
}

TEST_CASE("the repository's .installer.env.template is the generated one") {
    const std::string committed =
        util::read_file(stdfs::path(EDGEFORGE_SOURCE_DIR) / ".installer.env.template");
    CHECK(committed == render_installer_env_template());
    CHECK(committed.find("\nISO_IMAGE=palette-edge-installer\n") != std::string::npos);
    CHECK(committed.find("\nUSER_DATA_FILE=user-data\n") != std::string::npos);
    CHECK(committed.find("\nIMAGE_NAME=\n") != std::string::npos);
    CHECK(committed.find("\nINSTALLER_VERSION=latest\n") != std::string::npos);
}
