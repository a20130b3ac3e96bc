#!/usr/bin/env bash
# End-to-end tests of `edgeforge build disk`: the Kairos raw disk, qcow2, OVA, VHD and GCE tarball,
# judged by tools we did not write: sgdisk, fsck.fat, e2fsck, qemu-img, tar, and QEMU boots (OVMF
# for amd64 raw and qcow2, SeaBIOS for the --bios raw, AAVMF for arm64 raw and qcow2) where the
# booted system reports the hash of the user-data it found on COS_OEM. Also reproducibility and
# bad inputs.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export EDGEFORGE_CACHE_DIR=$work/cache
example=$src/examples/basic
want_ud=$(sha256sum <"$example/user-data" | cut -d' ' -f1)

disk() { # disk ARCH OUT [extra args...]
    local arch=$1 out=$2
    shift 2
    "$bin" --config "$example/edgeforge.yaml" --arch "$arch" --output-dir "$out" build disk \
        --base "oci:$fixtures/base-$arch:latest" --agent "oci:$fixtures/agent-$arch:latest" \
        --extra-cmdline "edgeforge.oem=LABEL=COS_OEM edgeforge.check=/etc/edgeforge/overlay-marker" "$@"
}

if disk amd64 "$work/out" --format raw,qcow2,ova,vhd,gce >"$work/build.log" 2>&1; then
    pass "build disk --format raw,qcow2,ova,vhd,gce (amd64)"
else
    fail "build disk --format raw,qcow2,ova,vhd,gce (amd64)" "$(tail -20 "$work/build.log")"
fi
if disk arm64 "$work/out-arm64" --format raw,qcow2 >"$work/build-arm64.log" 2>&1; then
    pass "build disk --format raw,qcow2 (arm64)"
else
    fail "build disk --format raw,qcow2 (arm64)" "$(tail -20 "$work/build-arm64.log")"
fi
bios_args=(--format raw --bios --state-size 32M --persistent-size 64M)
if disk amd64 "$work/out-bios" "${bios_args[@]}" >"$work/build-bios.log" 2>&1; then
    pass "build disk --format raw --bios --state-size 32M --persistent-size 64M (amd64)"
else
    fail "build disk --format raw --bios --state-size 32M --persistent-size 64M (amd64)" "$(tail -20 "$work/build-bios.log")"
fi
raw=$work/out/edge-demo-installer.raw
(cd "$work/out" && sha256sum --quiet -c edge-demo-installer.raw.sha256 edge-demo-installer.qcow2.sha256 \
    edge-demo-installer.ova.sha256 edge-demo-installer.vhd.sha256 edge-demo-installer-gce.tar.gz.sha256) &&
    pass "sha256 files verify" || fail "sha256 files verify"

# The partition table, by sgdisk.
sgdisk -v "$raw" >"$work/sgdisk-v.txt" 2>&1
grep -q "No problems found" "$work/sgdisk-v.txt" && pass "sgdisk -v: no problems" ||
    fail "sgdisk -v: no problems" "$(cat "$work/sgdisk-v.txt")"
sgdisk -p "$raw" >"$work/sgdisk-p.txt" 2>&1
if grep -qE '^ +1 .* EF00 +COS_GRUB$' "$work/sgdisk-p.txt" && grep -qE '^ +2 .* 8300 +COS_OEM$' "$work/sgdisk-p.txt" &&
    grep -qE '^ +3 .* 8300 +COS_RECOVERY$' "$work/sgdisk-p.txt"; then
    pass "GPT: COS_GRUB (ESP), COS_OEM, COS_RECOVERY"
else
    fail "GPT: COS_GRUB (ESP), COS_OEM, COS_RECOVERY" "$(cat "$work/sgdisk-p.txt")"
fi

