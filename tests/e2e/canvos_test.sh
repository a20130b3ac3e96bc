#!/usr/bin/env bash
# End-to-end test of CanvOS drop-in mode: a project directory holding only CanvOS's own files
# (.arg from CanvOS's .arg.template, its user-data.template; tests/fixtures/canvos, see NOTICE)
# builds an ISO with no edgeforge file present. BASE_IMAGE is empty, as CanvOS users leave it: the
# base and the agent come from CanvOS's naming rule, served by a loopback docker-registry seeded
# under exactly those names, with SPECTRO_PUB_REPO pointed at it.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools docker-registry skopeo unsquashfs xorriso python3 zstd sgdisk guestfish
source "$src/tests/e2e/registry.sh"
isolate_registry_test

port=$(free_port)
reg=127.0.0.1:$port
start_registry plain "$port"
export EDGEFORGE_INSECURE_REGISTRIES=$reg
seed() { # seed SOURCE DEST-REPO:TAG
    skopeo copy -q --dest-tls-verify=false "$1" "docker://$reg/$2" >"$work/seed.log" 2>&1 ||
        { echo "skopeo could not seed $2:"; cat "$work/seed.log"; exit 1; }
}
# The names CanvOS's Earthfile derives for OS_DISTRIBUTION=ubuntu, OS_VERSION=22 (tagged 22.04),
# ARCH=amd64, KAIROS_INIT_VERSION and PE_VERSION at their defaults, under SPECTRO_PUB_REPO.
seed "oci:$fixtures/base-amd64:latest" mirror/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1
seed "oci:$fixtures/agent-amd64:latest" mirror/edge/stylus-framework-linux-amd64:v4.10.0-rc.2

project=$work/project
mkdir -p "$project"
cp "$src/tests/fixtures/canvos/user-data.template" "$project/user-data"
{
    # The user's own lines first, as a CanvOS user edits the template: a mirror, a quoted value
    # with a comment, a reference to an earlier key and one to the environment.
    echo "SPECTRO_PUB_REPO=$reg/mirror   # our mirror"
    echo 'MY_ORG="ACME Corporation"  # organisation'
    sed -e 's/^OS_VERSION=22.04$/OS_VERSION=22/' -e 's/^ISO_NAME=.*/ISO_NAME=${SITE_PREFIX}-installer/' \
        -e 's/^FORCE_INTERACTIVE_INSTALL=false$/FORCE_INTERACTIVE_INSTALL=true/' \
        "$src/tests/fixtures/canvos/arg.template"
    echo "DEBUG=true"
} >"$project/.arg"
# CanvOS's overlay directories (singular 'overlay'), with CanvOS's own menu.
mkdir -p "$project/overlay/files/etc/canvos" "$project/overlay/files-iso/boot/grub2"
echo "from overlay/files" >"$project/overlay/files/etc/canvos/marker"
cp "$src/tests/fixtures/canvos/overlay/files-iso/boot/grub2/grub.cfg" "$project/overlay/files-iso/boot/grub2/"
# EDGE_CUSTOM_CONFIG=.edge-custom-config.yaml (the template's value), now present.
cp "$src/tests/fixtures/canvos/edge-custom-config.yaml.template" "$project/.edge-custom-config.yaml"
# CLUSTERCONFIG=spc.tgz (the template's value), a content bundle as Palette exports them (any
# NAME.zst), k8s_version.json, and a local-ui.tar for /opt/spectrocloud/.
mkdir -p "$work/spc/cluster" "$project/content-apps" "$work/ui/ui/bin"
echo "cluster profile" >"$work/spc/cluster/profile.yaml"
tar -C "$work/spc" -czf "$project/spc.tgz" cluster
echo "images of the site" | zstd -q >"$project/content-apps/apps.zst"
cp "$src/tests/fixtures/canvos/k8s_version.json" "$project/"
echo "<html>local ui</html>" >"$work/ui/ui/index.html"
printf '#!/bin/sh\necho ui\n' >"$work/ui/ui/bin/start.sh"
chmod 0750 "$work/ui/ui/bin/start.sh"
tar --owner=0 --group=0 -C "$work/ui" -cf "$project/local-ui.tar" .
# What the fixture's initramfs checks in the booted root filesystem (etc/edgeforge-fixture/expect).
mkdir -p "$project/overlay/files/etc/edgeforge-fixture"
printf '%s\n' "present /etc/canvos/marker" "present /opt/spectrocloud/bin/stylus-agent" \
    "present /opt/spectrocloud/ui/index.html" "present /opt/spectrocloud/ui/bin/start.sh" \
    >"$project/overlay/files/etc/edgeforge-fixture/expect"
