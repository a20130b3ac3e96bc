#!/usr/bin/env bash
# End-to-end tests of `edgeforge content build|verify|ls`, judged by tools we did not write:
# three images with a shared base are pushed to Debian's docker-registry with skopeo and
# bundled; the shared blobs are stored once (tar t), the unpacked layout is read by skopeo
# (inspect and copy, by full reference), verify passes and then fails after one flipped byte
# and with the wrong key (ECDSA P-256 and Ed25519 keys from openssl, signatures cross-checked
# with openssl), two builds are byte-identical, a missing image or unreadable key fails with the
# right exit code and leaves nothing, --existing-bundle skips the base's blobs, --split-size
# parts reassemble (cat) to the same sha256, and `build iso` puts the bundle on the ISO under
# /opt/spectrocloud/content/ (xorriso).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools docker-registry skopeo openssl zstd tar xorriso python3
export EDGEFORGE_FIXTURES_DIR=$fixtures
source "$src/tests/e2e/registry.sh"
isolate_registry_test

# --- images: base, and app1/app2 = base layers + one layer each (a shared base) ------------
derive() { # derive BASE-LAYOUT OUT-LAYOUT NAME: the base image plus a layer with /opt/NAME
    python3 - "$1" "$2" "$3" <<'PY'
import gzip, hashlib, io, json, os, shutil, sys, tarfile
base, out, name = sys.argv[1:]
shutil.copytree(base, out)
blobs = os.path.join(out, "blobs", "sha256")
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, digest), "wb").write(data)
    return "sha256:" + digest, len(data)
def read(digest):
    return open(os.path.join(blobs, digest[7:]), "rb").read()
index = json.load(open(os.path.join(out, "index.json")))
manifest = json.loads(read(index["manifests"][0]["digest"]))
config = json.loads(read(manifest["config"]["digest"]))
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
    payload = (name + " payload\n").encode() * 1000
    info = tarfile.TarInfo("opt/" + name)
    info.size, info.mtime = len(payload), 1700000000
    tar.addfile(info, io.BytesIO(payload))
layer = gzip.compress(raw.getvalue(), mtime=0)
config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
digest, size = blob(layer)
manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": digest, "size": size})
cdigest, csize = blob(json.dumps(config).encode())
manifest["config"].update(digest=cdigest, size=csize)
mdigest, msize = blob(json.dumps(manifest).encode())
index["manifests"][0].update(digest=mdigest, size=msize)
index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "1.0"}
json.dump(index, open(os.path.join(out, "index.json"), "w"))
PY
}
# unique_blobs LAYOUT:TAG...: the digests of every manifest, config and layer, one per line.
unique_blobs() {
    python3 - "$@" <<'PY'
import json, os, sys
seen = set()
for spec in sys.argv[1:]:
    layout, tag = spec.rsplit(":", 1)
    read = lambda d: json.load(open(os.path.join(layout, "blobs", "sha256", d[7:])))
    for entry in json.load(open(os.path.join(layout, "index.json")))["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag:
            continue
        manifest = read(entry["digest"])
        seen.update([entry["digest"], manifest["config"]["digest"]] +
                    [layer["digest"] for layer in manifest["layers"]])
print("\n".join(sorted(seen)))
PY
}
mkdir -p "$work/images"
cp -r "$fixtures/base-amd64" "$work/images/base"
python3 - "$work/images/base/index.json" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))
index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": "1.0"}
json.dump(index, open(sys.argv[1], "w"))
PY
derive "$work/images/base" "$work/images/app1" app1
derive "$work/images/base" "$work/images/app2" app2

port=$(free_port)
reg=127.0.0.1:$port
start_registry plain "$port"
for name in base app1 app2; do
    skopeo copy -q --dest-tls-verify=false "oci:$work/images/$name:1.0" "docker://$reg/edge/$name:1.0" ||
        { echo "seeding $name failed"; exit 1; }
done
insecure=(--insecure-registry "$reg")
expected_blobs=$(unique_blobs "$work/images/base:1.0" "$work/images/app1:1.0" "$work/images/app2:1.0" | wc -l)
all_blobs=$(for n in base app1 app2; do unique_blobs "$work/images/$n:1.0"; done | wc -l)