# Each filesystem, extracted and checked by its own fsck.
extract() { # extract N FILE
    local start end
    start=$(sgdisk -i "$1" "$raw" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
    end=$(sgdisk -i "$1" "$raw" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
    dd if="$raw" of="$2" bs=512 skip="$start" count=$((end - start + 1)) status=none
}
extract 1 "$work/esp.img"
extract 2 "$work/oem.img"
extract 3 "$work/recovery.img"
fsck.fat -n "$work/esp.img" >"$work/fsck-fat.txt" 2>&1 && pass "fsck.fat -n COS_GRUB" ||
    fail "fsck.fat -n COS_GRUB" "$(cat "$work/fsck-fat.txt")"
for part in oem recovery; do
    e2fsck -fn "$work/$part.img" >"$work/e2fsck-$part.txt" 2>&1 && pass "e2fsck -fn $part" ||
        fail "e2fsck -fn $part" "$(cat "$work/e2fsck-$part.txt")"
done
debugfs -R "cat /99_userdata.yaml" "$work/oem.img" 2>/dev/null | cmp -s - "$example/user-data" &&
    pass "COS_OEM holds the user-data as /99_userdata.yaml" || fail "COS_OEM holds the user-data as /99_userdata.yaml"
mdir -i "$work/esp.img" ::/EFI/BOOT >"$work/mdir.txt" 2>&1
grep -qi "BOOTX64 *EFI" "$work/mdir.txt" && grep -qi "grub *cfg" "$work/mdir.txt" &&
    pass "COS_GRUB has /EFI/BOOT/BOOTX64.EFI and grub.cfg" || fail "COS_GRUB has /EFI/BOOT/BOOTX64.EFI and grub.cfg" "$(cat "$work/mdir.txt")"

# qcow2 and OVA, by qemu-img and tar.
qcow2=$work/out/edge-demo-installer.qcow2
qemu-img check -f qcow2 "$qcow2" >"$work/qcheck.txt" 2>&1 && grep -q "No errors were found" "$work/qcheck.txt" &&
    pass "qemu-img check qcow2: no errors" || fail "qemu-img check qcow2: no errors" "$(cat "$work/qcheck.txt")"
qemu-img compare -f raw -F qcow2 "$raw" "$qcow2" >"$work/qcmp.txt" 2>&1 &&
    pass "qemu-img compare: qcow2 equals the raw disk" || fail "qemu-img compare: qcow2 equals the raw disk" "$(cat "$work/qcmp.txt")"
raw_arm64=$work/out-arm64/edge-demo-installer.raw
qcow2_arm64=$work/out-arm64/edge-demo-installer.qcow2
(cd "$work/out-arm64" && sha256sum --quiet -c edge-demo-installer.raw.sha256 edge-demo-installer.qcow2.sha256) &&
    pass "sha256 files verify (arm64)" || fail "sha256 files verify (arm64)"
qemu-img check -f qcow2 "$qcow2_arm64" >"$work/qcheck-arm64.txt" 2>&1 && grep -q "No errors were found" "$work/qcheck-arm64.txt" &&
    pass "qemu-img check qcow2 (arm64): no errors" || fail "qemu-img check qcow2 (arm64): no errors" "$(cat "$work/qcheck-arm64.txt")"
qemu-img compare -f raw -F qcow2 "$raw_arm64" "$qcow2_arm64" >"$work/qcmp-arm64.txt" 2>&1 &&
    pass "qemu-img compare: qcow2 equals the raw disk (arm64)" ||
    fail "qemu-img compare: qcow2 equals the raw disk (arm64)" "$(cat "$work/qcmp-arm64.txt")"
ova=$work/out/edge-demo-installer.ova
[ "$(tar -tf "$ova" | tr '\n' ' ')" = "edge-demo-installer.ovf edge-demo-installer.mf edge-demo-installer-disk1.vmdk " ] &&
    pass "OVA members: .ovf, .mf, .vmdk in that order" || fail "OVA members: .ovf, .mf, .vmdk in that order" "$(tar -tvf "$ova")"
mkdir -p "$work/ova" && tar -xf "$ova" -C "$work/ova"
(cd "$work/ova" && python3 - <<'PY') >"$work/mf.txt" 2>&1 &&
import hashlib
for line in open("edge-demo-installer.mf"):
    name, digest = line.rstrip("\n").split(")= ")
    assert name.startswith("SHA256(")
    assert hashlib.sha256(open(name[7:], "rb").read()).hexdigest() == digest, name
PY
    pass "OVA manifest: SHA256(file)= lines that match" || fail "OVA manifest: SHA256(file)= lines that match" "$(cat "$work/mf.txt")"
qemu-img compare -f raw -F vmdk "$raw" "$work/ova/edge-demo-installer-disk1.vmdk" >"$work/vcmp.txt" 2>&1 &&
    pass "qemu-img compare: the OVA's VMDK equals the raw disk" || fail "qemu-img compare: the OVA's VMDK equals the raw disk" "$(cat "$work/vcmp.txt")"

# VHD: qemu's vpc driver reads it as a fixed VHD whose virtual size is the raw disk's (whole MiB,
# so the same bytes: the backup GPT at the real end of the data part), and sgdisk accepts the
# data part.
vhd=$work/out/edge-demo-installer.vhd
raw_size=$(stat -c %s "$raw")
qemu-img info -f vpc --output=json "$vhd" >"$work/vhd-info.json" 2>&1
python3 - "$work/vhd-info.json" "$raw_size" "$vhd" <<'PY' >"$work/vhd-check.txt" 2>&1 &&
import json, os, sys
info, size, vhd = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
assert info["format"] == "vpc", info
assert info["virtual-size"] == size and size % 2**20 == 0, (info["virtual-size"], size)
assert os.path.getsize(vhd) == size + 512
footer = open(vhd, "rb").read()[-512:]
assert footer[:8] == b"conectix" and footer[60:64] == b"\0\0\0\2", footer[:64]
PY
    pass "qemu-img info: vpc, virtual size = the raw disk (whole MiB), fixed footer" ||
    fail "qemu-img info: vpc, virtual size = the raw disk (whole MiB), fixed footer" "$(cat "$work/vhd-info.json" "$work/vhd-check.txt")"
qemu-img compare -f vpc -F raw "$vhd" "$raw" >"$work/vhdcmp.txt" 2>&1 &&
    pass "qemu-img compare: the VHD equals the raw disk" || fail "qemu-img compare: the VHD equals the raw disk" "$(cat "$work/vhdcmp.txt")"
head -c "$raw_size" "$vhd" >"$work/vhd-data.raw"
sgdisk -v "$work/vhd-data.raw" 2>&1 | grep -q "No problems found" && pass "sgdisk -v: the VHD's data part" ||
    fail "sgdisk -v: the VHD's data part" "$(sgdisk -v "$work/vhd-data.raw" 2>&1)"
rm -f "$work/vhd-data.raw"

# GCE: one member, disk.raw, of whole GiB; extracted, a valid GPT disk whose partitions hold the
# raw disk's bytes (the GPT itself differs: the backup sits at the end of the bigger disk).
gce=$work/out/edge-demo-installer-gce.tar.gz
tar -tzvf "$gce" >"$work/gce-list.txt" 2>&1
if [ "$(wc -l <"$work/gce-list.txt")" = 1 ] && awk '{ exit !($6 == "disk.raw" && $3 > 0 && $3 % 1073741824 == 0 && $2 == "root/root") }' "$work/gce-list.txt"; then
    pass "GCE tarball: only disk.raw, whole GiB, root/root"
else
    fail "GCE tarball: only disk.raw, whole GiB, root/root" "$(cat "$work/gce-list.txt")"
fi
[ "$(head -c 10 "$gce" | od -An -tx1 | tr -d ' \n')" = "1f8b0800000000000003" ] &&
    pass "GCE tarball: gzip header without name or timestamp" || fail "GCE tarball: gzip header without name or timestamp" "$(head -c 10 "$gce" | od -An -tx1)"
tar -xzOf "$gce" disk.raw | cp --sparse=always /dev/stdin "$work/gce-disk.raw"
sgdisk -v "$work/gce-disk.raw" 2>&1 | grep -q "No problems found" && pass "sgdisk -v: the GCE disk.raw" ||
    fail "sgdisk -v: the GCE disk.raw" "$(sgdisk -v "$work/gce-disk.raw" 2>&1)"
parts_end=$(( ($(sgdisk -i 3 "$raw" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p') + 1) * 512 ))
region() { echo "driver=raw,offset=1048576,size=$((parts_end - 1048576)),file.filename=$1"; }
qemu-img compare --image-opts "$(region "$raw")" "$(region "$work/gce-disk.raw")" >"$work/gcecmp.txt" 2>&1 &&
    pass "qemu-img compare: the GCE disk's partitions equal the raw disk's" ||
    fail "qemu-img compare: the GCE disk's partitions equal the raw disk's" "$(cat "$work/gcecmp.txt")"
rm -f "$work/gce-disk.raw"

# Boots: the firmware finds shim/grub on COS_GRUB, grub boots COS_RECOVERY's live rootfs, and
# the fixture's initramfs reports the user-data it read from COS_OEM.
boot() { # boot NAME ARCH FIRMWARE IMAGE [qemu-boot args...]
    local name=$1 arch=$2 firmware=$3 image=$4
    shift 4
    "$src/tests/e2e/qemu-boot" --arch "$arch" --firmware "$firmware" --disk "$image" --snapshot --timeout 300 \
        --log "$work/boot-$name.log" "$@" >"$work/boot-$name.out" 2>&1
}
check_boot() { # check_boot NAME
    local line ok=1
    for line in "EDGEFORGE: medium dev=/dev/vda3 label=COS_RECOVERY fstype=ext4" \
        "EDGEFORGE: oem-file 99_userdata.yaml sha256=$want_ud" "EDGEFORGE: squashfs mounted" \
        "EDGEFORGE: rootfs /etc/edgeforge/overlay-marker present" "EDGEFORGE: rootfs-dirs ok" "EDGEFORGE: done"; do
        grep -qF "$line" "$work/boot-$1.log" 2>/dev/null || { ok=0; fail "boot $1" "missing: $line" "$(tail -15 "$work/boot-$1.log" 2>/dev/null; cat "$work/boot-$1.out")"; break; }
    done
    [ "$ok" = 1 ] && pass "boot $1: COS_RECOVERY live rootfs, user-data from COS_OEM"
}
boot ovmf-raw amd64 ovmf "$raw" &
boot ovmf-qcow2 amd64 ovmf "$qcow2" &
wait
boot aavmf-raw arm64 aavmf "$raw_arm64" &
boot aavmf-qcow2 arm64 aavmf "$qcow2_arm64" &
# --bios: SeaBIOS runs boot.img from the MBR, which loads core.img from the BIOS boot partition.
boot seabios-raw amd64 seabios "$work/out-bios/edge-demo-installer.raw" --machine q35 &
wait
for name in ovmf-raw ovmf-qcow2 aavmf-raw aavmf-qcow2 seabios-raw; do check_boot "$name"; done
sgdisk -p "$work/out-bios/edge-demo-installer.raw" >"$work/sgdisk-bios.txt" 2>&1
grep -qE '^ +4 .* EF02 +BIOS$' "$work/sgdisk-bios.txt" && grep -qE '^ +5 .* 32.0 MiB +8300 +COS_STATE$' "$work/sgdisk-bios.txt" &&
    grep -qE '^ +6 .* 64.0 MiB +8300 +COS_PERSISTENT$' "$work/sgdisk-bios.txt" &&
    sgdisk -v "$work/out-bios/edge-demo-installer.raw" | grep -q "No problems found" &&
    pass "GPT: BIOS boot (EF02) after COS_RECOVERY, then COS_STATE and COS_PERSISTENT; sgdisk -v clean" ||
    fail "GPT: BIOS boot (EF02) after COS_RECOVERY, then COS_STATE and COS_PERSISTENT; sgdisk -v clean" "$(cat "$work/sgdisk-bios.txt")"
raw=$work/out-bios/edge-demo-installer.raw extract 5 "$work/state.img"
raw=$work/out-bios/edge-demo-installer.raw extract 6 "$work/persistent.img"
for part in state:COS_STATE persistent:COS_PERSISTENT; do
    img=$work/${part%%:*}.img
    e2fsck -fn "$img" >"$work/e2fsck-${part%%:*}.txt" 2>&1 && [ "$(e2label "$img" 2>/dev/null)" = "${part#*:}" ] &&
        [ "$(debugfs -R "ls -p /" "$img" 2>/dev/null | grep -cv '^$')" = 3 ] &&
        pass "${part#*:}: empty ext4 (., .., lost+found), e2fsck clean" ||
        fail "${part#*:}: empty ext4 (., .., lost+found), e2fsck clean" "$(cat "$work/e2fsck-${part%%:*}.txt")" "$(debugfs -R "ls -p /" "$img" 2>&1)"
done
rm -f "$work/state.img" "$work/persistent.img"
disk amd64 "$work/out-bios2" "${bios_args[@]}" >"$work/build-bios2.log" 2>&1
cmp -s "$work/out-bios/edge-demo-installer.raw" "$work/out-bios2/edge-demo-installer.raw" &&
    pass "reproducible --bios raw with COS_STATE and COS_PERSISTENT" || fail "reproducible --bios raw with COS_STATE and COS_PERSISTENT"
rm -rf "$work/out-bios2"

# Reproducible: a second build gives the same bytes.
disk amd64 "$work/out2" --format raw,qcow2,ova,vhd,gce >"$work/build2.log" 2>&1
for ext in .raw .qcow2 .ova .vhd -gce.tar.gz; do
    cmp -s "$work/out/edge-demo-installer$ext" "$work/out2/edge-demo-installer$ext" &&
        pass "reproducible ${ext#[.-]} (byte-identical twice)" || fail "reproducible ${ext#[.-]} (byte-identical twice)"
done

# Bad inputs: exit 2, the message, nothing written.
disk amd64 "$work/bad" --format qcow3,vhdx >"$work/bad.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "unknown disk format 'qcow3' (did you mean 'qcow2'?); formats: raw, qcow2, ova, ami, vhd, gce" "$work/bad.log" &&
    grep -q "unknown disk format 'vhdx' (did you mean 'vhd'?)" "$work/bad.log" && [ ! -e "$work/bad" ] &&
    pass "unknown formats: exit 2 before any work" || fail "unknown formats: exit 2 before any work" "rc=$rc" "$(cat "$work/bad.log")"
disk arm64 "$work/bios-arm64" --format raw --bios >"$work/bios-arm64.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "error: .*--bios: arm64 machines boot through UEFI only: there is no legacy BIOS boot" "$work/bios-arm64.log" && [ ! -e "$work/bios-arm64" ] &&
    pass "--bios for arm64: exit 2 before any work" || fail "--bios for arm64: exit 2 before any work" "rc=$rc" "$(cat "$work/bios-arm64.log")"
disk amd64 "$work/small" --format raw --disk-size 64M >"$work/small.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "error: --disk-size: 64.0 MiB is too small: even before the rootfs is added the disk needs more than 99.0 MiB" "$work/small.log" &&
    [ ! -e "$work/small" ] &&
    pass "--disk-size too small for the fixed partitions: exit 2 before any work" ||
    fail "--disk-size too small for the fixed partitions: exit 2 before any work" "rc=$rc" "$(cat "$work/small.log")" "$(ls -la "$work/small")"
# Big enough for the fixed partitions, too small once the rootfs is known: reported right after
# the (cached) rootfs step with the minimum, which then builds.
disk amd64 "$work/small2" --format raw --disk-size 120M >"$work/small2.log" 2>&1
rc=$?
minimum=$(sed -n 's/.*give --disk-size \([0-9]*M\) or more.*/\1/p' "$work/small2.log")
[ "$rc" = 2 ] && grep -q "error: --disk-size 120.0 MiB is too small for this disk: it needs at least .* for COS_GRUB .*, COS_RECOVERY .* (known once the rootfs step has run" "$work/small2.log" &&
    [ -n "$minimum" ] && [ -z "$(ls -A "$work/small2" 2>/dev/null)" ] &&
    disk amd64 "$work/small3" --format raw --disk-size "$minimum" >"$work/small3.log" 2>&1 &&
    [ "$(stat -c %s "$work/small3/edge-demo-installer.raw")" = $(( ${minimum%M} * 1048576 )) ] &&
    pass "--disk-size too small for the rootfs: exit 2 with the minimum after the rootfs step; the minimum builds" ||
    fail "--disk-size too small for the rootfs: exit 2 with the minimum after the rootfs step; the minimum builds" "rc=$rc minimum=$minimum" "$(cat "$work/small2.log" "$work/small3.log" 2>/dev/null)"
rm -rf "$work/small3"

# Formats are made two at a time: one that fails (its output name is taken by a directory) fails
# the build with its own message once the other has finished; the raw disk is not moved into
# place, no temporary is left, the finished OVA is whole.
mkdir -p "$work/taken/edge-demo-installer.qcow2"
disk amd64 "$work/taken" --format raw,qcow2,ova >"$work/taken.log" 2>&1
rc=$?
[ "$rc" = 1 ] && grep -q "error: cannot write the qcow2 image $work/taken/edge-demo-installer.qcow2: Is a directory" "$work/taken.log" &&
    [ "$(ls -A "$work/taken" | tr '\n' ' ')" = "edge-demo-installer.ova edge-demo-installer.ova.sha256 edge-demo-installer.qcow2 " ] &&
    (cd "$work/taken" && sha256sum --quiet -c edge-demo-installer.ova.sha256) &&
    pass "a format that fails while another is made: exit 1, its message, no raw disk, no temporaries" ||
    fail "a format that fails while another is made: exit 1, its message, no raw disk, no temporaries" "rc=$rc" "$(cat "$work/taken.log")" "$(ls -la "$work/taken")"
rm -rf "$work/taken"

# AMI: the disk at whole GiB plus ami.json; --upload against a local server that checks every
# SigV4 signature, block checksum and index, and the linear aggregate (tests/fixtures/fake-aws).
export EDGEFORGE_FIXTURES_DIR=$fixtures
aws_env=(env -u AWS_PROFILE -u AWS_SESSION_TOKEN HOME="$work/no-home" AWS_REGION=us-east-1
    AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY)
"$src/tests/fixtures/fake-aws" --port-file "$work/aws.port" --summary "$work/aws.json" \
    --complete-status completed --fail-put-block 2 --max-seconds 300 2>"$work/aws.log" &
aws_pid=$!
for _ in $(seq 50); do [ -s "$work/aws.port" ] && break; sleep 0.1; done
endpoint="http://127.0.0.1:$(cat "$work/aws.port" 2>/dev/null)"
if "${aws_env[@]}" AWS_ENDPOINT_URL="$endpoint" "$bin" --config "$example/edgeforge.yaml" \
    --output-dir "$work/ami" --json build disk --format ami --upload --ami-name edge-demo-ami \
    --base "oci:$fixtures/base-amd64:latest" --agent "oci:$fixtures/agent-amd64:latest" \
    >"$work/ami.out" 2>"$work/ami.log"; then
    pass "build disk --format ami --upload (against the local AWS stand-in)"
else
    fail "build disk --format ami --upload (against the local AWS stand-in)" "$(tail -10 "$work/ami.log")"
fi
python3 - "$work/ami/edge-demo-installer-ami.json" "$work/aws.json" "$work/ami/edge-demo-installer-ami.raw" <<'PY' >"$work/ami-check.log" 2>&1 &&
import json, sys
ami, server, raw = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
size = len(open(raw, "rb").read())
assert size % 2**30 == 0, size
(snapshot_id, snapshot), = server["snapshots"].items()
block = 512 * 1024
data = open(raw, "rb").read()
nonzero = [i for i in range(size // block) if data[i * block:(i + 1) * block].count(0) != block]
assert snapshot["blocks"] == nonzero, (snapshot["blocks"][:10], nonzero[:10])
assert snapshot["aggregate_verified"] is True and snapshot["status"] == "completed"
assert snapshot["volume_size"] == size // 2**30
assert server["signature_failures"] == [] and server["injected_failures"] == 2, server
(image,) = server["images"]
params = image["params"]
assert params["Architecture"] == "x86_64" and params["BootMode"] == "uefi", params
assert params["EnaSupport"] == "true" and params["ImdsSupport"] == "v2.0", params
assert params["BlockDeviceMapping.1.Ebs.SnapshotId"] == snapshot_id, params
assert ami["ImageId"] == image["image_id"] and ami["Name"] == "edge-demo-ami"
assert ami["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == snapshot_id
print("ok")
PY
    pass "AMI: every non-zero block uploaded and verified, aggregate checked, RegisterImage params, ids in ami.json" ||
    fail "AMI: every non-zero block uploaded and verified, aggregate checked, RegisterImage params, ids in ami.json" "$(cat "$work/ami-check.log")"
grep -q "wJalrXUtnFEMI" "$work/ami.log" "$work/ami.out" && fail "the AWS secret never appears in the output" ||
    pass "the AWS secret never appears in the output"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE HOME="$work/no-home" AWS_REGION=us-east-1 \
    "$bin" --config "$example/edgeforge.yaml" --output-dir "$work/ami-nocreds" build disk --format ami --upload \
    >"$work/ami-nocreds.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -qi "credentials" "$work/ami-nocreds.log" && [ ! -e "$work/ami-nocreds" ] &&
    pass "--upload without AWS credentials: exit 2 before any work" ||
    fail "--upload without AWS credentials: exit 2 before any work" "rc=$rc" "$(cat "$work/ami-nocreds.log")"
env -u AWS_PROFILE -u AWS_SESSION_TOKEN HOME="$work/no-home" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=AKIDEXAMPLE \
    AWS_SECRET_ACCESS_KEY=not-the-secret AWS_ENDPOINT_URL="$endpoint" "$bin" --config "$example/edgeforge.yaml" \
    --output-dir "$work/ami-bad" build disk --format ami --upload >"$work/ami-bad.log" 2>&1
rc=$?
[ "$rc" = 1 ] && grep -q "StartSnapshot failed: HTTP 403" "$work/ami-bad.log" && ! grep -q "not-the-secret" "$work/ami-bad.log" &&
    pass "a wrong AWS secret: exit 1 with AWS's code and text, secret not shown" ||
    fail "a wrong AWS secret: exit 1 with AWS's code and text, secret not shown" "rc=$rc" "$(cat "$work/ami-bad.log")"
kill "$aws_pid" 2>/dev/null

finish disk_test
