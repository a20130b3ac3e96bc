#!/usr/bin/env bash
# End-to-end tests of `edgeforge build iso`, judged by tools we did not write: the example ISO
# boots under QEMU with SeaBIOS (CD), OVMF (CD, and as a USB stick/hard disk), OVMF with Secure
# Boot and Microsoft keys, and (arm64) AAVMF, and the booted system reports the user-data hash,
# the merged rootfs (overlay present, whiteouts absent), the ISO overlay and the content bundle.
# xorriso reads the boot records, unsquashfs/sqfs2tar the merged tree. Reproducibility, the
# rootfs cache and bad inputs (exit codes, messages, nothing left behind) are checked too.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
qemu_boot=$src/tests/e2e/qemu-boot

# A project: the bundled example plus a content bundle and a cluster config, own cache.
example=$src/examples/basic
cache=$work/cache
printf 'bundle bytes %s\n' "$(date +%N)" >"$work/apps.tar.zst"
printf 'cluster config\n' >"$work/cluster.tgz"
checks=/etc/edgeforge/overlay-marker
build() { # build NAME ARCH [extra args...]
    local name=$1 arch=$2
    shift 2
    "$bin" --config "$example/edgeforge.yaml" --cache-dir "$cache" --output-dir "$work/out" \
        --arch "$arch" build iso --name "$name" \
        --base "oci:$fixtures/base-$arch:latest" --agent "oci:$fixtures/agent-$arch:latest" \
        --content "$work/apps.tar.zst" --cluster-config "$work/cluster.tgz" \
        --extra-cmdline "edgeforge.check=$checks edgeforge.hash=/opt/spectrocloud/bin/stylus-agent" "$@"
}

if build demo amd64 >"$work/build-amd64.log" 2>&1; then
    pass "build iso amd64"
else
    fail "build iso amd64" "$(tail -20 "$work/build-amd64.log")"
fi
if build demo-arm64 arm64 >"$work/build-arm64.log" 2>&1; then
    pass "build iso arm64"
else
    fail "build iso arm64" "$(tail -20 "$work/build-arm64.log")"
fi
iso=$work/out/demo.iso
iso_arm=$work/out/demo-arm64.iso

# The checksum file is in sha256sum format and matches.
(cd "$work/out" && sha256sum --quiet -c demo.iso.sha256) && pass "sha256 file verifies with sha256sum" ||
    fail "sha256 file verifies with sha256sum"

# Boot records, read by xorriso.
xorriso -indev "$iso" -report_el_torito plain -report_system_area plain >"$work/xorriso-amd64.txt" 2>&1
if grep -q 'Volume id    : .COS_LIVE.' "$work/xorriso-amd64.txt" &&
    grep -qE 'El Torito boot img : +1 +BIOS +y +none' "$work/xorriso-amd64.txt" &&
    grep -qE 'El Torito boot img : +2 +UEFI +y +none' "$work/xorriso-amd64.txt" &&
    grep -q 'El Torito img opts :   1  boot-info-table grub2-boot-info' "$work/xorriso-amd64.txt" &&
    grep -qE 'GPT partname local : +[0-9]+ .*' "$work/xorriso-amd64.txt" &&
    grep -qiE 'GPT type GUID .*28732ac11ff8d211ba4b00a0c93ec93b' "$work/xorriso-amd64.txt" &&
    grep -qE 'MBR partition +: +[0-9]+ +0x80' "$work/xorriso-amd64.txt"; then
    pass "amd64 boot records: BIOS + UEFI El Torito, GPT ESP, bootable MBR"
else
    fail "amd64 boot records: BIOS + UEFI El Torito, GPT ESP, bootable MBR" "$(cat "$work/xorriso-amd64.txt")"
