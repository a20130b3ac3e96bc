#!/usr/bin/env bash
# End-to-end tests of `edgeforge build disk`: the Kairos raw disk, qcow2 and OVA, judged by
# tools we did not write: sgdisk, fsck.fat, e2fsck, qemu-img, tar, and QEMU boots (OVMF for
# amd64 raw and qcow2, AAVMF for arm64 raw) where the booted system reports the hash of the
# user-data it found on COS_OEM. Also reproducibility and bad inputs.
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

if disk amd64 "$work/out" --format raw,qcow2,ova >"$work/build.log" 2>&1; then
    pass "build disk --format raw,qcow2,ova (amd64)"
else
    fail "build disk --format raw,qcow2,ova (amd64)" "$(tail -20 "$work/build.log")"
fi
if disk arm64 "$work/out-arm64" --format raw >"$work/build-arm64.log" 2>&1; then
    pass "build disk --format raw (arm64)"
else
    fail "build disk --format raw (arm64)" "$(tail -20 "$work/build-arm64.log")"
fi
raw=$work/out/edge-demo-installer.raw
(cd "$work/out" && sha256sum --quiet -c edge-demo-installer.raw.sha256 edge-demo-installer.qcow2.sha256 \
    edge-demo-installer.ova.sha256) && pass "sha256 files verify" || fail "sha256 files verify"

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

# Boots: the firmware finds shim/grub on COS_GRUB, grub boots COS_RECOVERY's live rootfs, and
# the fixture's initramfs reports the user-data it read from COS_OEM.
boot() { # boot NAME ARCH FIRMWARE IMAGE
    "$src/tests/e2e/qemu-boot" --arch "$2" --firmware "$3" --disk "$4" --snapshot --timeout 300 \
        --log "$work/boot-$1.log" >"$work/boot-$1.out" 2>&1
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
boot aavmf-raw arm64 aavmf "$work/out-arm64/edge-demo-installer.raw"
for name in ovmf-raw ovmf-qcow2 aavmf-raw; do check_boot "$name"; done

# Reproducible: a second build gives the same bytes.
disk amd64 "$work/out2" --format raw,qcow2,ova >"$work/build2.log" 2>&1
for ext in raw qcow2 ova; do
    cmp -s "$work/out/edge-demo-installer.$ext" "$work/out2/edge-demo-installer.$ext" &&
        pass "reproducible $ext (byte-identical twice)" || fail "reproducible $ext (byte-identical twice)"
done

# Bad inputs: exit 2, the message, nothing written.
disk amd64 "$work/bad" --format qcow3,vhd >"$work/bad.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "unknown disk format 'qcow3' (did you mean 'qcow2'?); formats: raw, qcow2, ova, ami, vhd, gce" "$work/bad.log" &&
    grep -q "disk format 'vhd' has not landed" "$work/bad.log" && [ ! -e "$work/bad" ] &&
    pass "unknown and unlanded formats: exit 2 before any work" || fail "unknown and unlanded formats: exit 2 before any work" "rc=$rc" "$(cat "$work/bad.log")"
disk amd64 "$work/small" --format raw --disk-size 64M >"$work/small.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "is too small: its partitions and the backup GPT need .* bytes" "$work/small.log" &&
    [ ! -e "$work/small/edge-demo-installer.raw" ] && [ -z "$(ls -A "$work/small" 2>/dev/null)" ] &&
    pass "--disk-size too small: exit 2 with the minimum, no disk left" || fail "--disk-size too small: exit 2 with the minimum, no disk left" "rc=$rc" "$(cat "$work/small.log")" "$(ls -la "$work/small")"

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
