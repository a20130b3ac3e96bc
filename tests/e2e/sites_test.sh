#!/usr/bin/env bash
# End-to-end tests of project workflows: `edgeforge init`, the legacy `.installer.env` +
# user-data `make iso`, `.arg`-driven builds, and per-site installers (`build iso --sites`),
# judged with xorriso, sha256sum, and a QEMU boot of a site ISO whose initramfs reports the
# sha256 of the /config.yaml it found.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export EDGEFORGE_CACHE_DIR=$work/cache
iso_file() { # iso_file ISO PATH DEST
    xorriso -osirrox on -indev "$1" -extract "$2" "$3" >/dev/null 2>&1
}

# The agent release a project pins with INSTALLER_VERSION: a layout tagged v4.5.0.
skopeo copy -q "oci:$fixtures/agent-amd64:latest" "oci:$work/agent:v4.5.0" >/dev/null 2>&1 ||
    fail "skopeo copies the agent fixture to a v4.5.0 tag"

# --- init ---------------------------------------------------------------------------------
proj=$work/proj
if "$bin" init "$proj" --base "oci:$fixtures/base-amd64:latest" --agent "oci:$work/agent" \
    >"$work/init.log" 2>&1; then
    ok=1
    for f in edgeforge.yaml user-data .installer.env Makefile overlays/files overlays/files-iso content; do
        [ -e "$proj/$f" ] || { ok=0; fail "init writes the starter project" "missing $f"; }
    done
    [ "$ok" = 1 ] && pass "init writes the starter project"
else
    fail "init writes the starter project" "$(cat "$work/init.log")"
fi
"$bin" validate user-data --strict "$proj/user-data" >/dev/null 2>&1 &&
    pass "init's user-data passes validate --strict" || fail "init's user-data passes validate --strict"
"$bin" init "$proj" >"$work/init2.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "already has edgeforge.yaml" "$work/init2.log" &&
    pass "init refuses to overwrite a project (exit 2)" ||
    fail "init refuses to overwrite a project (exit 2)" "rc=$rc" "$(cat "$work/init2.log")"

# INSTALLER_VERSION selects the tag of an agent image given without one.
sed -i 's/^INSTALLER_VERSION=.*/INSTALLER_VERSION=v4.5.0/' "$proj/.installer.env"
(cd "$proj" && "$bin" --json build iso --dry-run) >"$work/plan.json" 2>"$work/plan.log"
python3 -c '
import json, sys
plan = json.load(open(sys.argv[1]))
assert plan["agents"] == ["oci:" + sys.argv[2] + "/agent:v4.5.0"], plan["agents"]
assert plan["name"] == "palette-edge-installer", plan["name"]
' "$work/plan.json" "$work" 2>"$work/plan-check.log" &&
    pass "INSTALLER_VERSION tags the untagged agent image; ISO_IMAGE names the ISO" ||
    fail "INSTALLER_VERSION tags the untagged agent image; ISO_IMAGE names the ISO" \
        "$(cat "$work/plan-check.log" "$work/plan.log")"
if (cd "$proj" && make -s iso EDGEFORGE="$bin") >"$work/make-proj.log" 2>&1 &&
    (cd "$proj/build" && sha256sum --quiet -c palette-edge-installer.iso.sha256); then
    pass "make iso in the init project builds build/palette-edge-installer.iso"
else
    fail "make iso in the init project builds build/palette-edge-installer.iso" "$(tail -20 "$work/make-proj.log")"
fi

