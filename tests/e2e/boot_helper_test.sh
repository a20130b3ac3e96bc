#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2317  # pass() never fails; cleanup() runs from a trap
# boot_helper_test.sh - end-to-end check of the test infrastructure itself:
# tests/fixtures/build-fixtures (OCI fixtures + kernel/initramfs) and
# tests/e2e/qemu-boot (QEMU/TCG boot helper), before edgeforge's own writers
# are involved.
#
#   tests/e2e/boot_helper_test.sh [--full] [--keep]
#
# Default (about 20-30 s warm on 2 cores):
#   - builds / reuses the fixtures (honours EDGEFORGE_FIXTURES_DIR) and checks
#     the OCI layouts (index/platform/config/diff_ids/blob digests)
#   - direct kernel boot amd64 (console=ttyS0) and arm64 (console=ttyAMA0) in
#     parallel: init arch marker, "no live medium requested", "done"
#   - a hand-made live ISO per arch (oci-unpack + mksquashfs + xorriso -V
#     COS_LIVE, no bootloader) booted with --kernel/--initrd and the Kairos live
#     cmdline: config.yaml hash, medium files, content/clusterconfig files,
#     squashfs mounted, every line of the fixture's expect / expect-attrs file,
#     rootfs hash, kairos-release lines, rootfs-dirs; amd64 also attaches an
#     ext4 COS_OEM disk (edgeforge.oem=)
#   - qemu-boot failure paths (expected line missing, timeout) and temp cleanup
# --full (or EDGEFORGE_E2E_FULL=1) adds: amd64 --machine pc (IDE CD), USB
#   sticks on both arches, and real firmware + bootloader chains built from the
#   fixture's signed shim/grub: OVMF Secure Boot (amd64) and AAVMF (arm64).
# --keep keeps the work directory (ISOs, logs) and prints its path.
#
# Last line: "N passed, N failed"; exit status non-zero on any failure.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QB=$HERE/qemu-boot
UNPACK=$HERE/oci-unpack
BUILD=$ROOT/tests/fixtures/build-fixtures

FULL=${EDGEFORGE_E2E_FULL:-0}
KEEP=0
for a in "$@"; do
    case "$a" in
        --full) FULL=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '3,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $a" >&2; exit 2 ;;
    esac
done

