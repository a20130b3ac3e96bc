#!/usr/bin/env bash
# End-to-end tests of the COS_CONTENT partition of `edgeforge build disk` (CanvOS's cloud images:
# the content bundles, the cluster config and the edge custom config on an ext4 partition),
# judged by tools we did not write: sgdisk (table, name, place), blkid and e2fsck on the extracted
# partition, debugfs and libguestfs (guestfish) reading the files back, compared by sha256 with
# what went in, a split bundle put back together (and a damaged one refused), its place (after BIOS boot, before
# COS_PERSISTENT, which stays last), the same build twice byte-identical, a bundle with one byte
# changed giving another disk GUID, and disk.content_partition false giving none.
# No boot: the fixture base's rootfs step is shared by every build through one cache.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools sgdisk blkid e2fsck debugfs guestfish python3 sha256sum
export EDGEFORGE_CACHE_DIR=$work/cache
example=$src/examples/basic

# The inputs: a whole bundle, a bundle split into parts with its index (as `content build
# --split-size` writes them), a cluster config and an edge custom config. The bundles only have
# to be readable files for the disk build, so they are random bytes (fixed seed).
mkdir -p "$work/in/parts"
python3 - "$work/in" <<'PY'
import hashlib, json, os, random, sys
out = sys.argv[1]
rng = random.Random(1700000000)
open(os.path.join(out, "apps.tar.zst"), "wb").write(rng.randbytes(3 * 2**20 + 123))
big = rng.randbytes(5 * 2**20 + 7)
open(os.path.join(out, "big.tar.zst.whole"), "wb").write(big)
parts, split = [], 2 * 2**20
for number, offset in enumerate(range(0, len(big), split)):
    data, name = big[offset:offset + split], "big.tar.zst.part-%03d" % number
    open(os.path.join(out, "parts", name), "wb").write(data)
    parts.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
index = {"name": "big.tar.zst", "size": len(big), "sha256": hashlib.sha256(big).hexdigest(),
         "splitSize": split, "reassemble": "cat big.tar.zst.part-* > big.tar.zst", "parts": parts}
json.dump(index, open(os.path.join(out, "parts", "big.tar.zst.parts.json"), "w"), indent=2)
PY
printf 'cluster config\n' >"$work/in/spc-file"
tar -C "$work/in" -czf "$work/in/spc.tgz" spc-file
printf 'stylus:\n  trustedPublicKey: fake\n' >"$work/in/custom.yaml"
content_args=(--content "$work/in/apps.tar.zst" --content "$work/in/parts/big.tar.zst.parts.json"
    --cluster-config "$work/in/spc.tgz" --edge-custom-config "$work/in/custom.yaml")

disk() { # disk OUT [extra args...]
    local out=$1
    shift
    "$bin" --config "$example/edgeforge.yaml" --arch amd64 --output-dir "$out" build disk --format raw \
        --base "oci:$fixtures/base-amd64:latest" --agent "oci:$fixtures/agent-amd64:latest" \
        --bios --persistent-size 32M "$@"
}

# The plan says what goes where before any work.
disk "$work/out" "${content_args[@]}" --dry-run >"$work/plan.txt" 2>&1
detail="$(cat "$work/plan.txt")"
check "--dry-run: the partitions list COS_CONTENT after BIOS boot, before COS_PERSISTENT" \
    grep -qE '^  partitions +COS_GRUB, COS_OEM, COS_RECOVERY, BIOS boot, COS_CONTENT [0-9.]+ MiB, COS_PERSISTENT 32.0 MiB;' "$work/plan.txt"
detail="$(cat "$work/plan.txt")"
check "--dry-run: the split bundle goes on COS_CONTENT whole, the configs where CanvOS puts them" \
    grep -q "big.tar.zst.parts.json -> COS_CONTENT:/bundle-content/big.tar.zst (its parts put back together)" "$work/plan.txt"
