#!/usr/bin/env bash
# End-to-end tests of `edgeforge build iso-disk-image` (CanvOS's +iso-disk-image: the ISO in a
# FROM scratch image at /disk/<name>.iso, the KubeVirt containerDisk layout), judged by skopeo
# and tar: the layout's platform and single layer, the layer's entries (owner 107:107, 0444),
# the ISO in it byte for byte the one `build iso` writes, the push to Debian's docker-registry
# on loopback (IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:PE_VERSION-CUSTOM_TAG), the same manifest
# digest from `build all` into another directory (SOURCE_DATE_EPOCH; the ISO built once there),
# an arm64 image, the dry-run plan, and bad inputs (exit 2 before any work).
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools docker-registry skopeo python3 tar cmp
export EDGEFORGE_FIXTURES_DIR=$fixtures # the example's base and agent, after HOME changes
source "$src/tests/e2e/registry.sh"
isolate_registry_test

port=$(free_port)
reg=127.0.0.1:$port
start_registry plain "$port"

example=$src/examples/basic
: >"$work/empty.arg" # no .arg of the caller's
ef() {
    "$bin" --config "$example/edgeforge.yaml" --arg-file "$work/empty.arg" \
        --cache-dir "$work/cache" --insecure-registry "$reg" "$@"
}
tag=v4.5.0-e2e # the example's agent.version (PE_VERSION), then CUSTOM_TAG
name_args=(--name demo --registry "$reg" --repository edge/os --custom-tag e2e)

# The ISO on its own, for the comparison.
if ef --output-dir "$work/iso-out" build iso --name demo >"$work/iso.log" 2>&1; then
    pass "build iso"
else
    fail "build iso" "$(tail -20 "$work/iso.log")"
fi

# The containerDisk image, pushed.
if ef --json --output-dir "$work/out" build iso-disk-image "${name_args[@]}" --push \
    >"$work/build.json" 2>"$work/build.log"; then
    pass "build iso-disk-image --push"
else
    fail "build iso-disk-image --push" "$(tail -20 "$work/build.log")"
fi
layout=$work/out/demo-disk-image
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iso_disk_image"]["manifest_digest"])' \
    "$work/build.json" 2>/dev/null)
python3 - "$work/build.json" "$layout" "$reg" "$tag" >"$work/json-check.txt" 2>&1 <<'PY'
import json, sys
doc, layout, reg, tag = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
image = doc["iso_disk_image"]
assert image["layout"] == layout, image
assert image["tag"] == tag, image
assert image["reference"] == f"oci:{layout}:{tag}", image
assert image["pushed"] == f"{reg}/edge/os/demo:{tag}", image
assert [a["path"].rsplit("/", 1)[1] for a in doc["artifacts"]] == ["demo.iso", "demo.iso.sha256"], doc
PY
[ $? -eq 0 ] && pass "--json: the layout, tag PE_VERSION-CUSTOM_TAG, pushed to REGISTRY/REPO/NAME:TAG, the ISO artifacts" ||
    fail "--json names the layout, tag, push and artifacts" "$(cat "$work/json-check.txt")"

# skopeo reads the layout: linux/amd64, one layer, the manifest edgeforge reported.
skopeo inspect "oci:$layout:$tag" >"$work/inspect.json" 2>&1
python3 - "$work/inspect.json" "$digest" >"$work/inspect-check.txt" 2>&1 <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
assert info["Architecture"] == "amd64" and info["Os"] == "linux", info
assert len(info["Layers"]) == 1, info["Layers"]
assert info["Digest"] == sys.argv[2], (info["Digest"], sys.argv[2])
assert info["Created"].startswith("2023-11-14T22:13:20"), info["Created"] # SOURCE_DATE_EPOCH
PY
[ $? -eq 0 ] && pass "skopeo inspect oci:...:$tag: linux/amd64, one layer, created at SOURCE_DATE_EPOCH" ||
    fail "skopeo inspect of the layout" "$(cat "$work/inspect-check.txt" "$work/inspect.json")"

# Copied out by skopeo, the layer unpacked by tar: disk/demo.iso is the ISO `build iso` wrote.
skopeo copy -q "oci:$layout:$tag" "dir:$work/copied" >"$work/copy.log" 2>&1
layer=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["layers"][0]["digest"].split(":")[1])' \
    "$work/copied/manifest.json" 2>/dev/null)
mkdir -p "$work/unpacked"
if [ -n "$layer" ] && tar -xzf "$work/copied/$layer" -C "$work/unpacked" 2>"$work/tar.log" &&
    cmp "$work/unpacked/disk/demo.iso" "$work/iso-out/demo.iso" >"$work/cmp.log" 2>&1; then
    pass "skopeo copy + tar: disk/demo.iso in the layer equals build iso's demo.iso"
else
    fail "the layer's disk/demo.iso equals build iso's demo.iso" "$(cat "$work/copy.log" "$work/tar.log" "$work/cmp.log" 2>/dev/null)"
fi
tar -tvzf "$work/copied/$layer" --numeric-owner >"$work/entries.txt" 2>&1
if [ "$(wc -l <"$work/entries.txt")" -eq 2 ] &&
    grep -qE '^drwxr-xr-x 107/107 +0 2023-11-1[45] [0-9:]+ disk/$' "$work/entries.txt" &&
    grep -qE '^-r--r--r-- 107/107 +[0-9]+ 2023-11-1[45] [0-9:]+ disk/demo\.iso$' "$work/entries.txt"; then
    pass "tar -tvf: disk/ (0755) and disk/demo.iso (0444), owner 107:107 (qemu), SOURCE_DATE_EPOCH mtimes"
else
    fail "tar -tvf: disk/ and disk/demo.iso, 107:107" "$(cat "$work/entries.txt")"
fi

