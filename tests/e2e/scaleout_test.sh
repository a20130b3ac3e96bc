#!/usr/bin/env bash
# Scale-out with a registry-backed build cache, against Debian's docker-registry on loopback:
# a first stage computes the root filesystem step and pushes it; four workers (separate HOME and
# cache directories, in parallel, `build all --shard I/4`) build 12 site ISOs, raw + qcow2 and a
# two-version, two-arch provider matrix (one platform per unit); a last stage joins the provider
# platforms into the provider layout. No worker computes the root filesystem (read from --json),
# and every output is byte-identical to a single-machine build (sha256sum, diff -r). Then the cache's
# robustness: a worker killed mid-push leaves it usable, and an artifact pushed under another
# step's tag is refused with a warning and the step computed instead. The generated pipelines:
# the .gitlab-ci.yml runs under gitlab-ci-local and gives the same outputs, the GitHub Actions
# workflow passes action-validator, the Kubernetes Jobs validate with kubernetes-models.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/registry.sh"
need_tools docker-registry curl python3 sha256sum git rsync node xorriso
export EDGEFORGE_FIXTURES_DIR=$fixtures
# Installed (once) into the person's cache, before HOME becomes a scratch directory.
tools=$("$src/tests/fixtures/install-ci-tools") || { echo "the CI engines' tools did not install from npm"; exit 1; }
isolate_registry_test

port=$(free_port)
start_registry registry "$port"
export EDGEFORGE_INSECURE_REGISTRIES=127.0.0.1:$port
cache=docker://127.0.0.1:$port/fleet/cache

