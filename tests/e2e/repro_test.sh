#!/usr/bin/env bash
# Reproducible bytes across checkouts: the bundled example copied into two project directories
# whose files carry different modification times (as two `git clone`s a minute apart do), built
# with the same SOURCE_DATE_EPOCH and separate caches, gives byte-identical ISO, raw, qcow2,
# OVA, VHD, provider image blobs and content bundle. Judged with sha256sum and cmp.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_checkout() { # build_checkout DIR MTIME
    local dir=$1
    cp -r "$src/examples/basic" "$dir"
    # Every file and directory of this checkout gets the given time (newer than
    # SOURCE_DATE_EPOCH, as a fresh clone's files are).
    find "$dir" -exec touch -h -d "$2" {} +
    (
        cd "$dir" || exit 1
        export EDGEFORGE_CACHE_DIR=$dir.cache
        "$bin" build iso &&
            "$bin" build disk --format raw,qcow2,ova,vhd &&
            "$bin" build provider &&
            "$bin" content build --name apps --image "oci:$fixtures/agent-amd64:latest"
    ) >"$dir.log" 2>&1
}

build_checkout "$work/one" "2026-01-02 03:04:05" || fail "the first checkout builds" "$(tail -5 "$work/one.log")"
build_checkout "$work/two" "2026-06-07 08:09:10" || fail "the second checkout builds" "$(tail -5 "$work/two.log")"

digests() { (cd "$1/build" && find . -type f ! -name '*.json' | sort | xargs sha256sum); }
digests "$work/one" >"$work/one.sha256"
digests "$work/two" >"$work/two.sha256"
for artifact in edge-demo-installer.iso edge-demo-installer.raw edge-demo-installer.qcow2 \
    edge-demo-installer.ova edge-demo-installer.vhd content-apps/apps.tar.zst; do
    detail="$(cmp "$work/one/build/$artifact" "$work/two/build/$artifact" 2>&1 | head -1)"
    check "$artifact is byte-identical across the two checkouts" \
        cmp -s "$work/one/build/$artifact" "$work/two/build/$artifact"
done
detail="$(diff <(grep provider-images "$work/one.sha256") <(grep provider-images "$work/two.sha256") | head -5)"
check "provider image blobs (layers, configs, manifests) are byte-identical" \
    diff -q <(grep provider-images "$work/one.sha256") <(grep provider-images "$work/two.sha256")
detail="$(grep -c provider-images/blobs "$work/one.sha256")"
check "the provider layout holds blobs at all" test "$(grep -c provider-images/blobs "$work/one.sha256")" -gt 3

# Incremental builds: the same change (a new agent layer, an edited overlay file) rebuilt with a
# warm cache, whose compressed squashfs blocks are reused, and with an empty one: the same bytes.
change_and_build() { # change_and_build DIR CACHE JSON
    mkdir -p "$1.agent2/opt/agent2" && echo "agent v2" >"$1.agent2/opt/agent2/VERSION" &&
        echo "overlay v2" >"$1/overlays/files/etc/edgeforge/overlay-marker" &&
        (cd "$1" && EDGEFORGE_CACHE_DIR=$2 "$bin" --json build iso \
            --agent "oci:$fixtures/agent-amd64:latest" --agent "dir:$1.agent2") >"$3" 2>"$3.log"
}
change_and_build "$work/one" "$work/one.cache" "$work/warm.json" ||
    fail "the changed inputs build with the warm cache" "$(tail -5 "$work/warm.json.log")"
find "$work/two.agent2" "$work/two" -exec touch -h -d "2026-06-07 08:09:10" {} + 2>/dev/null
change_and_build "$work/two" "$work/cold.cache" "$work/cold.json" ||
    fail "the changed inputs build with an empty cache" "$(tail -5 "$work/cold.json.log")"
detail="$(cmp "$work/one/build/edge-demo-installer.iso" "$work/two/build/edge-demo-installer.iso" 2>&1 | head -1)"
check "after the change, the ISO built with reused blocks is byte-identical to the cold build" \
    cmp -s "$work/one/build/edge-demo-installer.iso" "$work/two/build/edge-demo-installer.iso"
python3 - "$work/warm.json" "$work/cold.json" >"$work/blocks.txt" 2>&1 <<'PY'
import json, sys
def find(node):
    if isinstance(node, dict):
        if "block_cache" in node:
            return node["block_cache"]
        for value in node.values():
            found = find(value)
            if found:
                return found
    if isinstance(node, list):
        for value in node:
            found = find(value)
            if found:
                return found
warm, cold = (find(json.load(open(f))) for f in sys.argv[1:3])
print("warm", warm, "cold", cold)
assert warm["reused_bytes"] > 10 * warm["compressed_bytes"], warm
assert cold["compressed_bytes"] > 10 * warm["compressed_bytes"], (warm, cold)
# The base image's files came as one region, copied whole; the cold build had none to copy.
assert warm["base_region_reused_bytes"] > 0, warm
assert cold["base_region_reused_bytes"] == 0, cold
PY
code=$?
detail="$(cat "$work/blocks.txt")"
check "--json counts blocks reused vs compressed: the warm rebuild compressed a tenth or less and copied the base region" \
    test "$code" -eq 0
finish repro