# The registry has it under IMAGE_REGISTRY/IMAGE_REPO/ISO_NAME:TAG.
skopeo inspect --tls-verify=false "docker://$reg/edge/os/demo:$tag" >"$work/remote.json" 2>&1
python3 - "$work/remote.json" "$digest" >"$work/remote-check.txt" 2>&1 <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
assert info["Digest"] == sys.argv[2], (info["Digest"], sys.argv[2])
assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1, info
PY
[ $? -eq 0 ] && pass "skopeo inspect docker://$reg/edge/os/demo:$tag: the pushed manifest" ||
    fail "skopeo inspect of the pushed image" "$(cat "$work/remote-check.txt" "$work/remote.json")"

# `build all` with outputs iso and iso-disk-image into another directory: the ISO is built
# once, and the image has the same manifest digest (reproducible).
if ef --json --output-dir "$work/all" build all --outputs iso,iso-disk-image "${name_args[@]}" \
    >"$work/all.json" 2>"$work/all.log"; then
    pass "build all --outputs iso,iso-disk-image"
else
    fail "build all --outputs iso,iso-disk-image" "$(tail -20 "$work/all.log")"
fi
again=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["iso-disk-image"]["iso_disk_image"]["manifest_digest"])' \
    "$work/all.json" 2>/dev/null)
[ -n "$digest" ] && [ "$again" = "$digest" ] &&
    pass "rebuilt into another output directory: the same manifest digest ($digest)" ||
    fail "rebuilt: the same manifest digest" "first $digest, again $again"
[ "$(grep -c 'iso: preparing boot loaders' "$work/all.log")" -eq 1 ] &&
    grep -q "iso-disk-image: using .*/all/demo.iso built above" "$work/all.log" &&
    pass "build all wraps the ISO its iso group built (no second ISO build)" ||
    fail "build all reuses the ISO" "$(grep -i 'iso' "$work/all.log" | tail -20)"
skopeo inspect --raw "oci:$work/all/demo-disk-image:$tag" >/dev/null 2>&1 &&
    pass "the layout build all wrote is readable by skopeo" ||
    fail "the layout build all wrote is readable by skopeo"

# arm64: the image's platform is the ISO's.
if ef --output-dir "$work/arm" --arch arm64 build iso-disk-image --name demo-arm64 \
    --base "oci:$fixtures/base-arm64:latest" --agent "oci:$fixtures/agent-arm64:latest" \
    >"$work/arm.log" 2>&1 &&
    skopeo inspect "oci:$work/arm/demo-arm64-disk-image:v4.5.0" >"$work/arm.json" 2>&1 &&
    python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); assert i["Architecture"]=="arm64" and i["Os"]=="linux", i' \
        "$work/arm.json" 2>"$work/arm-check.txt"; then
    pass "arm64: skopeo shows linux/arm64, tag PE_VERSION without CUSTOM_TAG"
else
    fail "arm64 iso-disk-image" "$(tail -10 "$work/arm.log")" "$(cat "$work/arm.json" "$work/arm-check.txt" 2>/dev/null)"
fi

# --dry-run: the plan, nothing written.
if ef --json --output-dir "$work/dry" build iso-disk-image "${name_args[@]}" --push --dry-run \
    >"$work/dry.json" 2>"$work/dry.log" &&
    python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); assert p["reference"]==sys.argv[2] and p["push"] and p["member"]=="disk/demo.iso" and p["owner"]=="107:107", p' \
        "$work/dry.json" "$reg/edge/os/demo:$tag" 2>"$work/dry-check.txt" &&
    [ ! -e "$work/dry" ]; then
    pass "--dry-run --json: the plan (reference, push, member, owner), nothing written"
else
    fail "--dry-run --json" "$(cat "$work/dry.json" "$work/dry.log" "$work/dry-check.txt" 2>/dev/null)"
fi

# Bad inputs: exit 2 before any work, naming the setting and where it came from.
expect_bad() { # expect_bad NAME PATTERN ARGS...
    local name=$1 pattern=$2
    shift 2
    ef --output-dir "$work/bad" "$@" >"$work/bad.out" 2>&1
    local code=$?
    if [ "$code" -eq 2 ] && grep -qE -- "$pattern" "$work/bad.out" && [ ! -e "$work/bad" ]; then
        pass "$name"
    else
        fail "$name" "exit $code" "$(cat "$work/bad.out")"
    fi
}
expect_bad "--push without IMAGE_REGISTRY/IMAGE_REPO: exit 2 saying what to set" \
    "--push needs somewhere to push the iso-disk-image: set IMAGE_REGISTRY and IMAGE_REPO" \
    build iso-disk-image --name demo --push
expect_bad "a repository a registry cannot hold: exit 2 naming --repository" \
    "--repository: the iso-disk-image name $reg/Edge/demo:v4.5.0 .*repository names must be lowercase" \
    build iso-disk-image --name demo --registry "$reg" --repository Edge
mkdir -p "$work/taken" && echo "not a layout" >"$work/taken/demo-disk-image"
"$bin" --config "$example/edgeforge.yaml" --arg-file "$work/empty.arg" --cache-dir "$work/cache" \
    --output-dir "$work/taken" build iso-disk-image --name demo >"$work/taken.out" 2>&1
code=$?
[ "$code" -eq 2 ] && grep -q "taken/demo-disk-image exists and is not an OCI layout edgeforge wrote" "$work/taken.out" &&
    [ "$(cat "$work/taken/demo-disk-image")" = "not a layout" ] && [ ! -e "$work/taken/demo.iso" ] &&
    pass "the layout path taken by a file: exit 2 before the ISO is built, the file kept" ||
    fail "the layout path taken by a file" "exit $code" "$(cat "$work/taken.out")"
finish iso_disk_image_test
