#!/usr/bin/env bash
# `make demo`: the main job on the bundled example, as far as it has landed, narrated.
set -euo pipefail
PATH=$PATH:/usr/sbin:/sbin
cd "$(dirname "$0")/.."
edgeforge=$(realpath "${1:-_build/edgeforge}")
fixtures=${EDGEFORGE_FIXTURES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge/fixtures}
example=examples/basic/edgeforge.yaml

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "edgeforge version"
show "$edgeforge" version

step "Host check for the example's outputs"
show "$edgeforge" --config "$example" doctor

step "The example's resolved configuration (value and source of every setting)"
show "$edgeforge" --config "$example" config show

step "A typo is caught before any work starts (exit code 2)"
bad=$(mktemp --suffix=.yaml)
trap 'rm -f "$bad"' EXIT
printf 'name: demo\nsquashfs:\n  compresion: xz\nkubernetes:\n  distribution: k9s\n' >"$bad"
cat "$bad"
set +e
"$edgeforge" --config "$bad" validate config
echo "exit code: $?"
set -e

step "Fixture base images (real Debian kernel, busybox, GRUB and shim), built without root"
for name in base-amd64 base-arm64 agent-amd64 agent-arm64; do
    python3 - "$fixtures/$name" <<'PY'
import json, os, sys
root = sys.argv[1]
index = json.load(open(os.path.join(root, "index.json")))
manifest_desc = index["manifests"][0]
blob = lambda d: os.path.join(root, "blobs", *d["digest"].split(":"))
manifest = json.load(open(blob(manifest_desc)))
config = json.load(open(blob(manifest["config"])))
human = lambda n: f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"
layers = ", ".join(f'{l["mediaType"].rsplit(".", 1)[-1]} {human(l["size"])}'
                   for l in manifest["layers"])
print(f'{os.path.basename(root):12} {config["architecture"]:6} {len(manifest["layers"])} layers: {layers}')
PY
done

step "Build the installer ISO from the example (base + agent + overlays + user-data)"
show "$edgeforge" --config "$example" build iso
iso=build/edge-demo-installer.iso
cat build/edge-demo-installer.iso.sha256

step "Boot records, read by xorriso (BIOS + UEFI El Torito, GPT ESP)"
xorriso -indev "$iso" -report_el_torito plain 2>/dev/null | grep -E 'Volume id|El Torito boot img'

step "One installer per site: each sites/*.yaml merged over the user-data, rootfs from the cache"
show "$edgeforge" --config "$example" build iso --sites examples/basic/sites
python3 - build/sites.json <<'PY'
import json, sys
for site in json.load(open(sys.argv[1]))["sites"]:
    print(f'{site["site"]:10} {site["status"]:6} {site.get("iso", "-")}  '
          f'/config.yaml sha256 {site.get("user_data_sha256", "-")[:16]}...  {site.get("seconds", 0):.2f} s')
PY

step "Disk images from the same cached rootfs: raw (Kairos GPT layout), qcow2 and OVA"
# edgeforge.oem= asks the fixture's initramfs to report what it finds on COS_OEM.
show "$edgeforge" --config "$example" build disk --extra-cmdline \
    "edgeforge.oem=LABEL=COS_OEM edgeforge.check=/etc/edgeforge/overlay-marker"
sgdisk -p build/edge-demo-installer.raw | sed -n '/^Number/,$p'
tar -tvf build/edge-demo-installer.ova

step "Provider image: base + k3s + agent + overlays/files/etc + metadata, as an OCI image"
show "$edgeforge" --config "$example" build provider
skopeo inspect oci:build/provider-images:k3s-1.30.4-v4.5.0 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("skopeo reads it:", d["Architecture"], len(d["Layers"]), "layers;", ", ".join(f"{k}={v}" for k, v in sorted(d["Labels"].items()) if k.startswith("io.edgeforge.k")))'

step "An air-gapped content bundle: images into one deduplicated OCI layout, listed without unpacking"
show "$edgeforge" --config "$example" content build --name apps \
    --image "oci:$fixtures/agent-amd64:latest" --image "oci:$fixtures/base-amd64:latest"
