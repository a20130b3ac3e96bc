#!/usr/bin/env bash
# `edgeforge build iso --uki` (CanvOS IS_UKI=true): the Trusted Boot installer ISO, judged by
# tools we did not write. xorriso reads the volume (UKI_ISO_INSTALL, EFI-only El Torito) and
# the files beside the OS; sgdisk and mtools read the EFI system partition, where sbverify
# accepts every EFI binary with the db certificate; OVMF boots the ISO from a CD drive through
# systemd-boot into the UKI, whose OS finds its medium by label and reports the user-data,
# content and cluster config; in Setup Mode the medium enrols its keys and boots with Secure Boot
# enforced (amd64 and arm64); with a TPM (swtpm) PCR 11 holds the value edgeforge predicted.
# Also: reproducible bytes, the entry count sets the size, a UKI over uki.max_efi_size and
# impossible entry choices are bad input found before anything is written, and a CanvOS project
# with IS_UKI=true gets CanvOS's medium.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PATH=$PATH:/usr/sbin:/sbin
need_tools xorriso sgdisk mdir mcopy sbverify sbsign sbattach openssl python3 qemu-system-x86_64

project=$work/project
cp -r "$src/examples/basic" "$project"
cd "$project" || exit 1
config=(--config edgeforge.yaml)
export SOURCE_DATE_EPOCH=1700000000
iso=build/edge-demo-installer.iso

"$bin" keys generate --org ACME >/dev/null 2>&1 || { fail "keys generate"; finish uki_iso; exit; }
printf 'bundle bytes %s\n' "$(date +%N)" >"$work/apps.tar.zst"
tar -czf "$work/cluster.tgz" -C "$src/examples/basic" edgeforge.yaml
printf 'stylus:\n  site: edge\n' >"$work/edge-config.yaml"
inputs=(--content "$work/apps.tar.zst" --cluster-config "$work/cluster.tgz"
    --edge-custom-config "$work/edge-config.yaml")

# Bad input before any work: a UKI over the firmware limit, an interactive default without
# that entry. Nothing is written under the final name and no temporary is left.
"$bin" "${config[@]}" build iso --uki --max-efi-size 4M >"$work/limit.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/limit.out")"
check "a UKI over --max-efi-size is bad input (exit 2)" test "$code" -eq 2
check "the error names uki.max_efi_size and the sizes" \
    grep -q "more than uki.max_efi_size (4.0 MiB)" "$work/limit.out"
detail="$(ls -A build 2>&1)"
check "nothing is left in build/ after the refusal" \
    bash -c '[ -z "$(ls -A build 2>/dev/null)" ]'
"$bin" "${config[@]}" build iso --uki --uki-entries install,recovery --interactive-default \
    --dry-run >"$work/entries.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/entries.out")"
check "an interactive default without that entry is bad input (exit 2)" test "$code" -eq 2
check "the error names uki.entries" grep -q "uki.entries.*has no interactive-install" \
    "$work/entries.out"

"$bin" "${config[@]}" build iso --uki --uki-entries install,install --dry-run \
    >"$work/twice.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/twice.out")"
check "an entry named twice is bad input (exit 2)" \
    bash -c '[ "$1" -eq 2 ] && grep -q "uki.entries names install twice" "$2"' _ "$code" \
    "$work/twice.out"
"$bin" "${config[@]}" build iso --uki --branding $'ACME\ntimeout 0' --dry-run \
    >"$work/branding.out" 2>&1
code=$?
detail="exit $code: $(cat "$work/branding.out")"
check "a line break in the branding is bad input (exit 2), naming --branding" \
    bash -c '[ "$1" -eq 2 ] && grep -q -- "--branding: uki.branding holds a control character" "$2"' \
    _ "$code" "$work/branding.out"
"$bin" "${config[@]}" build iso --uki "${inputs[@]}" --dry-run >"$work/plan.out" 2>&1
detail="$(cat "$work/plan.out")"
check "the plan names the medium's volume and what it carries" \
    grep -q "volume UKI_ISO_INSTALL, EFI only" "$work/plan.out"

"$bin" --json "${config[@]}" build iso --uki "${inputs[@]}" >"$work/build.json" \
    2>"$work/build.err"
code=$?
detail="exit $code: $(tail -5 "$work/build.err")"
check "build iso --uki succeeds" test "$code" -eq 0
detail="$(ls -A build)"
check "the ISO and its .sha256 are written, no temporary is left" \
    test "$(ls -A build | tr '\n' ' ')" = "edge-demo-installer.iso edge-demo-installer.iso.sha256 "