PASS=0
FAIL=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/boot-helper-test.XXXXXX")
QBTMP=$WORK/qemu-boot-tmp
mkdir -p "$QBTMP"
cleanup() {
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null; done
    wait 2>/dev/null
    if [ "$KEEP" = 1 ]; then
        echo "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASS=$((PASS + 1)); echo "PASS: $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" = 0 ]
    exit $?
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f", ms / 1000 }'; }

# has LOG LINE [DESC]: the exact line is in the log
has() {
    if grep -qxF -- "$2" "$1" 2>/dev/null; then
        pass "${3:-$(basename "$1" .log)}: '$2'"
    else
        fail "${3:-$(basename "$1" .log)}: missing '$2' (log: $1)"
    fi
}
# has_prefix LOG PREFIX: a line starting with PREFIX is in the log
has_prefix() {
    if awk -v p="$2" 'index($0, p) == 1 { f = 1 } END { exit !f }' "$1" 2>/dev/null; then
        pass "$(basename "$1" .log): '$2...'"
    else
        fail "$(basename "$1" .log): no line starting with '$2' (log: $1)"
    fi
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

for tool in python3 mksquashfs xorriso zstd qemu-system-x86_64 qemu-system-aarch64 mkfs.ext4; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 || { fail "required tool $tool not found"; finish; }
done

# ------------------------------------------------------------------ fixtures
echo "== fixtures"
t=$(now_ms)
if ! out=$("$BUILD" -q); then
    fail "build-fixtures failed"
    finish
fi
cold_ms=$(( $(now_ms) - t ))
t=$(now_ms)
out2=$("$BUILD" -q) || fail "build-fixtures (second run) failed"
warm_ms=$(( $(now_ms) - t ))
echo "build-fixtures: first run $(secs $cold_ms)s, second run $(secs $warm_ms)s"
[ "$out" = "$out2" ] && pass "build-fixtures output stable across runs" \
    || fail "build-fixtures output changed between runs"
[ "$warm_ms" -lt 10000 ] && pass "build-fixtures up-to-date run took $(secs $warm_ms)s" \
    || fail "build-fixtures up-to-date run took $(secs $warm_ms)s (stamp not honoured?)"

declare -A FIX
while read -r kw name path; do
    [ "$kw" = fixture ] && FIX[$name]=$path
done <<< "$out"
for n in base-amd64 base-arm64 agent-amd64 agent-arm64 boot-amd64 boot-arm64; do
    if [ -d "${FIX[$n]:-/nonexistent}" ]; then pass "fixture $n at ${FIX[$n]}"; else fail "fixture $n missing"; fi
done
[ "$FAIL" = 0 ] || finish

# OCI layout sanity (independent of edgeforge)
for n in base-amd64 base-arm64 agent-amd64 agent-arm64; do
    arch=${n#*-}
    if msg=$(python3 - "${FIX[$n]}" "$arch" <<'EOF'
import gzip, hashlib, json, os, subprocess, sys
lay, arch = sys.argv[1], sys.argv[2]
def blob(d):
    return os.path.join(lay, "blobs", *d.split(":"))
def load(d):
    data = open(blob(d), "rb").read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == d, "digest mismatch " + d
    return json.loads(data)
assert json.load(open(os.path.join(lay, "oci-layout")))["imageLayoutVersion"] == "1.0.0"
idx = json.load(open(os.path.join(lay, "index.json")))
m = idx["manifests"][0]
assert m["annotations"]["org.opencontainers.image.ref.name"] == "latest", "ref.name"
assert m["platform"]["architecture"] == arch and m["platform"]["os"] == "linux", "platform"
man = load(m["digest"])
assert os.path.getsize(blob(m["digest"])) == m["size"], "manifest size"
cfg = load(man["config"]["digest"])
assert cfg["architecture"] == arch and cfg["os"] == "linux", "config arch/os"
diffs = cfg["rootfs"]["diff_ids"]
assert len(diffs) == len(man["layers"]), "diff_ids count"
for l, dif in zip(man["layers"], diffs):
    p = blob(l["digest"])
    raw = open(p, "rb").read()
    assert len(raw) == l["size"], "layer size"
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == l["digest"], "layer digest"
    if l["mediaType"].endswith("+gzip"):
        assert raw[4:8] == b"\0\0\0\0", "gzip mtime not 0"
        un = gzip.decompress(raw)
    else:
        assert l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        un = subprocess.run(["zstd", "-dc", p], stdout=subprocess.PIPE, check=True).stdout
    assert "sha256:" + hashlib.sha256(un).hexdigest() == dif, "diff_id mismatch"
if lay.rstrip("/").split("/")[-1].startswith("base-"):
    assert len(man["layers"]) >= 2, "base needs 2 layers"
    assert man["layers"][0]["mediaType"].endswith("tar+gzip")
    assert man["layers"][-1]["mediaType"].endswith("tar+zstd")
print("%d layer%s" % (len(man["layers"]), "" if len(man["layers"]) == 1 else "s"))
EOF
    ); then
        pass "OCI layout $n: $msg, digests and diff_ids verified"
    else
        fail "OCI layout $n invalid"
    fi
done

# ------------------------------------------------------------------ live ISOs
LIVE='root=live:CDLABEL=COS_LIVE rd.live.dir=/ rd.live.squashimg=rootfs.squashfs rd.live.overlay.overlayfs'
CHK='edgeforge.check=/etc/os-release,/does/not/exist edgeforge.hash=/etc/os-release,/no/such/file'
KA=(--kernel "${FIX[boot-amd64]}/vmlinuz" --initrd "${FIX[boot-amd64]}/initrd")
KR=(--kernel "${FIX[boot-arm64]}/vmlinuz" --initrd "${FIX[boot-arm64]}/initrd")
echo "== building hand-made live ISOs"
KVER_amd64=$(cat "${FIX[boot-amd64]}/kernel-version")
KVER_arm64=$(cat "${FIX[boot-arm64]}/kernel-version")
printf '#cloud-config\n# edgeforge boot helper test\nstylus:\n  site:\n    name: boot-helper-%s\n' "$$" > "$WORK/config.yaml"
CONFIG_SHA=$(sha "$WORK/config.yaml")
printf 'KAIROS_PROVIDER="fixture-provider"\nKAIROS_PROVIDER_VERSION="v0.0.1"\n' > "$WORK/kairos-release"
mkdir -p "$WORK/content"
head -c 65537 /dev/urandom > "$WORK/content/bundle-1.zst"
printf 'cluster config\n' > "$WORK/content/spc.tgz"
mkdir -p "$WORK/oem"
printf '#cloud-config\nhostname: oem-test\n' > "$WORK/oem/90_custom.yaml"
mkfs.ext4 -q -F -L COS_OEM -d "$WORK/oem" "$WORK/oem.img" 8M >/dev/null \
    && pass "ext4 COS_OEM image created" || fail "mkfs.ext4 -d failed"

make_iso() {  # make_iso ARCH
    local arch=$1 r=$WORK/rootfs-$1 t=$WORK/iso-$1
    "$UNPACK" "${FIX[base-$arch]}" "$r" || return 1
    mkdir -p "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/tmp"
    cp "$WORK/kairos-release" "$r/etc/kairos-release"
    mkdir -p "$t/boot" "$t/opt/spectrocloud/content" "$t/opt/spectrocloud/clusterconfig"
    mksquashfs "$r" "$t/rootfs.squashfs" -noappend -all-root -comp zstd \
        -Xcompression-level 1 -quiet -no-progress >/dev/null || return 1
    cp "$WORK/config.yaml" "$t/config.yaml"
    cp "$WORK/content/bundle-1.zst" "$t/opt/spectrocloud/content/"
    cp "$WORK/content/spc.tgz" "$t/opt/spectrocloud/clusterconfig/"
    cp "${FIX[boot-$arch]}/vmlinuz" "$t/boot/kernel"
    cp "${FIX[boot-$arch]}/initrd" "$t/boot/initrd"
    xorriso -as mkisofs -quiet -V COS_LIVE -R -J -o "$WORK/live-$arch.iso" "$t" 2>/dev/null
}
for arch in amd64 arm64; do
    t=$(now_ms)
    if make_iso "$arch"; then
        pass "live ISO $arch built in $(secs $(( $(now_ms) - t )))s"
    else
        fail "live ISO $arch could not be built"
    fi
done

# real firmware + signed bootloader chains from the fixture's own files (--full)
mk_efi_iso() {  # mk_efi_iso ARCH SERIAL BOOTNAME SHIM GRUBCD GRUBNAME
    local arch=$1 t=$WORK/efi-$1 r=$WORK/rootfs-$1
    rm -rf "$t" && mkdir -p "$t/boot/grub" "$t/.disk" || return 1
    cp -a "$WORK/iso-$arch/." "$t/"
    echo "edgeforge boot helper test" > "$t/.disk/info"
    cat > "$t/boot/grub/grub.cfg" <<EOF
set timeout=0
set default=0
menuentry "live" {
  linux /boot/kernel $LIVE console=$2
  initrd /boot/initrd
}
EOF
    mkfs.vfat -C "$t/boot/efi.img" 8192 >/dev/null &&
        mmd -i "$t/boot/efi.img" ::/EFI ::/EFI/BOOT &&
        mcopy -i "$t/boot/efi.img" "$r/$4" "::/EFI/BOOT/$3" &&
        mcopy -i "$t/boot/efi.img" "$r/$5" "::/EFI/BOOT/$6" &&
        xorriso -as mkisofs -quiet -V COS_LIVE -R -J -e boot/efi.img -no-emul-boot \
            -o "$WORK/efi-$arch.iso" "$t" 2>/dev/null
}
EFI_ISOS=0
if [ "$FULL" = 1 ] && command -v mkfs.vfat >/dev/null && command -v mcopy >/dev/null; then
    EFI_ISOS=1
    mk_efi_iso amd64 ttyS0 BOOTX64.EFI usr/lib/shim/shimx64.efi.signed \
        usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed grubx64.efi \
        && pass "EFI ISO amd64 (signed shim + gcdx64)" || fail "EFI ISO amd64"
    mk_efi_iso arm64 ttyAMA0 BOOTAA64.EFI usr/lib/shim/shimaa64.efi.signed \
        usr/lib/grub/arm64-efi-signed/gcdaa64.efi.signed grubaa64.efi \
        && pass "EFI ISO arm64 (signed shim + gcdaa64)" || fail "EFI ISO arm64"
elif [ "$FULL" = 1 ]; then
    fail "--full needs mkfs.vfat (dosfstools) and mcopy (mtools)"
fi

# ------------------------------------------------------------------ boots
# bg_boot NAME ARGS...: qemu-boot in the background (at most $MAXJ at once),
# serial log $WORK/NAME.log, qemu-boot output $WORK/NAME.out, status NAME.rc
MAXJ=$(nproc 2>/dev/null || echo 2)
[ "$MAXJ" -ge 1 ] || MAXJ=1
bg_boot() {
    local name=$1
    shift
    while [ "$(jobs -rp | wc -l)" -ge "$MAXJ" ]; do wait -n 2>/dev/null || true; done
    (
        s=$(now_ms)
        TMPDIR=$QBTMP "$QB" --log "$WORK/$name.log" "$@" > "$WORK/$name.out" 2>&1
        echo $? > "$WORK/$name.rc"
        echo $(( $(now_ms) - s )) > "$WORK/$name.ms"
    ) &
}
boot_ok() {  # boot_ok NAME: qemu-boot succeeded
    local rc
    rc=$(cat "$WORK/$1.rc" 2>/dev/null || echo missing)
    if [ "$rc" = 0 ]; then
        pass "boot $1 ($(secs "$(cat "$WORK/$1.ms")")s)"
        return 0
    fi
    fail "boot $1 exited $rc:"
    sed 's/^/    /' "$WORK/$1.out" | tail -50
    return 1
}


echo "== booting (up to $MAXJ in parallel)"
t_boot=$(now_ms)
bg_boot live-amd64 --arch amd64 "${KA[@]}" --cdrom "$WORK/live-amd64.iso" \
    --disk "$WORK/oem.img" --snapshot \
    --append "$LIVE $CHK edgeforge.oem=LABEL=COS_OEM console=ttyS0" --timeout 120
bg_boot direct-amd64 --arch amd64 "${KA[@]}" --append "console=ttyS0" --timeout 90 \
    --expect 'EDGEFORGE: no live medium requested' --expect 'EDGEFORGE: done'
bg_boot direct-arm64 --arch arm64 "${KR[@]}" --append "console=ttyAMA0" --timeout 90 \
    --expect 'EDGEFORGE: no live medium requested' --expect 'EDGEFORGE: done'
bg_boot live-arm64 --arch arm64 "${KR[@]}" --cdrom "$WORK/live-arm64.iso" \
    --append "$LIVE $CHK console=ttyAMA0" --timeout 120
# failure paths of qemu-boot itself
bg_boot neg-missing --arch arm64 "${KR[@]}" --append "console=ttyAMA0" --timeout 60 \
    --expect 'EDGEFORGE: this line never appears'
bg_boot neg-timeout --arch amd64 "${KA[@]}" --append "console=ttyS0" --timeout 2

if [ "$FULL" = 1 ]; then
    if [ "$EFI_ISOS" = 1 ]; then
        bg_boot secboot-amd64 --arch amd64 --firmware ovmf-secboot --cdrom "$WORK/efi-amd64.iso" \
            --timeout 180 --expect 'EDGEFORGE: squashfs mounted' --expect 'EDGEFORGE: done'
        bg_boot aavmf-arm64 --arch arm64 --firmware aavmf --cdrom "$WORK/efi-arm64.iso" \
            --timeout 180 --expect 'EDGEFORGE: squashfs mounted' --expect 'EDGEFORGE: done'
    fi
    bg_boot pc-ide-amd64 --arch amd64 --machine pc "${KA[@]}" --cdrom "$WORK/live-amd64.iso" \
        --append "$LIVE console=ttyS0" --timeout 120 --expect 'EDGEFORGE: squashfs mounted' \
        --expect 'EDGEFORGE: done'
    bg_boot usb-amd64 --arch amd64 "${KA[@]}" --usb "$WORK/live-amd64.iso" --snapshot \
        --append "$LIVE console=ttyS0" --timeout 120 --expect 'EDGEFORGE: squashfs mounted' \
        --expect 'EDGEFORGE: done'
    bg_boot usb-arm64 --arch arm64 "${KR[@]}" --usb "$WORK/live-arm64.iso" --snapshot \
        --append "$LIVE console=ttyAMA0" --timeout 120 --expect 'EDGEFORGE: squashfs mounted' \
        --expect 'EDGEFORGE: done'
fi
wait
echo "boots finished in $(secs $(( $(now_ms) - t_boot )))s wall"

# ------------------------------------------------------------------ checks
check_live() {  # check_live NAME ARCH ROOTFS
    local n=$1 arch=$2 r=$3 L=$WORK/$1.log kind p a b rest want
    has "$L" "EDGEFORGE: config.yaml sha256=$CONFIG_SHA" "$n"
    has "$L" "EDGEFORGE: squashfs mounted" "$n"
    has "$L" "EDGEFORGE: overlay mounted" "$n"
    has "$L" "EDGEFORGE: medium-file /config.yaml" "$n"
    has "$L" "EDGEFORGE: medium-file /rootfs.squashfs" "$n"
    has "$L" "EDGEFORGE: medium-file /boot" "$n"
    has "$L" "EDGEFORGE: content bundle-1.zst size=65537 sha256=$(sha "$WORK/content/bundle-1.zst")" "$n"
    has "$L" "EDGEFORGE: clusterconfig spc.tgz size=$(stat -c %s "$WORK/content/spc.tgz") sha256=$(sha "$WORK/content/spc.tgz")" "$n"
    has "$L" "EDGEFORGE: rootfs /etc/os-release present" "$n"
    has "$L" "EDGEFORGE: rootfs /does/not/exist absent" "$n"
    has "$L" "EDGEFORGE: rootfs-hash /etc/os-release sha256=$(sha "$r/etc/os-release")" "$n"
    has "$L" "EDGEFORGE: rootfs-hash /no/such/file missing" "$n"
    has "$L" 'EDGEFORGE: release KAIROS_PROVIDER="fixture-provider"' "$n"
    has "$L" "EDGEFORGE: rootfs-dirs ok" "$n"
    has "$L" "EDGEFORGE: done" "$n"
    # the fixture's own expectations, as a correct merge must show them
    local bad=0 cnt=0
    while read -r kind p _; do
        case "$kind" in present|absent) ;; *) continue ;; esac
        cnt=$((cnt + 1))
        grep -qxF "EDGEFORGE: rootfs $p $kind" "$L" || { bad=$((bad + 1)); echo "    expected: rootfs $p $kind"; }
    done < "$r/etc/edgeforge-fixture/expect"
    [ "$bad" = 0 ] && [ "$cnt" -gt 10 ] && pass "$n: all $cnt expect lines as documented" \
        || fail "$n: $bad of $cnt expect lines wrong"
    bad=0 cnt=0
    while read -r kind a b rest; do
        case "$kind" in
            mode) want="EDGEFORGE: rootfs-mode $a $b" ;;
            owner) want="EDGEFORGE: rootfs-owner $a $b" ;;
            symlink) want="EDGEFORGE: rootfs-symlink $a $b" ;;
            hardlink) want="EDGEFORGE: rootfs-hardlink $a $b same" ;;
            *) continue ;;
        esac
        cnt=$((cnt + 1))
        grep -qxF "$want" "$L" || { bad=$((bad + 1)); echo "    expected: ${want#EDGEFORGE: }"; }
    done < "$r/etc/edgeforge-fixture/expect-attrs"
    [ "$bad" = 0 ] && [ "$cnt" -gt 5 ] && pass "$n: all $cnt expect-attrs lines as documented" \
        || fail "$n: $bad of $cnt expect-attrs lines wrong"
}