printf '%s\n' "mode /opt/spectrocloud/ui/bin/start.sh" \
    >"$project/overlay/files/etc/edgeforge-fixture/expect-attrs"
ls -A "$project" >"$work/files"

(cd "$project" && SITE_PREFIX=store "$bin" config show) >"$work/show.out" 2>"$work/show.err"
detail="$(cat "$work/show.out" "$work/show.err")"
check "config show: the base and agent derived from the mirror, ISO_NAME from the environment" \
    bash -c "grep -qE '^base.image +docker://$reg/mirror/edge/kairos-ubuntu:22.04-core-\{arch\}-generic-v0.17.1 ' '$work/show.out' &&
             grep -qE '^agent.images +docker://$reg/mirror/edge/stylus-framework-linux-\{arch\}:v4.10.0-rc.2 ' '$work/show.out' &&
             grep -qE '^name +store-installer ' '$work/show.out' &&
             grep -qE '^MY_ORG +ACME Corporation +.arg:2:1 +none: used by CanvOS only' '$work/show.out' &&
             [ ! -s '$work/show.err' ]"

(cd "$project" && SITE_PREFIX=store SOURCE_DATE_EPOCH=1700000000 "$bin" build iso) >"$work/build.out" 2>&1
rc=$?
detail="exit $rc: $(tail -15 "$work/build.out")"
check "build iso: exit 0, build/store-installer.iso" test "$rc" -eq 0 -a -s "$project/build/store-installer.iso"

iso=$project/build/store-installer.iso
xorriso -indev "$iso" -osirrox on -extract /rootfs.squashfs "$work/rootfs.squashfs" >/dev/null 2>&1
unsquashfs -ll "$work/rootfs.squashfs" >"$work/rootfs.list" 2>/dev/null
detail="$(grep -c . "$work/rootfs.list") entries in the rootfs"
check "the ISO's rootfs holds the base (from the mirror) and the agent (stylus framework image)" \
    bash -c "grep -q 'squashfs-root/etc/os-release' '$work/rootfs.list' &&
             grep -q 'squashfs-root/opt/spectrocloud/bin/stylus-agent\$' '$work/rootfs.list'"
check "overlay/files/ (CanvOS's name) is in the rootfs" grep -q 'squashfs-root/etc/canvos/marker$' "$work/rootfs.list"
detail="$(grep 'opt/spectrocloud' "$work/rootfs.list")"
check "local-ui.tar is unpacked into /opt/spectrocloud/ (mode kept, over the agent's files), the tar itself is not kept" \
    bash -c "grep -qE '^-rwxr-x--- root/root +[0-9]+ .* squashfs-root/opt/spectrocloud/ui/bin/start.sh\$' '$work/rootfs.list' &&
             grep -q 'squashfs-root/opt/spectrocloud/ui/index.html\$' '$work/rootfs.list' &&
             grep -q 'squashfs-root/opt/spectrocloud/bin/stylus-agent\$' '$work/rootfs.list' &&
             ! grep -q 'local-ui.tar' '$work/rootfs.list'"
xorriso -indev "$iso" -osirrox on -extract /boot/grub2/grub.cfg "$work/grub.cfg" >/dev/null 2>&1
detail="$(grep -n 'default\|sysrootwait' "$work/grub.cfg" | head -5)"
check "CanvOS's grub.cfg from overlay/files-iso: FORCE_INTERACTIVE_INSTALL=true gives 'set default=2', DEBUG=true the debug options on every installer line" \
    bash -c "grep -qx 'set default=2' '$work/grub.cfg' && ! grep -q 'DEFAULT_ENTRY' '$work/grub.cfg' &&
             [ \$(grep -c 'rd.immucore.sysrootwait' '$work/grub.cfg') -eq \$(grep -c 'rd.immucore.sysrootwait.* rd.immucore.debug console=tty0 rd.debug\$' '$work/grub.cfg') ] &&
             grep -q 'rd.immucore.debug' '$work/grub.cfg'"