detail="$(cat "$iso.sha256")"
check "the .sha256 matches" bash -c 'cd build && sha256sum -c --quiet edge-demo-installer.iso.sha256'

# The ISO 9660 side: the volume Kairos's immucore looks for, no BIOS boot, the payload.
xorriso -indev "$iso" -pvd_info -report_el_torito plain >"$work/xorriso.out" 2>&1
detail="$(cat "$work/xorriso.out")"
check "xorriso: volume id UKI_ISO_INSTALL" grep -q "^Volume Id    : UKI_ISO_INSTALL" \
    "$work/xorriso.out"
check "xorriso: the El Torito boot entry is EFI (platform 0xef)" \
    grep -Eq "El Torito boot img :.*UEFI" "$work/xorriso.out"
check "xorriso: no BIOS boot entry" bash -c '! grep -Eq "El Torito boot img :.*BIOS" "$1"' _ \
    "$work/xorriso.out"
mkdir -p "$work/medium"
xorriso -osirrox on -indev "$iso" -extract / "$work/medium" >/dev/null 2>&1
for pair in "config.yaml:user-data" "opt/spectrocloud/content/apps.tar.zst:$work/apps.tar.zst" \
    "opt/spectrocloud/clusterconfig/cluster.tgz:$work/cluster.tgz" \
    ".edge_custom_config.yaml:$work/edge-config.yaml" \
    "SITE-README.txt:overlays/files-iso/SITE-README.txt"; do
    on=${pair%%:*} want=${pair#*:}
    detail="$(ls -la "$work/medium/$(dirname "$on")" 2>&1)"
    check "/$on on the ISO is $(basename "$want")" cmp -s "$work/medium/$on" "$want"
done

# The EFI system partition: GPT partition 2 (EF00) holding systemd-boot, the UKIs, the loader
# configuration and the keys; every EFI binary is signed with our db key.
sgdisk -p "$iso" >"$work/gpt.out" 2>&1
detail="$(cat "$work/gpt.out")"
check "sgdisk: partition 2 is an EFI system partition" grep -Eq "^ +2 .* EF00 " "$work/gpt.out"
read -r first last < <(sgdisk -i 2 "$iso" | awk '/First sector/{f=$3} /Last sector/{l=$3} END{print f, l}')
dd if="$iso" of="$work/esp.img" bs=512 skip="$first" count=$((last - first + 1)) status=none
mdir -/ -b -i "$work/esp.img" ::/ >"$work/esp.list" 2>&1
detail="$(cat "$work/esp.list")"
for file in EFI/BOOT/BOOTX64.EFI EFI/kairos/norole.efi EFI/kairos/norole_install-mode-interactive.efi \
    EFI/kairos/recovery.efi loader/loader.conf loader/entries/norole.conf \
    loader/keys/auto/PK.auth loader/keys/auto/KEK.auth loader/keys/auto/db.auth; do
    check "the ESP holds $file" grep -qx "::/$file" "$work/esp.list"
done
for efi in EFI/BOOT/BOOTX64.EFI EFI/kairos/norole.efi EFI/kairos/recovery.efi; do
    mcopy -o -i "$work/esp.img" "::/$efi" "$work/check.efi" 2>/dev/null
    detail="$(sbverify --cert secureboot-keys/db.pem "$work/check.efi" 2>&1 | tail -2)"
    check "sbverify accepts $efi from the ESP" sbverify --cert secureboot-keys/db.pem \
        "$work/check.efi"
done
mcopy -o -i "$work/esp.img" ::/loader/loader.conf "$work/loader.conf" 2>/dev/null
detail="$(cat "$work/loader.conf")"
check "loader.conf: the install entry is the default" grep -qx "default norole.conf" \
    "$work/loader.conf"

# Reproducible: a rebuild into another directory gives the same bytes.
"$bin" "${config[@]}" build iso --uki "${inputs[@]}" --output-dir "$work/again" \
    >"$work/again.out" 2>&1
detail="$(tail -3 "$work/again.out")"
check "a second build is byte-identical" cmp -s "$iso" "$work/again/edge-demo-installer.iso"

# One entry (CanvOS's medium) instead of three: every UKI carries the OS, so the size follows.
"$bin" "${config[@]}" build iso --uki --uki-entries install --output-dir "$work/one" \
    >"$work/one.out" 2>&1
three=$(stat -c %s "$iso")
one=$(stat -c %s "$work/one/edge-demo-installer.iso" 2>/dev/null || echo 0)
uki=$(python3 -c 'import json,sys; print(next(e["size"] for e in json.load(open(sys.argv[1]))["summary"]["entries"] if e["id"]=="install"))' "$work/build.json")
echo "     sizes: three entries $three bytes, one entry $one bytes, one UKI $uki bytes"
detail="three $three, one $one, UKI $uki"
check "each entry adds about one UKI to the ISO" \
    python3 -c 'import sys; t,o,u=map(int,sys.argv[1:]); sys.exit(0 if o>0 and abs((t-o)-2*u) < u/4 else 1)' \
    "$three" "$one" "$uki"

# OVMF boots the ISO from a CD drive, with a TPM (swtpm): systemd-boot, the install UKI, and its
# OS finds the medium by label and reads what is on it; what systemd-stub measured into PCR 11 is
# the value edgeforge predicted (sections only: the fixture's init runs no systemd-pcrphase).
want_user_data=$(sha256sum <user-data | cut -d' ' -f1)
want_bundle=$(sha256sum <"$work/apps.tar.zst" | cut -d' ' -f1)
want_cluster=$(sha256sum <"$work/cluster.tgz" | cut -d' ' -f1)
want_pcr=$(python3 -c 'import json,sys; print(next(e["pcr11_after_stub"] for e in json.load(open(sys.argv[1]))["summary"]["entries"] if e["id"] == "install"))' "$work/build.json")
tpm=()
if command -v swtpm >/dev/null; then
    mkdir -p "$work/tpm"
    swtpm socket --tpm2 --tpmstate dir="$work/tpm" --ctrl type=unixio,path="$work/tpm/sock" \
        --flags not-need-init >"$work/swtpm.log" 2>&1 &
    swtpm_pid=$!
    for _ in $(seq 50); do [ -S "$work/tpm/sock" ] && break; sleep 0.1; done
    tpm=(-- -chardev "socket,id=chrtpm,path=$work/tpm/sock" -tpmdev emulator,id=tpm0,chardev=chrtpm
        -device tpm-tis,tpmdev=tpm0)
fi
"$src/tests/e2e/qemu-boot" --arch amd64 --firmware ovmf --machine q35 --timeout 600 \
    --cdrom "$iso" --log "$work/boot.log" \
    --expect "EDGEFORGE: uki rootfs is initramfs" \
    --expect "EDGEFORGE: medium dev=/dev/sr0 label=UKI_ISO_INSTALL fstype=iso9660" \
    --expect "EDGEFORGE: config.yaml sha256=$want_user_data" \
    --expect "EDGEFORGE: content apps.tar.zst size=$(stat -c %s "$work/apps.tar.zst") sha256=$want_bundle" \
    --expect "EDGEFORGE: clusterconfig cluster.tgz size=$(stat -c %s "$work/cluster.tgz") sha256=$want_cluster" \
    --expect "EDGEFORGE: rootfs /etc/edgeforge/overlay-marker present" \
    --expect "EDGEFORGE: done" "${tpm[@]}" >"$work/boot.out" 2>&1
code=$?
if [ -n "${swtpm_pid:-}" ]; then
    kill "$swtpm_pid" 2>/dev/null
    wait "$swtpm_pid" 2>/dev/null
fi
detail="$(tail -15 "$work/boot.out")"
check "OVMF boots the ISO; the UKI's OS reads user-data, content and cluster config from it" \
    test "$code" -eq 0
got_pcr=$(grep -a -o 'EDGEFORGE: pcr11 sha256=[0-9a-f]*' "$work/boot.log" | head -1 | cut -d= -f2)
detail="predicted ${want_pcr:-none}, measured ${got_pcr:-none} (swtpm: $(command -v swtpm || echo missing))"
check "PCR 11 measured at boot (OVMF, swtpm) is the value edgeforge predicted" \
    test -n "$want_pcr" -a "$want_pcr" = "$got_pcr"

# arm64: the UKI ISO (the stub from systemd-boot-efi:arm64) enrols its keys in AAVMF's Setup
# Mode (blank variables) and boots with Secure Boot enforced.
"$bin" "${config[@]}" build iso --uki --uki-entries install --secure-boot-enroll force \
    --arch arm64 --base "oci:$fixtures/base-arm64:latest" --agent "oci:$fixtures/agent-arm64:latest" \
    --output-dir "$work/arm" >"$work/arm.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/arm.out")"