# --- keys -------------------------------------------------------------------------------
keys=$work/keys
mkdir -p "$keys"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/ec.pem" 2>/dev/null
openssl pkey -in "$keys/ec.pem" -pubout -out "$keys/ec.pub" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$keys/ed.pem" 2>/dev/null
openssl pkey -in "$keys/ed.pem" -pubout -out "$keys/ed.pub" 2>/dev/null

# --- a bundle of three images, signed with ECDSA ------------------------------------------
proj=$work/proj
cp -r "$src/examples/basic" "$proj"
cat >"$proj/images.txt" <<TXT
# the edge apps
$reg/edge/base:1.0

$reg/edge/app1:1.0   # app one
docker://$reg/edge/app2:1.0
TXT
cd "$proj"
ef() { "$bin" "${insecure[@]}" "$@"; }
ef content build --name apps --images-file images.txt --sign "$keys/ec.pem" >"$work/build.log" 2>&1
rc=$?
out=$proj/build/content-apps
bundle=$out/apps.tar.zst
detail="rc=$rc $(tail -5 "$work/build.log")"
check "content build: 3 images from a registry, signed" \
    test "$rc" = 0 -a -f "$bundle" -a -f "$bundle.sha256" -a -f "$bundle.sig"
zstd -dc "$bundle" | tar t >"$work/members.txt"
stored=$(grep -c '^blobs/sha256/.' "$work/members.txt")
detail="stored $stored blobs, expected $expected_blobs unique of $all_blobs"
check "shared blobs stored once ($expected_blobs unique of $all_blobs referenced)" \
    test "$stored" = "$expected_blobs" -a "$all_blobs" -gt "$expected_blobs" -a -z "$(sort "$work/members.txt" | uniq -d)"
check "bundle.json is the first member" test "$(head -1 "$work/members.txt")" = bundle.json
(cd "$out" && sha256sum -c --quiet apps.tar.zst.sha256) && pass ".sha256 checks with sha256sum" ||
    fail ".sha256 checks with sha256sum"

mkdir -p "$work/unpacked"
zstd -dc "$bundle" | tar x -C "$work/unpacked"
want=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/edge/app1:1.0")
got=$(skopeo inspect --format '{{.Digest}}' "oci:$work/unpacked:$reg/edge/app1:1.0" 2>&1)
detail="registry $want, bundle $got"
check "skopeo inspect reads the unpacked layout by full reference (same digest)" test "$want" = "$got"
detail=$(skopeo copy -q "oci:$work/unpacked:$reg/edge/app2:1.0" "dir:$work/copied" 2>&1)
check "skopeo copy oci:DIR:REF dir: (every blob verified)" test -f "$work/copied/manifest.json"

ef content verify "$bundle" --pubkey "$keys/ec.pub" >"$work/verify.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify.log")"
check "verify: checksum and ECDSA signature" test "$rc" = 0
hex=$(cut -d' ' -f1 "$bundle.sha256")
printf 'sha256:%s' "$hex" >"$work/signed.txt"
detail=$(openssl dgst -sha256 -verify "$keys/ec.pub" -signature "$bundle.sig" "$work/signed.txt" 2>&1)
check "openssl dgst verifies the ECDSA signature over 'sha256:<hex>'" test "$detail" = "Verified OK"
ef content verify "$bundle" --pubkey "$keys/ed.pub" >"$work/verify-wrong.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify-wrong.log")"
check "verify: the wrong key fails (exit 1)" \
    test "$rc" = 1 -a -n "$(grep 'signature apps.tar.zst.sig does not match' "$work/verify-wrong.log")"
mkdir -p "$work/flip" && cp "$bundle" "$bundle.sha256" "$bundle.sig" "$work/flip/"
python3 - "$work/flip/apps.tar.zst" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 1]))
PY
ef content verify "$work/flip/apps.tar.zst" --pubkey "$keys/ec.pub" >"$work/verify-flip.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify-flip.log")"
check "verify: one flipped byte fails (exit 1) naming the checksum" \
    test "$rc" = 1 -a -n "$(grep 'but apps.tar.zst.sha256 says' "$work/verify-flip.log")"
ef content verify "$work/nope.tar.zst" >"$work/verify-missing.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify-missing.log")"
check "verify: a missing bundle is exit 2" test "$rc" = 2
ef content verify "$bundle" --pubkey "$work/nope.pub" >"$work/verify-nokey.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify-nokey.log")"
check "verify: an unreadable public key is exit 2 naming it" \
    test "$rc" = 2 -a -n "$(grep -F "$work/nope.pub" "$work/verify-nokey.log")"

