#!/usr/bin/env bash
# End-to-end tests of the registry client and the blob cache against Debian's docker-registry
# (the CNCF distribution registry), started four times on free loopback ports: plain HTTP without
# authentication, TLS (a CA made here with openssl) with htpasswd Basic authentication, TLS that
# requires client certificates (mutual TLS, certs.d), and plain HTTP with token authentication
# (Bearer JWTs from tests/fixtures/token-server).
# Images are seeded and read back with skopeo. Checked: inspect (OCI index and manifest, Docker
# manifest list and v2 manifest), an ISO built from registry images equals the one built from
# the oci: layouts, multi-arch selection, credentials from REGISTRY_AUTH_FILE / a credential
# helper / --creds (never echoed), the Bearer token flow (scopes, one token per scope set, push,
# wrong password) and identity tokens (OAuth2 refresh tokens in config.json; the GET fallback
# when the token service has no OAuth2), TLS trust, client certificates from a certs.d
# directory (--certs-dir) and the errors without or with a wrong one, a corrupt blob rejected
# without touching the cache, an unreachable registry failing fast, cache ls/prune, and pushes
# (monolithic, chunked, mounted, an index, IMAGE_NAME) read back by skopeo.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools docker-registry skopeo openssl htpasswd unsquashfs xorriso python3
export EDGEFORGE_FIXTURES_DIR=$fixtures
source "$src/tests/e2e/registry.sh"
isolate_registry_test


# --- a plain HTTP registry without authentication -----------------------------------------
port=$(free_port)
reg=127.0.0.1:$port
start_registry plain "$port"
insecure=(--insecure-registry "$reg")
seed() { # seed SOURCE DEST-REPO:TAG [skopeo options...]
    local source=$1 dest=$2
    shift 2
    skopeo copy -q --dest-tls-verify=false "$@" "$source" "docker://$reg/$dest" >"$work/seed.log" 2>&1 ||
        { echo "skopeo could not seed $dest:"; cat "$work/seed.log"; exit 1; }
}
seed "oci:$fixtures/base-amd64:latest" edge/base:latest
seed "oci:$fixtures/agent-amd64:latest" edge/agent:latest