check "build iso --uki --arch arm64 succeeds" test "$code" -eq 0
"$src/tests/e2e/qemu-boot" --arch arm64 --firmware aavmf --timeout 900 --vars "$work/aavmf.fd" \
    --reboot --cdrom "$work/arm/edge-demo-installer.iso" --log "$work/arm-secure.log" \
    --expect "EDGEFORGE: secureboot enabled" \
    --expect "EDGEFORGE: medium dev=/dev/sr0 label=UKI_ISO_INSTALL fstype=iso9660" \
    --expect "EDGEFORGE: done" --fail "Security Violation" >"$work/arm-secure.out" 2>&1
code=$?
detail="$(tail -15 "$work/arm-secure.out")"
check "AAVMF in Setup Mode enrols the keys from the arm64 ISO and boots it enforced" \
    test "$code" -eq 0

# Secure Boot with our own keys from the ISO (AUTO_ENROLL_SECUREBOOT_KEYS: secure-boot-enroll
# force): OVMF in Setup Mode, systemd-boot (signed with our db key) enrols PK/KEK/db from the
# medium, resets, and boots the UKI enforced. The keys also hold a certificate added to db
# (--include-cert: a vendor's, Microsoft's UEFI CA), and the UKI is signed only by that other
# key: it boots, so the firmware enrolled the added certificate too.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/other.key" -out "$work/other.pem" \
    -subj /CN=other -days 2 >/dev/null 2>&1
