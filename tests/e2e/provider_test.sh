#!/usr/bin/env bash
# End-to-end tests of `edgeforge build provider` against Debian's docker-registry on loopback,
# seeded with skopeo from the fixture images. A project with .arg (the names users know) and
# edgeforge.yaml builds a k3s matrix (two versions from a versions file) for amd64 and arm64 and
# pushes it; skopeo reads the tags, platforms, layers and annotations back; the image pulled
# with skopeo and unpacked by an independent unpacker holds base, Kubernetes, agent, /etc
# overlay and metadata files; a rebuild gives the same digests; an ISO built from the pushed
# provider image boots and reports the metadata file; bad inputs exit 2 before any work.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools docker-registry skopeo python3 xorriso
source "$src/tests/e2e/registry.sh"
isolate_registry_test

port=$(free_port)
reg=127.0.0.1:$port
start_registry plain "$port"
for arch in amd64 arm64; do
    for image in base agent; do
        skopeo copy -q --dest-tls-verify=false "oci:$fixtures/$image-$arch:latest" \
            "docker://$reg/edge/$image-$arch:latest" >"$work/seed.log" 2>&1 ||
            { echo "skopeo could not seed $image-$arch:"; cat "$work/seed.log"; exit 1; }
    done
done

# The project: Kubernetes artifacts as tarballs (one per version), an /etc overlay, .arg.
project=$work/project
mkdir -p "$project/k8s" "$project/overlays/files/etc/edge" "$project/overlays/files/opt"
for version in 1.30.4 1.31.2; do
    mkdir -p "$work/k3s-$version/usr/local/bin"
    printf '#!/bin/sh\necho "k3s v%s+k3s1"\n' "$version" >"$work/k3s-$version/usr/local/bin/k3s"
    chmod 755 "$work/k3s-$version/usr/local/bin/k3s"
    tar -C "$work/k3s-$version" --sort=name --mtime=@1700000000 --owner=0 --group=0 -czf \
        "$project/k8s/k3s-$version.tar.gz" usr
done
echo "site overlay" >"$project/overlays/files/etc/edge/overlay-marker"
echo "not in provider images" >"$project/overlays/files/opt/installer-only"
cat >"$project/.arg" <<EOF
IMAGE_REGISTRY=$reg
IMAGE_REPO=edge/provider
K8S_DISTRIBUTION=k3s
CUSTOM_TAG=demo
OS_DISTRIBUTION=debian
OS_VERSION=12
EDGE_CUSTOM_CONFIG=edge-config.yaml
EOF
cp "$src/tests/fixtures/canvos/edge-custom-config.yaml.template" "$project/edge-config.yaml"
cat >"$project/edgeforge.yaml" <<EOF
base:
  image: "docker://$reg/edge/base-{arch}:latest"
agent:
  images: ["docker://$reg/edge/agent-{arch}:latest"]
  version: v4.5.0
kubernetes:
  artifacts: ["tar:k8s/{distribution}-{version}.tar.gz"]
  versions_file: k8s-versions.yaml
provider:
  arches: [amd64, arm64]
  source: https://git.example.com/edge/provider
registry:
  insecure: $reg
EOF
printf '# the versions this project supports\nk3s:\n  - 1.30.4\n  - 1.31.2\nrke2: [1.30.4]\n' \
    >"$project/k8s-versions.yaml"
edgeforge() { (cd "$project" && "$bin" --cache-dir "$work/cache" "$@"); }

tag1=k3s-1.30.4-v4.5.0-demo
tag2=k3s-1.31.2-v4.5.0-demo
if edgeforge --json build provider --push >"$work/build.json" 2>"$work/build.log"; then
    pass "build provider --push: a k3s matrix of two versions for amd64 and arm64"
else
    fail "build provider --push: a k3s matrix of two versions for amd64 and arm64" "$(tail -20 "$work/build.log")"
