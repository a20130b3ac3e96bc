// Unit tests for formats/provider: the plan (tags, matrix, placeholders, versions files, every
// error reported together) and the generated metadata.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "build/provider.h"
#include "support/project.h"

using namespace edgeforge;
using edgeforge::testing::Project;

namespace {

// Local artifacts for two versions and two arches, an /etc overlay and a non-/etc file.
void write_provider_project(Project& project, const std::string& extra_yaml = "") {
    for (const char* arch : {"amd64", "arm64"}) {
        project.write(std::string("images/base-") + arch + "/oci-layout", "{}");
    }
    for (const char* version : {"1.30.4", "1.31.2"}) {
        project.write(std::string("k8s/k3s/") + version + "/usr/local/bin/k3s", "k3s");
    }
    project.write("overlays/files/etc/motd", "hi\n");
    project.write("overlays/files/opt/installer-only", "x\n");
    project.write("edgeforge.yaml", "base:\n  image: oci:images/base-{arch}\n"
                                    "agent:\n  images: [oci:agent]\n  version: v4.5.0\n"
                                    "kubernetes:\n  distribution: k3s\n"
                                    "  artifacts: ['dir:k8s/{distribution}/{version}']\n" +
                                        extra_yaml);
    project.write("agent/oci-layout", "{}");
}

} // namespace

TEST_CASE("provider plan: tag scheme, matrix over versions and arches, placeholders") {
    Project project;
    write_provider_project(project, "  versions: [1.30.4, v1.31.2]\n"
                                    "provider:\n  arches: [amd64, arm64]\n");
    project.write(".arg", "IMAGE_REGISTRY=registry.example.com/\nIMAGE_REPO=edge/provider\n"
                          "CUSTOM_TAG=demo\n");
    const ProviderPlan plan = plan_provider(project.resolve(), false);
    REQUIRE(plan.images.size() == 2);
    CHECK(plan.images[0].tag == "k3s-1.30.4-v4.5.0-demo");
    CHECK(plan.images[0].reference == "registry.example.com/edge/provider:k3s-1.30.4-v4.5.0-demo");
    CHECK(plan.images[1].tag == "k3s-1.31.2-v4.5.0-demo"); // the 'v' prefix is dropped
    REQUIRE(plan.images[1].platforms.size() == 2);
    const auto& arm = plan.images[1].platforms[1];
    CHECK(arm.arch.name() == "arm64");
    CHECK(arm.base.path == project.dir.path() / "images/base-arm64"); // relative to the file
    REQUIRE(arm.kubernetes.size() == 1);
    CHECK(arm.kubernetes[0].path == project.dir.path() / "k8s/k3s/1.31.2");
    REQUIRE(arm.agents.size() == 1);
    CHECK(arm.agents[0].tag == "v4.5.0"); // an untagged agent takes the agent version
    CHECK(plan.etc_overlay == project.dir.path() / "overlays/files/etc");
    CHECK(plan.layout == project.dir.path() / "build/provider-images");
}

TEST_CASE("provider plan: no CUSTOM_TAG means no trailing '-'; '+' becomes '_'; no registry") {
    Project project;
    write_provider_project(project, "  versions: ['1.30.4']\n");
    project.flags.push_back({"kubernetes.versions", {"1.30.4+k3s1"}});
    project.write("k8s/k3s/1.30.4+k3s1/usr/local/bin/k3s", "k3s");
    const ProviderPlan plan = plan_provider(project.resolve(), false);
    REQUIRE(plan.images.size() == 1);
    CHECK(plan.images[0].tag == "k3s-1.30.4_k3s1-v4.5.0");
    CHECK(plan.images[0].reference.empty());
    REQUIRE(plan.images[0].platforms.size() == 1); // the global --arch
    CHECK(plan.images[0].platforms[0].arch.name() == "amd64");
}

TEST_CASE("provider plan: a versions file in its three shapes") {
    for (const auto& shape :
         std::vector<std::pair<std::string, std::string>>{
             {"map", "k3s:\n  - 1.30.4\n  - 1.31.2\nrke2: [1.29.0]\n"},
             {"list", "- 1.30.4\n- v1.31.2\n"},
             {"text", "# supported\n1.30.4\n1.31.2\n"}}) {
        CAPTURE(shape.first); // not a structured binding: clang 14 cannot capture those
        Project project;
        write_provider_project(project, "  versions_file: versions.yaml\n");
        project.write("versions.yaml", shape.second);
        const ProviderPlan plan = plan_provider(project.resolve(), false);
        REQUIRE(plan.images.size() == 2); // no version given: every version of the file
        CHECK(plan.images[0].kubernetes_version == "1.30.4");
        CHECK(plan.images[1].kubernetes_version == "1.31.2");
    }
}

TEST_CASE("provider plan errors are reported together, with where each value came from") {
    Project project;
    write_provider_project(project, "  versions: [1.29.1, 1.30.4]\n"
                                    "  versions_file: versions.yaml\n");
    project.write("versions.yaml", "k3s: [1.30.4, 1.31.2]\n");
    project.flags.push_back({"kubernetes.artifacts", {"dir:k8s/missing-{version}"}});
    const Config config = project.resolve();
    CHECK(project.error_of([&] { plan_provider(config, true); }) ==
          "3 problems found:\n"
          "  edgeforge.yaml:9:3: Kubernetes version 1.29.1 is not in "
          "<dir>/versions.yaml (k3s: 1.30.4, 1.31.2); pick one of those or add it to the file\n"
          "  --push: --push needs somewhere to push: set IMAGE_REGISTRY and IMAGE_REPO (.arg), "
          "provider.registry and provider.repository, or --registry and --repository\n"
          "  2 provider images have this problem; the first: --k8s-artifact: "
          "dir:<dir>/k8s/missing-1.29.1: <dir>/k8s/missing-1.29.1 does not "
          "exist");
}