fi
xorriso -indev "$iso_arm" -report_el_torito plain -report_system_area plain >"$work/xorriso-arm64.txt" 2>&1
if grep -qE 'El Torito boot img : +1 +UEFI' "$work/xorriso-arm64.txt" &&
    ! grep -qE 'El Torito boot img : +[0-9]+ +BIOS' "$work/xorriso-arm64.txt" &&
    grep -qiE 'GPT type GUID .*28732ac11ff8d211ba4b00a0c93ec93b' "$work/xorriso-arm64.txt"; then
    pass "arm64 boot records: UEFI El Torito only, GPT ESP"
else
    fail "arm64 boot records: UEFI El Torito only, GPT ESP" "$(cat "$work/xorriso-arm64.txt")"
fi

# The merged tree in rootfs.squashfs, read by squashfs-tools.
xorriso -osirrox on -indev "$iso" -extract /rootfs.squashfs "$work/rootfs.squashfs" >/dev/null 2>&1
unsquashfs -lls -n "$work/rootfs.squashfs" >"$work/lls.txt" 2>&1
tree_ok=1
for expect in '^-rwsr-xr-x root/root .* squashfs-root/usr/bin/fixture-suid$' \
    '^drwxrwxrwt root/root .* squashfs-root/var/tmp$' \
    '^lrwxrwxrwx root/root .* squashfs-root/etc/fixture/link -> opaque/new$' \
    '^-rw-r--r-- root/root .* squashfs-root/etc/edgeforge/overlay-marker$' \
    '^-rwxr-xr-x root/root .* squashfs-root/opt/spectrocloud/bin/stylus-agent$' \
    '^drwxr-xr-x root/root .* squashfs-root/proc$' '^drwxr-xr-x root/root .* squashfs-root/tmp$'; do
    grep -qE "$expect" "$work/lls.txt" || { tree_ok=0; fail "unsquashfs -lls shows the merged tree" "missing: $expect"; }
done
for gone in 'squashfs-root/etc/fixture/whiteout-me$' 'squashfs-root/etc/fixture/opaque/old1$' '\.wh\.'; do
    grep -qE "$gone" "$work/lls.txt" && { tree_ok=0; fail "unsquashfs -lls shows the merged tree" "present: $gone"; }
done
[ "$tree_ok" = 1 ] && pass "unsquashfs -lls shows the merged tree (modes, owners, links, whiteouts)"
if sqfs2tar "$work/rootfs.squashfs" 2>/dev/null | python3 -c '
import sys, tarfile
t = tarfile.open(fileobj=sys.stdin.buffer, mode="r|")
caps = {m.name: m.pax_headers.get("SCHILY.xattr.security.capability") for m in t}
assert caps.get("usr/bin/fixture-cap"), "no security.capability on usr/bin/fixture-cap"
'; then pass "xattr security.capability survives"; else fail "xattr security.capability survives"; fi

# Boots. Each prints what the booted system saw; run two at a time (two cores).
want_ud=$(sha256sum <"$example/user-data" | cut -d' ' -f1)
want_bundle=$(sha256sum <"$work/apps.tar.zst" | cut -d' ' -f1)
boot() { # boot NAME ARCH FIRMWARE MEDIUM-FLAG ISO
    "$qemu_boot" --arch "$2" --firmware "$3" "$4" "$5" --timeout 300 --log "$work/boot-$1.log" \
        >"$work/boot-$1.out" 2>&1
}
check_boot() { # check_boot NAME EXPECT-FILE
    local name=$1 log=$work/boot-$1.log expect=$2 ok=1 line path state
    if [ ! -s "$log" ] || ! grep -q 'EDGEFORGE: done' "$log"; then
        fail "boot $name" "did not finish:" "$(tail -15 "$log" 2>/dev/null; cat "$work/boot-$name.out")"
        return
    fi
    for line in "EDGEFORGE: config.yaml sha256=$want_ud" "EDGEFORGE: squashfs mounted" \
        "EDGEFORGE: rootfs-dirs ok" "EDGEFORGE: rootfs $checks present" \
        "EDGEFORGE: medium-file /SITE-README.txt" \
        "EDGEFORGE: content apps.tar.zst size=$(stat -c %s "$work/apps.tar.zst") sha256=$want_bundle" \
        "EDGEFORGE: clusterconfig cluster.tgz size=15"; do
        grep -qF "$line" "$log" || { ok=0; fail "boot $name" "missing: $line"; }
    done
    # Everything the fixture says a correct merge shows.
    while read -r state path; do
        [ -n "$path" ] || continue
        grep -qF "EDGEFORGE: rootfs $path $state" "$log" || { ok=0; fail "boot $name" "expected $path $state"; }
    done < <(sed -n 's/^\(present\|absent\) /\1 /p' "$expect")
    [ "$ok" = 1 ] && pass "boot $name: user-data hash, overlay, whiteouts, ISO overlay, bundle"
}
# The fixture's own expectations, read from each arch's squashfs.
unsquashfs -cat "$work/rootfs.squashfs" /etc/edgeforge-fixture/expect >"$work/expect-amd64" 2>/dev/null
xorriso -osirrox on -indev "$iso_arm" -extract /rootfs.squashfs "$work/rootfs-arm64.squashfs" >/dev/null 2>&1
unsquashfs -cat "$work/rootfs-arm64.squashfs" /etc/edgeforge-fixture/expect >"$work/expect-arm64" 2>/dev/null