"$bin" keys generate --org ACME --keys "$work/keys2" --include-cert "db=$work/other.pem" \
    >/dev/null 2>&1
"$bin" "${config[@]}" build iso --uki --keys "$work/keys2" --uki-entries install \
    --secure-boot-enroll force --output-dir "$work/other" >"$work/other.out" 2>&1
oiso=$work/other/edge-demo-installer.iso
read -r ofirst < <(sgdisk -i 2 "$oiso" | awk '/First sector/{print $3}')
mcopy -i "$oiso@@$((ofirst * 512))" ::/EFI/kairos/norole.efi "$work/install.efi" 2>/dev/null &&
    sbattach --remove "$work/install.efi" >/dev/null 2>&1 &&
    sbsign --key "$work/other.key" --cert "$work/other.pem" --output "$work/other.efi" \
        "$work/install.efi" >/dev/null 2>&1 &&
    mcopy -o -i "$oiso@@$((ofirst * 512))" "$work/other.efi" ::/EFI/kairos/norole.efi
code=$?
detail="exit $code: $(tail -3 "$work/other.out")"
check "the ISO's norole.efi (install) is replaced by one signed only with the added certificate's key" \
    test "$code" -eq 0
# This one boots as a disk (virtio): the ISO is also the image to write to a USB stick or to
# attach to a VM as its disk (`build disk` makes no UKI disk; see README).
"$src/tests/e2e/qemu-boot" --arch amd64 --firmware ovmf-setup --machine q35 --timeout 900 \
    --vars "$work/vars2.fd" --reboot --disk "$oiso" --snapshot --log "$work/other.log" \
    --expect "EDGEFORGE: secureboot enabled" \
    --expect "EDGEFORGE: medium dev=/dev/vda" --expect "label=UKI_ISO_INSTALL fstype=iso9660" \
    --expect "EDGEFORGE: done" --fail "Security Violation" >"$work/other-boot.out" 2>&1
code=$?
detail="$(tail -15 "$work/other-boot.out")"
check "the ISO written to a disk enrols our keys (and the added db certificate): its UKI boots enforced from the disk" \
    test "$code" -eq 0