fi
python3 - "$work/build.json" "$reg" "$tag1" "$tag2" >"$work/json-check.txt" 2>&1 <<'PY'
import json, sys
doc, reg, tag1, tag2 = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
refs = [image["reference"] for image in doc["images"]]
assert refs == [f"{reg}/edge/provider:{tag1}", f"{reg}/edge/provider:{tag2}"], refs
for image in doc["images"]:
    assert image["pushed"] and image["arches"] == ["amd64", "arm64"], image
    assert image["media_type"] == "application/vnd.oci.image.index.v1+json", image
    assert f'system.uri: "{image["reference"]}"' in image["profile_snippet"], image["profile_snippet"]
PY
[ $? -eq 0 ] && pass "--json lists both tags (REGISTRY/REPO:DIST-VERSION-AGENT-CUSTOM), pushed, with the profile snippet" ||
    fail "--json lists both tags, pushed, with the profile snippet" "$(cat "$work/json-check.txt")"

# skopeo reads what the registry holds: an index with both platforms, annotations, labels.
skopeo inspect --raw --tls-verify=false "docker://$reg/edge/provider:$tag1" >"$work/index.json" 2>&1
skopeo inspect --tls-verify=false --override-arch arm64 "docker://$reg/edge/provider:$tag1" \
    >"$work/inspect-arm64.json" 2>&1
skopeo inspect --raw --tls-verify=false --override-arch amd64 "docker://$reg/edge/provider:$tag1" >/dev/null
python3 - "$work/index.json" "$work/inspect-arm64.json" "$fixtures" >"$work/skopeo-check.txt" 2>&1 <<'PY'
import json, sys
index, arm, fixtures = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
platforms = sorted((m["platform"]["architecture"], m["platform"].get("variant", "")) for m in index["manifests"])
assert platforms == [("amd64", ""), ("arm64", "v8")], platforms
notes = index["annotations"]
assert notes["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z", notes
assert notes["org.opencontainers.image.version"] == "k3s-1.30.4-v4.5.0-demo", notes
assert notes["org.opencontainers.image.source"] == "https://git.example.com/edge/provider", notes
assert arm["Architecture"] == "arm64" and arm["Created"] == "2023-11-14T22:13:20Z", arm
labels = arm["Labels"]
assert labels["io.edgeforge.kubernetes.distribution"] == "k3s", labels
assert labels["io.edgeforge.kubernetes.version"] == "1.30.4", labels
assert labels["io.edgeforge.agent.version"] == "v4.5.0", labels
# Layers: the base's and the agent's as they are, then k3s, /etc overlay and metadata.
def layers(name):
    layout = f"{fixtures}/{name}"
    manifest = json.load(open(f"{layout}/index.json"))["manifests"][0]["digest"].split(":")[1]
    return [l["digest"] for l in json.load(open(f"{layout}/blobs/sha256/{manifest}"))["layers"]]
base, agent = layers("base-arm64"), layers("agent-arm64")
got = arm["Layers"]
assert got[:len(base)] == base, (got, base)
assert got[len(base) + 1:len(base) + 1 + len(agent)] == agent, (got, agent)
# base, k3s, agent, the /etc overlay, the edge custom config, the metadata
assert len(got) == len(base) + 1 + len(agent) + 3, got
PY
[ $? -eq 0 ] && pass "skopeo: an index of amd64 + arm64/v8, OCI annotations and labels, base and agent layers reused as they are" ||
    fail "skopeo: index, platforms, annotations, labels and layers" "$(cat "$work/skopeo-check.txt")" "$(head -c 600 "$work/index.json")"

# Pulled back with skopeo and merged by an independent unpacker: every part is there.
skopeo copy -q --src-tls-verify=false --override-arch amd64 "docker://$reg/edge/provider:$tag2" \
    "oci:$work/pulled:$tag2" >"$work/pull.log" 2>&1
python3 "$src/tests/e2e/oci-unpack" --ref "$tag2" --arch amd64 "$work/pulled" "$work/tree" >"$work/unpack.log" 2>&1
tree=$work/tree
release=$tree/etc/edgeforge/provider-release
if [ -f "$tree/etc/os-release" ] && grep -q 'k3s v1.31.2' "$tree/usr/local/bin/k3s" 2>/dev/null &&
    [ -x "$tree/opt/spectrocloud/bin/stylus-agent" ] &&
    grep -qx 'site overlay' "$tree/etc/edge/overlay-marker" 2>/dev/null &&
    [ ! -e "$tree/opt/installer-only" ] &&
    grep -qx 'K8S_VERSION="1.31.2"' "$release" && grep -qx 'ARCH="amd64"' "$release" &&
    grep -qx "IMAGE=\"$reg/edge/provider:$tag2\"" "$release" &&
    grep -qx 'OS_DISTRIBUTION="debian"' "$release" &&
    cmp -s "$tree/oem/.edge_custom_config.yaml" "$project/edge-config.yaml"; then
    pass "pulled back and unpacked: base, k3s 1.31.2, agent, overlays/files/etc (only), the edge custom config at /oem and the metadata"
else
    fail "pulled back and unpacked: base, k3s, agent, /etc overlay and metadata" \
        "$(cat "$work/pull.log" "$work/unpack.log")" "$(cat "$release" 2>&1)"
fi
k3s_config=$tree/etc/rancher/k3s/config.yaml.d/00-edgeforge.yaml
python3 - "$k3s_config" >"$work/k3s-check.txt" 2>&1 <<'PY'
import sys
text = open(sys.argv[1]).read()
for line in ("  - traefik", "  - servicelb", "  - local-storage", "  - metrics-server",
             "flannel-backend: none"):
    assert line in text.splitlines(), (line, text)
PY
[ $? -eq 0 ] && pass "k3s defaults disable traefik, servicelb, local-storage, metrics-server and flannel" ||
    fail "k3s defaults" "$(cat "$work/k3s-check.txt")"

# Reproducible: a second build into another output directory gives the same digests.
edgeforge --json --output-dir "$work/again" build provider >"$work/again.json" 2>"$work/again.log"
python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); assert [i["digest"] for i in a["images"]]==[i["digest"] for i in b["images"]], (a,b)' \
    "$work/build.json" "$work/again.json" 2>"$work/repro.txt" &&
    pass "rebuilt without --push: identical index digests (SOURCE_DATE_EPOCH)" ||
    fail "rebuilt: identical digests" "$(cat "$work/repro.txt" "$work/again.log")"
