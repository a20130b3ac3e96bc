// Unit tests for build/config: precedence, sources, and every validation message.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>

#include "build/config.h"
#include "build/plan.h"
#include "support/project.h"
#include "util/fs.h"

using namespace edgeforge;
using edgeforge::testing::Project;
namespace stdfs = std::filesystem;

TEST_CASE("defaults apply when nothing is configured") {
    Project project;
    project.environment["HOME"] = "/home/u";
    const Config config = project.resolve();
    CHECK(config.string("name") == "palette-edge-installer");
    CHECK(config.arch().name() == "amd64");
    CHECK(config.list("outputs") == std::vector<std::string>{"iso"});
    CHECK(config.string("squashfs.compression") == "zstd");
    CHECK(config.size("squashfs.block_size") == 1048576u);
    CHECK(config.string("cache_dir") == "/home/u/.cache/edgeforge");
    CHECK(config.get("name").origin == Origin::default_value);
    CHECK(config.files().empty());
    CHECK_FALSE(config.get("base.image").is_set());
}

TEST_CASE("XDG_CACHE_HOME moves the default cache") {
    Project project;
    project.environment["XDG_CACHE_HOME"] = "/xdg";
    CHECK(project.resolve().string("cache_dir") == "/xdg/edgeforge");
}

TEST_CASE("precedence: defaults < .installer.env < .arg < edgeforge.yaml < environment < flags") {
    Project project;
    project.write(".installer.env", "ISO_IMAGE=from-installer-env\nUSER_DATA_FILE=ud\n");
    project.write("ud", "#cloud-config\n");
    Config config = project.resolve();
    CHECK(config.string("name") == "from-installer-env");
    CHECK(config.get("name").origin == Origin::installer_env);
    CHECK(config.get("name").location.str() == ".installer.env:1:1");
    CHECK(config.path("user_data") == project.dir.path() / "ud");

    project.write(".arg", "ISO_NAME=from-arg\n");
    config = project.resolve();
    CHECK(config.string("name") == "from-arg");
    CHECK(config.get("name").origin == Origin::arg_file);

    project.write("edgeforge.yaml", "name: from-yaml\n");
    config = project.resolve();
    CHECK(config.string("name") == "from-yaml");
    CHECK(config.get("name").location.str() == "edgeforge.yaml:1:1");

    project.environment["EDGEFORGE_NAME"] = "from-env";
    config = project.resolve();
    CHECK(config.string("name") == "from-env");
    CHECK(config.get("name").origin == Origin::environment);

    project.flags.push_back({"name", {"from-flag"}});
    config = project.resolve();
    CHECK(config.string("name") == "from-flag");
    CHECK(config.get("name").origin == Origin::flag);
    CHECK(config.get("name").location.str() == "--name");

    // Lower sources still count for settings the higher ones leave alone.
    CHECK(config.get("user_data").origin == Origin::installer_env);
    CHECK(config.files().size() == 3);
}

TEST_CASE("an explicit --config is read and relative paths resolve against its directory") {
    Project project;
    project.write("site/user-data", "#cloud-config\n");
    project.write("site/build.yaml",
                  "base:\n  image: oci:images/base:latest\nuser_data: user-data\n"
                  "agent:\n  images:\n    - docker://quay.io/org/agent:v4\n    - oci:agent\n");
    ConfigInputs inputs = project.inputs();
    inputs.config_file = "site/build.yaml";
    const Config config = resolve_config(inputs);
    CHECK(config.path("user_data") == project.dir.path() / "site" / "user-data");
    CHECK(config.string("base.image") == "oci:images/base:latest");
    CHECK(config.list("agent.images") ==
          std::vector<std::string>{"docker://quay.io/org/agent:v4", "oci:agent"});
    CHECK(config.files().front() == project.dir.path() / "site" / "build.yaml");
}

TEST_CASE("a --config that does not exist is an error") {
    Project project;
    ConfigInputs inputs = project.inputs();
    inputs.config_file = "missing.yaml";
    CHECK_THROWS_WITH_AS(resolve_config(inputs), "--config: 'missing.yaml' does not exist", Error);
}