grep -q "custom.yaml -> COS_CONTENT:/edge-config/.edge_custom_config.yaml" "$work/plan.txt" &&
    grep -q "spc.tgz -> COS_CONTENT:/spc-config/spc.tgz" "$work/plan.txt" &&
    pass "--dry-run: spc-config/spc.tgz and edge-config/.edge_custom_config.yaml" ||
    fail "--dry-run: spc-config/spc.tgz and edge-config/.edge_custom_config.yaml" "$(cat "$work/plan.txt")"

if disk "$work/out" "${content_args[@]}" >"$work/build.log" 2>&1; then
    pass "build disk --format raw with two bundles, a cluster config and an edge custom config"
else
    fail "build disk --format raw with two bundles, a cluster config and an edge custom config" "$(tail -20 "$work/build.log")"
fi
raw=$work/out/edge-demo-installer.raw

# The partition table, by sgdisk: valid, and COS_CONTENT the fifth partition, Linux data.
sgdisk -v "$raw" >"$work/sgdisk-v.txt" 2>&1
detail="$(cat "$work/sgdisk-v.txt")"
check "sgdisk -v: no problems" grep -q "No problems found" "$work/sgdisk-v.txt"
sgdisk -p "$raw" >"$work/sgdisk-p.txt" 2>&1
detail="$(cat "$work/sgdisk-p.txt")"
check "sgdisk -p: partition 5 is COS_CONTENT (8300), after BIOS boot, COS_PERSISTENT last" \
    python3 - "$work/sgdisk-p.txt" <<'PY'
import re, sys
rows = [line.split() for line in open(sys.argv[1]) if re.match(r"^ +\d+ ", line)]
names = [row[-1] for row in rows]
assert names == ["COS_GRUB", "COS_OEM", "COS_RECOVERY", "BIOS", "COS_CONTENT", "COS_PERSISTENT"], names
assert rows[4][0] == "5" and rows[4][-2] == "8300", rows[4]
PY

