#!/usr/bin/env bash
# Builds the benchmark base image: a realistic Debian root filesystem (>= 600 MB, kernel,
# systemd, GRUB, shim) made with debootstrap, packed as a one-layer OCI image layout
# (base-amd64) and as a four-layer one (base-amd64-layers).
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
    # The same root filesystem in four layers, for the multi-layer merge figure.
    if [ ! -f "$layout-layers/index.json" ] && [ -d "$rootfs" ]; then
        python3 "$(dirname "$0")/pack_layout.py" --split "$rootfs" "$layout-layers"
    fi
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

python3 "$(dirname "$0")/pack_layout.py" "$rootfs" "$layout"
python3 "$(dirname "$0")/pack_layout.py" --split "$rootfs" "$layout-layers"