echo "== results"
if boot_ok direct-amd64; then
    has "$WORK/direct-amd64.log" "EDGEFORGE: init arch=x86_64 kernel=$KVER_amd64"
    has_prefix "$WORK/direct-amd64.log" "EDGEFORGE: modules loaded="
    has "$WORK/direct-amd64.log" "EDGEFORGE: no live medium requested"
    has "$WORK/direct-amd64.log" "EDGEFORGE: done"
fi
if boot_ok direct-arm64; then
    has "$WORK/direct-arm64.log" "EDGEFORGE: init arch=aarch64 kernel=$KVER_arm64"
    has_prefix "$WORK/direct-arm64.log" "EDGEFORGE: modules loaded="
    has "$WORK/direct-arm64.log" "EDGEFORGE: no live medium requested"
    has "$WORK/direct-arm64.log" "EDGEFORGE: done"
fi
for a in amd64 arm64; do
    L=$WORK/direct-$a.log
    if grep -q "^EDGEFORGE: modules loaded=.* failed=none$" "$L" 2>/dev/null; then
        pass "direct-$a: every initramfs module loaded ($(grep -o 'loaded=[0-9]*' "$L"))"
    else
        fail "direct-$a: module failures: $(grep '^EDGEFORGE: modules' "$L" 2>/dev/null)"
    fi
