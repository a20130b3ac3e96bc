#!/usr/bin/env bash
# `edgeforge build uki`: signed Unified Kernel Images and the systemd-boot ESP tree, judged by
# tools we did not write. sbverify accepts every EFI binary with the db certificate and refuses
# it with another; objdump lists the UKI sections; systemd-measure 252 computes, from the
# sections read back out of the UKI, the PCR 11 values edgeforge predicted and signed; the .pcrsig
# signature verifies with openssl; OVMF in Setup Mode enrols the keys from the tree and boots it
# (systemd-boot, then the UKI) into the whole OS carried as the initrd, with Secure Boot
# enforced, and then refuses a UKI signed by another key. Also: two builds are byte-identical,
# and missing keys are bad input found before any work.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PATH=$PATH:/usr/sbin:/sbin
need_tools sbattach sbsign sbverify objdump openssl python3 qemu-system-x86_64 mkfs.fat mcopy
measure=/usr/lib/systemd/systemd-measure

project=$work/project
cp -r "$src/examples/basic" "$project"
cd "$project" || exit 1
config=(--config edgeforge.yaml)
tree=build/edge-demo-installer-uki

# Missing keys: exit 2 before any work, naming the directory and `keys generate`.
"$bin" "${config[@]}" build uki >"$work/nokeys.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/nokeys.out")"
check "build uki without keys is bad input (exit 2)" test "$code" -eq 2
detail="$(cat "$work/nokeys.out")"
check "the error names keys generate" grep -q "edgeforge keys generate" "$work/nokeys.out"
detail="$(ls build 2>&1)"
check "nothing is written without keys" test ! -e "$tree"

"$bin" keys generate --org ACME >/dev/null 2>&1 || { fail "keys generate"; finish uki; exit; }
# What the UKI tree cannot carry yet is refused when given for this build, not dropped.
tar -czf "$work/cluster.tgz" -C "$src/examples/basic" edgeforge.yaml
"$bin" "${config[@]}" build uki --dry-run --cluster-config "$work/cluster.tgz" \
    >"$work/refuse.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/refuse.out")"
check "build uki --cluster-config is refused (exit 2), naming the flag" \
    grep -q -- "--cluster-config.*not carried by build uki" "$work/refuse.out"

"$bin" --json "${config[@]}" build uki >"$work/build.json" 2>"$work/build.err"
code=$?
detail="exit $code: $(tail -5 "$work/build.err")"
check "build uki succeeds" test "$code" -eq 0
detail="$(cat "$work/build.err")"
check "settings of the project it cannot carry yet are named in a warning" \
    grep -q "edgeforge.yaml:.*user_data is not carried by build uki" "$work/build.err"
for file in EFI/BOOT/BOOTX64.EFI EFI/kairos/norole.efi EFI/kairos/norole_install-mode-interactive.efi \
    EFI/kairos/recovery.efi loader/loader.conf loader/entries/norole.conf \
    loader/keys/auto/PK.auth loader/keys/auto/KEK.auth loader/keys/auto/db.auth; do
    detail="missing $tree/$file"
    check "$file is written" test -s "$tree/$file"
done
detail="$(ls -a "$tree/.." 2>&1)"
check "no partial directory is left" test ! -e "$tree.partial"

# Authenticode: our db certificate accepts every binary, another certificate refuses them.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/other.key" -out "$work/other.pem" \
    -subj /CN=other -days 2 >/dev/null 2>&1