# A CanvOS project with IS_UKI=true: CanvOS's medium (one install entry titled BRANDING, CMDLINE
# on the command line, AUTO_ENROLL_SECUREBOOT_KEYS=true as force), from the .arg alone.
canvos=$work/canvos
mkdir -p "$canvos"
cp user-data "$canvos/user-data"
# Its keys in CanvOS's secure-boot/ layout, as +uki-genkey leaves them (no tpm2-pcr-public.pem).
sb=$canvos/secure-boot
mkdir -p "$sb/private-keys" "$sb/public-keys" "$sb/enrollment"
cp secureboot-keys/{PK,KEK,db}.key secureboot-keys/tpm2-pcr-private.pem "$sb/private-keys/"
cp secureboot-keys/{PK,KEK,db}.pem "$sb/public-keys/"
cp secureboot-keys/*.auth secureboot-keys/*.esl secureboot-keys/*.der "$sb/enrollment/"
cat >"$canvos/.arg" <<EOF
BASE_IMAGE=oci:$fixtures/base-amd64:latest
IS_UKI=true
BRANDING="ACME Edge"
CMDLINE=stylus.registration edgeforge.check=/etc/os-release
AUTO_ENROLL_SECUREBOOT_KEYS=true
EOF
(cd "$canvos" && "$bin" --json build iso --dry-run --agent "oci:$fixtures/agent-amd64:latest") \
    >"$work/canvos.json" 2>"$work/canvos.err"
code=$?
detail="exit $code: $(tail -3 "$work/canvos.err")"
check "the CanvOS IS_UKI=true project plans a UKI ISO" test "$code" -eq 0
python3 - "$work/canvos.json" >"$work/canvos.check" 2>&1 <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
entries = plan["entries"]
print(json.dumps(entries), plan["secure_boot_enroll"])
ok = (len(entries) == 1 and entries[0]["id"] == "install" and entries[0]["title"] == "ACME Edge"
      and entries[0]["cmdline"].endswith("install-mode stylus.registration edgeforge.check=/etc/os-release")
      and plan["secure_boot_enroll"] == "force" and plan["medium"] == "iso")
ok = ok and plan["keys_layout"] == "CanvOS secure-boot/"
sys.exit(0 if ok else 1)
PY
code=$?
detail="$(cat "$work/canvos.check")"
check "CanvOS's medium: one install entry titled BRANDING, CMDLINE appended, enrolment forced" \
    test "$code" -eq 0
(cd "$canvos" && "$bin" build iso --agent "oci:$fixtures/agent-amd64:latest") \
    >"$work/canvos-build.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/canvos-build.out")"
check "the CanvOS project builds its UKI ISO with the keys of secure-boot/" test "$code" -eq 0
ciso=$(ls "$canvos"/build/*.iso 2>/dev/null | head -1)
read -r cfirst < <(sgdisk -i 2 "$ciso" 2>/dev/null | awk '/First sector/{print $3}')
mcopy -o -i "$ciso@@$((${cfirst:-0} * 512))" ::/EFI/kairos/norole.efi "$work/canvos.efi" 2>/dev/null
detail="$(sbverify --cert "$sb/public-keys/db.pem" "$work/canvos.efi" 2>&1 | tail -2)"
check "sbverify accepts its UKI with secure-boot/public-keys/db.pem" \
    sbverify --cert "$sb/public-keys/db.pem" "$work/canvos.efi"

# IS_UKI=true: build disk is refused (no Trusted Boot disks), never a grub disk in its place;
# build provider plans the Trusted Boot provider images with the project's secure-boot/ keys.
(cd "$canvos" && "$bin" build disk --format raw --dry-run --agent "oci:$fixtures/agent-amd64:latest") \
    >"$work/canvos-refused.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/canvos-refused.out")"
check "IS_UKI=true: build disk is refused (exit 2), naming .arg:2 and the UKI ISO" \
    bash -c '[ "$1" -eq 2 ] && grep -q "\.arg:2:1: .*installed from the UKI ISO" "$2"' _ "$code" \
    "$work/canvos-refused.out"
(cd "$canvos" && "$bin" build provider --dry-run --agent "oci:$fixtures/agent-amd64:latest" \
    --k8s-distribution k3s --k8s-version 1.30.4 \
    --k8s-artifact "dir:$src/examples/basic/k8s/k3s-1.30.4") >"$work/canvos-provider.out" 2>&1
code=$?
detail="exit $code: $(tail -5 "$work/canvos-provider.out")"
check "IS_UKI=true: build provider plans /trusted-boot, signed with secure-boot/ (CanvOS layout)" \
    bash -c '[ "$1" -eq 0 ] && grep -q "Trusted Boot: norole.efi signed with .*secure-boot (CanvOS secure-boot/ layout)" "$2"' \
    _ "$code" "$work/canvos-provider.out"

# Keys that cannot sign are bad input before any work: an expired db certificate, a db.key that
# is not db.pem's key.
SOURCE_DATE_EPOCH=1000000000 "$bin" keys generate --org Old --days 1 --keys "$work/old" \
    >/dev/null 2>&1
"$bin" "${config[@]}" build iso --uki --keys "$work/old" >"$work/old.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/old.out")"
check "an expired db certificate is bad input (exit 2)" test "$code" -eq 2
check "the error says db.pem expired" grep -q "db.pem expired on Sep 10 01:46:40 2001 GMT" \
    "$work/old.out"
cp -r secureboot-keys "$work/mixed" && cp "$work/mixed/KEK.key" "$work/mixed/db.key"
"$bin" "${config[@]}" build iso --uki --keys "$work/mixed" >"$work/mixed.out" 2>&1
code=$?
detail="exit $code: $(tail -3 "$work/mixed.out")"
check "a db.key of another pair is bad input (exit 2)" test "$code" -eq 2
check "the error names both files" grep -q "mixed/db.key is not the private key of .*mixed/db.pem" \
    "$work/mixed.out"
detail="$(ls -A build)"
check "the refused builds left the earlier ISO as it was" \
    bash -c 'cd build && sha256sum -c --quiet edge-demo-installer.iso.sha256'

finish uki_iso
