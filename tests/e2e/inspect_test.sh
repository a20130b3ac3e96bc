#!/usr/bin/env bash
# End-to-end tests of `edgeforge inspect ARTIFACT`: a small ISO, raw disk, qcow2 and OVA built
# from the fixtures, each inspected once with libguestfs (one appliance launch each, TCG when
# KVM is unusable), and the report checked against tools we did not write: sgdisk -p, qemu-img
# info, tar, xorriso (-report_el_torito, -osirrox extraction), debugfs, unsquashfs -s and
# sha256sum of the user-data given to the build. Also the bad-input and no-appliance paths.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export EDGEFORGE_CACHE_DIR=$work/cache
example=$src/examples/basic
want_ud=$(sha256sum <"$example/user-data" | cut -d' ' -f1)
out=$work/out
name=edge-demo-installer

common=(--config "$example/edgeforge.yaml" --arch amd64 --output-dir "$out")
images=(--base "oci:$fixtures/base-amd64:latest" --agent "oci:$fixtures/agent-amd64:latest")
if "$bin" "${common[@]}" build iso "${images[@]}" >"$work/build-iso.log" 2>&1 &&
    "$bin" "${common[@]}" build disk --format raw,qcow2,ova "${images[@]}" >"$work/build-disk.log" 2>&1; then
    pass "build iso and disk --format raw,qcow2,ova"
else
    fail "build iso and disk --format raw,qcow2,ova" "$(tail -20 "$work"/build-*.log)"
fi
iso=$out/$name.iso raw=$out/$name.raw qcow2=$out/$name.qcow2 ova=$out/$name.ova

# Bad input: exit 2, the file named, the supported formats listed; nothing launched.
printf '#cloud-config\nhostname: edge\n' >"$work/notes.iso"
"$bin" inspect "$work/notes.iso" >"$work/bad.out" 2>"$work/bad.err"
rc=$?
[ "$rc" = 2 ] && grep -q "^edgeforge: error: inspect: $work/notes.iso: not a built artifact" "$work/bad.err" &&
    grep -q "supported are ISO 9660 images, raw disks" "$work/bad.err" && ! grep -q libguestfs "$work/bad.err" &&
    pass "a text file: exit 2, names the file and the supported formats" ||
    fail "a text file: exit 2, names the file and the supported formats" "rc=$rc" "$(cat "$work/bad.err")"
"$bin" inspect "$work/missing.raw" >/dev/null 2>"$work/missing.err"
rc=$?
[ "$rc" = 2 ] && grep -q "inspect: $work/missing.raw: cannot open it: No such file or directory" "$work/missing.err" &&
    pass "a missing file: exit 2 with the reason" || fail "a missing file: exit 2 with the reason" "rc=$rc" "$(cat "$work/missing.err")"
# No appliance (libguestfs looks for it under LIBGUESTFS_PATH): exit 1, says so, with the hint.
LIBGUESTFS_PATH=$work/no-appliance "$bin" inspect "$raw" >/dev/null 2>"$work/noapp.err"
rc=$?
[ "$rc" = 1 ] && grep -q "inspect: $raw: the libguestfs appliance failed to launch: " "$work/noapp.err" &&
    grep -q "libguestfs-test-tool" "$work/noapp.err" && grep -q "apt-get install supermin" "$work/noapp.err" &&
    pass "no libguestfs appliance: exit 1, says so, with the hint" ||
    fail "no libguestfs appliance: exit 1, says so, with the hint" "rc=$rc" "$(cat "$work/noapp.err")"

# A damaged qcow2 (an impossible cluster size): the header check's reason, exit 2, before any
# launch.
python3 -c 'import struct,sys; open(sys.argv[1], "wb").write(b"QFI\xfb" + struct.pack(">IQII", 3, 0, 0, 99) + bytes(4096))' "$work/damaged.qcow2"
"$bin" inspect "$work/damaged.qcow2" >/dev/null 2>"$work/damaged.err"
rc=$?
[ "$rc" = 2 ] && grep -q "inspect: $work/damaged.qcow2: not a readable qcow2: QCOW2 cluster bits 99 (valid are 9 to 21)" "$work/damaged.err" &&
    ! grep -q "starting the libguestfs appliance" "$work/damaged.err" &&
    pass "a damaged qcow2: exit 2 with the reason" ||
    fail "a damaged qcow2: exit 2 with the reason" "rc=$rc" "$(cat "$work/damaged.err")"