ef content ls "$bundle" >"$work/ls.txt" 2>&1
detail=$(cat "$work/ls.txt")
check "content ls lists the 3 images with platform and digest" \
    test "$(grep -c "^$reg/edge/.*:1.0 *linux/amd64 *sha256:" "$work/ls.txt")" = 3
ef --json content ls "$bundle" >"$work/ls.json" 2>/dev/null
detail=$(head -c 400 "$work/ls.json")
check "content ls --json" test "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["images"]), d["images"][1]["ref"])' "$work/ls.json")" = "3 $reg/edge/app1:1.0"

# Reproducible: a second build (another output directory, one zstd worker instead of one per
# CPU; the ~30 MB stream spans several zstd jobs) gives the same bytes.
ef --output-dir "$work/again" content build --name apps --images-file images.txt --sign "$keys/ec.pem" --threads 1 >/dev/null 2>&1
detail="$(sha256sum "$bundle" "$work/again/content-apps/apps.tar.zst" 2>&1)"
check "reproducible: two builds (different worker counts) give identical archives" cmp -s "$bundle" "$work/again/content-apps/apps.tar.zst"

# --- charts and files from a manifest; every platform of a multi-platform layout -----------
mkdir -p "$work/m/chart/demo" "$work/m/scripts"
printf 'apiVersion: v2\nname: demo\nversion: 0.3.1\n' >"$work/m/chart/demo/Chart.yaml"
tar -C "$work/m/chart" -czf "$work/m/demo-0.3.1.tgz" demo
printf '#!/bin/sh\necho setup\n' >"$work/m/scripts/setup.sh"
# A layout whose index lists the amd64 and arm64 fixture bases under one tag.
python3 - "$fixtures" "$work/m/multi" <<'PY'
import hashlib, json, os, shutil, sys
fixtures, out = sys.argv[1:]
os.makedirs(os.path.join(out, "blobs", "sha256"))
entries = []
for arch in ("amd64", "arm64"):
    src = os.path.join(fixtures, "base-" + arch)
    for name in os.listdir(os.path.join(src, "blobs", "sha256")):
        shutil.copy(os.path.join(src, "blobs", "sha256", name), os.path.join(out, "blobs", "sha256", name))
    entry = json.load(open(os.path.join(src, "index.json")))["manifests"][0]
    entry.pop("annotations", None)
    entries.append(entry)
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": entries}).encode()
digest = hashlib.sha256(index).hexdigest()
open(os.path.join(out, "blobs", "sha256", digest), "wb").write(index)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
           "digest": "sha256:" + digest, "size": len(index),
           "annotations": {"org.opencontainers.image.ref.name": "2.0"}}]},
          open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
skopeo copy -q "oci:$fixtures/agent-amd64:latest" "docker-archive:$work/m/agent.tar:edge/agent:1"
cat >"$work/m/bundle.yaml" <<YAML
images:
  - {ref: "oci:$work/m/multi:2.0", name: edge/os:2.0}
  - {ref: "docker-archive:$work/m/agent.tar", name: edge/agent:1}
charts:
  - demo-0.3.1.tgz
files:
  - path: scripts/setup.sh
    dest: bin/setup.sh
    mode: "0755"
YAML
ef --output-dir "$work/m/out" content build --name extras --manifest "$work/m/bundle.yaml" --all-platforms >"$work/m.log" 2>&1
rc=$?
extras=$work/m/out/content-extras/extras.tar.zst
ef content ls "$extras" >"$work/m-ls.txt" 2>&1
detail="rc=$rc $(cat "$work/m.log" "$work/m-ls.txt")"
check "--manifest: chart (name:version from Chart.yaml) and file listed; --all-platforms keeps both" \
    test "$rc" = 0 -a -n "$(grep -E '^charts/demo-0.3.1.tgz +demo:0.3.1' "$work/m-ls.txt")" \
    -a -n "$(grep -E '^files/bin/setup.sh +0755' "$work/m-ls.txt")" \
    -a -n "$(grep -E '^edge/os:2.0 +linux/amd64,linux/arm64/v8 ' "$work/m-ls.txt")"