skopeo inspect --raw "oci:$work/again/provider-images:$tag2" >/dev/null 2>&1 &&
    pass "the local layout build/provider-images is readable by skopeo" ||
    fail "the local layout build/provider-images is readable by skopeo"

# An ISO built from the pushed provider image boots and shows its metadata file.
cp "$src/examples/basic/user-data" "$project/user-data"
if edgeforge --output-dir "$work/iso" build iso --name from-provider \
    --base "docker://$reg/edge/provider:$tag2" --agent "" \
    --extra-cmdline "edgeforge.hash=/etc/edgeforge/provider-release" >"$work/iso.log" 2>&1; then
    pass "build iso from the pushed provider image"
else
    fail "build iso from the pushed provider image" "$(tail -20 "$work/iso.log")"
fi
want=$(sha256sum "$release" | cut -d' ' -f1)
if "$src/tests/e2e/qemu-boot" --arch amd64 --firmware seabios --cdrom "$work/iso/from-provider.iso" \
    --timeout 300 --log "$work/boot.log" \
    --expect "EDGEFORGE: rootfs-hash /etc/edgeforge/provider-release sha256=$want" \
    --expect "EDGEFORGE: done" >"$work/boot.out" 2>&1; then
    pass "the ISO from the provider image boots (SeaBIOS) and reports the metadata file's hash"