# One inspection per artifact (the appliance launch dominates: tens of seconds under TCG). The
# qcow2 holds the raw disk's bytes, so it is inspected once, for the text report, below.
for kind in iso raw ova; do
    start=$(date +%s)
    if "$bin" --json inspect "$out/$name.$kind" >"$work/$kind.json" 2>"$work/$kind.err" &&
        python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/$kind.json"; then
        pass "inspect --json $kind ($(($(date +%s) - start)) s, appliance $(python3 -c \
            'import json,sys; print(json.load(open(sys.argv[1]))["libguestfs"]["launch_seconds"])' "$work/$kind.json") s)"
    else
        fail "inspect --json $kind" "$(cat "$work/$kind.err")" "$(head -c 2000 "$work/$kind.json")"
    fi
done

# Facts from other tools, then one python judge per artifact.
sgdisk -p "$raw" >"$work/sgdisk-p.txt" 2>&1
qemu-img info --output=json "$qcow2" >"$work/qcow2-info.json"
mkdir -p "$work/x" "$work/ova"
xorriso -indev "$iso" -report_el_torito plain >"$work/eltorito.txt" 2>/dev/null
xorriso -osirrox on -indev "$iso" -extract /config.yaml "$work/x/config.yaml" \
    -extract /rootfs.squashfs "$work/x/rootfs.squashfs" -extract /boot/kernel "$work/x/kernel" >/dev/null 2>&1
unsquashfs -s "$work/x/rootfs.squashfs" >"$work/unsquashfs-iso.txt" 2>&1
start=$(sgdisk -i 3 "$raw" | sed -n 's/^First sector: \([0-9]*\).*/\1/p')
end=$(sgdisk -i 3 "$raw" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
dd if="$raw" of="$work/recovery.img" bs=512 skip="$start" count=$((end - start + 1)) status=none
debugfs -R "dump /rootfs.squashfs $work/x/recovery.squashfs" "$work/recovery.img" >/dev/null 2>&1
unsquashfs -s "$work/x/recovery.squashfs" >"$work/unsquashfs-raw.txt" 2>&1
tar -tvf "$ova" >"$work/ova-members.txt"
tar -xf "$ova" -C "$work/ova"
qemu-img info --output=json "$work/ova/$name-disk1.vmdk" >"$work/vmdk-info.json"

judge() { # judge KIND: runs the checks below on $work/KIND.json, one line per check
    KIND=$1 WORK=$work WANT_UD=$want_ud RAW=$raw ISO=$iso python3 - <<'PY'
import json, os, re, hashlib

kind, work = os.environ["KIND"], os.environ["WORK"]
report = json.load(open(f"{work}/{kind}.json"))
results = []

def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))

def unsquashfs_facts(path):
    text = open(path).read()
    return {
        "compression": re.search(r"^Compression (\w+)", text, re.M).group(1),
        "block_size": int(re.search(r"^Block size (\d+)", text, re.M).group(1)),
        "inode_count": int(re.search(r"^Number of inodes (\d+)", text, re.M).group(1)),
        "fragment_count": int(re.search(r"^Number of fragments (\d+)", text, re.M).group(1)),
        "compression_level": int(re.search(r"^\s*compression-level (\d+)", text, re.M).group(1)),
    }

def check_squashfs(facts_file):
    facts = unsquashfs_facts(facts_file)
    found = report["squashfs"]
    ok = len(found) == 1 and all(found[0].get(k) == v for k, v in facts.items())
    check(f"squashfs matches unsquashfs -s ({facts})", ok, json.dumps(found))