# The filesystem, extracted: ext4 labelled COS_CONTENT, clean, holding the files (debugfs).
start=$(sgdisk -i 5 "$raw" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
end=$(sgdisk -i 5 "$raw" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
dd if="$raw" of="$work/content.img" bs=512 skip="$start" count=$((end - start + 1)) status=none
detail="$(blkid -p "$work/content.img" 2>&1)"
check "blkid: ext4 labelled COS_CONTENT" \
    test "$(blkid -p -o value -s TYPE "$work/content.img"):$(blkid -p -o value -s LABEL "$work/content.img")" = "ext4:COS_CONTENT"
e2fsck -fn "$work/content.img" >"$work/e2fsck.txt" 2>&1
fsck_status=$?
detail="$(tail -5 "$work/e2fsck.txt")"
check "e2fsck -fn COS_CONTENT: clean" test "$fsck_status" = 0

# path-on-COS_CONTENT:sha256 of what went in
want=$(
    echo "/bundle-content/apps.tar.zst:$(sha256sum <"$work/in/apps.tar.zst" | cut -d' ' -f1)"
    echo "/bundle-content/big.tar.zst:$(sha256sum <"$work/in/big.tar.zst.whole" | cut -d' ' -f1)"
    echo "/edge-config/.edge_custom_config.yaml:$(sha256sum <"$work/in/custom.yaml" | cut -d' ' -f1)"
    echo "/spc-config/spc.tgz:$(sha256sum <"$work/in/spc.tgz" | cut -d' ' -f1)"
)
got=$(for path in $(echo "$want" | cut -d: -f1); do
    echo "$path:$(debugfs -R "cat $path" "$work/content.img" 2>/dev/null | sha256sum | cut -d' ' -f1)"
done)
detail="$(diff <(echo "$want") <(echo "$got"))"
check "debugfs: every file reads back with the sha256 that went in" test "$want" = "$got"
listing=$(debugfs -R "ls -p /bundle-content" "$work/content.img" 2>/dev/null | cut -d/ -f6 | grep -v '^\.*$' | sort | tr '\n' ' ')
detail="$listing"
check "bundle-content/ holds the two bundles and nothing else (no parts, no index)" \
    test "$listing" = "apps.tar.zst big.tar.zst "

# libguestfs reads the disk as a machine would: the partition by its number, its label, the files.
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# Under TCG: a /dev/kvm that exists but cannot run guests (nested virtualisation) kills qemu at
# once ("failed to set MSR"), and these checks do not need KVM's speed.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}
guestfish --ro -a "$raw" >"$work/guestfish.txt" 2>"$work/guestfish.err" <<EOF
run
vfs-label /dev/sda5
mount /dev/sda5 /
checksum sha256 /bundle-content/apps.tar.zst
checksum sha256 /bundle-content/big.tar.zst
checksum sha256 /edge-config/.edge_custom_config.yaml
checksum sha256 /spc-config/spc.tgz
EOF
guest_want="COS_CONTENT
$(echo "$want" | cut -d: -f2)"
detail="$(diff <(echo "$guest_want") "$work/guestfish.txt"; tail -5 "$work/guestfish.err")"
check "guestfish: /dev/sda5 labelled COS_CONTENT, every file with the sha256 that went in" \
    test "$(cat "$work/guestfish.txt")" = "$guest_want"

# Reproducible: the same inputs again give the same disk; one byte changed in a bundle (same
# size) gives another disk GUID, as the content is part of the disk's seed.
disk "$work/again" "${content_args[@]}" >"$work/again.log" 2>&1
detail="$(tail -5 "$work/again.log"; cmp "$raw" "$work/again/edge-demo-installer.raw" 2>&1)"
check "the same inputs twice: byte-identical raw disks" cmp -s "$raw" "$work/again/edge-demo-installer.raw"
python3 - "$work/in/apps.tar.zst" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1000)
    byte = f.read(1)
    f.seek(1000)
    f.write(bytes([byte[0] ^ 1]))
PY
disk "$work/changed" "${content_args[@]}" >"$work/changed.log" 2>&1
guid() { sgdisk -p "$1" | sed -n 's/^Disk identifier (GUID): //p'; }
detail="$(tail -5 "$work/changed.log"; guid "$raw"; guid "$work/changed/edge-demo-installer.raw")"
check "one byte changed in a bundle: another disk GUID" \
    test -n "$(guid "$raw")" -a "$(guid "$raw")" != "$(guid "$work/changed/edge-demo-installer.raw")"

# disk.content_partition false: the same inputs, no COS_CONTENT.
if disk "$work/off" "${content_args[@]}" --content-partition false >"$work/off.log" 2>&1; then
    pass "build disk --content-partition false"
else
    fail "build disk --content-partition false" "$(tail -20 "$work/off.log")"
fi
sgdisk -p "$work/off/edge-demo-installer.raw" >"$work/off-p.txt" 2>&1
detail="$(cat "$work/off-p.txt")"
check "--content-partition false: five partitions, no COS_CONTENT" \
    test "$(grep -cE '^ +[0-9]+ ' "$work/off-p.txt"):$(grep -c COS_CONTENT "$work/off-p.txt")" = "5:0"

# A part changed after the index was written (same size, so the plan cannot tell): putting the
# bundle back together finds it, bad input (2), and no disk appears.
python3 - "$work/in/parts/big.tar.zst.part-001" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.write(b"X")
PY
disk "$work/damaged" "${content_args[@]}" >"$work/damaged.log" 2>&1
status=$?
detail="status $status: $(tail -5 "$work/damaged.log")"
check "a damaged part: exit 2, the parts index named, no disk" \
    test "$status" = 2 -a ! -e "$work/damaged/edge-demo-installer.raw" \
    -a -n "$(grep 'big.tar.zst.parts.json: its parts put back together are' "$work/damaged.log")"

# true with nothing to put on it: bad input (2), before any work.
"$bin" --config "$example/edgeforge.yaml" --arch amd64 --output-dir "$work/none" build disk --format raw \
    --base "oci:$fixtures/base-amd64:latest" --content-partition true >"$work/none.log" 2>&1
status=$?
detail="status $status: $(cat "$work/none.log")"
check "--content-partition true with nothing to hold: exit 2, names the setting" \
    test "$status" = 2 -a -n "$(grep -- '--content-partition: disk.content_partition is true, but there is nothing' "$work/none.log")"

finish cos_content_test