# A multi-arch layout: an OCI index over the two base fixtures, seeded with skopeo --all.
multi=$work/multi
mkdir -p "$multi/blobs/sha256"
cp -n "$fixtures"/base-amd64/blobs/sha256/* "$fixtures"/base-arm64/blobs/sha256/* "$multi/blobs/sha256/"
python3 - "$fixtures" "$multi" <<'PY'
import hashlib, json, os, sys
fixtures, multi = sys.argv[1], sys.argv[2]
manifests = []
for arch, variant in (("amd64", None), ("arm64", "v8")):
    entry = json.load(open(os.path.join(fixtures, f"base-{arch}", "index.json")))["manifests"][0]
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    manifests.append({"mediaType": entry.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
                      "digest": entry["digest"], "size": entry["size"], "platform": platform})
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": manifests}, separators=(",", ":")).encode()
digest = hashlib.sha256(index).hexdigest()
open(os.path.join(multi, "blobs", "sha256", digest), "wb").write(index)
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
    "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
    open(os.path.join(multi, "index.json"), "w"))
open(os.path.join(multi, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
seed "oci:$multi:latest" edge/multi:latest --all
manifest_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$1/index.json"; }
base_amd64_manifest=$(manifest_of "$fixtures/base-amd64")
base_arm64_manifest=$(manifest_of "$fixtures/base-arm64")

# inspect: the manifest digest the registry serves is the fixture's.
cache=$work/cache
"$bin" --cache-dir "$cache" "${insecure[@]}" inspect "docker://$reg/edge/base:latest" >"$work/inspect.txt" 2>&1
detail="$(cat "$work/inspect.txt")"
check "inspect docker://$reg/edge/base:latest shows the fixture's manifest and platform" \
    grep -q "manifest  $base_amd64_manifest" "$work/inspect.txt"
"$bin" --cache-dir "$cache" "${insecure[@]}" inspect "$reg/edge/base:latest" >"$work/inspect-bare.txt" 2>&1
detail="$(cat "$work/inspect-bare.txt")"
check "inspect of the bare form HOST/REPO:TAG works too" grep -q "platform  linux/amd64" "$work/inspect-bare.txt"

"$bin" --cache-dir "$cache" inspect "docker://$reg/edge/base:latest" >"$work/no-insecure.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/no-insecure.txt")"
check "a plain-HTTP registry not listed as insecure: exit 2, says --insecure-registry" \
    bash -c '[ "$0" = 2 ] && grep -q -- "pass --insecure-registry '"$reg"'" "$1"' "$code" "$work/no-insecure.txt"

"$bin" --cache-dir "$cache" "${insecure[@]}" inspect "docker://$reg/edge/base:nope" >"$work/notag.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/notag.txt")"
check "a missing tag: exit 2, names the registry, repository and tag" \
    bash -c '[ "$0" = 2 ] && grep -q "registry '"$reg"': manifest edge/base:nope: HTTP 404.*has no tag .nope." "$1"' \
    "$code" "$work/notag.txt"

# Multi-arch: --arch selects the platform of the index (arm64 with variant v8).
"$bin" --cache-dir "$cache" "${insecure[@]}" --arch arm64 inspect "docker://$reg/edge/multi:latest" >"$work/multi-arm64.txt" 2>&1
"$bin" --cache-dir "$cache" "${insecure[@]}" --arch amd64 inspect "docker://$reg/edge/multi:latest" >"$work/multi-amd64.txt" 2>&1
detail="$(cat "$work/multi-arm64.txt" "$work/multi-amd64.txt")"
check "multi-arch index: --arch arm64 and --arch amd64 select their manifests" bash -c \
    'grep -q "manifest  '"$base_arm64_manifest"'" "$0" && grep -q "platform  linux/arm64" "$0" &&
     grep -q "manifest  '"$base_amd64_manifest"'" "$1" && grep -q "platform  linux/amd64" "$1"' \
    "$work/multi-arm64.txt" "$work/multi-amd64.txt"
"$bin" --cache-dir "$cache" "${insecure[@]}" --arch arm64 inspect "docker://$reg/edge/base:latest" >"$work/wrongarch.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/wrongarch.txt")"
check "a single-arch amd64 image for --arch arm64: exit 2 naming both arches" bash -c \
    '[ "$0" = 2 ] && grep -q "is for amd64, but the build targets arm64" "$1"' "$code" "$work/wrongarch.txt"

# Docker media types: v2 manifests (skopeo --format v2s2) under a Docker manifest list.
seed "oci:$fixtures/agent-amd64:latest" edge/agent-docker:amd64 --format v2s2
seed "oci:$fixtures/agent-arm64:latest" edge/agent-docker:arm64 --format v2s2
python3 - "$reg" <<'PY' >"$work/docker-list.log" 2>&1
import hashlib, json, sys, urllib.request
reg = sys.argv[1]
v2 = "application/vnd.docker.distribution.manifest.v2+json"
manifests = []
for arch in ("amd64", "arm64"):
    request = urllib.request.Request(f"http://{reg}/v2/edge/agent-docker/manifests/{arch}", headers={"Accept": v2})
    body = urllib.request.urlopen(request).read()
    assert json.loads(body)["mediaType"] == v2
    platform = {"architecture": arch, "os": "linux"}
    if arch == "arm64":
        platform["variant"] = "v8"
    manifests.append({"mediaType": v2, "digest": "sha256:" + hashlib.sha256(body).hexdigest(),
                      "size": len(body), "platform": platform})
kind = "application/vnd.docker.distribution.manifest.list.v2+json"
body = json.dumps({"schemaVersion": 2, "mediaType": kind, "manifests": manifests}).encode()
request = urllib.request.Request(f"http://{reg}/v2/edge/agent-docker/manifests/list", data=body,
                                 method="PUT", headers={"Content-Type": kind})
urllib.request.urlopen(request)
PY
for arch in amd64 arm64; do
    "$bin" --cache-dir "$cache" "${insecure[@]}" --arch "$arch" inspect "docker://$reg/edge/agent-docker:list" \
        >"$work/docker-list-$arch.txt" 2>&1
done
detail="$(cat "$work/docker-list.log" "$work/docker-list-amd64.txt" "$work/docker-list-arm64.txt")"
check "Docker manifest list of v2 manifests: --arch selects linux/amd64 and linux/arm64" bash -c \
    'grep -q "platform  linux/amd64" "$0" && grep -q "platform  linux/arm64" "$1" &&
     grep -qE "^ +1 +gzip " "$0"' "$work/docker-list-amd64.txt" "$work/docker-list-arm64.txt"

# An ISO from registry images equals the one from the oci: layouts (rootfs listing), and the
# installer image (IMAGE_NAME) is pushed to the registry on the way.
example=$src/examples/basic
build_iso() { # build_iso NAME CACHE BASE AGENT [extra...]
    local name=$1 build_cache=$2 base=$3 agent=$4
    shift 4
    "$bin" --config "$example/edgeforge.yaml" --cache-dir "$build_cache" --output-dir "$work/out" \
        "${insecure[@]}" build iso --name "$name" --base "$base" --agent "$agent" "$@"
}
rootfs_listing() { # rootfs_listing ISO OUT
    xorriso -osirrox on -indev "$1" -extract /rootfs.squashfs "$work/rootfs.sqfs" >/dev/null 2>&1
    unsquashfs -lln -d root "$work/rootfs.sqfs" >"$2" 2>&1
    rm -f "$work/rootfs.sqfs"
}
if build_iso from-oci "$work/cache-oci" "oci:$fixtures/base-amd64:latest" "oci:$fixtures/agent-amd64:latest" \
    >"$work/build-oci.log" 2>&1; then
    rootfs_listing "$work/out/from-oci.iso" "$work/lln-oci.txt"
else
    fail "build iso from oci: layouts" "$(tail -20 "$work/build-oci.log")"
fi
if build_iso from-registry "$cache" "docker://$reg/edge/base:latest" "docker://$reg/edge/agent:latest" \
    --installer-image "$reg/edge/installer:v1" --push >"$work/build-registry.log" 2>&1; then
    rootfs_listing "$work/out/from-registry.iso" "$work/lln-registry.txt"
    detail="$(diff "$work/lln-oci.txt" "$work/lln-registry.txt" | head -20)"
    check "build iso from docker:// images: rootfs.squashfs (unsquashfs -lln) equals the oci: build" \
        bash -c '[ -s "$0" ] && cmp -s "$0" "$1"' "$work/lln-oci.txt" "$work/lln-registry.txt"
    detail="$(cat "$work/build-registry.log")"
    check "the build said it pulled the layers" grep -q "pulling docker://$reg/edge/base:latest: 2 of 2 layers" \
        "$work/build-registry.log"
else
    fail "build iso from docker:// images" "$(tail -20 "$work/build-registry.log")"
fi
skopeo inspect --tls-verify=false "docker://$reg/edge/installer:v1" >"$work/installer.json" 2>&1
detail="$(cat "$work/installer.json" "$work/build-registry.log")"
check "IMAGE_NAME as a registry reference is pushed (skopeo inspect reads it)" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["Architecture"]=="amd64" and len(d["Layers"])>=3' \
    "$work/installer.json"

# Second pull: everything comes from the cache.
build_iso again "$cache" "docker://$reg/edge/base:latest" "docker://$reg/edge/agent:latest" >"$work/build-again.log" 2>&1
detail="$(cat "$work/build-again.log")"
check "a second build pulls nothing (blobs and rootfs from the cache)" bash -c \
    '! grep -q pulling "$0" && grep -q "reusing cached rootfs" "$0"' "$work/build-again.log"

"$bin" --cache-dir "$cache" cache ls >"$work/cache-ls.txt" 2>&1
layer_digest=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["layers"][0]["digest"])' \
    "$fixtures/base-amd64/blobs/sha256/${base_amd64_manifest#sha256:}")
detail="$(cat "$work/cache-ls.txt")"
check "cache ls lists the pulled layers, the rootfs step and a size report" bash -c \
    'grep -qE "^blob +[0-9.]+ MiB .*'"$layer_digest"'" "$0" && grep -qE "^step .* rootfs/" "$0" &&
     grep -q "total" "$0"' "$work/cache-ls.txt"
layer_diff_id=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/blobs/sha256/"+sys.argv[2]));
c=json.load(open(sys.argv[1]+"/blobs/sha256/"+m["config"]["digest"][7:])); print(c["rootfs"]["diff_ids"][0])' \
    "$fixtures/base-amd64" "${base_amd64_manifest#sha256:}")
check "cache ls lists the unpacked copy of a gzip layer under its diff_id (first build made it)" bash -c \
    'grep -qE "^layer +[0-9.]+ MiB .*$1" "$0" && grep -q "unpacked layers [1-9]" "$0"' \
    "$work/cache-ls.txt" "$layer_diff_id"

# Pushes made by edgeforge, read back by skopeo.
"$bin" "${insecure[@]}" image push "oci:$fixtures/base-amd64:latest" "docker://$reg/pushed/base:v1" \
    >"$work/push1.log" 2>&1
skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$reg/pushed/base:v1" >"$work/push1.digest" 2>&1
detail="$(cat "$work/push1.log" "$work/push1.digest")"
check "image push: skopeo inspect sees the fixture's manifest digest" grep -qx "$base_amd64_manifest" "$work/push1.digest"
skopeo copy -q --src-tls-verify=false "docker://$reg/pushed/base:v1" "oci:$work/pulled:v1" >"$work/pull1.log" 2>&1
detail="$(cat "$work/pull1.log")"
check "image push: skopeo copy reads every blob back" bash -c \
    '[ "$(cd "$0/blobs/sha256" && ls | sort)" = "$(cd "$1/blobs/sha256" && ls | sort)" ]' \
    "$work/pulled" "$fixtures/base-amd64"
"$bin" "${insecure[@]}" image push "oci:$fixtures/base-amd64:latest" "docker://$reg/pushed/base:v1" \
    >"$work/push2.log" 2>&1
detail="$(cat "$work/push2.log")"
check "image push again: nothing uploaded (HEAD finds every blob)" grep -q "(0 blobs uploaded, 0 mounted, 3 already there)" "$work/push2.log"
"$bin" "${insecure[@]}" image push --mount-from pushed/base "oci:$fixtures/base-amd64:latest" \
    "docker://$reg/other/base:v1" >"$work/push3.log" 2>&1
detail="$(cat "$work/push3.log")"
check "image push --mount-from: blobs mounted across repositories" grep -q "(0 blobs uploaded, 3 mounted, 0 already there)" "$work/push3.log"
"$bin" "${insecure[@]}" image push --chunk-size 1M "oci:$fixtures/base-amd64:latest" \
    "docker://$reg/chunked/base:v1" >"$work/push4.log" 2>&1
skopeo copy -q --src-tls-verify=false "docker://$reg/chunked/base:v1" "oci:$work/chunked:v1" >"$work/pull4.log" 2>&1
detail="$(cat "$work/push4.log" "$work/pull4.log")"
check "image push --chunk-size 1M: chunked upload, skopeo copies it back" bash -c \
    'grep -q "(3 blobs uploaded" "$0" && [ "$(ls "$1/blobs/sha256" | wc -l)" = 4 ]' "$work/push4.log" "$work/chunked"
"$bin" "${insecure[@]}" image push "oci:$multi:latest" "docker://$reg/pushed/multi:latest" >"$work/push5.log" 2>&1
skopeo inspect --raw --tls-verify=false "docker://$reg/pushed/multi:latest" >"$work/multi-raw.json" 2>&1
detail="$(cat "$work/push5.log" "$work/multi-raw.json")"
check "image push of an index: skopeo sees both platforms" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mediaType"] == "application/vnd.oci.image.index.v1+json", d
assert sorted(m["platform"]["architecture"] for m in d["manifests"]) == ["amd64", "arm64"], d' "$work/multi-raw.json"

# A corrupt blob in the registry's storage: rejected, named, and nothing enters the cache.
agent_manifest=$(manifest_of "$fixtures/agent-amd64")
agent_layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' \
    "$fixtures/agent-amd64/blobs/sha256/${agent_manifest#sha256:}")
hex=${agent_layer#sha256:}
data=$work/plain/storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
if [ -f "$data" ]; then
    size=$(stat -c %s "$data")
    printf 'CORRUPT!' | dd of="$data" bs=1 seek=$((size / 2)) conv=notrunc status=none
    build_iso corrupt "$work/cache-corrupt" "docker://$reg/edge/base:latest" "docker://$reg/edge/agent:latest" \
        >"$work/corrupt.log" 2>&1
    code=$?
    detail="exit $code: $(cat "$work/corrupt.log"; ls -R "$work/cache-corrupt/blobs" 2>&1 | head -20)"
    check "a corrupt layer in the registry: exit 1, names the layer digest, not in the cache" bash -c \
        '[ "$0" = 1 ] && grep -q "registry '"$reg"': layer '"$agent_layer"' of edge/agent:latest is corrupt" "$1" &&
         [ ! -e "$2/blobs/sha256/'"$hex"'" ] && [ -z "$(ls -A "$2/blobs/tmp" 2>/dev/null)" ] &&
         [ ! -e "$3/corrupt.iso" ]' "$code" "$work/corrupt.log" "$work/cache-corrupt" "$work/out"
else
    fail "a corrupt layer in the registry" "registry storage has no $data"
fi

# An unreachable registry (a closed port) fails within seconds, naming the host.
closed=127.0.0.1:$(free_port)
start=$(date +%s)
"$bin" --cache-dir "$cache" --insecure-registry "$closed" inspect "docker://$closed/edge/base:latest" >"$work/closed.txt" 2>&1
code=$?
elapsed=$(($(date +%s) - start))
detail="exit $code after ${elapsed}s: $(cat "$work/closed.txt")"
check "an unreachable registry: exit 1 within 15 s, names the host" bash -c \
    '[ "$0" = 1 ] && [ "$1" -lt 15 ] && grep -q "registry '"$closed"' is unreachable" "$2"' "$code" "$elapsed" "$work/closed.txt"

# --- TLS with htpasswd authentication ---------------------------------------------------------
tls=$work/tls
mkdir -p "$tls/certs"
user=edge-user
password='S3cret-Pa55-8d1e'
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 2 \
    -subj "/CN=edgeforge test CA" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -keyout "$tls/server.key" -out "$tls/server.csr" \
    -subj "/CN=127.0.0.1" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/ext.cnf"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/server.crt" -days 2 -extfile "$tls/ext.cnf" >/dev/null 2>&1
cp "$tls/ca.crt" "$tls/certs/ca.crt"
htpasswd -Bbn "$user" "$password" >"$tls/htpasswd" 2>/dev/null
tls_port=$(free_port)
treg=127.0.0.1:$tls_port
start_registry secure "$tls_port" "  tls:
    certificate: $tls/server.crt
    key: $tls/server.key
auth:
  htpasswd:
    realm: edgeforge-test
    path: $tls/htpasswd"
skopeo copy -q --dest-cert-dir "$tls/certs" --dest-creds "$user:$password" \
    "oci:$fixtures/base-amd64:latest" "docker://$treg/edge/base:latest" >"$work/seed-tls.log" 2>&1 ||
    { echo "skopeo could not seed the TLS registry:"; cat "$work/seed-tls.log"; exit 1; }
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$treg" "$(printf '%s:%s' "$user" "$password" | base64 -w0)" \
    >"$work/auth.json"
no_password() { ! grep -qF "$password" "$@"; }

tcache=$work/tls-cache
REGISTRY_AUTH_FILE=$work/auth.json "$bin" -v --cache-dir "$tcache" --ca-cert "$tls/ca.crt" \
    inspect "docker://$treg/edge/base:latest" >"$work/tls-ok.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/tls-ok.txt")"
check "TLS + htpasswd registry with --ca-cert and REGISTRY_AUTH_FILE: inspect works, -v shows no password" \
    bash -c '[ "$0" = 0 ] && grep -q "manifest  '"$base_amd64_manifest"'" "$1" && ! grep -qF "$2" "$1"' \
    "$code" "$work/tls-ok.txt" "$password"
"$bin" --cache-dir "$tcache" --ca-cert "$tls/certs" --creds "$user:$password" -v \
    image push "oci:$fixtures/agent-amd64:latest" "docker://$treg/edge/agent:latest" >"$work/tls-push.txt" 2>&1
code=$?
skopeo inspect --cert-dir "$tls/certs" --creds "$user:$password" --format '{{.Digest}}' \
    "docker://$treg/edge/agent:latest" >"$work/tls-push.digest" 2>&1
detail="exit $code: $(cat "$work/tls-push.txt" "$work/tls-push.digest")"
check "TLS + auth: --creds and a CA directory push the agent; skopeo reads it; no password shown" bash -c \
    '[ "$0" = 0 ] && grep -qx "$1" "$2" && ! grep -qF "$4" "$3"' \
    "$code" "$agent_manifest" "$work/tls-push.digest" "$work/tls-push.txt" "$password"
if REGISTRY_AUTH_FILE=$work/auth.json "$bin" --config "$example/edgeforge.yaml" --cache-dir "$tcache" \
    --output-dir "$work/out" --ca-cert "$tls/ca.crt" build iso --name from-tls \
    --base "docker://$treg/edge/base:latest" --agent "docker://$treg/edge/agent:latest" >"$work/build-tls.log" 2>&1; then
    rootfs_listing "$work/out/from-tls.iso" "$work/lln-tls.txt"
    detail="$(diff "$work/lln-oci.txt" "$work/lln-tls.txt" | head -20)"
    check "build iso from the TLS + auth registry: same rootfs listing as the oci: build" cmp -s "$work/lln-oci.txt" "$work/lln-tls.txt"
else
    fail "build iso from the TLS + auth registry" "$(tail -20 "$work/build-tls.log")"
fi

"$bin" -v --cache-dir "$work/tls-cache2" inspect "docker://$treg/edge/base:latest" >"$work/tls-noca.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/tls-noca.txt")"
check "TLS without --ca-cert: exit 2, says the certificate is not trusted and --ca-cert" bash -c \
    '[ "$0" = 2 ] && grep -q "the TLS certificate of '"$treg"' is not trusted.*pass --ca-cert FILE" "$1"' \
    "$code" "$work/tls-noca.txt"
"$bin" -v --cache-dir "$work/tls-cache2" --ca-cert "$tls/ca.crt" inspect "docker://$treg/edge/base:latest" >"$work/tls-nocreds.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/tls-nocreds.txt")"
check "TLS + auth without credentials: exit 2, 401, says how to log in" bash -c \
    '[ "$0" = 2 ] && grep -q "401 unauthorized.*no credentials for '"$treg"' were found; log in with .docker login '"$treg"'.*REGISTRY_AUTH_FILE.*--creds" "$1"' \
    "$code" "$work/tls-nocreds.txt"
"$bin" -v --cache-dir "$work/tls-cache2" --ca-cert "$tls/ca.crt" --creds "$user:wrong-$password" \
    inspect "docker://$treg/edge/base:latest" >"$work/tls-badcreds.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/tls-badcreds.txt")"
check "TLS + auth with a wrong password: exit 2, credentials from --creds not accepted, password not shown" bash -c \
    '[ "$0" = 2 ] && grep -q "the credentials from --creds were not accepted" "$1" && ! grep -qF "$2" "$1"' \
    "$code" "$work/tls-badcreds.txt" "$password"
[ -z "$(ls -A "$work/tls-cache2/blobs/sha256" 2>/dev/null)" ] && pass "failed pulls left no blobs in the cache" ||
    fail "failed pulls left no blobs in the cache" "$(ls -R "$work/tls-cache2")"

# Credentials from a credential helper named in ~/.docker/config.json (credHelpers).
mkdir -p "$work/helper-bin" "$HOME/.docker"
cat >"$work/helper-bin/docker-credential-edgetest" <<HELPER
#!/bin/sh
read -r server
[ "\$1" = get ] && [ "\$server" = "$treg" ] || { echo "credentials not found in native keychain"; exit 1; }
printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "\$server" "$user" "$password"
HELPER
chmod +x "$work/helper-bin/docker-credential-edgetest"
printf '{"credHelpers":{"%s":"edgetest"}}\n' "$treg" >"$HOME/.docker/config.json"
PATH=$work/helper-bin:$PATH "$bin" -v --cache-dir "$work/tls-cache3" --ca-cert "$tls/ca.crt" \
    inspect "docker://$treg/edge/base:latest" >"$work/tls-helper.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/tls-helper.txt")"
check "credHelpers: docker-credential-edgetest supplies the credentials, none shown" bash -c \
    '[ "$0" = 0 ] && grep -q "manifest  '"$base_amd64_manifest"'" "$1" && ! grep -qF "$2" "$1"' \
    "$code" "$work/tls-helper.txt" "$password"
rm -f "$HOME/.docker/config.json"

# --- mutual TLS: a registry that requires client certificates, found in certs.d ---------------
# The CA above also signs a client certificate, and the registry trusts it for clients
# (http.tls.clientcas). --certs-dir DIR replaces the certs.d roots; DIR/HOST:PORT/ holds ca.crt,
# client.cert and client.key, the layout skopeo's --dest-cert-dir reads too.
openssl req -newkey rsa:2048 -nodes -keyout "$tls/client.key" -out "$tls/client.csr" \
    -subj "/CN=edgeforge test client" >/dev/null 2>&1
printf 'extendedKeyUsage=clientAuth\n' >"$tls/client-ext.cnf"
openssl x509 -req -in "$tls/client.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -out "$tls/client.cert" -days 2 -extfile "$tls/client-ext.cnf" >/dev/null 2>&1
mtls_port=$(free_port)
mreg=127.0.0.1:$mtls_port
start_registry mtls "$mtls_port" "  tls:
    certificate: $tls/server.crt
    key: $tls/server.key
    clientcas:
      - $tls/ca.crt"
certs_d=$work/certs.d
mkdir -p "$certs_d/$mreg"
cp "$tls/ca.crt" "$tls/client.cert" "$tls/client.key" "$certs_d/$mreg/"
skopeo copy -q --dest-cert-dir "$certs_d/$mreg" "oci:$fixtures/base-amd64:latest" \
    "docker://$mreg/edge/base:latest" >"$work/seed-mtls.log" 2>&1 ||
    { echo "skopeo could not seed the mutual-TLS registry:"; cat "$work/seed-mtls.log"; exit 1; }

"$bin" --cache-dir "$work/mtls-cache0" --ca-cert "$tls/ca.crt" image merge "docker://$mreg/edge/base:latest" \
    >"$work/mtls-nocert.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/mtls-nocert.txt")"
check "mutual TLS without a client certificate: exit 2, names the registry, says to put client.cert and client.key in HOST:PORT of a certs.d directory or --certs-dir" \
    bash -c '[ "$0" = 2 ] && grep -q "registry '"$mreg"': GET /v2/: the registry requires a TLS client certificate and none is configured for '"$mreg"' (.*alert .*certificate.*); put the client certificate and its key (PEM) as client.cert and client.key in '"$HOME/.config/containers/certs.d/$mreg"'/ or /etc/containers/certs.d/'"$mreg"'/ or /etc/docker/certs.d/'"$mreg"'/, or pass --certs-dir DIR with them in DIR/'"$mreg"'/" "$1"' \
    "$code" "$work/mtls-nocert.txt"

"$bin" -v --cache-dir "$work/mtls-cache1" --certs-dir "$certs_d" image merge "docker://$mreg/edge/base:latest" \
    >"$work/mtls-pull.txt" 2>&1
code=$?
blobs=$(ls "$work/mtls-cache1/blobs/sha256" 2>/dev/null | wc -l)
detail="exit $code, $blobs blobs: $(cat "$work/mtls-pull.txt")"
check "mutual TLS with --certs-dir: ca.crt trusted (no --ca-cert), client.cert + client.key sent, every blob pulled" \
    bash -c '[ "$0" = 0 ] && [ "$1" -ge 3 ]' "$code" "$blobs"

mkdir -p "$work/certs.d-nokey/$mreg"
cp "$tls/ca.crt" "$tls/client.cert" "$work/certs.d-nokey/$mreg/"
"$bin" --cache-dir "$work/mtls-cache0" --certs-dir "$work/certs.d-nokey" inspect "docker://$mreg/edge/base:latest" \
    >"$work/mtls-nokey.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/mtls-nokey.txt")"
check "certs.d with client.cert but no client.key: exit 2, names both files" bash -c \
    '[ "$0" = 2 ] && grep -q "registry '"$mreg"': the client certificate $2/client.cert has no key: $2/client.key is missing" "$1"' \
    "$code" "$work/mtls-nokey.txt" "$work/certs.d-nokey/$mreg"

# A client certificate from a CA the registry does not trust for clients.
mkdir -p "$work/certs.d-rogue/$mreg"
cp "$tls/ca.crt" "$work/certs.d-rogue/$mreg/"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/certs.d-rogue/$mreg/rogue.key" \
    -out "$work/certs.d-rogue/$mreg/rogue.cert" -days 2 -subj "/CN=rogue client" >/dev/null 2>&1
"$bin" --cache-dir "$work/mtls-cache0" --certs-dir "$work/certs.d-rogue" inspect "docker://$mreg/edge/base:latest" \
    >"$work/mtls-rogue.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/mtls-rogue.txt")"
check "a client certificate the registry does not trust: exit 2, names the certificate, says to check its CA" bash -c \
    '[ "$0" = 2 ] && grep -q "registry '"$mreg"': GET /v2/: the registry refused the client certificate $2/rogue.cert (.*); check that it is signed by a CA the registry trusts for clients" "$1"' \
    "$code" "$work/mtls-rogue.txt" "$work/certs.d-rogue/$mreg"
[ -z "$(ls -A "$work/mtls-cache0/blobs/sha256" 2>/dev/null)" ] && pass "refused client certificates left no blobs in the cache" ||
    fail "refused client certificates left no blobs in the cache" "$(ls -R "$work/mtls-cache0")"

# --- token authentication (Bearer): docker-registry + tests/fixtures/token-server -------------
# The registry trusts RS256 JWTs signed by a key whose self-signed certificate is its
# rootcertbundle; the token server signs with that key and logs every request (JSON lines).
tok=$work/token
mkdir -p "$tok"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tok/key.pem" -out "$tok/cert.pem" -days 2 \
    -subj "/CN=edgeforge test token signer" >/dev/null 2>&1
token_user=edge-pusher
token_password='T0ken-Pa55-5e7a'
token_service=edgeforge-test-registry
# start_token_server [OPTIONS...]: on a free port the first time, on the same one (the realm the
# registry names) after stop_token_server.
start_token_server() {
    local port=(--port-file "$tok/port")
    [ -s "$tok/port" ] && port+=(--port "$(cat "$tok/port")") && rm "$tok/port"
    python3 "$src/tests/fixtures/token-server" "${port[@]}" --key "$tok/key.pem" \
        --cert "$tok/cert.pem" --issuer edgeforge-test-issuer --service "$token_service" \
        --user "$token_user" --password "$token_password" --log "$tok/requests.log" "$@" \
        >>"$tok/server.log" 2>&1 &
    token_pid=$!
    registry_pids+=($token_pid)
    for _ in $(seq 1 100); do [ -s "$tok/port" ] && break; sleep 0.1; done
    [ -s "$tok/port" ] || { echo "the token server did not start:"; cat "$tok/server.log"; exit 1; }
}
stop_token_server() { kill "$token_pid" && wait "$token_pid" 2>/dev/null; }
start_token_server
realm=http://127.0.0.1:$(cat "$tok/port")/token
bearer_port=$(free_port)
breg=127.0.0.1:$bearer_port
start_registry bearer "$bearer_port" "auth:
  token:
    realm: $realm
    service: $token_service
    issuer: edgeforge-test-issuer
    rootcertbundle: $tok/cert.pem"
skopeo copy -q --dest-tls-verify=false --dest-creds "$token_user:$token_password" \
    "oci:$fixtures/base-amd64:latest" "docker://$breg/edge/base:latest" >"$work/seed-bearer.log" 2>&1 ||
    { echo "skopeo could not seed the token-auth registry:"; cat "$work/seed-bearer.log" "$tok/server.log"; exit 1; }
# The registry and its token service are both plain HTTP: both are listed, or no credentials go
# to the token service (checked below).
binsecure=(--insecure-registry "$breg,${realm#http://}")
binsecure=("${binsecure[@]%/token}")
# token_requests: the token server's log lines written since the mark (token_mark).
token_mark() { mark=$(wc -l <"$tok/requests.log"); }
token_requests() { tail -n +$((mark + 1)) "$tok/requests.log"; }
no_token_secret() { ! grep -qF "$token_password" "$@"; }

token_mark
"$bin" --cache-dir "$work/bearer-cache-http" --insecure-registry "$breg" \
    --creds "$token_user:$token_password" inspect "docker://$breg/edge/base:latest" \
    >"$work/bearer-http-realm.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-http-realm.txt"); token requests: $(token_requests | wc -l)"
check "--creds are not sent to a plain-HTTP token service that is not listed: exit 2 naming the realm, nothing sent" \
    bash -c '[ "$0" = 2 ] && grep -qF "token service $1 is plain HTTP" "$2" && [ -z "$3" ]' \
    "$code" "$realm" "$work/bearer-http-realm.txt" "$(token_requests)"
check "the refusal does not show the password" no_token_secret "$work/bearer-http-realm.txt"

token_mark
"$bin" -v --cache-dir "$work/bearer-cache0" "${binsecure[@]}" inspect "docker://$breg/edge/base:latest" \
    >"$work/bearer-anon.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-anon.txt")"
check "token auth, anonymous: exit 2, 401 names the registry and says how to log in" bash -c \
    '[ "$0" = 2 ] && grep -q "registry '"$breg"': manifest edge/base:latest: 401 unauthorized.*no credentials for '"$breg"' were found; log in with .docker login '"$breg"'.*--creds USER:PASSWORD" "$1"' \
    "$code" "$work/bearer-anon.txt"
detail="$(token_requests)"
check "token auth, anonymous: the token server was asked without credentials and granted nothing" \
    python3 -c '
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert lines and all(l["credentials"] == "none" and l["granted"] == [] for l in lines), lines
assert all(l["scopes"] == ["repository:edge/base:pull"] for l in lines), lines' < <(token_requests)

token_mark
"$bin" -v --cache-dir "$work/bearer-cache1" "${binsecure[@]}" --creds "$token_user:$token_password" \
    image merge "docker://$breg/edge/base:latest" >"$work/bearer-pull.txt" 2>&1
code=$?
blobs=$(ls "$work/bearer-cache1/blobs/sha256" 2>/dev/null | wc -l)
detail="exit $code, $blobs blobs: $(cat "$work/bearer-pull.txt"; token_requests)"
# eyJ starts every JWT (base64 of '{"'): the bearer token is a secret too.
check "token auth, --creds: pulls every blob with one token (GET, Basic, scope edge/base:pull), no password or token shown" \
    bash -c '[ "$0" = 0 ] && [ "$1" -ge 3 ] && ! grep -qF -e "$3" -e eyJ "$2" && python3 -c "
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert len(lines) == 1, lines
l = lines[0]
assert (l[\"method\"], l[\"credentials\"], l[\"user\"], l[\"service\"]) == (\"GET\", \"basic\", \"'"$token_user"'\", \"'"$token_service"'\"), l
assert l[\"scopes\"] == [\"repository:edge/base:pull\"] and l[\"granted\"][0][\"actions\"] == [\"pull\"], l"' \
    "$code" "$blobs" "$work/bearer-pull.txt" "$token_password" < <(token_requests)

token_mark
"$bin" -v "${binsecure[@]}" --creds "$token_user:$token_password" \
    image push "oci:$fixtures/agent-amd64:latest" "docker://$breg/edge/agent:v1" >"$work/bearer-push.txt" 2>&1
code=$?
token_requests >"$work/bearer-push.tokens" # before skopeo asks for its own
skopeo inspect --tls-verify=false --creds "$token_user:$token_password" --format '{{.Digest}}' \
    "docker://$breg/edge/agent:v1" >"$work/bearer-push.digest" 2>&1
detail="exit $code: $(cat "$work/bearer-push.txt" "$work/bearer-push.digest" "$work/bearer-push.tokens")"
check "token auth, push: one token for scope edge/agent:pull,push (granted both); skopeo reads the pushed digest" \
    bash -c '[ "$0" = 0 ] && grep -qx "$1" "$2" && ! grep -qF "$4" "$3" && python3 -c "
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert len(lines) == 1, lines
assert lines[0][\"scopes\"] == [\"repository:edge/agent:pull,push\"], lines
assert lines[0][\"granted\"][0][\"actions\"] == [\"pull\", \"push\"], lines"' \
    "$code" "$agent_manifest" "$work/bearer-push.digest" "$work/bearer-push.txt" "$token_password" <"$work/bearer-push.tokens"

"$bin" -v --cache-dir "$work/bearer-cache0" "${binsecure[@]}" --creds "$token_user:wrong-$token_password" \
    inspect "docker://$breg/edge/base:latest" >"$work/bearer-badcreds.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-badcreds.txt")"
check "token auth, wrong password: exit 2, the token service refused --creds (401), registry named, password not shown" \
    bash -c '[ "$0" = 2 ] && grep -q "registry '"$breg"': the token service '"$realm"' refused the credentials from --creds (401 UNAUTHORIZED: invalid username or password); check them" "$1" &&
    ! grep -qF "$2" "$1"' "$code" "$work/bearer-badcreds.txt" "$token_password"

# Identity tokens: docker login keeps an OAuth2 refresh token as auths.HOST.identitytoken (and
# "auth" as base64 "USER:"); edgeforge must POST grant_type=refresh_token to the realm.
# new_refresh_token: what docker login keeps, from the token server's GET offline_token flow.
new_refresh_token() {
    python3 - "$realm" "$token_service" "$token_user" "$token_password" <<'PY'
import base64, json, sys, urllib.request
realm, service, user, password = sys.argv[1:]
request = urllib.request.Request(f"{realm}?service={service}&client_id=docker&offline_token=true",
    headers={"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
print(json.load(urllib.request.urlopen(request))["refresh_token"])
PY
}
refresh_token=$(new_refresh_token)
mkdir -p "$HOME/.docker"
printf '{"auths":{"%s":{"auth":"%s","identitytoken":"%s"}}}\n' "$breg" \
    "$(printf '%s:' "$token_user" | base64 -w0)" "$refresh_token" >"$HOME/.docker/config.json"
token_mark
"$bin" -v --cache-dir "$work/bearer-cache2" "${binsecure[@]}" image merge "docker://$breg/edge/base:latest" \
    >"$work/bearer-identity.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-identity.txt"; token_requests)"
check "identity token from ~/.docker/config.json: one POST grant_type=refresh_token (client_id edgeforge), pull works, token not shown" \
    bash -c '[ "$0" = 0 ] && [ -n "$2" ] && ! grep -qF "$2" "$1" && python3 -c "
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert len(lines) == 1, lines
l = lines[0]
assert (l[\"method\"], l[\"grant_type\"], l[\"client_id\"], l[\"user\"]) == (\"POST\", \"refresh_token\", \"edgeforge\", \"'"$token_user"'\"), l
assert l[\"service\"] == \"'"$token_service"'\" and l[\"scopes\"] == [\"repository:edge/base:pull\"], l
assert l[\"content_type\"] == \"application/x-www-form-urlencoded\" and l[\"status\"] == 200, l"' \
    "$code" "$work/bearer-identity.txt" "$refresh_token" < <(token_requests)
printf '{"auths":{"%s":{"identitytoken":"revoked-%s"}}}\n' "$breg" "$refresh_token" >"$HOME/.docker/config.json"
"$bin" -v --cache-dir "$work/bearer-cache0" "${binsecure[@]}" inspect "docker://$breg/edge/base:latest" \
    >"$work/bearer-identity-bad.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-identity-bad.txt")"
check "an unknown identity token: exit 2, refused (400 invalid_grant), says to log in again, token not shown" \
    bash -c '[ "$0" = 2 ] && grep -q "registry '"$breg"': the token service '"$realm"' refused the identity token from '"$HOME"'/.docker/config.json (400 invalid_grant.*log in again with .docker login '"$breg"'" "$1" &&
    ! grep -qF "$2" "$1"' "$code" "$work/bearer-identity-bad.txt" "$refresh_token"

# A token service without OAuth2 (--no-oauth: every POST gets 404, as GCR's did): the identity
# token goes to the GET flow as the Basic password, under the user name stored with it. This
# token service takes it there (as Azure's does); one it does not know is refused with an error
# that says an identity token alone cannot log in.
stop_token_server
start_token_server --no-oauth
refresh_token2=$(new_refresh_token)
printf '{"auths":{"%s":{"auth":"%s","identitytoken":"%s"}}}\n' "$breg" \
    "$(printf '%s:' "$token_user" | base64 -w0)" "$refresh_token2" >"$HOME/.docker/config.json"
token_mark
"$bin" -v --cache-dir "$work/bearer-cache3" "${binsecure[@]}" image merge "docker://$breg/edge/base:latest" \
    >"$work/bearer-fallback.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-fallback.txt"; token_requests)"
check "identity token, token service without OAuth2: POST 404, then one GET with Basic USER:IDENTITY_TOKEN; pull works, token not shown" \
    bash -c '[ "$0" = 0 ] && [ -n "$2" ] && ! grep -qF "$2" "$1" && python3 -c "
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert len(lines) == 2, lines
post, get = lines
assert (post[\"method\"], post[\"grant_type\"], post[\"status\"]) == (\"POST\", \"refresh_token\", 404), post
assert (get[\"method\"], get[\"credentials\"], get[\"user\"], get[\"status\"]) == (\"GET\", \"basic_refresh_token\", \"'"$token_user"'\", 200), get
assert get[\"scopes\"] == [\"repository:edge/base:pull\"] and get[\"granted\"][0][\"actions\"] == [\"pull\"], get"' \
    "$code" "$work/bearer-fallback.txt" "$refresh_token2" < <(token_requests)
printf '{"auths":{"%s":{"identitytoken":"revoked-%s"}}}\n' "$breg" "$refresh_token2" >"$HOME/.docker/config.json"
token_mark
"$bin" -v --cache-dir "$work/bearer-cache0" "${binsecure[@]}" image merge "docker://$breg/edge/base:latest" \
    >"$work/bearer-fallback-bad.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/bearer-fallback-bad.txt"; token_requests)"
check "an unknown identity token, token service without OAuth2: exit 2, says POST got 404 and GET refused the identity token, needs --creds; user <token>, token not shown" \
    bash -c '[ "$0" = 2 ] && grep -q "registry '"$breg"': the token service '"$realm"' does not take OAuth2 POST requests (HTTP 404), and the GET token request refused the identity token from '"$HOME"'/.docker/config.json as a password (401 UNAUTHORIZED: invalid username or password): this token service cannot log in with an identity token alone; pass --creds USER:PASSWORD" "$1" &&
    ! grep -qF "$2" "$1" && python3 -c "
import json, sys
lines = [json.loads(l) for l in sys.stdin]
assert [(l[\"method\"], l[\"status\"]) for l in lines] == [(\"POST\", 404), (\"GET\", 401)], lines
assert lines[1][\"user\"] == \"<token>\", lines"' \
    "$code" "$work/bearer-fallback-bad.txt" "$refresh_token2" < <(token_requests)
rm -f "$HOME/.docker/config.json"
detail="$(grep -F -e "$token_password" -e "$refresh_token" -e "$refresh_token2" "$tok/requests.log" | head -3)"
check "the token server's log holds no password and no refresh token" bash -c \
    '! grep -qF -e "$1" -e "$2" -e "$3" "$0"' "$tok/requests.log" "$token_password" "$refresh_token" "$refresh_token2"

# --- cache prune ----------------------------------------------------------------------------
"$bin" --cache-dir "$cache" cache prune --older-than 1d >"$work/prune-old.txt" 2>&1
detail="$(cat "$work/prune-old.txt")"
check "cache prune --older-than 1d keeps what was just used" grep -q "removed 0 entries" "$work/prune-old.txt"
touch -d '10 days ago' "$cache/blobs/sha256/${layer_digest#sha256:}"
"$bin" --cache-dir "$cache" cache prune --older-than 7d >"$work/prune-7d.txt" 2>&1
detail="$(cat "$work/prune-7d.txt")"
check "cache prune --older-than 7d removes a blob last used 10 days ago, only it" bash -c \
    'grep -q "removed 1 entry (" "$0" && [ ! -e "$1" ]' "$work/prune-7d.txt" "$cache/blobs/sha256/${layer_digest#sha256:}"
"$bin" --cache-dir "$cache" cache prune >"$work/prune-all.txt" 2>&1
"$bin" --cache-dir "$cache" cache ls >"$work/cache-ls-after.txt" 2>&1
detail="$(cat "$work/prune-all.txt" "$work/cache-ls-after.txt")"
check "cache prune (all) empties the cache" bash -c \
    '! grep -qE "^(blob|layer|step|partial) " "$0" && grep -q "total 0 B" "$0"' "$work/cache-ls-after.txt"
"$bin" --cache-dir "$cache" cache prune --older-than soon >"$work/prune-bad.txt" 2>&1
code=$?
detail="exit $code: $(cat "$work/prune-bad.txt")"
check "cache prune --older-than soon: exit 2" bash -c '[ "$0" = 2 ] && grep -q "is not a duration" "$1"' \
    "$code" "$work/prune-bad.txt"

finish registry_test