done
if boot_ok live-amd64; then
    has "$WORK/live-amd64.log" "EDGEFORGE: init arch=x86_64 kernel=$KVER_amd64"
    has "$WORK/live-amd64.log" "EDGEFORGE: medium dev=/dev/sr0 label=COS_LIVE fstype=iso9660"
    check_live live-amd64 amd64 "$WORK/rootfs-amd64"
    has "$WORK/live-amd64.log" "EDGEFORGE: oem dev=/dev/vda label=COS_OEM fstype=ext4"
    has "$WORK/live-amd64.log" "EDGEFORGE: oem-file 90_custom.yaml sha256=$(sha "$WORK/oem/90_custom.yaml")"
fi
if boot_ok live-arm64; then
    has "$WORK/live-arm64.log" "EDGEFORGE: init arch=aarch64 kernel=$KVER_arm64"
    has "$WORK/live-arm64.log" "EDGEFORGE: medium dev=/dev/sr0 label=COS_LIVE fstype=iso9660"
    check_live live-arm64 arm64 "$WORK/rootfs-arm64"
fi

rc=$(cat "$WORK/neg-missing.rc" 2>/dev/null || echo missing)
if [ "$rc" = 1 ] && grep -q "QEMU exited" "$WORK/neg-missing.out" \
    && grep -q "EDGEFORGE: done" "$WORK/neg-missing.out"; then
    pass "qemu-boot fails (rc 1, log tail shown) when the expected line never comes ($(secs "$(cat "$WORK/neg-missing.ms")")s)"