show "$edgeforge" content ls build/content-apps/apps.tar.zst

step "Reproducible across checkouts: two copies with different file times, one SOURCE_DATE_EPOCH"
repro=$(mktemp -d)
trap 'rm -f "$bad"; rm -rf "$repro"' EXIT
for copy in one two; do
    cp -r examples/basic "$repro/$copy"
done
find "$repro/one" -exec touch -h -d "2026-01-02 03:04:05" {} +
find "$repro/two" -exec touch -h -d "2026-06-07 08:09:10" {} +
for copy in one two; do
    (cd "$repro/$copy" && SOURCE_DATE_EPOCH=1700000000 EDGEFORGE_CACHE_DIR="$repro/$copy.cache" \
        "$edgeforge" -q build iso >/dev/null)
    sha256sum "$repro/$copy/build/edge-demo-installer.iso" | sed "s#$repro/##"
done

step "Incremental rebuild: one overlay file changed; the base image's region of the squashfs is copied whole from the block cache"
for copy in one two; do
    echo "overlay v2" >"$repro/$copy/overlays/files/etc/edgeforge/overlay-marker"
done
# one: the cache its first build left; two: an empty cache. The same bytes either way.
(cd "$repro/one" && SOURCE_DATE_EPOCH=1700000000 EDGEFORGE_CACHE_DIR="$repro/one.cache" \
    "$edgeforge" --no-progress build iso 2>&1 >/dev/null | grep -E '^rootfs: .* in ' || true)
(cd "$repro/two" && SOURCE_DATE_EPOCH=1700000000 EDGEFORGE_CACHE_DIR="$repro/two.empty-cache" \
    "$edgeforge" -q build iso >/dev/null)
for copy in one two; do
    sha256sum "$repro/$copy/build/edge-demo-installer.iso" | sed "s#$repro/##"
done

step "Scale-out: a plan in shards, a shared build cache, two fresh workers that pull the root filesystem, a last stage that joins the provider images"
shared="oci:$repro/shared-cache" # a registry (docker://HOST/REPO) in CI; a shared directory here
scale=(--sites sites --cache-remote "$shared")
export EDGEFORGE_OUTPUTS=iso,qcow2,provider SOURCE_DATE_EPOCH=1700000000
(cd "$repro/one" && show "$edgeforge" plan --shards 2 "${scale[@]}")
# Stage 1 computes the shared step once (here: found in this checkout's cache) and pushes it.
(cd "$repro/one" && EDGEFORGE_CACHE_DIR="$repro/one.cache" \
    "$edgeforge" --no-progress build rootfs "${scale[@]}" 2>&1 >/dev/null | grep -E 'remote cache' || true)