boot seabios-cd amd64 seabios --cdrom "$iso" &
boot ovmf-cd amd64 ovmf --cdrom "$iso" &
wait
boot ovmf-disk amd64 ovmf --disk "$iso" &
boot aavmf-cd arm64 aavmf --cdrom "$iso_arm" &
wait
boot ovmf-secboot-cd amd64 ovmf-secboot --cdrom "$iso"
for name in seabios-cd ovmf-cd ovmf-disk ovmf-secboot-cd; do
    check_boot "$name" "$work/expect-amd64"
done
check_boot aavmf-cd "$work/expect-arm64"
grep -q "Secure boot enabled" "$work/boot-ovmf-secboot-cd.log" &&
    pass "Secure Boot was enforced (signed shim -> grub -> kernel)" ||
    fail "Secure Boot was enforced (signed shim -> grub -> kernel)" "$(grep -i secure "$work/boot-ovmf-secboot-cd.log" | head)"

# The rootfs step is cached: a user-data change rebuilds in a moment without recompressing.
printf '#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.example.com\n    name: site-2\n' >"$work/site2.yaml"
if build site2 amd64 --user-data "$work/site2.yaml" >"$work/build-site2.log" 2>&1 &&
    grep -q "rootfs: reusing cached rootfs.squashfs" "$work/build-site2.log"; then
    pass "rebuild after a user-data change reuses the cached rootfs"
else
    fail "rebuild after a user-data change reuses the cached rootfs" "$(cat "$work/build-site2.log")"
fi
xorriso -osirrox on -indev "$work/out/site2.iso" -extract /config.yaml "$work/site2-config.yaml" >/dev/null 2>&1
cmp -s "$work/site2-config.yaml" "$work/site2.yaml" && pass "/config.yaml equals the given user-data" ||
    fail "/config.yaml equals the given user-data"

# Reproducible: a second build from an empty cache gives the same bytes, also when it inflates
# the layers itself instead of keeping unpacked copies in the cache.
"$bin" --config "$example/edgeforge.yaml" --cache-dir "$work/cache2" --output-dir "$work/out2" \
    --unpacked-layer-cache=false build iso --name demo --base "oci:$fixtures/base-amd64:latest" --agent "oci:$fixtures/agent-amd64:latest" \
    --content "$work/apps.tar.zst" --cluster-config "$work/cluster.tgz" \
    --extra-cmdline "edgeforge.check=$checks edgeforge.hash=/opt/spectrocloud/bin/stylus-agent" \
    >"$work/build-repro.log" 2>&1
cmp -s "$iso" "$work/out2/demo.iso" && pass "reproducible: byte-identical ISO from a cold cache" ||
    fail "reproducible: byte-identical ISO from a cold cache" "$(tail -5 "$work/build-repro.log")"