xorriso -indev "$iso" -osirrox on -extract /.edge_custom_config.yaml "$work/edge.yaml" >/dev/null 2>&1
check "EDGE_CUSTOM_CONFIG: the file is the ISO's /.edge_custom_config.yaml" cmp -s "$work/edge.yaml" "$project/.edge-custom-config.yaml"
xorriso -indev "$iso" -osirrox on -extract /config.yaml "$work/config.yaml" >/dev/null 2>&1
check "the user-data (CanvOS's template) is the ISO's /config.yaml" cmp -s "$work/config.yaml" "$project/user-data"

# Boots under SeaBIOS and OVMF with CanvOS's own menu: its default entry (2, the interactive
# installer, from FORCE_INTERACTIVE_INSTALL=true) with DEBUG's options starts, and the fixture's
# initramfs reports every piece of the project where the device expects it.
qemu_boot=$src/tests/e2e/qemu-boot
boot() { # boot NAME FIRMWARE
    "$qemu_boot" --arch amd64 --firmware "$2" --cdrom "$iso" --timeout 400 \
        --log "$work/boot-$1.log" >"$work/boot-$1.out" 2>&1
}
boot seabios seabios &
seabios_pid=$!
boot ovmf ovmf &
wait "$seabios_pid" $! # not a bare wait: the registry runs in the background too
want_ud=$(sha256sum <"$project/user-data" | cut -d' ' -f1)
want_apps=$(sha256sum <"$project/content-apps/apps.zst" | cut -d' ' -f1)
want_spc=$(sha256sum <"$project/spc.tgz" | cut -d' ' -f1)
for firmware in seabios ovmf; do
    log=$work/boot-$firmware.log
    missing=()
    for line in "EDGEFORGE: done" "EDGEFORGE: config.yaml sha256=$want_ud" \
        "EDGEFORGE: medium-file /.edge_custom_config.yaml" \
        "EDGEFORGE: content apps.zst size=$(stat -c %s "$project/content-apps/apps.zst") sha256=$want_apps" \
        "EDGEFORGE: clusterconfig spc.tgz size=$(stat -c %s "$project/spc.tgz") sha256=$want_spc" \
        "EDGEFORGE: squashfs mounted" "EDGEFORGE: rootfs /etc/canvos/marker present" \
        "EDGEFORGE: rootfs /opt/spectrocloud/bin/stylus-agent present" \
        "EDGEFORGE: rootfs /opt/spectrocloud/ui/index.html present" \
        "EDGEFORGE: rootfs-mode /opt/spectrocloud/ui/bin/start.sh 750"; do
        grep -qF "$line" "$log" 2>/dev/null || missing+=("$line")
    done
    grep -qE 'Command line: .*interactive-install.* rd.immucore.debug console=tty0 rd.debug' "$log" 2>/dev/null ||
        missing+=("the kernel command line of CanvOS's entry 2 with DEBUG's options")
    detail="missing: ${missing[*]:-}; $(tail -8 "$log" 2>/dev/null; cat "$work/boot-$firmware.out")"
    check "boot $firmware: CanvOS's menu starts its interactive entry with DEBUG's options; user-data, edge config, content, cluster config, overlay, agent and local UI in place" \
        test "${#missing[@]}" -eq 0
done

# +iso-disk-image: the same ISO as a KubeVirt containerDisk, read back by skopeo; tagged
# PE_VERSION-CUSTOM_TAG as CanvOS tags it.
(cd "$project" && SITE_PREFIX=store SOURCE_DATE_EPOCH=1700000000 "$bin" build iso-disk-image) >"$work/cd.out" 2>&1
rc=$?
cd_ref="oci:$project/build/store-installer-disk-image:v4.10.0-rc.2-demo"
skopeo inspect "$cd_ref" >"$work/cd-inspect.json" 2>&1 &&
    skopeo copy -q "$cd_ref" "dir:$work/cd" >"$work/cd-copy.log" 2>&1
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"].split(":")[1])' "$work/cd/manifest.json" 2>/dev/null)
mkdir -p "$work/cd-unpacked"
[ -n "$layer" ] && tar -xzf "$work/cd/$layer" -C "$work/cd-unpacked" 2>/dev/null
detail="exit $rc: $(tail -5 "$work/cd.out"; head -c 400 "$work/cd-inspect.json")"
check "build iso-disk-image: skopeo reads oci:build/store-installer-disk-image:v4.10.0-rc.2-demo (linux/amd64), its layer holds disk/store-installer.iso = the ISO" \
    bash -c "[ $rc -eq 0 ] && grep -q '\"Architecture\": \"amd64\"' '$work/cd-inspect.json' &&
             cmp -s '$work/cd-unpacked/disk/store-installer.iso' '$iso'"