# --- legacy: only .installer.env and a user-data file --------------------------------------
legacy=$work/legacy
mkdir -p "$legacy"
cat >"$legacy/.installer.env" <<ENV
ISO_IMAGE=legacy-installer
INSTALLER_VERSION=v4.5.0
USER_DATA_FILE=site-user-data.yaml
ENV
cp "$src/templates/user-data/qr-code-registration.yaml" "$legacy/site-user-data.yaml"
if (cd "$legacy" && EDGEFORGE_BASE_IMAGE="oci:$fixtures/base-amd64:latest" \
    EDGEFORGE_AGENT_IMAGES="oci:$work/agent" \
    make -s -f "$src/templates/project/Makefile" iso EDGEFORGE="$bin") >"$work/make-legacy.log" 2>&1; then
    iso_file "$legacy/build/legacy-installer.iso" /config.yaml "$work/legacy-config.yaml"
    cmp -s "$work/legacy-config.yaml" "$legacy/site-user-data.yaml" &&
        pass "legacy make iso: build/<ISO_IMAGE>.iso with USER_DATA_FILE as /config.yaml" ||
        fail "legacy make iso: build/<ISO_IMAGE>.iso with USER_DATA_FILE as /config.yaml"
else
    fail "legacy make iso: build/<ISO_IMAGE>.iso with USER_DATA_FILE as /config.yaml" "$(tail -20 "$work/make-legacy.log")"
fi

# IMAGE_NAME: the installer root filesystem also as an OCI image, read by skopeo; its layers
# unpack to the same tree the ISO's squashfs holds.
echo "IMAGE_NAME=oci:$work/installer-layout:v1" >>"$legacy/.installer.env"
if (cd "$legacy" && EDGEFORGE_BASE_IMAGE="oci:$fixtures/base-amd64:latest" \
    EDGEFORGE_AGENT_IMAGES="oci:$work/agent" "$bin" build iso) >"$work/image-name.log" 2>&1 &&
    skopeo inspect "oci:$work/installer-layout:v1" >"$work/installer-inspect.json" 2>&1 &&
    skopeo copy -q "oci:$work/installer-layout:v1" "oci:$work/installer-copy:v1" >/dev/null 2>&1; then
    pass "IMAGE_NAME=oci:DIR:TAG writes the installer image; skopeo inspects and copies it"
else
    fail "IMAGE_NAME=oci:DIR:TAG writes the installer image; skopeo inspects and copies it" \
        "$(tail -10 "$work/image-name.log" "$work/installer-inspect.json")"