if [ -n "$(ls "$cache/layers/sha256" 2>/dev/null)" ] && [ -z "$(ls "$work/cache2/layers/sha256" 2>/dev/null)" ]; then
    pass "gzip layers are kept unpacked in the cache, and not with --unpacked-layer-cache=false"
else
    fail "gzip layers are kept unpacked in the cache, and not with --unpacked-layer-cache=false" \
        "$(ls -R "$cache/layers" "$work/cache2/layers" 2>&1 | head)"
fi

# --split-size: a bundle goes on the ISO in parts plus an index; the parts reassemble to it.
mkdir -p "$work/split"
head -c 3000000 /dev/urandom >"$work/split/big.tar.zst"
"$bin" --config "$example/edgeforge.yaml" --cache-dir "$cache" --output-dir "$work/split/out" \
    build iso --content "$work/split/big.tar.zst" --split-size 1M >"$work/split.log" 2>&1
for f in big.tar.zst.parts.json big.tar.zst.part-000 big.tar.zst.part-001 big.tar.zst.part-002; do
    xorriso -osirrox on -indev "$work/split/out/edge-demo-installer.iso" \
        -extract "/opt/spectrocloud/content/$f" "$work/split/$f" >/dev/null 2>&1
done
whole=$(sha256sum <"$work/split/big.tar.zst" | cut -d' ' -f1)
last=$(sha256sum <"$work/split/big.tar.zst.part-002" | cut -d' ' -f1)
cat "$work/split/big.tar.zst.part-000" "$work/split/big.tar.zst.part-001" "$work/split/big.tar.zst.part-002" |
    cmp -s - "$work/split/big.tar.zst" &&
    python3 -c 'import json,sys
i = json.load(open(sys.argv[1]))
assert (i["name"], i["size"], i["sha256"], i["splitSize"]) == ("big.tar.zst", 3000000, sys.argv[2], 1048576), i
assert [p["name"] for p in i["parts"]] == ["big.tar.zst.part-%03d" % n for n in range(3)], i
assert (i["parts"][2]["size"], i["parts"][2]["sha256"]) == (902848, sys.argv[3]), i' \
        "$work/split/big.tar.zst.parts.json" "$whole" "$last" &&
    pass "--split-size: parts and their .parts.json index (content build's format) reassemble to the bundle" ||
    fail "--split-size: parts and their .parts.json index (content build's format) reassemble to the bundle" "$(cat "$work/split.log" "$work/split/big.tar.zst.parts.json" 2>&1)"
rm -rf "$work/split"

# A file over 4 GiB (ISO level 3, multi-extent): sparse, so it costs disk writes only. It comes
# from an ISO overlay: content bundles this big are split as CanvOS splits them (canvos_test.sh).
mkdir -p "$work/huge/iso"
truncate -s 4400M "$work/huge/iso/huge.bin"
if "$bin" --config "$example/edgeforge.yaml" --cache-dir "$cache" --output-dir "$work/huge/out" \
    build iso --iso-overlay "$work/huge/iso" >"$work/huge.log" 2>&1; then
    xorriso -indev "$work/huge/out/edge-demo-installer.iso" -find / -name huge.bin -type f \
        -exec lsdl -- >"$work/huge/lsdl.txt" 2>&1
    grep -qE '4613734400 .*huge.bin' "$work/huge/lsdl.txt" &&
        pass "a 4.3 GiB file is stored whole (ISO level 3)" ||
        fail "a 4.3 GiB file is stored whole (ISO level 3)" "$(cat "$work/huge/lsdl.txt")"
else
    fail "a 4.3 GiB file is stored whole (ISO level 3)" "$(tail -5 "$work/huge.log")"
fi
rm -rf "$work/huge"

# Bad inputs: exit code, message, and no ISO or temporary left in the output directory.
no_leftovers() { [ -z "$(ls -A "$1" 2>/dev/null)" ]; }
mkdir -p "$work/nokernel/etc"
echo x >"$work/nokernel/etc/hostname"
"$bin" --config "$example/edgeforge.yaml" --cache-dir "$cache" --output-dir "$work/bad1" build iso \
    --base "dir:$work/nokernel" >"$work/bad1.log" 2>&1