TEST_CASE("values are normalised: arch aliases, booleans, sizes, versions") {
    Project project;
    project.write(".arg", "ARCH=aarch64\nFIPS_ENABLED=yes\nK8S_VERSION=v1.30.5, 1.29.9\n");
    project.write("edgeforge.yaml", "squashfs:\n  block_size: 128K\n");
    const Config config = project.resolve();
    CHECK(config.arch().name() == "arm64");
    CHECK(config.string("arch") == "arm64");
    CHECK(config.boolean("fips"));
    CHECK(config.size("squashfs.block_size") == 131072u);
    CHECK(config.list("kubernetes.versions") == std::vector<std::string>{"1.30.5", "1.29.9"});
}

TEST_CASE("legacy files: comments, export, quotes, empty values") {
    Project project;
    project.write(".arg",
                  "# build args\n\nexport CUSTOM_TAG=\"demo\"\nIMAGE_REGISTRY='ttl.sh' # trailing\n"
                  "IMAGE_REPO=\nOS_DISTRIBUTION=ubuntu # comment\n");
    const Config config = project.resolve();
    CHECK(config.string("provider.custom_tag") == "demo");
    CHECK(config.string("provider.registry") == "ttl.sh");
    // An empty IMAGE_REPO takes CanvOS's default, $OS_DISTRIBUTION.
    CHECK(config.string("provider.repository") == "ubuntu");
    CHECK(config.string("os.distribution") == "ubuntu");
    CHECK(config.get("provider.custom_tag").location.str() == ".arg:3:8");
}

TEST_CASE("${VAR} expansion in edgeforge.yaml") {
    Project project;
    project.environment["FIXTURES"] = "/cache/fixtures";
    project.write("edgeforge.yaml",
                  "base:\n  image: oci:${FIXTURES}/base-amd64:latest\n"
                  "name: ${SITE_NAME:-default-site}\niso:\n  extra_cmdline: cost=$$5\n");
    const Config config = project.resolve();
    CHECK(config.string("base.image") == "oci:/cache/fixtures/base-amd64:latest");
    CHECK(config.string("name") == "default-site");
    CHECK(config.string("iso.extra_cmdline") == "cost=$5");
}