def check_disk_layout():
    sgdisk = []
    for line in open(f"{work}/sgdisk-p.txt"):
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+([0-9A-F]{4})\s+(\S+)$", line)
        if m:
            sgdisk.append((int(m[1]), int(m[2]) * 512, (int(m[3]) - int(m[2]) + 1) * 512, m[4], m[5]))
    ours = [(p["number"], p["start"], p["size"], p["type_code"], p["name"]) for p in report["partitions"]]
    check("partitions (number, start, size, type code, name) match sgdisk -p", report["partition_table"] == "gpt"
          and ours == sgdisk and len(ours) == 3, f"ours={ours} sgdisk={sgdisk}")
    labels = {p["name"]: (p["filesystem"], p["label"]) for p in report["partitions"]}
    check("filesystems: COS_GRUB vfat, COS_OEM and COS_RECOVERY ext4 with their labels",
          labels == {"COS_GRUB": ("vfat", "COS_GRUB"), "COS_OEM": ("ext4", "COS_OEM"),
                     "COS_RECOVERY": ("ext4", "COS_RECOVERY")}, str(labels))
    esp = report["esp"]
    check("ESP COS_GRUB: EFI/BOOT/BOOTX64.EFI, grub.cfg present",
          len(esp) == 1 and esp[0]["label"] == "COS_GRUB" and "EFI/BOOT/BOOTX64.EFI" in esp[0]["boot_files"]
          and esp[0]["grub_cfg"], json.dumps(esp))
    ud = report["user_data"]
    check("user-data /99_userdata.yaml on COS_OEM has the sha256 of the file given",
          len(ud) == 1 and ud[0]["path"] == "/99_userdata.yaml" and ud[0]["label"] == "COS_OEM"
          and ud[0]["sha256"] == os.environ["WANT_UD"], json.dumps(ud))
    check("stylus.site summary, token hidden",
          ud and ud[0]["stylus_site"].get("projectName") == "edge-demo"
          and ud[0]["stylus_site"].get("edgeHostToken") == "<hidden>"
          and "aUAxxxxxxxxx0ChYCrO" not in json.dumps(report), json.dumps(ud))
    boot = {k: [(i["path"], i["label"]) for i in report[k]] for k in ("kernel", "initrd")}
    check("kernel and initrd on COS_RECOVERY", boot == {"kernel": [("/boot/kernel", "COS_RECOVERY")],
          "initrd": [("/boot/initrd", "COS_RECOVERY")]}, str(boot))
    check_squashfs(f"{work}/unsquashfs-raw.txt")

if kind == "iso":
    size = os.path.getsize(os.environ["ISO"])
    check("format iso, file and virtual size", report["format"] == "iso" and report["file_size"] == size
          and report["virtual_size"] == size, f'{report["file_size"]} {report["virtual_size"]} {size}')
    check("volume id COS_LIVE", report["iso"]["volume_id"] == "COS_LIVE", str(report["iso"]))
    theirs = []
    for line in open(f"{work}/eltorito.txt"):
        m = re.match(r"^El Torito boot img :\s+\d+\s+(\w+)\s+(\w)\s+(\w+)\s+\S+\s+\S+\s+(\d+)\s+(\d+)", line)
        if m:
            theirs.append(({"BIOS": "bios", "UEFI": "efi"}.get(m[1], m[1]), m[2] == "y", m[3], int(m[4]), int(m[5])))
    catalog = re.search(r"^El Torito catalog\s+:\s+(\d+)", open(f"{work}/eltorito.txt").read(), re.M)
    ours = [(e["platform"], e["bootable"], e["emulation"], e["sectors"], e["load_block"]) for e in report["iso"]["el_torito"]]
    check("El Torito entries and catalog match xorriso -report_el_torito", ours == theirs and len(ours) == 2
          and catalog and int(catalog[1]) == report["iso"]["boot_catalog_block"], f"ours={ours} xorriso={theirs}")
    esp = report["esp"]
    check("hybrid GPT lists the appended ESP (EF00, vfat) with EFI/BOOT/BOOTX64.EFI and grub.cfg",
          any(p.get("type_code") == "EF00" and p["filesystem"] == "vfat" for p in report["partitions"])
          and len(esp) == 1 and "EFI/BOOT/BOOTX64.EFI" in esp[0]["boot_files"] and esp[0]["grub_cfg"],
          json.dumps(report["partitions"]) + json.dumps(esp))
    ud = report["user_data"]
    extracted = hashlib.sha256(open(f"{work}/x/config.yaml", "rb").read()).hexdigest()
    check("/config.yaml sha256 equals xorriso's extraction and the user-data given",
          len(ud) == 1 and ud[0]["path"] == "/config.yaml" and ud[0]["sha256"] == extracted == os.environ["WANT_UD"],
          f"{json.dumps(ud)} extracted={extracted}")
    kernel = report["kernel"]
    check("kernel /boot/kernel with the size xorriso extracts", len(kernel) == 1 and kernel[0]["path"] == "/boot/kernel"
          and kernel[0]["size"] == os.path.getsize(f"{work}/x/kernel"), json.dumps(kernel))
    check_squashfs(f"{work}/unsquashfs-iso.txt")