# The project: the bundled example with 12 sites, raw + qcow2 and two Kubernetes versions.
proj=$work/project
cp -r "$src/examples/basic" "$proj"
rm -f "$proj"/sites/*.yaml
for i in $(seq 101 112); do
    sed "s/store-042/store-$i/g" "$src/examples/basic/sites/store-042.yaml" >"$proj/sites/store-$i.yaml"
done
cp -r "$proj/k8s/k3s-1.30.4" "$proj/k8s/k3s-1.31.1"
python3 - "$proj/edgeforge.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace("outputs: [iso, raw, qcow2, ova, provider]", "outputs: [iso, raw, qcow2, provider, content]\nsites: sites")
text = text.replace("versions: [1.30.4]", "versions: [1.30.4, 1.31.1]") + "\nprovider:\n  arches: [amd64, arm64]\n"
text += "content:\n  manifests: [bundles/apps.txt, bundles/platform.yaml]\n"
text = text.replace("/base-amd64:", "/base-{arch}:").replace("/agent-amd64:", "/agent-{arch}:")
open(path, "w").write(text)
PY
# Two content bundles: an images file and a bundle manifest.
mkdir -p "$proj/bundles"
echo "oci:$fixtures/agent-amd64:latest" >"$proj/bundles/apps.txt"
printf 'images:\n  - ref: oci:%s/agent-amd64:latest\n    name: edge/agent:1\n' "$fixtures" >"$proj/bundles/platform.yaml"

# run DIR CACHE_DIR ARGS...: edgeforge in its own copy of the project, HOME and cache directory,
# as a fresh CI runner.
run() {
    local dir=$1 cache_dir=$2
    shift 2
    [ -d "$dir" ] || cp -r "$proj" "$dir"
    mkdir -p "$dir.home"
    (cd "$dir" && HOME=$dir.home EDGEFORGE_CACHE_DIR=$cache_dir "$bin" "$@")
}
sums() { (cd "$1/build" && find . -type f \( -name '*.iso' -o -name '*.raw' -o -name '*.qcow2' -o -name '*.sha256' -o -name '*.tar.zst' \) | sort | xargs sha256sum); }

# The plan: deterministic, with the rootfs step key, and split into four shards.
run "$work/planner" "$work/planner.cache" --json plan --shards 4 >"$work/plan.json" 2>"$work/plan.log"
run "$work/planner" "$work/planner.cache" --json plan --shards 4 >"$work/plan2.json" 2>>"$work/plan.log"
detail="$(tail -3 "$work/plan.log")"
check "plan --json is the same twice" cmp -s "$work/plan.json" "$work/plan2.json"
python3 - "$work/plan.json" >"$work/plan-check.log" 2>&1 <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
units = {u["id"]: u for u in plan["units"]}
assert units["rootfs/amd64"]["stage"] == "shared" and len(units["rootfs/amd64"]["step_key"]) == 64
sites = [i for i in units if i.startswith("iso/store-")]
assert len(sites) == 12, sites
assert {"disk/raw", "disk/qcow2", "content/apps", "content/platform"} <= set(units)
assert units["content/apps"]["stage"] == "shared" and units["content/apps"]["outputs"][0].endswith("/build/content-apps")
assert units["iso/store-101"]["needs"] == ["rootfs/amd64", "content/apps", "content/platform"], units["iso/store-101"]
order = [u["id"] for u in plan["units"]]
for tag in ("k3s-1.30.4-v4.5.0", "k3s-1.31.1-v4.5.0"):
    image = units[f"provider/{tag}"]
    platforms = [f"provider/{tag}/amd64", f"provider/{tag}/arm64"]
    assert image["stage"] == "assemble" and image["shard"] is None and image["needs"] == platforms, image
    for platform in platforms:
        assert units[platform]["stage"] == "fan-out" and units[platform]["kind"] == "provider-platform"
        assert order.index(platform) < order.index(f"provider/{tag}")
for unit in plan["units"]:
    if unit["stage"] == "fan-out":
        assert unit["shard"] in (1, 2, 3, 4), unit
    for need in unit["needs"]:
        assert need in units, need
shards = {}
for unit in plan["units"]:
    if unit["shard"]:
        shards.setdefault(unit["shard"], []).append(unit["id"])
assert sorted(len(v) for v in shards.values()) == [4, 4, 5, 5], shards
PY
detail="$(cat "$work/plan-check.log")"
check "the plan lists rootfs and 2 content bundles (shared), 12 site ISOs needing them, raw, qcow2, 2 versions x 2 arches of provider platforms over 4 shards, and the 2 provider images (assemble)" \
    test ! -s "$work/plan-check.log"

# The single-machine reference.
run "$work/single" "$work/single.cache" build all >"$work/single.log" 2>&1 ||
    fail "the single-machine build all works" "$(tail -5 "$work/single.log")"
sums "$work/single" | sort >"$work/single.sums"

# Stage 1: the shared step, pushed.
run "$work/stage" "$work/stage.cache" --json build rootfs --cache-to "$cache" \
    >"$work/stage.json" 2>"$work/stage.log"
detail="$(tail -5 "$work/stage.log")"
check "stage 1 (build rootfs --cache-to) computes the root filesystem and uploads it, and packs the 2 content bundles" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [r]=d["rootfs"]; assert not r["cache_hit"] and r["remote_cache"]["pushed"]; assert [b["name"] for b in d["content"]] == ["apps", "platform"]' "$work/stage.json"
detail="$(xorriso -indev "$work/single/build/edge-demo-installer-store-101.iso" -find /opt/spectrocloud/content -type f 2>&1 | tail -4)"
check "the single machine's site ISOs carry the content bundles build all packed" \
    bash -c 'out=$(xorriso -indev "$1" -find /opt/spectrocloud/content -type f 2>/dev/null) && echo "$out" | grep -q "apps.tar.zst" && echo "$out" | grep -q "platform.tar.zst"' _ \
    "$work/single/build/edge-demo-installer-store-101.iso"

# A worker without the first stage's output directory refuses to build ISOs without the bundles.
cp -r "$proj" "$work/nobundles"
run "$work/nobundles" "$work/nobundles.cache" build all --shard 1/4 --cache-remote "$cache" >"$work/nobundles.log" 2>&1
nobundles_rc=$?
detail="exit $nobundles_rc: $(tail -2 "$work/nobundles.log")"
check "a shard whose ISOs need the bundles, without them, is refused (exit 2, naming them) and builds nothing" \
    bash -c '[ "$1" = 2 ] && grep -q "content/apps (.*build/content-apps).* are not there: run .edgeforge build rootfs. first" "$2" && [ ! -e "$3/build" ]' _ \
    "$nobundles_rc" "$work/nobundles.log" "$work/nobundles"

# Stage 2: four workers at once.
pids=()
for i in 1 2 3 4; do
    # What the first stage wrote (the content bundles), as the pipelines hand it on.
    cp -r "$proj" "$work/w$i" && mkdir -p "$work/w$i/build" && cp -a "$work/stage/build/." "$work/w$i/build/"
    run "$work/w$i" "$work/w$i.cache" --json build all --shard "$i/4" --cache-remote "$cache" \
        >"$work/w$i.json" 2>"$work/w$i.log" &
    pids+=($!)
done
for i in 1 2 3 4; do
    wait "${pids[$((i - 1))]}" || fail "worker $i/4 succeeds" "$(tail -5 "$work/w$i.log")"
done
python3 - "$work" >"$work/workers.log" 2>&1 <<'PY'
import json, sys
work = sys.argv[1]
def rootfs_summaries(node):
    if isinstance(node, dict):
        if "cache_hit" in node and "key" in node:
            yield node
        for value in node.values():
            yield from rootfs_summaries(value)
    elif isinstance(node, list):
        for value in node:
            yield from rootfs_summaries(value)
computed = pulled = 0
for i in range(1, 5):
    document = json.load(open(f"{work}/w{i}.json"))
    assert document["shard"]["shard"] == f"{i}/4", document["shard"]
    for summary in rootfs_summaries(document):
        if not summary["cache_hit"]:
            computed += 1
        if summary.get("remote_cache", {}).get("pulled"):
            pulled += 1
assert computed == 0, f"{computed} root filesystem computations"
assert pulled == 4, f"{pulled} pulls"
print("ok")
PY
detail="$(cat "$work/workers.log")"
check "no worker computes the root filesystem: each of the 4 pulls it once" grep -qx ok "$work/workers.log"
for i in 1 2 3 4; do sums "$work/w$i"; done | sort -u >"$work/workers.sums"
detail="$(diff "$work/single.sums" "$work/workers.sums" | head -5)"
check "the workers' ISOs, raw, qcow2 and content bundles together are byte-identical to the single-machine build" \
    bash -c 'diff -q "$1" "$2" && grep -q "content-apps/apps.tar.zst$" "$1" && grep -q "content-platform/platform.tar.zst$" "$1"' _ \
    "$work/single.sums" "$work/workers.sums"
# Stage 3: the workers' output directories together (as a CI engine hands artifacts on), and the
# provider platforms they composed joined into the provider layout.
cp -r "$proj" "$work/assembled" && mkdir -p "$work/assembled/build"
for i in 1 2 3 4; do cp -a "$work/w$i/build/." "$work/assembled/build/"; done
platforms=$(ls "$work/assembled/build/provider-platforms" | tr '\n' ' ')
run "$work/assembled" "$work/assembled.cache" --json build all --assemble \
    >"$work/assembled.json" 2>"$work/assembled.log"
detail="platforms from the workers: $platforms; $(tail -3 "$work/assembled.log")"
check "the assemble stage joins the 4 platforms the workers composed into a layout byte-identical to the single machine's, and removes them" \
    bash -c '[ "$(echo $3)" = "k3s-1.30.4-v4.5.0-amd64 k3s-1.30.4-v4.5.0-arm64 k3s-1.31.1-v4.5.0-amd64 k3s-1.31.1-v4.5.0-arm64" ] &&
        diff -r "$1/build/provider-images" "$2/build/provider-images" &&
        [ ! -e "$2/build/provider-platforms" ] &&
        python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert [i[\"arches\"] for i in d[\"provider\"][\"images\"]] == [[\"amd64\",\"arm64\"]]*2" "$4"' _ \
    "$work/single" "$work/assembled" "$platforms" "$work/assembled.json"
# A platform layout from other settings is refused: one tagged for this image but labelled with
# another Kubernetes version.
cp -r "$proj" "$work/mixed" && mkdir -p "$work/mixed/build"
for i in 1 2 3 4; do cp -a "$work/w$i/build/provider-platforms" "$work/mixed/build/"; done
rm -rf "$work/mixed/build/provider-platforms/k3s-1.31.1-v4.5.0-amd64"
cp -a "$work/mixed/build/provider-platforms/k3s-1.30.4-v4.5.0-amd64" "$work/mixed/build/provider-platforms/k3s-1.31.1-v4.5.0-amd64"
sed -i 's/k3s-1.30.4-v4.5.0/k3s-1.31.1-v4.5.0/' "$work/mixed/build/provider-platforms/k3s-1.31.1-v4.5.0-amd64/index.json"
run "$work/mixed" "$work/mixed.cache" build all --assemble >"$work/mixed.log" 2>&1
mixed_rc=$?
detail="exit $mixed_rc: $(tail -2 "$work/mixed.log")"
check "a platform built from other inputs (another Kubernetes version) is refused (exit 2, naming what differs), no layout left" \
    bash -c '[ "$1" = 2 ] && grep -q "k3s-1.31.1-v4.5.0 (amd64): .* was built from other inputs (differing: kubernetes, kubernetes_version, tag)" "$2" &&
        [ ! -e "$3/build/provider-images" ]' _ "$mixed_rc" "$work/mixed.log" "$work/mixed"

# Two arches (`arches: [amd64, arm64]`): a rootfs unit per arch in the shared stage, each arch's
# installer outputs under build/<arch>/, the provider images for both; the first stage computes
# both root filesystems, two workers pull them, and the assembled output directory is the single
# machine's, file for file.
multi=$work/multi
cp -r "$src/examples/basic" "$multi"
python3 - "$multi/edgeforge.yaml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
text = text.replace("arch: amd64\n", "").replace("/base-amd64:", "/base-{arch}:").replace("/agent-amd64:", "/agent-{arch}:")
text = text.replace("outputs: [iso, raw, qcow2, ova, provider]", "outputs: [iso, qcow2, provider]\narches: [amd64, arm64]")
open(path, "w").write(text)
PY
for dir in multi-plan multi-single multi-stage multi-w1 multi-w2; do cp -r "$multi" "$work/$dir"; done
run "$work/multi-plan" "$work/multi-plan.cache" --json plan --shards 2 >"$work/multi-plan.json" 2>"$work/multi-plan.log"
detail="$(tail -3 "$work/multi-plan.log")"
check "with arches [amd64, arm64] the plan has a shared rootfs unit per arch and each arch's units under <arch>/" \
    python3 - "$work/multi-plan.json" <<'PY'
import json, sys
units = {u["id"]: u for u in json.load(open(sys.argv[1]))["units"]}
for arch in ("amd64", "arm64"):
    assert units[f"rootfs/{arch}"]["stage"] == "shared", units.keys()
    assert units[f"{arch}/iso"]["needs"] == [f"rootfs/{arch}"], units[f"{arch}/iso"]
    assert units[f"{arch}/iso"]["outputs"][0].endswith(f"/build/{arch}/edge-demo-installer.iso")
    assert units[f"{arch}/disk/qcow2"]["needs"] == [f"rootfs/{arch}"]
assert units["provider/k3s-1.30.4-v4.5.0"]["needs"] == ["provider/k3s-1.30.4-v4.5.0/amd64", "provider/k3s-1.30.4-v4.5.0/arm64"]
PY
run "$work/multi-single" "$work/multi-single.cache" build all >"$work/multi-single.log" 2>&1 ||
    fail "the two-arch single-machine build all works" "$(tail -5 "$work/multi-single.log")"
multi_cache=docker://127.0.0.1:$port/fleet/multi
run "$work/multi-stage" "$work/multi-stage.cache" --json build rootfs --cache-to "$multi_cache" \
    >"$work/multi-stage.json" 2>"$work/multi-stage.log"
detail="$(tail -3 "$work/multi-stage.log")"
check "the first stage computes and pushes both root filesystems" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rootfs"]; assert sorted(x["arch"] for x in r) == ["amd64","arm64"] and all(x["remote_cache"]["pushed"] for x in r), r' "$work/multi-stage.json"
multi_pids=()
for i in 1 2; do
    run "$work/multi-w$i" "$work/multi-w$i.cache" --json build all --shard "$i/2" --cache-remote "$multi_cache" \
        >"$work/multi-w$i.json" 2>"$work/multi-w$i.log" &
    multi_pids+=($!)
done
wait "${multi_pids[@]}"
cp -r "$multi" "$work/multi-asm" && mkdir -p "$work/multi-asm/build"
for i in 1 2; do cp -a "$work/multi-w$i/build/." "$work/multi-asm/build/"; done
run "$work/multi-asm" "$work/multi-asm.cache" build all --assemble >"$work/multi-asm.log" 2>&1
detail="$(tail -n 2 "$work/multi-w1.log" "$work/multi-w2.log" "$work/multi-asm.log"; diff -rq "$work/multi-single/build" "$work/multi-asm/build" | head -3)"
check "two workers and the assemble stage give the single machine's build/ (amd64/, arm64/, provider-images) file for file, no worker computing a root filesystem" \
    bash -c 'diff -r "$1/build" "$2/build" >/dev/null && [ -f "$2/build/arm64/edge-demo-installer.iso" ] && [ -f "$2/build/amd64/edge-demo-installer.qcow2" ] &&
        ! grep -q "rootfs: merging" "$3" "$4" && grep -q "pulling rootfs step" "$3"' _ \
    "$work/multi-single" "$work/multi-asm" "$work/multi-w1.log" "$work/multi-w2.log"

# The generated pipelines. GitLab CI: run by gitlab-ci-local (shell executor, each job in its own
# copy of the checkout, the four shards in parallel) against a fresh cache repository.
gitlab=$work/gitlab
cp -r "$proj" "$gitlab"
run "$work/gitlab" "$work/gitlab.cache" plan --emit gitlab-ci --shards 4 --ci-command "$bin" \
    --cache-remote "docker://127.0.0.1:$port/fleet/gitlab" >"$gitlab/.gitlab-ci.yml" 2>"$work/emit.log"
(cd "$gitlab" && git init -q && git remote add origin https://gitlab.example.com/edge/site.git &&
    git add -A && git -c user.email=ci@example.com -c user.name=ci commit -qm pipeline) >/dev/null
(cd "$gitlab" && HOME=$work/gitlab.home "$tools/node_modules/.bin/gitlab-ci-local" --shell-isolation \
    --variable "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" --variable "EDGEFORGE_FIXTURES_DIR=$fixtures" \
    --variable "EDGEFORGE_INSECURE_REGISTRIES=127.0.0.1:$port") >"$work/gitlab.log" 2>&1
gitlab_rc=$?
detail="$(grep -E 'FAIL|Error' "$work/gitlab.log" | head -5)"
check "gitlab-ci-local runs the generated .gitlab-ci.yml: the rootfs job, the 4 parallel shard jobs and the assemble job pass" \
    bash -c '[ "$1" = 0 ] && [ "$(grep -c " PASS  edgeforge-" "$2")" = 6 ]' _ "$gitlab_rc" "$work/gitlab.log"
detail="$(grep -E 'remote cache|rootfs:' "$work/gitlab.log" | head -8)"
check "in the pipeline the rootfs job computes and pushes the root filesystem, each shard job pulls it" \
    bash -c 'grep -q "edgeforge-rootfs .*pushing rootfs step" "$1" &&
        [ "$(grep -c "edgeforge-build: \[[1-4]/4\] > remote cache .*pulling rootfs step" "$1")" = 4 ] &&
        ! grep -q "edgeforge-build.*rootfs: merging" "$1"' _ "$work/gitlab.log"
for job in "$gitlab"/.gitlab-ci-local/artifacts/edgeforge-build*; do
    (cd "$job/build" && find . -type f \( -name '*.iso' -o -name '*.raw' -o -name '*.qcow2' -o -name '*.sha256' -o -name '*.tar.zst' \) | sort | xargs sha256sum)
done | sort -u >"$work/gitlab.sums"
detail="$(diff "$work/single.sums" "$work/gitlab.sums" | head -5)"
check "the pipeline's artifacts are byte-identical to the single-machine build" \
    diff -q "$work/single.sums" "$work/gitlab.sums"
detail="$(diff -r "$work/single/build/provider-images" "$gitlab/.gitlab-ci-local/artifacts/edgeforge-assemble/build/provider-images" 2>&1 | head -5)"
check "the pipeline's assemble job's provider layout is byte-identical to the single-machine one" \
    diff -r "$work/single/build/provider-images" "$gitlab/.gitlab-ci-local/artifacts/edgeforge-assemble/build/provider-images"

# GitHub Actions: the workflow passes action-validator (and a broken copy does not, so the
# validator is really reading it).
run "$work/planner" "$work/planner.cache" plan --emit github-actions --shards 4 \
    --cache-remote "docker://registry.example.com/edge/cache" >"$work/workflow.yml" 2>>"$work/emit.log"
detail="$("$tools/node_modules/.bin/action-validator" "$work/workflow.yml" 2>&1 | head -5)"
check "the GitHub Actions workflow passes action-validator" \
    "$tools/node_modules/.bin/action-validator" "$work/workflow.yml"
grep -v "runs-on" "$work/workflow.yml" >"$work/workflow-broken.yml"
check "action-validator refuses the workflow without runs-on" \
    bash -c '! "$1" "$2" >/dev/null 2>&1' _ "$tools/node_modules/.bin/action-validator" "$work/workflow-broken.yml"
check "the workflow has the rootfs job, a 4-shard matrix job that needs it, and an assemble job that needs that" \
    bash -c 'grep -q "^  rootfs:" "$1" && grep -q "needs: rootfs" "$1" && grep -q "shard: \[1, 2, 3, 4\]" "$1" &&
        grep -q "^  assemble:" "$1" && grep -q "needs: build" "$1" && grep -q "build all --assemble" "$1"' _ "$work/workflow.yml"

# Kubernetes: the rootfs Job and the Indexed Job validate against the API schema
# (kubernetes-models), and a broken copy does not.
run "$work/planner" "$work/planner.cache" plan --emit k8s-job --shards 4 \
    --cache-remote "docker://registry.example.com/edge/cache" --ci-image registry.example.com/edge/edgeforge:1 \
    >"$work/job.yml" 2>>"$work/emit.log"
detail="$(NODE_PATH=$tools/node_modules node "$src/tests/e2e/ci/validate-k8s-job.mjs" "$work/job.yml" 2>&1 | tail -3)"
check "the Kubernetes Jobs validate against the API schema: rootfs, the Indexed one with 4 completions, assemble" \
    bash -c 'out=$(NODE_PATH=$1/node_modules node "$2" "$3") && echo "$out" | grep -q "valid Job edgeforge-build completionMode=Indexed completions=4" &&
        echo "$out" | grep -q "valid Job edgeforge-rootfs" && echo "$out" | grep -q "valid Job edgeforge-assemble"' _ \
    "$tools" "$src/tests/e2e/ci/validate-k8s-job.mjs" "$work/job.yml"
sed 's/completionMode: Indexed/completionMode: Sometimes/' "$work/job.yml" >"$work/job-broken.yml"
check "kubernetes-models refuses a Job with an unknown completionMode" \
    bash -c '! NODE_PATH=$1/node_modules node "$2" "$3" >/dev/null 2>&1' _ \
    "$tools" "$src/tests/e2e/ci/validate-k8s-job.mjs" "$work/job-broken.yml"

# Two workers computing and pushing the same new step at once: both succeed (the same bytes
# under the same digests; the later push finds the tag or overwrites it with the same manifest),
# and the artifact pulls whole afterwards.
export SOURCE_DATE_EPOCH=1700000050
run "$work/race1" "$work/race1.cache" build rootfs --cache-to "$cache" >"$work/race1.log" 2>&1 &
race1=$!
run "$work/race2" "$work/race2.cache" build rootfs --cache-to "$cache" >"$work/race2.log" 2>&1 &
race2=$!
wait "$race1"
race1_rc=$?
wait "$race2"
race2_rc=$?
detail="$(tail -n 3 "$work/race1.log" "$work/race2.log")"
check "two workers pushing the same step at once both succeed, without a warning" \
    bash -c '[ "$1" = 0 ] && [ "$2" = 0 ] && ! grep -q warning "$3" "$4"' _ "$race1_rc" "$race2_rc" \
    "$work/race1.log" "$work/race2.log"
run "$work/race3" "$work/race3.cache" --json build rootfs --cache-from "$cache" >"$work/race3.json" 2>"$work/race3.log"
detail="$(tail -3 "$work/race3.log")"
check "after the race the step pulls whole" \
    python3 -c 'import json,sys; [r]=json.load(open(sys.argv[1]))["rootfs"]; assert r["remote_cache"]["pulled"]' "$work/race3.json"

# A worker killed while it pushes (SIGKILL, no cleanup) leaves the cache usable.
export SOURCE_DATE_EPOCH=1700000100
run "$work/killed" "$work/killed.cache" build rootfs --cache-to "$cache" >"$work/killed.log" 2>&1 &
killed=$!
for _ in $(seq 1 600); do
    grep -q "pushing rootfs step" "$work/killed.log" && break
    sleep 0.05
done
kill -9 "$killed" 2>/dev/null
wait "$killed" 2>/dev/null
detail="$(tail -3 "$work/killed.log")"
check "the killed worker had started its push" grep -q "pushing rootfs step" "$work/killed.log"
run "$work/after" "$work/after.cache" --json build rootfs --cache-remote "$cache" \
    >"$work/after.json" 2>"$work/after.log"
detail="$(tail -5 "$work/after.log")"
# (The registry may still finish the killed worker's last request: the next one then finds the
# artifact there when it is done computing, "present".)
check "after a worker was killed mid-push, the next one gets the step: pulled whole, or computed and in the cache" \
    python3 -c 'import json,sys; [r]=json.load(open(sys.argv[1]))["rootfs"]; c=r["remote_cache"]; assert c["pulled"] or c["pushed"] or c["present"]' "$work/after.json"
run "$work/after2" "$work/after2.cache" --json build iso --cache-from "$cache" \
    >"$work/after2.json" 2>"$work/after2.log"
run "$work/after2-local" "$work/after2-local.cache" build iso >"$work/after2-local.log" 2>&1
detail="$(tail -5 "$work/after2.log")"
check "then a fresh worker pulls it and builds the same ISOs as a machine without the cache" \
    bash -c 'python3 -c "import json,sys; assert json.load(open(sys.argv[1]))[\"summary\"][\"rootfs\"][\"remote_cache\"][\"pulled\"]" "$1" &&
        diff -q <(cd "$2/build" && sha256sum *.iso) <(cd "$3/build" && sha256sum *.iso)' _ \
    "$work/after2.json" "$work/after2" "$work/after2-local"

# An artifact pushed under another step's tag (a foreign or planted entry) is refused.
export SOURCE_DATE_EPOCH=1700000200
run "$work/foreign" "$work/foreign.cache" --json build rootfs --dry-run >"$work/foreign-key.json" 2>/dev/null
key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"][0]["key"])' "$work/foreign-key.json")
stage_key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rootfs"][0]["key"])' "$work/stage.json")
accept=application/vnd.oci.image.manifest.v1+json
curl -sf -H "Accept: $accept" "http://127.0.0.1:$port/v2/fleet/cache/manifests/rootfs-$stage_key" >"$work/manifest.json" &&
    curl -sf -X PUT -H "Content-Type: $accept" --data-binary "@$work/manifest.json" \
        "http://127.0.0.1:$port/v2/fleet/cache/manifests/rootfs-$key" >/dev/null ||
    fail "the planted artifact is pushed" "curl failed"
run "$work/foreign" "$work/foreign.cache" --json build rootfs --cache-remote "$cache" \
    >"$work/foreign.json" 2>"$work/foreign.log"
detail="$(tail -5 "$work/foreign.log")"
check "an artifact under another step's tag is refused with a warning naming why, the step computed and uploaded" \
    bash -c 'grep -q "is not used: its config names another step or key" "$2" &&
        python3 -c "import json,sys; [r]=json.load(open(sys.argv[1]))[\"rootfs\"]; assert not r[\"cache_hit\"] and not r[\"remote_cache\"][\"pulled\"] and r[\"remote_cache\"][\"pushed\"]" "$1"' _ \
    "$work/foreign.json" "$work/foreign.log"
run "$work/foreign2" "$work/foreign2.cache" --json build rootfs --cache-from "$cache" \
    >"$work/foreign2.json" 2>"$work/foreign2.log"
detail="$(tail -3 "$work/foreign2.log")"
check "the build that refused it pushed the right artifact over it: the next worker pulls it" \
    python3 -c 'import json,sys; [r]=json.load(open(sys.argv[1]))["rootfs"]; assert r["remote_cache"]["pulled"]' "$work/foreign2.json"

# Every pull above left a whole entry: no staging directory, and no private download store
# inside an entry (registry pulls download into one and remove it).
leftovers=$(find "$work"/*.cache -path '*/steps/*' \( -name '*-pull-*' -o -name .download \) 2>/dev/null | head -3)
pulled_entries=$(find "$work"/w1.cache/steps/rootfs -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)
detail="$leftovers (entries pulled into w1: $pulled_entries)"
check "no pull staging directory or download store is left in any cache" \
    test -z "$leftovers" -a "$pulled_entries" -ge 1

finish scaleout_test