mkdir -p "$work/m/unpacked"
zstd -dc "$extras" | tar x -C "$work/m/unpacked"
detail=$(ls -lR "$work/m/unpacked/files" 2>&1)
check "chart and file unpack byte-identical, file mode kept" \
    test -x "$work/m/unpacked/files/bin/setup.sh" -a "$(cmp "$work/m/unpacked/charts/demo-0.3.1.tgz" "$work/m/demo-0.3.1.tgz" && cmp "$work/m/unpacked/files/bin/setup.sh" "$work/m/scripts/setup.sh" && echo same)" = same
detail=$(skopeo inspect --raw "oci:$work/m/unpacked:edge/os:2.0" 2>&1 | head -c 300)
check "skopeo reads the multi-platform index from the bundle" \
    test "$(skopeo inspect --raw "oci:$work/m/unpacked:edge/os:2.0" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["manifests"]))')" = 2
detail=$(skopeo copy -q --all "oci:$work/m/unpacked:edge/os:2.0" "oci:$work/m/copy:x" 2>&1)
check "skopeo copy --all copies both platforms out of the bundle" test -f "$work/m/copy/index.json"
detail=$(skopeo copy -q "oci:$work/m/unpacked:edge/agent:1" "dir:$work/m/agent-copy" 2>&1)
check "a docker-archive image gets an OCI manifest skopeo copies out of the bundle" \
    test -f "$work/m/agent-copy/manifest.json"

# The same multi-platform image from the registry (the index pulled as it is).
skopeo copy -q --all --dest-tls-verify=false "oci:$work/m/multi:2.0" "docker://$reg/edge/os:2.0" >/dev/null 2>&1
ef --output-dir "$work/m/reg" content build --name os --image "$reg/edge/os:2.0" --all-platforms >"$work/m-reg.log" 2>&1
rc=$?
mkdir -p "$work/m/reg-unpacked"
zstd -dc "$work/m/reg/content-os/os.tar.zst" 2>/dev/null | tar x -C "$work/m/reg-unpacked" 2>/dev/null
want=$(skopeo inspect --raw --tls-verify=false "docker://$reg/edge/os:2.0" 2>/dev/null | sha256sum | cut -d' ' -f1)
got=$(skopeo inspect --raw "oci:$work/m/reg-unpacked:$reg/edge/os:2.0" 2>/dev/null | sha256sum | cut -d' ' -f1)
detail="rc=$rc $(cat "$work/m-reg.log") registry index $want, bundle $got"
check "--all-platforms from a registry: the index kept byte for byte, both platforms copyable" \
    test "$rc" = 0 -a "$want" = "$got" -a -n "$(skopeo copy -q --all "oci:$work/m/reg-unpacked:$reg/edge/os:2.0" "oci:$work/m/reg-copy:x" 2>&1 && echo ok)"

# --- errors: nothing left behind ----------------------------------------------------------
mkdir -p "$work/err" && cd "$work/err"
printf '%s\n' "$reg/edge/base:1.0" "# missing next" "$reg/edge/nope:1.0" >images.txt
ef content build --name bad --images-file images.txt >"$work/missing.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/missing.log"); $(ls -A)"
check "a missing image: exit 1, names file:line and image, nothing under build/" \
    test "$rc" = 1 -a -n "$(grep -F "images.txt:3: cannot bundle image $reg/edge/nope:1.0" "$work/missing.log")" -a ! -e build
ef content build --name bad --images-file images.txt --dry-run >"$work/dry.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/dry.log"); $(ls -A)"
check "--dry-run: the plan names every image and where it was listed, pulls and writes nothing" \
    test "$rc" = 0 -a -n "$(grep -F "image  $reg/edge/nope:1.0  <- docker://$reg/edge/nope:1.0 (images.txt:3)" "$work/dry.log")" -a ! -e build
printf '%s\n' "$reg/edge/base:1.0" "$reg/Edge/Base:1.0" >malformed.txt
ef content build --name bad --images-file malformed.txt >"$work/malformed.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/malformed.log")"
check "a malformed reference: exit 2 naming file:line" \
    test "$rc" = 2 -a -n "$(grep -F "malformed.txt:2: invalid image reference" "$work/malformed.log")" -a ! -e build