# +cloud-image: the raw disk gets CanvOS's COS_CONTENT partition (the bundle, spc.tgz, the edge
# config), judged by sgdisk and read back by libguestfs.
(cd "$project" && SITE_PREFIX=store SOURCE_DATE_EPOCH=1700000000 "$bin" build disk --format raw) >"$work/raw.out" 2>&1
rc=$?
raw=$project/build/store-installer.raw
sgdisk -v "$raw" >"$work/raw-v.txt" 2>&1
part=$(sgdisk -p "$raw" 2>/dev/null | awk '$NF == "COS_CONTENT" {print $1}')
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# Under TCG: a /dev/kvm that exists but cannot run guests (nested virtualisation) kills qemu at
# once ("failed to set MSR"), and these checks do not need KVM's speed.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}
guestfish --ro -a "$raw" >"$work/raw-guest.txt" 2>"$work/raw-guest.err" <<EOF
run
vfs-label /dev/sda${part:-0}
mount /dev/sda${part:-0} /
checksum sha256 /bundle-content/apps.zst
checksum sha256 /spc-config/spc.tgz
checksum sha256 /edge-config/.edge_custom_config.yaml
EOF
want_raw="COS_CONTENT
$want_apps
$want_spc
$(sha256sum <"$project/.edge-custom-config.yaml" | cut -d' ' -f1)"
detail="exit $rc, partition '${part}': $(tail -3 "$work/raw.out"; cat "$work/raw-v.txt"; diff <(echo "$want_raw") "$work/raw-guest.txt"; tail -3 "$work/raw-guest.err")"
check "build disk --format raw: sgdisk -v clean, a COS_CONTENT partition whose files libguestfs reads back unchanged" \
    bash -c "[ $rc -eq 0 ] && grep -q 'No problems found' '$work/raw-v.txt' && [ -n '$part' ] &&
             [ \"\$(cat '$work/raw-guest.txt')\" = \"$want_raw\" ]"
rm -f "$raw" "$raw.sha256"

# Provider images: K8S_VERSION is empty, so every k3s version of k8s_version.json is built, tagged
# as CanvOS tags them (IMAGE_REGISTRY/IMAGE_REPO:K8S_DISTRIBUTION-K8S_VERSION-PE_VERSION-CUSTOM_TAG).
(cd "$project" && SITE_PREFIX=store "$bin" --json build provider --dry-run --k8s-artifact "docker://$reg/k8s/{distribution}:{version}") \
    >"$work/provider.json" 2>"$work/provider.err"
rc=$?
detail="exit $rc: $(head -c 600 "$work/provider.json"; tail -5 "$work/provider.err")"
check "build provider --dry-run: one image per k3s version of k8s_version.json, tagged ttl.sh/ubuntu:k3s-VERSION-v4.10.0-rc.2-demo" \
    python3 -c '
import json, sys
plan = json.load(open(sys.argv[1]))
plan = plan.get("plan", plan)
got = [image["reference"] for image in plan["images"]]
want = ["ttl.sh/ubuntu:k3s-%s-v4.10.0-rc.2-demo" % v for v in json.load(open(sys.argv[2]))["k3s"]]
assert len(want) > 10 and got == want, (got[:3], want[:3], len(got), len(want))
' "$work/provider.json" "$project/k8s_version.json"
# One bad setting shared by the whole matrix is one error with the count, not one per tag.
(cd "$project" && SITE_PREFIX=store "$bin" build provider --dry-run --repository 'Ubuntu' \
    --k8s-artifact "docker://$reg/k8s/{distribution}:{version}") >"$work/badrepo.out" 2>&1
rc=$?
count=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["k3s"]))' "$project/k8s_version.json")
detail="exit $rc: $(head -c 800 "$work/badrepo.out")"
check "a capital letter in IMAGE_REPO: exit 2, one error counting the $count provider images" \
    bash -c "[ $rc -eq 2 ] && [ \$(grep -c 'invalid image reference' '$work/badrepo.out') -eq 1 ] &&
             grep -q '^edgeforge: error: $count provider images have this problem; the first: --repository: invalid image reference' '$work/badrepo.out'"