else
    fail "the ISO from the provider image boots and reports the metadata file" "$(tail -20 "$work/boot.out")"
fi

# The build's proxy settings are used for its pulls: an unreachable proxy fails the build.
env -u NO_PROXY -u no_proxy bash -c 'cd "$1" && shift && "$@"' _ "$project" "$bin" --cache-dir "$work/cache-proxy" \
    --output-dir "$work/proxy" build provider --http-proxy http://127.0.0.1:9 >"$work/proxy.log" 2>&1
code=$?
if [ "$code" -eq 1 ] && grep -qi "proxy" "$work/proxy.log"; then
    pass "HTTP_PROXY of the build is used for pulls (an unreachable proxy fails with exit 1)"
else
    fail "HTTP_PROXY of the build is used for pulls" "exit $code" "$(cat "$work/proxy.log")"
fi

# build all: every configured output, each input checked before any work.
if edgeforge --json --output-dir "$work/all" build all --outputs iso,provider \
    --base "docker://$reg/edge/base-{arch}:latest" >"$work/all.json" 2>"$work/all.log" &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert sorted(d)==["iso","provider"], d; assert len(d["provider"]["images"])==2, d' "$work/all.json" &&
    [ -s "$work/all/palette-edge-installer.iso" ] && [ -s "$work/all/provider-images/index.json" ]; then
    pass "build all --outputs iso,provider builds the ISO and both provider images"
else
    fail "build all --outputs iso,provider" "$(tail -20 "$work/all.log")"
fi
edgeforge --output-dir "$work/all-bad" build all --outputs iso,provider --k8s-distribution kubeadm \
    >"$work/all-bad.log" 2>&1
code=$?
if [ "$code" -eq 2 ] && grep -q "lists no versions for kubeadm" "$work/all-bad.log" && [ ! -e "$work/all-bad" ]; then
    pass "build all: a bad provider input stops it before the ISO is built (exit 2, nothing written)"
else
    fail "build all: a bad provider input stops it before any work" "exit $code" "$(cat "$work/all-bad.log")" "$(ls "$work/all-bad" 2>&1)"
fi

# Bad inputs: exit 2, a message naming the problem, nothing written.
expect_bad() { # expect_bad NAME PATTERN ARGS...
    local name=$1 pattern=$2
    shift 2
    rm -rf "$work/bad"
    edgeforge --output-dir "$work/bad" "$@" >"$work/bad.out" 2>&1
    local code=$?
    if [ "$code" -eq 2 ] && grep -qE -- "$pattern" "$work/bad.out" && [ ! -e "$work/bad/provider-images" ]; then
        pass "$name"
    else
        fail "$name" "exit $code" "$(cat "$work/bad.out")"
    fi
}
: >"$work/empty.arg"
expect_bad "unknown distribution: exit 2 with the allowed values" \
    "invalid value 'k9s'.*allowed values are k3s, rke2, kubeadm" build provider --k8s-distribution k9s
expect_bad "version not in the versions file: exit 2 naming the file and the versions" \
    "Kubernetes version 1.29.1 is not in .*k8s-versions.yaml \(k3s: 1.30.4, 1.31.2\)" \
    build provider --k8s-version 1.29.1
expect_bad "a distribution the versions file does not list: exit 2 at file:line:col" \
    "k8s-versions.yaml:2:1: lists no versions for kubeadm" build provider --k8s-distribution kubeadm
expect_bad "a missing Kubernetes artifact: exit 2 naming it" \
    "tar:.*/k8s/rke2-1.30.4.tar.gz: .*/k8s/rke2-1.30.4.tar.gz does not exist" \
    build provider --k8s-distribution rke2
expect_bad "--push without IMAGE_REGISTRY/IMAGE_REPO: exit 2 saying what to set" \
    "--push needs somewhere to push: set IMAGE_REGISTRY and IMAGE_REPO" \
    --arg-file "$work/empty.arg" build provider --k8s-distribution k3s --push
finish provider_test
