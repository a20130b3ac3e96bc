#!/usr/bin/env bash
# End-to-end test of CanvOS drop-in mode: a project directory holding only CanvOS's own files
# (.arg from CanvOS's .arg.template, its user-data.template; tests/fixtures/canvos, see NOTICE)
# builds an ISO with no edgeforge file present. BASE_IMAGE is empty, as CanvOS users leave it: the
# base and the agent come from CanvOS's naming rule, served by a loopback docker-registry seeded
# under exactly those names, with SPECTRO_PUB_REPO pointed at it.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools docker-registry skopeo unsquashfs xorriso python3
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