elif kind == "raw":
    size = os.path.getsize(os.environ["RAW"])
    check("format raw, file and virtual size", report["format"] == "raw" and report["file_size"] == size
          and report["virtual_size"] == size)
    check_disk_layout()
elif kind == "ova":
    info = json.load(open(f"{work}/vmdk-info.json"))
    members = [line.split()[-1] for line in open(f"{work}/ova-members.txt")]
    sizes = [int(line.split()[2]) for line in open(f"{work}/ova-members.txt")]
    ours = report["ova"]["members"]
    check("OVA members and sizes match tar -tv", [m["name"] for m in ours] == members
          and [m["size"] for m in ours] == sizes and report["ova"]["disk"].endswith(".vmdk"), f"{ours} {members}")
    check("format ova, virtual size of qemu-img info on the VMDK", report["format"] == "ova"
          and report["virtual_size"] == info["virtual-size"], f'{report["virtual_size"]} {info["virtual-size"]}')
    check_disk_layout()

for name, ok, detail in results:
    print(("ok   " if ok else "FAIL ") + f"{kind}: {name}" + ("" if ok else f"\n     {detail}"))
PY
}
for kind in iso raw ova; do
    [ -s "$work/$kind.json" ] || continue
    while IFS= read -r line; do
        case $line in
        "ok   "*) pass "${line#ok   }" ;;
        "FAIL "*) fail "${line#FAIL }" ;;
        *) echo "$line" ;;
        esac
    done < <(judge "$kind" 2>&1 || echo "FAIL $kind: the judge crashed")
done

# The text report (for people), of the qcow2: partition lines against sgdisk -p of the raw disk
# it was converted from, the virtual size against qemu-img info.
"$bin" inspect "$qcow2" >"$work/qcow2.txt" 2>"$work/qcow2-text.err"
rc=$?
vsize=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$work/qcow2-info.json")
rows_ok=1
while read -r number first last _ _ code label; do
    grep -qE "^ +$number +$((first * 512)) +[0-9.]+ MiB +[A-Za-z ]+\($code\) +$label +(vfat|ext4) +$label\$" "$work/qcow2.txt" || rows_ok=0
done < <(grep -E '^ +[0-9]+ ' "$work/sgdisk-p.txt")
[ "$rc" = 0 ] && [ "$rows_ok" = 1 ] && grep -q "^format      qcow2$" "$work/qcow2.txt" &&
    grep -q "^size        .* file (.*), .* virtual ($vsize bytes)$" "$work/qcow2.txt" &&
    grep -q "^partitions  gpt$" "$work/qcow2.txt" &&
    grep -q "^esp         COS_GRUB: EFI/BOOT/BOOTX64.EFI" "$work/qcow2.txt" &&
    grep -q "^user-data   /99_userdata.yaml on COS_OEM: .*sha256 $want_ud$" "$work/qcow2.txt" &&
    grep -q "^            stylus.site.projectName = edge-demo$" "$work/qcow2.txt" &&
    grep -q "^squashfs    /rootfs.squashfs on COS_RECOVERY: .*, zstd level 3, block size 1048576, " "$work/qcow2.txt" &&
    grep -q "^kernel      /boot/kernel on COS_RECOVERY" "$work/qcow2.txt" &&
    ! grep -q "aUAxxxxxxxxx0ChYCrO" "$work/qcow2.txt" &&
    pass "text report of the qcow2 (partitions as sgdisk -p lists them)" ||
    fail "text report of the qcow2 (partitions as sgdisk -p lists them)" "rc=$rc" "$(cat "$work/sgdisk-p.txt" "$work/qcow2.txt" "$work/qcow2-text.err")"

finish inspect_test