TEST_CASE("provider plan errors: nothing configured") {
    Project project;
    const Config config = project.resolve();
    const std::string message = project.error_of([&] { plan_provider(config, false); });
    CHECK(message.starts_with("4 problems found:\n"));
    CHECK(message.find("no Kubernetes distribution: set kubernetes.distribution") !=
          std::string::npos);
    CHECK(message.find("no Kubernetes version: set kubernetes.versions") != std::string::npos);
    CHECK(message.find("no Kubernetes layer: set kubernetes.artifacts") != std::string::npos);
    CHECK(message.find("no base image") != std::string::npos);
}

TEST_CASE("provider plan errors: a versions file without the distribution, or not YAML") {
    Project project;
    write_provider_project(project, "  versions_file: versions.yaml\n");
    project.write("versions.yaml", "rke2: [1.30.4]\n");
    CHECK(project.error_of([&] { plan_provider(project.resolve(), false); }) ==
          "<dir>/versions.yaml:1:1: lists no versions for k3s (it has rke2); add a 'k3s:' list");
    project.write("versions.yaml", "k3s: [1.30.4\n");
    CHECK(project.error_of([&] { plan_provider(project.resolve(), false); })
              .starts_with("<dir>/versions.yaml:2:1: not valid YAML"));
}

TEST_CASE("provider metadata: release file, k3s and rke2 defaults, proxy") {
    ProviderPlan plan;
    plan.distribution = "k3s";
    plan.agent_version = "v4.5.0";
    plan.os_distribution = "ubuntu";
    plan.os_version = "22.04";
    ProviderImagePlan image;
    image.kubernetes_version = "1.30.4";
    image.tag = "k3s-1.30.4-v4.5.0";
    image.reference = "r.example.com/edge/p:k3s-1.30.4-v4.5.0";
    auto files = provider_metadata_files(plan, image, Arch(Arch::Id::arm64), "abc123");
    REQUIRE(files.size() == 3);
    CHECK(files[0].path == "/etc/edgeforge/provider-release");
    // CanvOS's mark of a provider image that carries Kubernetes and the agent provider itself.
    CHECK(files[2].path == "/etc/spectro-sysext/k8s-and-agent-provider-bundled");
    CHECK(files[2].content.empty());
    CHECK(files[0].content == "EDGEFORGE_PROVIDER=\"1\"\nOS_DISTRIBUTION=\"ubuntu\"\n"
                              "OS_VERSION=\"22.04\"\nK8S_DISTRIBUTION=\"k3s\"\n"
                              "K8S_VERSION=\"1.30.4\"\nAGENT_VERSION=\"v4.5.0\"\nARCH=\"arm64\"\n"
                              "FIPS=\"false\"\nIMAGE_TAG=\"k3s-1.30.4-v4.5.0\"\n"
                              "IMAGE=\"r.example.com/edge/p:k3s-1.30.4-v4.5.0\"\n"
                              "BUILD_ID=\"abc123\"\n");
    CHECK(files[1].path == "/etc/rancher/k3s/config.yaml.d/00-edgeforge.yaml");
    for (const char* line : {"  - traefik\n", "  - servicelb\n", "  - local-storage\n",
                             "  - metrics-server\n", "flannel-backend: none\n"}) {
        CHECK(files[1].content.find(line) != std::string::npos);
    }

    plan.distribution = "rke2";
    plan.https_proxy = "http://proxy.example:3128";
    plan.no_proxy = "10.0.0.0/8";
    files = provider_metadata_files(plan, image, Arch(Arch::Id::amd64), "abc123");
    REQUIRE(files.size() == 5);
    CHECK(files[1].path == "/etc/rancher/rke2/config.yaml.d/00-edgeforge.yaml");
    CHECK(files[1].content.find("cni: none\n") != std::string::npos);
    CHECK(files[1].content.find("  - rke2-metrics-server\n") != std::string::npos);
    CHECK(files[2].content == "HTTPS_PROXY=\"http://proxy.example:3128\"\n"
                              "https_proxy=\"http://proxy.example:3128\"\n"
                              "NO_PROXY=\"10.0.0.0/8\"\nno_proxy=\"10.0.0.0/8\"\n");
    CHECK(files[3].path == "/etc/systemd/system.conf.d/10-edgeforge-proxy.conf");

    plan.distribution = "kubeadm";
    plan.https_proxy.clear();
    plan.no_proxy.clear();
    CHECK(provider_metadata_files(plan, image, Arch(Arch::Id::amd64), "x").size() == 2);
}

TEST_CASE("cluster profile snippet points system.uri at the image") {
    CHECK(cluster_profile_snippet("r.example.com/edge/p:k3s-1.30.4") ==
          "pack:\n  content:\n    images:\n"
          "      - image: \"{{.spectro.pack.edge-native-byoi.options.system.uri}}\"\n"
          "options:\n  system.uri: \"r.example.com/edge/p:k3s-1.30.4\"\n");
}