else
    fail "qemu-boot missing-line case: rc=$rc"; sed 's/^/    /' "$WORK/neg-missing.out" | tail -5
fi
rc=$(cat "$WORK/neg-timeout.rc" 2>/dev/null || echo missing)
ms=$(cat "$WORK/neg-timeout.ms" 2>/dev/null || echo 999999)
if [ "$rc" = 1 ] && grep -q "timeout after 2s" "$WORK/neg-timeout.out" && [ "$ms" -lt 15000 ]; then
    pass "qemu-boot kills QEMU at --timeout ($(secs "$ms")s)"
else
    fail "qemu-boot timeout case: rc=$rc after ${ms}ms"; sed 's/^/    /' "$WORK/neg-timeout.out" | tail -5
fi

if [ "$FULL" = 1 ]; then
    for n in secboot-amd64 aavmf-arm64 pc-ide-amd64 usb-amd64 usb-arm64; do
        boot_ok "$n" || continue
        has "$WORK/$n.log" "EDGEFORGE: config.yaml sha256=$CONFIG_SHA" "$n"
        has "$WORK/$n.log" "EDGEFORGE: rootfs-dirs ok" "$n"
    done
    if [ -f "$WORK/secboot-amd64.log" ]; then
        grep -q "secureboot: Secure boot enabled" "$WORK/secboot-amd64.log" \
            && pass "secboot-amd64: kernel reports Secure Boot enabled" \
            || fail "secboot-amd64: kernel did not report Secure Boot enabled"
    fi
    has "$WORK/usb-amd64.log" "EDGEFORGE: medium dev=/dev/sda label=COS_LIVE fstype=iso9660"
    has "$WORK/usb-arm64.log" "EDGEFORGE: medium dev=/dev/sda label=COS_LIVE fstype=iso9660"
fi

left=$(find "$QBTMP" -mindepth 1 | head -5)
[ -z "$left" ] && pass "qemu-boot left no temporary files" || fail "qemu-boot left temp files: $left"

finish