code=$?
[ "$code" = 2 ] && grep -q "no kernel in the image: none of /boot/vmlinuz\*" "$work/bad1.log" && no_leftovers "$work/bad1" &&
    pass "base without a kernel: exit 2, paths searched, nothing written" ||
    fail "base without a kernel: exit 2, paths searched, nothing written" "exit $code" "$(cat "$work/bad1.log")" "$(ls -A "$work/bad1")"
echo "not a directory" >"$work/blocker"
"$bin" --config "$example/edgeforge.yaml" --cache-dir "$cache" --output-dir "$work/blocker/out" build iso \
    >"$work/bad2.log" 2>&1
code=$?
[ "$code" = 2 ] && grep -q "output directory .*blocker/out: .*blocker is not a directory" "$work/bad2.log" &&
    pass "output directory not writable: exit 2 before any work" ||
    fail "output directory not writable: exit 2 before any work" "exit $code" "$(cat "$work/bad2.log")"
mkdir -p "$work/unreadable-overlay" && chmod 000 "$work/unreadable-overlay"
if [ "$(id -u)" != 0 ]; then
    "$bin" --config "$example/edgeforge.yaml" --cache-dir "$cache" --output-dir "$work/bad3" build iso \
        --overlay "$work/unreadable-overlay" >"$work/bad3.log" 2>&1
    code=$?
    [ "$code" = 2 ] && grep -q "is not readable" "$work/bad3.log" && pass "unreadable overlay: exit 2" ||
        fail "unreadable overlay: exit 2" "exit $code" "$(cat "$work/bad3.log")"
fi
chmod 755 "$work/unreadable-overlay"

# Not enough disk space: found before the work starts (needs root to mount a small tmpfs).
if [ "$(id -u)" = 0 ] && mkdir -p "$work/small" && mount -t tmpfs -o size=8m tmpfs "$work/small" 2>/dev/null; then
    "$bin" --config "$example/edgeforge.yaml" --cache-dir "$work/small/cache" --output-dir "$work/small/out" \
        build iso >"$work/bad4.log" 2>&1
    code=$?
    [ "$code" = 1 ] && grep -q "not enough space in .*small/out for the ISO: need about" "$work/bad4.log" &&
        no_leftovers "$work/small/out" && pass "not enough disk space: exit 1 up front, nothing written" ||
        fail "not enough disk space: exit 1 up front, nothing written" "exit $code" "$(cat "$work/bad4.log")"
    "$bin" --config "$example/edgeforge.yaml" --cache-dir "$work/small/cache" --output-dir "$work/out-big" \
        build iso >"$work/bad5.log" 2>&1
    code=$?
    [ "$code" = 1 ] && grep -q "not enough space in .*small/cache.* for merging and compressing the root filesystem" "$work/bad5.log" &&
        pass "not enough cache space: exit 1 before merging" ||
        fail "not enough cache space: exit 1 before merging" "exit $code" "$(cat "$work/bad5.log")"
    umount "$work/small"
fi

# Interrupted: Ctrl-C during the squashfs step leaves no ISO and no temporaries behind.
mkdir -p "$work/int-out"
"$bin" --config "$example/edgeforge.yaml" --cache-dir "$work/cache-int" --output-dir "$work/int-out" \
    build iso --compression xz --compression-level 9 >"$work/int.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "writing rootfs.squashfs" "$work/int.log" 2>/dev/null && break; sleep 0.1; done
kill -INT "$pid"
wait "$pid"
code=$?
leftover_tmp=$(find "$work/cache-int" -name '.*tmp*' -o -name 'rootfs-*' 2>/dev/null | head -3)
[ "$code" != 0 ] && no_leftovers "$work/int-out" && [ -z "$leftover_tmp" ] &&
    pass "Ctrl-C: no ISO, no temporaries" ||
    fail "Ctrl-C: no ISO, no temporaries" "exit $code" "$(ls -A "$work/int-out")" "$leftover_tmp"

finish iso_test