for efi in "$tree"/EFI/BOOT/BOOTX64.EFI "$tree"/EFI/kairos/*.efi; do
    name=${efi#"$tree"/}
    detail="$(sbverify --cert secureboot-keys/db.pem "$efi" 2>&1 | tail -2)"
    check "sbverify accepts $name with db.pem" sbverify --cert secureboot-keys/db.pem "$efi"
    detail="sbverify accepted $name with another certificate"
    check "sbverify refuses $name with another certificate" \
        bash -c '! sbverify --cert "$1" "$2" >/dev/null 2>&1' _ "$work/other.pem" "$efi"
done
sections=$(objdump -h "$tree/EFI/kairos/norole.efi")
for section in .osrel .cmdline .pcrpkey .pcrsig .initrd .linux .sbat; do
    detail="$sections"
    check "norole.efi (install) has $section" grep -q " $section " <<<"$sections"
done

# PCR 11: systemd-measure on the sections read back from the UKI gives the predicted values.
python3 - "$tree/EFI/kairos/norole.efi" "$work/sections" <<'PY'
import os, struct, sys
data = open(sys.argv[1], "rb").read()
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
pe = struct.unpack_from("<I", data, 0x3C)[0]
count = struct.unpack_from("<H", data, pe + 6)[0]
optional = struct.unpack_from("<H", data, pe + 20)[0]
table = pe + 24 + optional
for i in range(count):
    entry = table + 40 * i
    name = data[entry:entry + 8].rstrip(b"\0").decode()
    vsize, _, rsize, ptr = struct.unpack_from("<IIII", data, entry + 8)
    open(os.path.join(out, name.lstrip(".")), "wb").write(data[ptr:ptr + min(vsize, rsize)])
PY
s=$work/sections
"$measure" calculate --bank=sha256 --json=short --linux="$s/linux" --osrel="$s/osrel" \
    --cmdline="$s/cmdline" --initrd="$s/initrd" --pcrpkey="$s/pcrpkey" >"$work/measure.json" \
    2>"$work/measure.err"
python3 - "$work/measure.json" "$work/build.json" >"$work/pcr.out" 2>&1 <<'PY'
import json, sys
measured = {e["phase"]: e["hash"] for e in json.load(open(sys.argv[1]))["sha256"]}
build = json.load(open(sys.argv[2]))
entry = next(e for e in build["summary"]["entries"] if e["id"] == "install")
predicted = {p["phase"]: p["sha256"] for p in entry["pcr11"]}
print("measured ", measured)
print("predicted", predicted)
sys.exit(0 if measured == predicted and len(measured) == 4 else 1)
PY
code=$?
detail="$(cat "$work/pcr.out" "$work/measure.err")"
check "systemd-measure computes the PCR 11 values edgeforge predicted" test "$code" -eq 0

# .pcrsig: every signature verifies with the public key over its policy digest.
python3 - "$s/pcrsig" "$work/pcrsig" <<'PY'
import base64, json, os, sys
sig = json.load(open(sys.argv[1]))
os.makedirs(sys.argv[2], exist_ok=True)
for i, entry in enumerate(sig["sha256"]):
    open(f"{sys.argv[2]}/pol{i}", "wb").write(bytes.fromhex(entry["pol"]))
    open(f"{sys.argv[2]}/sig{i}", "wb").write(base64.b64decode(entry["sig"]))
PY
verified=0
for i in 0 1 2 3; do
    openssl dgst -sha256 -verify secureboot-keys/tpm2-pcr-public.pem \
        -signature "$work/pcrsig/sig$i" "$work/pcrsig/pol$i" >/dev/null 2>&1 &&
        verified=$((verified + 1))
done
detail="$verified of 4 signatures verified"
check "the .pcrsig signatures verify with tpm2-pcr-public.pem" test "$verified" -eq 4

# Reproducible: a second build (cache warm) gives the same bytes.
sha_before=$(cd "$tree" && find . -type f | sort | xargs sha256sum)
"$bin" "${config[@]}" build uki >/dev/null 2>&1
sha_after=$(cd "$tree" && find . -type f | sort | xargs sha256sum)
detail="$(diff <(echo "$sha_before") <(echo "$sha_after"))"
check "a second build is byte-identical" test "$sha_before" = "$sha_after"

# arm64: the stub from systemd-boot-efi:arm64, the gzip kernel inflated; signed (AAVMF boots
# the arm64 UKI, enrolling its keys, in uki_iso_test).
arm=$work/arm
"$bin" "${config[@]}" build uki --arch arm64 --base "oci:$fixtures/base-arm64:latest" \
    --agent "oci:$fixtures/agent-arm64:latest" --output-dir "$arm" >"$work/arm.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/arm.out")"
check "build uki --arch arm64 succeeds" test "$code" -eq 0
armtree=$arm/edge-demo-installer-uki
for efi in "$armtree"/EFI/BOOT/BOOTAA64.EFI "$armtree"/EFI/kairos/norole.efi; do
    detail="$(sbverify --cert secureboot-keys/db.pem "$efi" 2>&1 | tail -2)"
    check "sbverify accepts arm64 ${efi#"$armtree"/}" sbverify --cert secureboot-keys/db.pem "$efi"
done

# Secure Boot with our own keys: OVMF in Setup Mode, systemd-boot enrols PK/KEK/db
# (secure-boot-enroll force), the machine resets, and the UKI boots with Secure Boot enforced.
"$bin" "${config[@]}" build uki --secure-boot-enroll force >"$work/force.out" 2>&1
detail="$(tail -3 "$work/force.out")"
check "build uki --secure-boot-enroll force succeeds" grep -qx "secure-boot-enroll force" \
    "$tree/loader/loader.conf"
# OVMF boots systemd-boot from a FAT ESP holding the tree, which starts the default (install)
# UKI: the whole OS is the initrd.
esp=$work/esp.img
kib=$(( $(du -sk "$tree" | cut -f1) + 8192 ))
rm -f "$work/vars.fd"
mkfs.fat -C "$esp" "$kib" >/dev/null && mcopy -s -i "$esp" "$tree"/EFI "$tree"/loader ::/
"$src/tests/e2e/qemu-boot" --arch amd64 --firmware ovmf-setup --machine q35 --timeout 900 \
    --vars "$work/vars.fd" --reboot --disk "$esp" --snapshot --log "$work/secure.log" \
    --expect "EDGEFORGE: secureboot enabled" --expect "EDGEFORGE: uki rootfs is initramfs" \
    --expect "EDGEFORGE: rootfs /etc/edgeforge/overlay-marker present" --expect "install-mode" \
    --expect "EDGEFORGE: done" --fail "Security Violation" >"$work/secure.out" 2>&1
code=$?
detail="$(tail -15 "$work/secure.out")"
check "systemd-boot enrols our keys and the UKI boots with Secure Boot enforced" test "$code" -eq 0

# The same enrolled machine refuses a UKI signed with another key.
cp "$tree/EFI/kairos/norole.efi" "$work/unsigned.efi" &&
    sbattach --remove "$work/unsigned.efi" >/dev/null 2>&1 &&
    sbsign --key "$work/other.key" --cert "$work/other.pem" --output "$work/other.efi" \
        "$work/unsigned.efi" >/dev/null 2>&1 &&
    mcopy -o -i "$esp" "$work/other.efi" ::/EFI/kairos/norole.efi
code=$?
detail="exit $code"
check "a UKI signed with another key replaces norole.efi (install) on the ESP" test "$code" -eq 0
"$src/tests/e2e/qemu-boot" --arch amd64 --firmware ovmf-setup --machine q35 --timeout 600 \
    --vars "$work/vars.fd" --disk "$esp" --snapshot --log "$work/refused.log" \
    --expect "Security Violation" --fail "EDGEFORGE: init" >"$work/refused.out" 2>&1
code=$?
detail="$(tail -15 "$work/refused.out")"
check "the enrolled machine refuses a UKI signed with another key" test "$code" -eq 0

# CanvOS's IS_UKI=true provider image (+uki-provider-image): build provider --uki adds the signed
# UKI of each image's own root filesystem (base + Kubernetes + agent + /etc overlay + metadata)
# under /trusted-boot, the tree kairos-agent's UKI upgrade installs. Missing keys stop it first.
rm -rf build/provider-images
"$bin" "${config[@]}" build provider --uki --keys "$work/no-such-keys" >"$work/prov-nokeys.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/prov-nokeys.out")"
check "build provider --uki without keys is bad input (exit 2), nothing written" \
    bash -c '[ "$1" -eq 2 ] && grep -q "edgeforge keys generate" "$2" && [ ! -e build/provider-images ]' \
    _ "$code" "$work/prov-nokeys.out"
# The fixture's init reports the paths listed in /etc/edgeforge-fixture/expect: the provider's
# own files are added to it through the /etc overlay.
mkdir -p overlays/files/etc/edgeforge-fixture
printf 'present /etc/edgeforge/provider-release\npresent /usr/local/bin/k3s\npresent /etc/edgeforge/overlay-marker\n' \
    >overlays/files/etc/edgeforge-fixture/expect
export SOURCE_DATE_EPOCH=1700000000
"$bin" --json "${config[@]}" build provider --uki --branding "ACME Edge" >"$work/prov.json" \
    2>"$work/prov.err"
code=$?
detail="exit $code: $(tail -5 "$work/prov.err")"
check "build provider --uki succeeds" test "$code" -eq 0
layout=build/provider-images
ptag=k3s-1.30.4-v4.5.0
python3 - "$layout" "$ptag" "$work/prov.json" "$work/provider-tb" >"$work/prov-check.txt" 2>&1 <<'PY'
import json, os, sys, tarfile
layout, tag, result, out = sys.argv[1:5]
blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":")[1])
index = json.load(open(os.path.join(layout, "index.json")))
[entry] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
manifest = json.load(open(blob(entry["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
history = [h["created_by"] for h in config["history"]]
assert history[-1] == "edgeforge: signed UKI -> /trusted-boot", history
assert history[-2] == "edgeforge: provider metadata", history
with tarfile.open(blob(manifest["layers"][-1]["digest"])) as layer:
    names = sorted(m.name for m in layer.getmembers() if m.isfile())
    assert names == ["trusted-boot/EFI/BOOT/BOOTX64.EFI", "trusted-boot/EFI/kairos/norole.efi",
                     "trusted-boot/loader/entries/norole.conf", "trusted-boot/loader/keys/auto/KEK.auth",
                     "trusted-boot/loader/keys/auto/PK.auth", "trusted-boot/loader/keys/auto/db.auth",
                     "trusted-boot/loader/loader.conf"], names
    layer.extractall(out)
conf = open(os.path.join(out, "trusted-boot/loader/entries/norole.conf")).read()
assert "title ACME Edge\n" in conf and "efi /EFI/kairos/norole.efi\n" in conf, conf
assert "cmdline install-mode\n" in conf, conf
assert "default norole.conf\n" in open(os.path.join(out, "trusted-boot/loader/loader.conf")).read()
doc = json.load(open(result))
[tb] = doc["images"][0]["trusted_boot"]
assert tb["arch"] == "amd64" and [e["file"] for e in tb["entries"]] == ["norole"], tb
assert len(tb["entries"][0]["pcr11"]) == 4, tb
print(doc["images"][0]["digest"])
PY
code=$?
detail="$(cat "$work/prov-check.txt")"
check "the provider image's last layer is /trusted-boot: systemd-boot, norole.efi (install-mode, titled by --branding), loader.conf, the keys" \
    test "$code" -eq 0
pdigest=$(tail -1 "$work/prov-check.txt")
tb=$work/provider-tb/trusted-boot
for efi in EFI/BOOT/BOOTX64.EFI EFI/kairos/norole.efi; do
    detail="$(sbverify --cert secureboot-keys/db.pem "$tb/$efi" 2>&1 | tail -2)"
    check "sbverify accepts the provider image's $efi" sbverify --cert secureboot-keys/db.pem "$tb/$efi"
done
"$bin" --json "${config[@]}" build provider --uki --branding "ACME Edge" >"$work/prov2.json" \
    2>"$work/prov2.err"
detail="$(tail -3 "$work/prov2.err")"
check "a rebuild gives the same image digest (SOURCE_DATE_EPOCH)" \
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["images"][0]["digest"] == sys.argv[2]' \
    "$work/prov2.json" "$pdigest"
# The machine that enrolled our keys above boots the provider's UKI with Secure Boot enforced,
# into the provider's root filesystem: Kubernetes, the /etc overlay and the metadata are there.
pesp=$work/provider-esp.img
kib=$(( $(du -sk "$tb" | cut -f1) + 8192 ))
mkfs.fat -C "$pesp" "$kib" >/dev/null && mcopy -s -i "$pesp" "$tb"/EFI "$tb"/loader ::/
"$src/tests/e2e/qemu-boot" --arch amd64 --firmware ovmf-setup --machine q35 --timeout 600 \
    --vars "$work/vars.fd" --disk "$pesp" --snapshot --log "$work/provider-boot.log" \
    --expect "EDGEFORGE: secureboot enabled" --expect "EDGEFORGE: uki rootfs is initramfs" \
    --expect "EDGEFORGE: rootfs /etc/edgeforge/provider-release present" \
    --expect "EDGEFORGE: rootfs /usr/local/bin/k3s present" \
    --expect "EDGEFORGE: rootfs /etc/edgeforge/overlay-marker present" \
    --expect "EDGEFORGE: done" --fail "Security Violation" >"$work/provider-boot.out" 2>&1
code=$?
detail="$(tail -15 "$work/provider-boot.out")"
check "the provider's UKI boots Secure Boot enforced into base + k3s + /etc overlay + metadata" \
    test "$code" -eq 0
unset SOURCE_DATE_EPOCH
# Without SOURCE_DATE_EPOCH every provider build has a new build id, so its UKI root filesystem
# is never reused: builds leave no whole-OS step entry behind in the cache.
for run in 1 2; do
    "$bin" "${config[@]}" --cache-dir "$work/nosde-cache" build provider --uki \
        >"$work/nosde$run.out" 2>&1
done
detail="$(tail -3 "$work/nosde2.out"; ls "$work/nosde-cache/steps/rootfs" 2>&1)"
check "without SOURCE_DATE_EPOCH, provider --uki builds leave no root filesystem entry in the cache" \
    bash -c '[ -z "$(find "$1" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)" ] && grep -q trusted-boot "$2"' \
    _ "$work/nosde-cache/steps/rootfs" "$work/nosde2.out"

finish uki