TEST_CASE("expand_variables nests defaults and rejects bad references") {
    const EnvironmentLookup env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "HOME") {
            return "/h";
        }
        return std::nullopt;
    };
    CHECK(expand_variables("${XDG:-${HOME}/.cache}/x", env) == "/h/.cache/x");
    CHECK(expand_variables("a$b", env) == "a$b");
    CHECK_THROWS_WITH_AS(expand_variables("${NOPE}", env),
                         "environment variable NOPE is not set; set it or write ${NOPE:-default}",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(expand_variables("${A", env),
                         "unterminated '${' in '${A' (write $$ for a literal $)",
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(expand_variables("${1A}", env),
                         "'${1A}' is not a valid variable reference", std::invalid_argument);
}

TEST_CASE("error: unknown top-level key with a suggestion and the allowed keys") {
    Project project;
    project.write("edgeforge.yaml", "nmae: x\n");
    CHECK(project.error() ==
          "edgeforge.yaml:1:1: unknown key 'nmae' (did you mean 'name'?); allowed top-level keys: "
          "arch, arches, output_dir, cache_dir, unpacked_layer_cache, block_cache_size, cache, registry, source_date_epoch, "
          "name, "
          "outputs, base, agent, user_data, "
          "overlays, content, cluster_config, local_ui, edge_custom_config, sites, installer, os, kubernetes, "
          "provider, fips, proxy, "
          "iso, uki, squashfs, disk, ova, ami");
}

TEST_CASE("error: unknown nested key names its block") {
    Project project;
    project.write("edgeforge.yaml", "squashfs:\n  compresion: xz\n");
    CHECK(
        project.error() ==
        "edgeforge.yaml:2:3: unknown key 'squashfs.compresion' (did you mean "
        "'squashfs.compression'?); allowed keys under 'squashfs': compression, level, block_size");
}

TEST_CASE("error: invalid enumeration value lists the allowed values") {
    Project project;
    project.write("edgeforge.yaml", "kubernetes:\n  distribution: k9s\n");
    CHECK(project.error() ==
          "edgeforge.yaml:2:17: invalid value 'k9s' for kubernetes.distribution: allowed values "
          "are k3s, rke2, kubeadm, kubeadm-fips, canonical, nodeadm");
}

TEST_CASE("error: .arg values name the file, line, column and the variable") {
    Project project;
    project.write(".arg", "K8S_DISTRIBUTION=k9s\nARCH=x86\n");
    CHECK(project.error() ==
          "2 problems found:\n"
          "  .arg:2:6: invalid value 'x86' for ARCH: allowed values are amd64 (alias x86_64), "
          "arm64 (alias aarch64)\n"
          "  .arg:1:18: invalid value 'k9s' for K8S_DISTRIBUTION: allowed values are k3s, rke2, "
          "kubeadm, kubeadm-fips, canonical, nodeadm");
}

TEST_CASE("error: unknown .arg setting suggests the right name") {
    Project project;
    project.write(".arg", "K8S_VERSON=1.30.5\n");
    CHECK(project.error() ==
          ".arg:1:1: unknown setting 'K8S_VERSON' (did you mean 'K8S_VERSION'?); .arg takes the "
          "settings README's Configuration table lists and CanvOS's .arg variables (README: "
          "Coming from CanvOS)");
}

TEST_CASE("error: a setting in the wrong legacy file says where it belongs") {
    Project project;
    project.write(".installer.env", "ISO_NAME=x\n");
    CHECK(project.error() ==
          ".installer.env:1:1: unknown setting 'ISO_NAME' here: it belongs in .arg (or set 'name' "
          "in edgeforge.yaml); known settings: ISO_IMAGE, INSTALLER_VERSION, USER_DATA_FILE, "
          "IMAGE_NAME");
}

TEST_CASE("error: malformed legacy lines") {
    Project project;
    project.write(".arg", "  JUSTAKEY\nCUSTOM_TAG=\"open\n");
    CHECK(project.error() ==
          "2 problems found:\n"
          "  .arg:1:3: expected KEY=value (one setting per line, '#' starts a comment)\n"
          "  .arg:2:12: missing closing \" quote");
}

TEST_CASE("error: YAML syntax errors carry the position") {
    Project project;
    project.write("edgeforge.yaml", "base:\n  image: [unclosed\n");
    const std::string message = project.error();
    CHECK(message.starts_with("edgeforge.yaml:"));
    CHECK(message.find("YAML syntax error") != std::string::npos);
}

TEST_CASE("error: the document must be a mapping") {
    Project project;
    project.write("edgeforge.yaml", "- a\n- b\n");
    CHECK(
        project.error() ==
        "edgeforge.yaml:1:1: the configuration must be a mapping of keys such as 'base:', 'iso:'");
}

TEST_CASE("error: shape mismatches") {
    Project project;
    project.write("edgeforge.yaml",
                  "name: [a, b]\nbase: oci:x\nagent:\n  images:\n    nested: 1\n");
    CHECK(project.error() ==
          "3 problems found:\n"
          "  edgeforge.yaml:1:7: 'name' expects a single name, not a list\n"
          "  edgeforge.yaml:2:7: 'base' must be a mapping with the keys: image\n"
          "  edgeforge.yaml:5:5: 'agent.images' expects list of image references, not a mapping");
}

TEST_CASE("error: one message per bad value type") {
    Project project;
    project.write("edgeforge.yaml", "name: 'bad name'\nfips: maybe\nsource_date_epoch: -5\n"
                                    "squashfs:\n  block_size: 3M\n  level: abc\n"
                                    "proxy:\n  http: proxy:3128\nkubernetes:\n  versions: [1.x]\n"
                                    "outputs: [iso, dvd]\nbase:\n  image: 'ocii:/x'\n");
    CHECK(project.error() ==
          "9 problems found:\n"
          "  edgeforge.yaml:3:20: invalid value '-5' for source_date_epoch: expected a whole "
          "number from 0 to 253402300799\n"
          "  edgeforge.yaml:1:7: invalid value 'bad name' for name: use letters, digits, '.', '_', "
          "'+' and '-' only (at most 128 characters, not starting with '.', '+' or '-')\n"
          "  edgeforge.yaml:11:16: invalid value 'dvd' for outputs: allowed values are iso, "
          "iso-disk-image, raw, qcow2, ova, ami, vhd, gce, provider, content\n"
          "  edgeforge.yaml:13:10: invalid value 'ocii:/x' for base.image: invalid image "
          "reference 'ocii:/x': unknown transport 'ocii:'\n"
          "  accepted forms:\n"
          "    oci:DIR[:TAG]                      OCI image layout directory\n"
          "    oci-archive:FILE[:TAG]             tar archive of an OCI image layout\n"
          "    docker-archive:FILE                output of `docker save`\n"
          "    dir:PATH                           root filesystem directory\n"
          "    tar:FILE                           root filesystem tarball (gzip/zstd/xz/plain)\n"
          "    docker://HOST/REPO[:TAG|@DIGEST]   registry image (docker:// may be omitted)\n"
          "  edgeforge.yaml:10:14: invalid value '1.x' for kubernetes.versions: expected a "
          "Kubernetes version such as 1.30.5\n"
          "  edgeforge.yaml:2:7: invalid value 'maybe' for fips: expected true or false\n"
          "  edgeforge.yaml:8:9: invalid value 'proxy:3128' for proxy.http: expected an http:// or "
          "https:// URL such as http://proxy.example:3128\n"
          "  edgeforge.yaml:6:10: invalid value 'abc' for squashfs.level: expected a whole number "
          "from 0 to 22\n"
          "  edgeforge.yaml:5:15: invalid value '3M' for squashfs.block_size: expected a power of "
          "two from 4.0 KiB to 1.0 MiB");
}

TEST_CASE("error: compression level must fit the compressor") {
    Project project;
    project.write("edgeforge.yaml", "squashfs:\n  compression: gzip\n  level: 15\n");
    CHECK(project.error() ==
          "edgeforge.yaml:3:3: squashfs.level 15 does not fit the gzip compressor: gzip takes 1 "
          "to 9 (0 picks its default)");
}

TEST_CASE("error: explicitly configured input paths must exist") {
    Project project;
    project.write("edgeforge.yaml", "user_data: nowhere.yaml\ncontent:\n  bundles: [a.tar.zst]\n");
    CHECK(project.error() ==
          "2 problems found:\n"
          "  edgeforge.yaml:1:12: user_data: 'nowhere.yaml' does not exist (looked for "
          "<dir>/nowhere.yaml)\n"
          "  edgeforge.yaml:3:13: content.bundles: 'a.tar.zst' does not exist (looked for "
          "<dir>/a.tar.zst)");
}

TEST_CASE("error: unset variable in the config names the variable and key") {
    Project project;
    project.write("edgeforge.yaml", "base:\n  image: oci:${NOT_SET}/base\n");
    CHECK(project.error() ==
          "edgeforge.yaml:2:10: environment variable NOT_SET is not set; set it or write "
          "${NOT_SET:-default} (in 'base.image')");
}

TEST_CASE("error: environment variables and flags are validated and named") {
    Project project;
    project.environment["EDGEFORGE_COMPRESSION"] = "brotli";
    project.flags.push_back({"arch", {"x86"}});
    CHECK(project.error() ==
          "2 problems found:\n"
          "  --arch: invalid value 'x86' for arch: allowed values are amd64 (alias x86_64), arm64 "
          "(alias aarch64)\n"
          "  environment variable EDGEFORGE_COMPRESSION: invalid value 'brotli' for "
          "squashfs.compression: allowed values are zstd, gzip, xz, lz4");
}

TEST_CASE("a null value leaves the default in place") {
    Project project;
    project.write("edgeforge.yaml", "name:\niso:\n");
    const Config config = project.resolve();
    CHECK(config.string("name") == "palette-edge-installer");
}

TEST_CASE("list flags accept repeats and commas; scalar flags keep the last value") {
    Project project;
    project.flags.push_back({"outputs", {"iso,raw", "qcow2"}});
    project.flags.push_back({"name", {"first", "second"}});
    const Config config = project.resolve();
    CHECK(config.list("outputs") == std::vector<std::string>{"iso", "raw", "qcow2"});
    CHECK(config.string("name") == "second");
}

TEST_CASE("config show lists every setting with its source") {
    Project project;
    project.write("edgeforge.yaml", "name: demo\n");
    project.environment["EDGEFORGE_ARCH"] = "arm64";
    const Config config = project.resolve();
    const std::string table = render_config_table(config);
    CHECK(table.find("name ") != std::string::npos);
    CHECK(table.find("demo") != std::string::npos);
    CHECK(table.find("edgeforge.yaml:1:1") != std::string::npos);
    CHECK(table.find("environment variable EDGEFORGE_ARCH") != std::string::npos);
    CHECK(table.find("1.0 MiB") != std::string::npos); // block size shown for people
    const auto json = config_to_json(config);
    CHECK(json["settings"].size() == settings_table().size());
    CHECK(json["settings"][0]["key"] == "arch");
    CHECK(json["settings"][0]["value"] == "arm64");
    CHECK(json["settings"][0]["origin"] == "environment");
}

TEST_CASE("error: keys must be plain names and lists must hold plain values") {
    Project project;
    project.write("edgeforge.yaml", "? [a, b]\n: 1\nagent:\n  images:\n    - {x: 1}\n");
    CHECK(project.error() == "2 problems found:\n"
                             "  edgeforge.yaml:1:3: keys must be plain names\n"
                             "  edgeforge.yaml:5:7: 'agent.images' expects a list of plain values");
}

TEST_CASE("error: settings files that are directories") {
    Project project;
    stdfs::create_directories(project.dir.path() / ".arg");
    stdfs::create_directories(project.dir.path() / "edgeforge.yaml");
    CHECK(project.error() ==
          "2 problems found:\n"
          "  edgeforge.yaml: expected a file, found a directory or special file; move it away or "
          "name the right file with --config\n"
          "  .arg: expected a file, found a directory or special file; move it away or name the "
          "right file with --arg-file");
    ConfigInputs inputs = project.inputs();
    inputs.config_file = ".arg";
    CHECK_THROWS_WITH_AS(resolve_config(inputs),
                         doctest::Contains("--config: '.arg' is not a regular file"), Error);
}

TEST_CASE("registry.creds (--creds, EDGEFORGE_CREDS, edgeforge.yaml) reaches the registry "
          "options and is never shown") {
    Project project;
    project.write("edgeforge.yaml", "name: t\nregistry:\n  creds: yaml-user:yaml-secret\n");
    project.environment["EDGEFORGE_CREDS"] = "env-user:env-secret";
    project.flags.push_back(FlagValue{"registry.creds", {"flag-user:flag-s3cret"}});
    const Config config = project.resolve();
    const auto options = registry_options(config);
    REQUIRE(options.credentials);
    CHECK(options.credentials->username == "flag-user");
    CHECK(options.credentials->password == "flag-s3cret");
    const std::string table = render_config_table(config);
    const std::string json = config_to_json(config).dump();
    for (const auto* secret : {"flag-s3cret", "env-secret", "yaml-secret"}) {
        CHECK(table.find(secret) == std::string::npos);
        CHECK(json.find(secret) == std::string::npos);
    }
    CHECK(table.find("(hidden)") != std::string::npos);

    // The environment alone works too; a bad value is named, never echoed.
    Project env_only;
    env_only.environment["EDGEFORGE_CREDS"] = "no-colon-s3cret";
    const std::string error = env_only.error();
    CHECK(error.find("EDGEFORGE_CREDS") != std::string::npos);
    CHECK(error.find("USER:PASSWORD") != std::string::npos);
    CHECK(error.find("s3cret") == std::string::npos);
}

TEST_CASE("content.* settings: bundle options from edgeforge.yaml, checked like flags") {
    Project project;
    project.write("edgeforge.yaml",
                  "name: t\ncontent:\n  level: 9\n  threads: 2\n  split_size: 4M\n"
                  "  all_platforms: true\n");
    const Config config = project.resolve();
    CHECK(config.integer("content.level") == 9);
    CHECK(config.integer("content.threads") == 2);
    CHECK(config.size("content.split_size") == 4u << 20);
    CHECK(config.boolean("content.all_platforms"));

    Project bad;
    bad.write("edgeforge.yaml", "name: t\ncontent:\n  level: 25\n");
    CHECK(bad.error().find("edgeforge.yaml:3:10") != std::string::npos);
}

TEST_CASE("hostile values: long values from every source fail fast with a bounded message") {
    const std::string big(200'000, 'x');
    {
        Project project; // edgeforge.yaml: the length is checked before the value's syntax
        project.write("edgeforge.yaml", "name: " + big + "\n");
        const std::string error = project.error();
        CHECK(error.find("edgeforge.yaml:1:7") != std::string::npos);
        CHECK(error.find("200000 characters") != std::string::npos);
        CHECK(error.size() < 2'000);
    }
    {
        Project project; // .arg and .installer.env
        project.write(".arg", "ISO_NAME=" + big + "\n");
        project.write(".installer.env", "IMAGE_NAME=" + big + "\n");
        const std::string error = project.error();
        CHECK(error.find(".arg:1") != std::string::npos);
        CHECK(error.size() < 4'000);
    }
    {
        Project project; // environment and flags, URL and version syntax
        project.environment["EDGEFORGE_HTTP_PROXY"] = "http://" + std::string(8'000, 'p') + " x";
        project.flags.push_back(FlagValue{"kubernetes.versions", {"1." + std::string(8'000, '2') + "x"}});
        const std::string error = project.error();
        CHECK(error.find("EDGEFORGE_HTTP_PROXY") != std::string::npos);
        CHECK(error.find("kubernetes.versions") != std::string::npos);
        CHECK(error.size() < 4'000);
    }
}

TEST_CASE("${} defaults nest at most 16 deep; deeper is bad input, never a stack overflow") {
    const auto nested = [](std::size_t levels) {
        std::string text;
        for (std::size_t i = 0; i < levels; ++i) {
            text += "${UNSET_" + std::to_string(i) + ":-";
        }
        text += "leaf";
        text += std::string(levels, '}');
        return text;
    };
    const EnvironmentLookup none = [](const std::string&) { return std::nullopt; };
    CHECK(expand_variables(nested(16), none) == "leaf");
    CHECK_THROWS_WITH_AS(expand_variables(nested(17), none),
                         doctest::Contains("nested more than 16 deep"), std::invalid_argument);
    CHECK_THROWS_AS(expand_variables(nested(20'000), none), std::invalid_argument);

    Project project;
    project.write("edgeforge.yaml", "name: t\nbase:\n  image: \"" + nested(20'000) + "\"\n");
    const std::string error = project.error();
    CHECK(error.find("edgeforge.yaml:3") != std::string::npos);
    CHECK(error.find("nested more than 16 deep") != std::string::npos);
    CHECK(error.size() < 2'000);
}

TEST_CASE("a key given twice in edgeforge.yaml is exit 2 naming both positions") {
    Project project;
    project.write("edgeforge.yaml", "name: a\nsquashfs:\n  level: 3\n  level: 9\n");
    CHECK(project.error() == "edgeforge.yaml:4:3: the key 'level' is given twice (first at "
                             "line 3, column 3); keep one");
}

TEST_CASE("arches: one configuration per arch, each into <output_dir>/<arch>") {
    Project project;
    project.write("edgeforge.yaml", "arches: [arm64, amd64, arm64]\noutput_dir: out\n");
    const Config config = project.resolve();
    const std::vector<Config> configs = arch_configs(config);
    REQUIRE(configs.size() == 2); // a repeated arch once, in the order listed
    CHECK(configs[0].arch().name() == "arm64");
    CHECK(configs[0].path("output_dir") == project.dir.path() / "out" / "arm64");
    CHECK(configs[1].arch().name() == "amd64");
    CHECK(configs[1].path("output_dir") == project.dir.path() / "out" / "amd64");
    CHECK(configs[0].get("arch").location.file == "edgeforge.yaml");
    // A single-output command needs the arch picked, and writes where build all does.
    CHECK(project.error_of([&] { (void)single_arch_config(config, "build iso"); })
              .starts_with("build iso builds one arch, and arches (edgeforge.yaml:1:1) lists "
                           "arm64, amd64: pick one with --arch"));
    project.flags.push_back({"arch", {"amd64"}});
    const Config picked = single_arch_config(project.resolve(), "build iso");
    CHECK(picked.arch().name() == "amd64");
    CHECK(picked.path("output_dir") == project.dir.path() / "out" / "amd64");
}

TEST_CASE("arches: unset keeps the one configuration; an arch outside them is refused") {
    Project project;
    project.write("edgeforge.yaml", "arch: arm64\n");
    const Config plain = project.resolve();
    REQUIRE(arch_configs(plain).size() == 1);
    CHECK(arch_configs(plain)[0].path("output_dir") == plain.path("output_dir"));
    CHECK(single_arch_config(plain, "build iso").path("output_dir") == plain.path("output_dir"));
    project.environment["EDGEFORGE_ARCHES"] = "amd64";
    const Config config = project.resolve();
    CHECK(project.error_of([&] { (void)arch_configs(config); })
              .starts_with("edgeforge.yaml:1:1: arch arm64 is not one of arches (environment "
                           "variable EDGEFORGE_ARCHES: amd64)"));
    CHECK(project.error_of([&] { (void)single_arch_config(config, "build iso"); })
              .starts_with("edgeforge.yaml:1:1: arch arm64 is not one of arches"));
}
