#!/usr/bin/env bash
# Builds the benchmark base image: a realistic Debian root filesystem (>= 600 MB, kernel,
# systemd, GRUB, shim) made with debootstrap, packed as a one-layer OCI image layout.
# Cached in $EDGEFORGE_BENCH_DIR (default ~/.cache/edgeforge/bench); rebuilt only when missing.
# debootstrap needs root (chroot); the mirror is taken from this host's apt sources.
set -euo pipefail
bench_dir=${EDGEFORGE_BENCH_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge/bench}
rootfs=$bench_dir/rootfs-amd64
layout=$bench_dir/base-amd64
suite=bookworm
packages=linux-image-amd64,systemd,systemd-sysv,udev,dbus,grub-efi-amd64-bin,grub-pc-bin,grub-efi-amd64-signed,shim-signed,openssh-server,python3,curl,ca-certificates,iproute2,iputils-ping,less,vim-tiny,kmod,e2fsprogs,dosfstools,squashfs-tools,cryptsetup-bin,lvm2,parted,rsync,jq,conntrack,iptables,nfs-common,open-iscsi

if [ -f "$layout/index.json" ]; then
    echo "bench base: $layout (cached)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "bench base: debootstrap needs root; run 'make bench' as root once to create $layout" >&2
    exit 2
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "bench base: no Debian mirror found in the apt sources" >&2; exit 1; }

mkdir -p "$bench_dir"
rm -rf "$rootfs.tmp"
echo "bench base: debootstrap $suite into $rootfs (a few minutes)"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs.tmp" "$mirror" >"$bench_dir/debootstrap.log" 2>&1 ||
    { tail -20 "$bench_dir/debootstrap.log" >&2; exit 1; }
rm -rf "$rootfs.tmp/var/cache/apt/archives"/*.deb "$rootfs.tmp/var/lib/apt/lists"/* "$rootfs.tmp/dev"/* 2>/dev/null || true
rm -rf "$rootfs" && mv "$rootfs.tmp" "$rootfs"
echo "bench base: $(du -sh "$rootfs" | cut -f1) root filesystem; packing the OCI layout"

python3 - "$rootfs" "$layout" <<'PY'
import gzip, hashlib, json, os, shutil, subprocess, sys, tempfile
rootfs, layout = sys.argv[1], sys.argv[2]
tmp = layout + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(os.path.join(tmp, "blobs", "sha256"))
def blob(data_path=None, data=None):
    h = hashlib.sha256()
    if data is not None:
        h.update(data); digest = h.hexdigest()
        open(os.path.join(tmp, "blobs", "sha256", digest), "wb").write(data)
        return "sha256:" + digest, len(data)
    with open(data_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    os.rename(data_path, os.path.join(tmp, "blobs", "sha256", digest))
    return "sha256:" + digest, os.path.getsize(os.path.join(tmp, "blobs", "sha256", digest))
tar = subprocess.Popen(["tar", "--sort=name", "--numeric-owner", "--xattrs", "--mtime=@1700000000",
                        "-C", rootfs, "-cf", "-", "."], stdout=subprocess.PIPE)
raw = hashlib.sha256()
layer_path = os.path.join(tmp, "layer.tmp")
with open(layer_path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
    for chunk in iter(lambda: tar.stdout.read(1 << 20), b""):
        raw.update(chunk); gz.write(chunk)
if tar.wait() != 0:
    sys.exit("tar failed")
layer_digest, layer_size = blob(layer_path)
config = {"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + raw.hexdigest()]}, "config": {}}
config_digest, config_size = blob(data=json.dumps(config, sort_keys=True).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}]}
manifest_digest, manifest_size = blob(data=json.dumps(manifest, sort_keys=True).encode())
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                        "size": manifest_size, "platform": {"architecture": "amd64", "os": "linux"},
                        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
open(os.path.join(tmp, "index.json"), "w").write(json.dumps(index))
open(os.path.join(tmp, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
shutil.rmtree(layout, ignore_errors=True)
os.rename(tmp, layout)
print(f"bench base: {layout} ({layer_size / 2**20:.0f} MiB compressed layer)")
PY