ef content build --name bad --image "$reg/edge/base:1.0" --sign "$work/no-such-key.pem" >"$work/nokey.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/nokey.log")"
check "an unreadable signing key: exit 2 naming it, nothing under build/" \
    test "$rc" = 2 -a -n "$(grep -F "$work/no-such-key.pem" "$work/nokey.log")" -a ! -e build
# Ctrl-C while the archive is being written: the staging directory goes, nothing is published.
# (Level 19 on one thread keeps the writer busy for seconds; the signal is sent once the staging
# directory exists.)
"$bin" "${insecure[@]}" content build --name slow --level 19 --threads 1 --images-file "$proj/images.txt" >"$work/int.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    compgen -G "build/.content-slow-*" >/dev/null && break
    sleep 0.05
done
staged=$(compgen -G "build/.content-slow-*")
kill -INT "$pid"
wait "$pid"
rc=$?
detail="rc=$rc staged=$staged left: $(ls -A build 2>&1)"
check "Ctrl-C while writing: staging removed, no bundle published" \
    test -n "$staged" -a "$rc" != 0 -a -z "$(ls -A build)"
cd "$proj"

# --- incremental: a base bundle, then the apps without its blobs --------------------------
ef --output-dir "$work/inc" content build --name base --image "$reg/edge/base:1.0" >/dev/null 2>&1
ef --output-dir "$work/inc" content build --name apps --image "$reg/edge/app1:1.0" \
    --image "$reg/edge/app2:1.0" --existing-bundle "$work/inc/content-base/base.tar.zst" >"$work/inc.log" 2>&1
rc=$?
ef --output-dir "$work/full" content build --name apps --image "$reg/edge/app1:1.0" \
    --image "$reg/edge/app2:1.0" >/dev/null 2>&1
inc=$work/inc/content-apps/apps.tar.zst
full=$work/full/content-apps/apps.tar.zst
base_layers=$(unique_blobs "$work/images/base:1.0" | wc -l)
# The base image's layers are shared; its manifest and config are not part of app1/app2.
inc_blobs=$(zstd -dc "$inc" 2>/dev/null | tar t | grep -c '^blobs/sha256/.')
full_blobs=$(zstd -dc "$full" 2>/dev/null | tar t | grep -c '^blobs/sha256/.')
detail="rc=$rc inc $(stat -c %s "$inc" 2>&1) bytes/$inc_blobs blobs, full $(stat -c %s "$full" 2>&1) bytes/$full_blobs blobs, base layers $((base_layers - 2)); $(cat "$work/inc.log")"
check "--existing-bundle: smaller, without the shared base layers" \
    test "$rc" = 0 -a "$(stat -c %s "$inc")" -lt "$(stat -c %s "$full")" -a "$inc_blobs" = "$((full_blobs - base_layers + 2))"
ef content ls "$inc" >"$work/ls-inc.txt" 2>&1
detail=$(cat "$work/ls-inc.txt")
check "content ls shows the base bundle and its digest" \
    grep -q "expected from the base bundle base.tar.zst (sha256:$(cut -d' ' -f1 "$work/inc/content-base/base.tar.zst.sha256"))" "$work/ls-inc.txt"

# --- split, signed with Ed25519 -------------------------------------------------------------
ef --output-dir "$work/split" content build --name apps --images-file images.txt --split-size 4M \
    --sign "$keys/ed.pem" >"$work/split.log" 2>&1
rc=$?
parts=("$work/split/content-apps/apps.tar.zst.part-"*)
index=$work/split/content-apps/apps.tar.zst.parts.json
detail="rc=$rc ${#parts[@]} parts $(cat "$work/split.log")"
check "--split-size: several parts and an index, no whole archive" \
    test "$rc" = 0 -a "${#parts[@]}" -gt 1 -a -f "$index" -a ! -e "$work/split/content-apps/apps.tar.zst"
ef content verify "$index" --pubkey "$keys/ed.pub" >"$work/verify-split.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify-split.log")"
check "verify: parts index and Ed25519 signature" test "$rc" = 0
whole=$(cat "${parts[@]}" | sha256sum | cut -d' ' -f1)
detail="cat: $whole, index: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$index"), unsplit: $hex"
check "parts reassemble (cat) to the index's sha256, the same as the unsplit bundle" \
    test "$whole" = "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$index")" -a "$whole" = "$hex"