for shard in 1 2; do
    cp -r "$repro/one" "$repro/worker$shard" && rm -rf "$repro/worker$shard/build"
    echo "# worker $shard/2: its own empty cache, as a fresh CI runner"
    (cd "$repro/worker$shard" && EDGEFORGE_CACHE_DIR="$repro/worker$shard.cache" \
        "$edgeforge" --no-progress build all --shard "$shard/2" "${scale[@]}" 2>&1 >/dev/null |
        grep -E '^(shard|remote cache|rootfs: reusing)' || true)
    (cd "$repro/worker$shard/build" && ls -d *.iso *.qcow2 provider-platforms/* 2>/dev/null | sed 's/^/    /' || true)
done
echo "# the assemble stage: the workers' output directories together, provider platforms joined"
cp -r "$repro/one" "$repro/assembled" && rm -rf "$repro/assembled/build" && mkdir -p "$repro/assembled/build"
for shard in 1 2; do cp -a "$repro/worker$shard/build/." "$repro/assembled/build/"; done
(cd "$repro/assembled" && "$edgeforge" --no-progress build all --assemble "${scale[@]}" 2>&1 >/dev/null |
    grep -E '^(assemble|provider)' || true)
echo "# one machine, for comparison: the same files, byte for byte"
(cd "$repro/one" && EDGEFORGE_CACHE_DIR="$repro/one.cache" "$edgeforge" -q build all "${scale[@]}" >/dev/null)
if diff -r "$repro/one/build/provider-images" "$repro/assembled/build/provider-images" >/dev/null &&
    (cd "$repro/assembled/build" && sha256sum *.iso *.qcow2) | (cd "$repro/one/build" && sha256sum -c --quiet); then
    echo "    identical: the ISOs, qcow2 disks and build/provider-images"
else
    echo "    DIFFERENT: the sharded build does not match one machine's" >&2
    exit 1
fi
unset EDGEFORGE_OUTPUTS SOURCE_DATE_EPOCH
echo "# two arches: a root filesystem per arch in the shared stage, each arch's outputs under build/<arch>/"
(cd "$repro/one" && "$edgeforge" plan --shards 2 --arches amd64,arm64 --base "oci:$fixtures/base-{arch}:latest" \
    --agent "oci:$fixtures/agent-{arch}:latest" --outputs iso 2>/dev/null | grep -E '^[a-z]' | sed 's/^/    /' || true)
echo "# the same work as a GitLab CI pipeline (plan --emit gitlab-ci; also github-actions, k8s-job):"
(cd "$repro/one" && "$edgeforge" plan --emit gitlab-ci --shards 2 --cache-remote "$shared" 2>/dev/null |
    grep -A6 '^edgeforge-build:')

step "Hostile input is bad input: an alias bomb and a repeated key in a site file (exit code 2)"
mkdir -p "$repro/hostile/sites"
cp -r examples/basic/. "$repro/hostile/"
rm -f "$repro/hostile/sites/"*.yaml
{
    echo 'stylus:'
    echo '  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]'
    for level in 1 2 3 4 5 6 7 8 9; do
        below="*a$((level - 1))"
        echo "  a$level: &a$level [$below, $below, $below, $below, $below, $below, $below, $below, $below, $below]"
    done
} >"$repro/hostile/sites/bomb.yaml"
printf 'stylus:\n  site:\n    name: a\n    name: b\n' >"$repro/hostile/sites/twice.yaml"
set +e
out=$(cd "$repro/hostile" && "$edgeforge" build iso --sites sites 2>&1)
code=$?
set -e
printf '%s\n' "$out" | cut -c1-160
echo "exit code: $code"

step "Coming from CanvOS: a project directory with CanvOS's own .arg.template, user-data and grub.cfg"
canvos=$repro/canvos
mkdir -p "$canvos/overlay/files-iso/boot/grub2"
sed 's/^FORCE_INTERACTIVE_INSTALL=false$/FORCE_INTERACTIVE_INSTALL=true/' \
    tests/fixtures/canvos/arg.template >"$canvos/.arg"
cp tests/fixtures/canvos/user-data.template "$canvos/user-data"
cp tests/fixtures/canvos/overlay/files-iso/boot/grub2/grub.cfg "$canvos/overlay/files-iso/boot/grub2/"
cp tests/fixtures/canvos/k8s_version.json "$canvos/"
# The rest of a CanvOS project: a local UI, a content bundle, the cluster config and edge config.
mkdir -p "$canvos/ui/ui" "$canvos/content-apps"
echo "<html>local ui</html>" >"$canvos/ui/ui/index.html"
tar --owner=0 --group=0 -C "$canvos/ui" -cf "$canvos/local-ui.tar" . && rm -rf "$canvos/ui"
echo "site images" | zstd -q >"$canvos/content-apps/apps.zst"
tar -czf "$canvos/spc.tgz" -C tests/fixtures/canvos NOTICE
cp tests/fixtures/canvos/edge-custom-config.yaml.template "$canvos/.edge-custom-config.yaml"
ls -A "$canvos"
grep -E '^(IMAGE_REPO|OS_VERSION|FORCE_INTERACTIVE_INSTALL|UPDATE_KERNEL)=' "$canvos/.arg"
echo "# BASE_IMAGE is empty, as CanvOS users leave it: CanvOS's rule names the base and the agent"
(cd "$canvos" && "$edgeforge" config show) |
    grep -E '^(base.image|agent.images|provider.repository|iso.interactive_default) |^# CanvOS|^VARIABLE|^[A-Z_]+ '
echo "# no registry here: the fixture images stand in for the derived names"
(cd "$canvos" && show "$edgeforge" build iso --base "oci:$fixtures/base-amd64:latest" \
    --agent "oci:$fixtures/agent-amd64:latest" 2>&1) | grep -E '^\$|^iso: /'

xorriso -osirrox on -indev "$canvos/build/palette-edge-installer.iso" \
    -extract /boot/grub2/grub.cfg "$canvos/grub.cfg" >/dev/null 2>&1
echo "CanvOS's grub.cfg on the ISO, {{DEFAULT_ENTRY}} rendered for FORCE_INTERACTIVE_INSTALL=true:"
grep -n '^set default=' "$canvos/grub.cfg"
echo "local-ui.tar unpacked into /opt/spectrocloud/, the bundle under /opt/spectrocloud/content/:"
xorriso -osirrox on -indev "$canvos/build/palette-edge-installer.iso" \
    -extract /rootfs.squashfs "$canvos/rootfs.squashfs" >/dev/null 2>&1
unsquashfs -l "$canvos/rootfs.squashfs" | grep 'opt/spectrocloud/ui/'
xorriso -indev "$canvos/build/palette-edge-installer.iso" -find /opt/spectrocloud -type f 2>/dev/null
rm -f "$canvos/rootfs.squashfs"
echo "# +iso-disk-image: the ISO as a KubeVirt containerDisk, read by skopeo"
(cd "$canvos" && show "$edgeforge" build iso-disk-image --base "oci:$fixtures/base-amd64:latest" \
    --agent "oci:$fixtures/agent-amd64:latest" 2>&1) | grep -E '^\$|disk-image'
skopeo inspect "oci:$canvos/build/palette-edge-installer-disk-image:v4.10.0-rc.2-demo" |
    grep -E '"(Architecture|Os)"'
echo "# +cloud-image: the raw disk, with CanvOS's COS_CONTENT partition (bundle, spc.tgz, edge config)"
(cd "$canvos" && "$edgeforge" build disk --format raw --base "oci:$fixtures/base-amd64:latest" \
    --agent "oci:$fixtures/agent-amd64:latest" >/dev/null)
sgdisk -p "$canvos/build/palette-edge-installer.raw" | sed -n '/^Number/,$p'
echo "# +build-provider-images: K8S_VERSION is empty, so every k3s version of k8s_version.json"
(cd "$canvos" && "$edgeforge" build provider --dry-run --k8s-artifact 'docker://registry.example.com/k8s/{distribution}:{version}' \
    --base "oci:$fixtures/base-amd64:latest" 2>&1 || true) | grep -cE 'ttl.sh/ubuntu:k3s-[0-9.]+-v4.10.0-rc.2-demo' |
    sed 's/$/ provider images planned, tagged ttl.sh\/ubuntu:k3s-VERSION-v4.10.0-rc.2-demo as CanvOS tags them/'
echo "# init --from-canvos: the same settings as an edgeforge.yaml (first lines)"
"$edgeforge" init --from-canvos "$canvos" --print 2>/dev/null | sed -n '1,14p'

step "What is inside the qcow2, without booting it (libguestfs, about a minute under TCG)"
show "$edgeforge" inspect build/edge-demo-installer.qcow2

step "Boot the ISO under QEMU (TCG) as a CD with SeaBIOS and with UEFI (OVMF)"
echo "user-data sha256: $(sha256sum <examples/basic/user-data | cut -d' ' -f1)"
logs=$(mktemp -d)
for firmware in seabios ovmf; do
    tests/e2e/qemu-boot --arch amd64 --firmware "$firmware" --cdrom "$iso" --timeout 300 \
        --log "$logs/$firmware.log" >"$logs/$firmware.out" 2>&1 &
done
wait
for firmware in seabios ovmf; do
    if grep -q 'EDGEFORGE: done' "$logs/$firmware.log" 2>/dev/null; then
        echo "$firmware: the booted system reported:"
        grep -a -E 'EDGEFORGE: (init|medium |config.yaml|squashfs|rootfs /etc/(fixture/(whiteout-me|opaque/old1)|edgeforge)|rootfs-dirs|done)' \
            "$logs/$firmware.log" | sed 's/^/    /'
    else
        echo "$firmware: boot failed:"
        cat "$logs/$firmware.out"
        tail -20 "$logs/$firmware.log" 2>/dev/null
        rm -rf "$logs"
        exit 1
    fi
done
rm -rf "$logs"

step "Boot the raw disk under UEFI (OVMF): grub on COS_GRUB, rootfs from COS_RECOVERY"
logs=$(mktemp -d)
if tests/e2e/qemu-boot --arch amd64 --firmware ovmf --disk build/edge-demo-installer.raw --snapshot \
    --timeout 300 --log "$logs/disk.log" >"$logs/disk.out" 2>&1; then
    echo "the booted disk reported:"
    grep -a -E 'EDGEFORGE: (medium |oem|squashfs|rootfs /etc/edgeforge|rootfs-dirs|done)' "$logs/disk.log" | sed 's/^/    /'
else
    echo "disk boot failed:"
    cat "$logs/disk.out"
    rm -rf "$logs"
    exit 1
fi
rm -rf "$logs"

step "Trusted Boot: your own Secure Boot keys, signed UKIs, enrolled by systemd-boot on first boot"
keys=$(mktemp -d)
show "$edgeforge" keys generate --org "Edge Demo" --keys "$keys/secureboot-keys"
show "$edgeforge" --config "$example" build uki --keys "$keys/secureboot-keys" --secure-boot-enroll force
uki=build/edge-demo-installer-uki
for efi in "$uki"/EFI/BOOT/BOOTX64.EFI "$uki"/EFI/kairos/*.efi; do
    printf '%s: ' "${efi#"$uki"/}"
    sbverify --cert "$keys/secureboot-keys/db.pem" "$efi" 2>/dev/null
done
cat "$uki/loader/loader.conf"
echo
echo "The Trusted Boot installer ISO (CanvOS IS_UKI=true): that tree as its EFI partition, the"
echo "user-data and overlay on the medium; one entry, as CanvOS builds it (each UKI carries the OS)"
show "$edgeforge" --config "$example" build iso --uki --keys "$keys/secureboot-keys" \
    --secure-boot-enroll force --uki-entries install --output-dir "$keys/iso"
xorriso -indev "$keys/iso/edge-demo-installer.iso" -pvd_info -report_el_torito plain 2>/dev/null |
    grep -E '^Volume Id|El Torito boot img' | sed 's/^/    /'
echo
echo "Trusted Boot provider images (IS_UKI=true): each also carries the signed UKI of its own root"
echo "filesystem under /trusted-boot, what kairos-agent's UKI upgrade installs"
show "$edgeforge" --config "$example" build provider --uki --keys "$keys/secureboot-keys" \
    --output-dir "$keys/provider"
python3 - "$keys/provider/provider-images" <<'PY'
import json, os, sys, tarfile
layout = sys.argv[1]
blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":")[1])
manifest = json.load(open(blob(json.load(open(os.path.join(layout, "index.json")))["manifests"][0]["digest"])))
with tarfile.open(blob(manifest["layers"][-1]["digest"])) as layer:
    for member in layer.getmembers():
        if member.isfile():
            print(f"    {member.name:50} {member.size:>10}")
PY
echo "booting the ISO under OVMF in Setup Mode: systemd-boot enrols the keys, the machine resets,"
echo "the UKI boots with Secure Boot enforced and its OS finds the medium by label"
if tests/e2e/qemu-boot --arch amd64 --firmware ovmf-setup --machine q35 --reboot \
    --cdrom "$keys/iso/edge-demo-installer.iso" --timeout 600 --log "$keys/boot.log" \
    --expect "EDGEFORGE: secureboot enabled" --expect "EDGEFORGE: done" >"$keys/boot.out" 2>&1; then
    grep -a -E 'secureboot: Secure boot enabled|EDGEFORGE: (uki|secureboot|medium |config.yaml|rootfs /etc/edgeforge|done)' \
        "$keys/boot.log" | sed 's/^/    /'
else
    echo "UKI ISO boot failed:"
    cat "$keys/boot.out"
    rm -rf "$keys"
    exit 1
fi
rm -rf "$keys"