fi
python3 - "$work/installer-layout" <<'PY' >"$work/diff-ids.log" 2>&1 &&
import gzip, hashlib, json, os, sys
root = sys.argv[1]
blob = lambda d: os.path.join(root, "blobs", "sha256", d.split(":")[1])
index = json.load(open(os.path.join(root, "index.json")))
(entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "v1"]
manifest = json.load(open(blob(entry["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
assert config["architecture"] == "amd64" and config["created"] == "2023-11-14T22:13:20Z", config
assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == len(config["history"])
import subprocess
for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
    data = open(blob(layer["digest"]), "rb").read()
    if layer["mediaType"].endswith("+gzip"):
        data = gzip.decompress(data)
    elif layer["mediaType"].endswith("+zstd"):
        data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id, (layer, diff_id)
print("diff_ids ok")
PY
    pass "installer image: every layer's diff_id matches its uncompressed tar" ||
    fail "installer image: every layer's diff_id matches its uncompressed tar" "$(cat "$work/diff-ids.log")"
mkdir -p "$work/roundtrip"
cp "$legacy/site-user-data.yaml" "$work/roundtrip/user-data"
(cd "$work/roundtrip" && "$bin" build iso --base "oci:$work/installer-layout:v1") >"$work/roundtrip.log" 2>&1
iso_file "$legacy/build/legacy-installer.iso" /rootfs.squashfs "$work/legacy.squashfs"
iso_file "$work/roundtrip/build/palette-edge-installer.iso" /rootfs.squashfs "$work/roundtrip.squashfs"
unsquashfs -lln "$work/legacy.squashfs" >"$work/legacy.list" 2>&1
unsquashfs -lln "$work/roundtrip.squashfs" >"$work/roundtrip.list" 2>&1
[ -s "$work/legacy.list" ] && diff -q "$work/legacy.list" "$work/roundtrip.list" >/dev/null &&
    pass "an ISO built from the installer image holds the same tree (unsquashfs -lln)" ||
    fail "an ISO built from the installer image holds the same tree (unsquashfs -lln)" \
        "$(diff "$work/legacy.list" "$work/roundtrip.list" | head; tail -5 "$work/roundtrip.log")"
(cd "$legacy" && EDGEFORGE_BASE_IMAGE="oci:$fixtures/base-amd64:latest" \
    "$bin" --json build iso --dry-run --installer-image registry.example.com/edge/installer:v2) \
    >"$work/image-plan.json" 2>&1
grep -q "\"layout\": *\"$legacy/build/legacy-installer-image\"" "$work/image-plan.json" &&
    pass "IMAGE_NAME as a registry name: the layout goes to build/<name>-image" ||
    fail "IMAGE_NAME as a registry name: the layout goes to build/<name>-image" "$(cat "$work/image-plan.json")"

# --- .arg-driven builds ----------------------------------------------------------------------
argp=$work/argp
mkdir -p "$argp"
cp "$src/templates/user-data/air-gapped-local.yaml" "$argp/user-data"
cat >"$argp/.arg" <<ARG
ISO_NAME=arg-installer
ARCH=amd64
BASE_IMAGE=oci:$fixtures/base-amd64:latest
ARG
# A .arg project gets CanvOS's agent image unless one is given: the fixture agent here.
if (cd "$argp" && EDGEFORGE_AGENT_IMAGES="oci:$fixtures/agent-amd64:latest" "$bin" build iso) >"$work/arg.log" 2>&1 && [ -s "$argp/build/arg-installer.iso" ]; then
    pass ".arg drives the ISO build (ISO_NAME, ARCH, BASE_IMAGE)"
else
    fail ".arg drives the ISO build (ISO_NAME, ARCH, BASE_IMAGE)" "$(tail -10 "$work/arg.log")"
fi
printf 'ARCH=x86\nK8S_DISTRIBUTION=k9s\n' >>"$argp/.arg"
(cd "$argp" && "$bin" build iso) >"$work/arg-bad.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "\.arg:4:6: invalid value 'x86' for ARCH: allowed values are amd64.*arm64" "$work/arg-bad.log" &&
    grep -q "\.arg:5:18: invalid value 'k9s' for K8S_DISTRIBUTION: allowed values are k3s, rke2, kubeadm, kubeadm-fips, canonical, nodeadm" "$work/arg-bad.log" &&
    pass ".arg with ARCH=x86, K8S_DISTRIBUTION=k9s: exit 2 listing the allowed values" ||
    fail ".arg with ARCH=x86, K8S_DISTRIBUTION=k9s: exit 2 listing the allowed values" "rc=$rc" "$(cat "$work/arg-bad.log")"

# --- per-site installers --------------------------------------------------------------------
sites=$proj/sites
mkdir -p "$sites"
cp "$src/templates/sites/store-042.yaml" "$sites/"
cat >"$sites/store-043.yaml" <<'YAML'
stylus:
  site:
    name: store-043
YAML
cat >"$sites/broken.yaml" <<'YAML'
stylus:
  site:
    network:
      type: static
      ipAddress: 10.9.9.9
      mask: 24
YAML
(cd "$proj" && "$bin" --json build iso --sites sites --extra-cmdline "edgeforge.check=/etc/site-id") \
    >"$work/sites.json.out" 2>"$work/sites.log"
rc=$?
out=$proj/build
[ "$rc" = 1 ] && grep -q "1 of 3 sites failed: broken" "$work/sites.log" &&
    pass "a broken site fails alone: exit 1, the others built" ||
    fail "a broken site fails alone: exit 1, the others built" "rc=$rc" "$(tail -20 "$work/sites.log")"
grep -q "sites/broken.yaml:4:7: stylus.site.network.gateway: required when type is static" "$work/sites.log" &&
    pass "the broken site's error names its file, line and column" ||
    fail "the broken site's error names its file, line and column" "$(cat "$work/sites.log")"
(cd "$out" && sha256sum --quiet -c palette-edge-installer-store-042.iso.sha256 \
    palette-edge-installer-store-043.iso.sha256) && [ ! -e "$out/palette-edge-installer-broken.iso" ] &&
    pass "site ISOs and their sha256 files (none for the broken site)" ||
    fail "site ISOs and their sha256 files (none for the broken site)" "$(ls -la "$out")"
for site in store-042 store-043; do
    iso_file "$out/palette-edge-installer-$site.iso" /config.yaml "$work/$site-config.yaml"
done
python3 - "$out/sites.json" "$work" "$proj/user-data" <<'PY' >"$work/sites-check.log" 2>&1 &&
import hashlib, json, sys
index = json.load(open(sys.argv[1]))
work = sys.argv[2]
sites = {s["site"]: s for s in index["sites"]}
assert sorted(sites) == ["broken", "store-042", "store-043"], sorted(sites)
assert sites["broken"]["status"] == "failed" and "gateway" in sites["broken"]["error"]
org = open(sys.argv[3]).read()
for name in ("store-042", "store-043"):
    site = sites[name]
    assert site["status"] == "built", site
    config = open(f"{work}/{name}-config.yaml", "rb").read()
    assert hashlib.sha256(config).hexdigest() == site["user_data_sha256"], name
    text = config.decode()
    assert text.startswith("#cloud-config\n"), name
    assert f"name: {name}" in text, name                       # the site's value
    assert "paletteEndpoint: api.palette.example.com" in text  # the org's value, kept
assert "ipAddress: 10.42.0.10" in open(f"{work}/store-042-config.yaml").read()
assert "path: /etc/site-id" in open(f"{work}/store-042-config.yaml").read()   # appended step
assert "kairos:" in open(f"{work}/store-042-config.yaml").read()              # org step kept
PY
    pass "sites.json and each site's /config.yaml: the site merged over the org user-data" ||
    fail "sites.json and each site's /config.yaml: the site merged over the org user-data" "$(cat "$work/sites-check.log")"
"$bin" validate user-data --strict "$work/store-042-config.yaml" >/dev/null 2>&1 &&
    pass "a site's merged user-data passes validate --strict" ||
    fail "a site's merged user-data passes validate --strict"
if grep -q "rootfs: reusing cached rootfs.squashfs" "$work/sites.log" &&
    ! grep -q "rootfs: writing rootfs.squashfs" "$work/sites.log"; then
    pass "the sites build reused the project's rootfs (no squashfs written again)"
else
    fail "the sites build reused the project's rootfs (no squashfs written again)" "$(cat "$work/sites.log")"
fi

# --fail-fast stops before any work and writes nothing.
(cd "$proj" && "$bin" build iso --sites sites --fail-fast --output-dir "$work/ff") >"$work/ff.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "site broken (.*broken.yaml)" "$work/ff.log" && [ ! -e "$work/ff" ] &&
    pass "--fail-fast: exit 2 at the broken site, nothing written" ||
    fail "--fail-fast: exit 2 at the broken site, nothing written" "rc=$rc" "$(cat "$work/ff.log")"

# The site ISO boots and the booted system reads that site's /config.yaml.
want=$(sha256sum <"$work/store-042-config.yaml" | cut -d' ' -f1)
if "$src/tests/e2e/qemu-boot" --arch amd64 --firmware seabios --cdrom "$out/palette-edge-installer-store-042.iso" \
    --timeout 300 --log "$work/boot-site.log" --expect "EDGEFORGE: config.yaml sha256=$want" \
    --expect "EDGEFORGE: done" >"$work/boot-site.out" 2>&1; then
    pass "site ISO boots (SeaBIOS CD) and the host sees the merged user-data (sha256 $want)"
else
    fail "site ISO boots (SeaBIOS CD) and the host sees the merged user-data" "$(cat "$work/boot-site.out")"
fi

finish sites_test