cat "${parts[@]}" >"$work/reassembled.tar.zst"
# build iso takes the split bundle as it is: its parts and index land on the ISO.
ef --output-dir "$work/split-iso" build iso --content "$index" --split-size 1M --dry-run \
    >"$work/split-iso-small.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/split-iso-small.log")"
check "build iso: a split bundle with parts over --split-size is exit 2, saying how to re-split" \
    test "$rc" = 2 -a -n "$(grep -F 'content build --split-size 1048576' "$work/split-iso-small.log")"
if [ -z "${EDGEFORGE_CONTENT_SKIP_ISO:-}" ]; then
    ef --output-dir "$work/split-iso" build iso --content "$index" --split-size 8M \
        >"$work/split-iso.log" 2>&1
    rc=$?
    mkdir -p "$work/split-iso/content"
    xorriso -osirrox on -indev "$work/split-iso/edge-demo-installer.iso" \
        -extract /opt/spectrocloud/content "$work/split-iso/content" >/dev/null 2>&1
    ef content verify "$work/split-iso/content/apps.tar.zst.parts.json" --pubkey "$keys/ed.pub" \
        >"$work/split-iso-verify.log" 2>&1
    vrc=$?
    detail="rc=$rc verify=$vrc $(tail -3 "$work/split-iso.log") $(ls "$work/split-iso/content") $(cat "$work/split-iso-verify.log")"
    check "build iso: a split bundle's parts and index are on the ISO and pass content verify" \
        test "$rc" = 0 -a "$vrc" = 0 -a ! -e "$work/split-iso/content/apps.tar.zst" \
        -a "$(ls "$work/split-iso/content" | grep -c '^apps.tar.zst.part-')" = "${#parts[@]}"
    rm -rf "$work/split-iso"
fi
printf 'sha256:%s' "$whole" >"$work/signed-ed.txt"
detail=$(openssl pkeyutl -verify -pubin -inkey "$keys/ed.pub" -rawin -in "$work/signed-ed.txt" \
    -sigfile "$work/split/content-apps/apps.tar.zst.sig" 2>&1)
check "openssl pkeyutl verifies the Ed25519 signature" test "$detail" = "Signature Verified Successfully"
printf 'x' | dd of="${parts[1]}" bs=1 seek=100 conv=notrunc 2>/dev/null
ef content verify "$index" >"$work/verify-split-bad.log" 2>&1
rc=$?
detail="rc=$rc $(cat "$work/verify-split-bad.log")"
check "verify: a damaged part fails (exit 1) naming it" \
    test "$rc" = 1 -a -n "$(grep -F 'part apps.tar.zst.part-001 does not match' "$work/verify-split-bad.log")"
ef content ls "$index" >"$work/ls-split.txt" 2>&1
check "content ls reads a split bundle" test "$(grep -c "^$reg/edge/" "$work/ls-split.txt")" = 3

# --- build iso picks up build/content-apps/apps.tar.zst --------------------------------------
ef build iso --dry-run >"$work/iso-plan.txt" 2>&1
detail=$(cat "$work/iso-plan.txt")
check "build iso --dry-run lists build/content-apps/apps.tar.zst" \
    grep -q "content bundle  $proj/build/content-apps/apps.tar.zst -> /opt/spectrocloud/content/" "$work/iso-plan.txt"
if [ -n "${EDGEFORGE_CONTENT_SKIP_ISO:-}" ]; then
    echo "skip build iso (EDGEFORGE_CONTENT_SKIP_ISO)"
else
    ef build iso >"$work/iso.log" 2>&1
    rc=$?
    iso=$proj/build/edge-demo-installer.iso
    xorriso -indev "$iso" -find /opt/spectrocloud/content -type f >"$work/iso-find.txt" 2>/dev/null
    detail="rc=$rc $(tail -5 "$work/iso.log") $(cat "$work/iso-find.txt")"
    check "build iso puts the bundle under /opt/spectrocloud/content/" \
        grep -q "/opt/spectrocloud/content/apps.tar.zst'\?$" "$work/iso-find.txt"
    xorriso -osirrox on -indev "$iso" -extract /opt/spectrocloud/content/apps.tar.zst "$work/from-iso.tar.zst" >/dev/null 2>&1
    check "the bundle on the ISO is byte-identical" cmp -s "$work/from-iso.tar.zst" "$bundle"
fi

finish content_test