# init --from-canvos: the same settings from an edgeforge.yaml, in a copy of the project.
copy=$work/copy
mkdir -p "$copy" && cp -a "$project/." "$copy/" && rm -rf "$copy/build"
(cd "$copy" && SITE_PREFIX=store "$bin" init --from-canvos .) >"$work/init.out" 2>&1
rc=$?
mv "$copy/.arg" "$work/arg.moved"
(cd "$copy" && "$bin" config show) >"$work/show-yaml.out" 2>&1
detail="exit $rc: $(cat "$work/init.out") $(head -30 "$work/show-yaml.out")"
check "init --from-canvos writes edgeforge.yaml: without .arg it gives the same base, agent, name, repository and versions file" \
    bash -c "[ $rc -eq 0 ] && grep -q 'S3_BUCKET\|local-ui.tar' '$work/init.out' &&
             for key in base.image agent.images name provider.repository provider.custom_tag kubernetes.versions_file iso.interactive_default iso.debug; do
                 [ \"\$(grep -E \"^\$key \" '$work/show.out' | awk '{print \$2}')\" = \"\$(grep -E \"^\$key \" '$work/show-yaml.out' | awk '{print \$2}')\" ] || { echo \"\$key differs\"; exit 1; }
             done"

ls -A "$project" >"$work/files-after"
detail="$(diff "$work/files" "$work/files-after")"
check "nothing but build/ was written into the project" \
    bash -c "diff <(grep -vx build '$work/files-after') '$work/files' >/dev/null"

# A value edgeforge cannot honour stops the build before any work, naming the line.
echo "CIS_HARDENING=true" >>"$project/.arg"
line=$(wc -l <"$project/.arg")
(cd "$project" && "$bin" build iso) >"$work/bad.out" 2>&1
rc=$?
detail="exit $rc: $(cat "$work/bad.out")"
check "CIS_HARDENING=true: exit 2 at .arg:$line:1, saying to build a hardened base" \
    bash -c "[ $rc -eq 2 ] && grep -qF '.arg:$line:1: CIS_HARDENING=true is not supported: edgeforge composes the base image' '$work/bad.out'"

# A content bundle over 3,000,000,000 bytes goes on the ISO as CanvOS stores it (split --bytes=3GB
# --numeric-suffixes: NAME_part00, NAME_part01), the names the agent looks for, with the parts
# index next to them. Sparse input: nothing this size is committed. No boot.
big=$work/big
mkdir -p "$big/content-big"
truncate -s 3000000001 "$big/content-big/big.tar.zst"
printf '\001' | dd of="$big/content-big/big.tar.zst" bs=1 seek=3000000000 conv=notrunc status=none
cp "$project/user-data" "$big/user-data"
(cd "$big" && "$bin" build iso --name big --base "oci:$fixtures/base-amd64:latest" --agent "") >"$work/big.log" 2>&1
rc=$?
xorriso -indev "$big/build/big.iso" -find /opt/spectrocloud/content -type f -exec lsdl 2>/dev/null |
    awk '{print $5, $NF}' | tr -d "'" >"$work/big.list"
detail="exit $rc: $(cat "$work/big.list") $(tail -5 "$work/big.log")"
check "a 3,000,000,001-byte bundle: big.tar.zst_part00 (3,000,000,000 bytes) + _part01 (1 byte) + the index, no whole file" \
    bash -c "[ $rc -eq 0 ] && diff <(printf '%s\n' '536 /opt/spectrocloud/content/big.tar.zst.parts.json' '3000000000 /opt/spectrocloud/content/big.tar.zst_part00' '1 /opt/spectrocloud/content/big.tar.zst_part01' | awk '{print \$2}') <(awk '{print \$2}' '$work/big.list')"
xorriso -indev "$big/build/big.iso" -osirrox on -extract /opt/spectrocloud/content/big.tar.zst.parts.json "$work/big.parts.json" >/dev/null 2>&1
whole=$(sha256sum "$big/content-big/big.tar.zst" | cut -d' ' -f1)
detail="$(cat "$work/big.parts.json" 2>&1)"
check "its index records the whole bundle's sha256 and CanvOS's reassembly (cat big.tar.zst_part* > big.tar.zst)" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["sha256"]==sys.argv[2] and d["size"]==3000000001 and [p["size"] for p in d["parts"]]==[3000000000,1] and d["reassemble"]=="cat big.tar.zst_part* > big.tar.zst", d' "$work/big.parts.json" "$whole"
rm -rf "$big"

finish canvos_test
