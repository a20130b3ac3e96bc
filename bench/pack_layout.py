#!/usr/bin/env python3
"""Packs a root filesystem directory as an OCI image layout of gzip layers (level 1), with
fixed times and numeric owners so that the digests only change with the files.

    pack_layout.py [--split] ROOTFS LAYOUT

--split makes four layers (/usr/lib, /usr/share, the rest of /usr, everything else) instead
of one, as multi-layer base images are built.
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

SPLIT = [
    ["--exclude=./usr", "."],
    ["./usr/lib"],
    ["./usr/share"],
    ["--exclude=./usr/lib", "--exclude=./usr/share", "./usr"],
]


def store(blobs, path=None, data=None):
    digest = hashlib.sha256()
    if data is not None:
        digest.update(data)
        name = digest.hexdigest()
        with open(os.path.join(blobs, name), "wb") as out:
            out.write(data)
        return "sha256:" + name, len(data)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    name = digest.hexdigest()
    os.rename(path, os.path.join(blobs, name))
    return "sha256:" + name, os.path.getsize(os.path.join(blobs, name))


def pack_layer(rootfs, blobs, paths):
    """One gzip layer of `paths` (tar arguments) under rootfs: (digest, size, diff_id)."""
    tar = subprocess.Popen(["tar", "--sort=name", "--numeric-owner", "--xattrs", "--mtime=@1700000000",
                            "-C", rootfs, "-cf", "-", *paths], stdout=subprocess.PIPE)
    raw = hashlib.sha256()
    layer_path = os.path.join(blobs, "layer.tmp")
    with open(layer_path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
        for chunk in iter(lambda: tar.stdout.read(1 << 20), b""):
            raw.update(chunk)
            gz.write(chunk)
    if tar.wait() != 0:
        sys.exit("tar failed")
    digest, size = store(blobs, path=layer_path)
    return digest, size, "sha256:" + raw.hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", action="store_true")
    parser.add_argument("rootfs")
    parser.add_argument("layout")
    args = parser.parse_args()
    tmp = args.layout + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    blobs = os.path.join(tmp, "blobs", "sha256")
    os.makedirs(blobs)
    layers = [pack_layer(args.rootfs, blobs, paths) for paths in (SPLIT if args.split else [["."]])]
    config = {"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
              "rootfs": {"type": "layers", "diff_ids": [diff_id for _, _, diff_id in layers]},
              "config": {}}
    config_digest, config_size = store(blobs, data=json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": digest, "size": size} for digest, size, _ in layers]}
    manifest_digest, manifest_size = store(blobs, data=json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": manifest_digest, "size": manifest_size,
                            "platform": {"architecture": "amd64", "os": "linux"},
                            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    with open(os.path.join(tmp, "index.json"), "w") as out:
        out.write(json.dumps(index))
    with open(os.path.join(tmp, "oci-layout"), "w") as out:
        out.write('{"imageLayoutVersion":"1.0.0"}')
    shutil.rmtree(args.layout, ignore_errors=True)
    os.rename(tmp, args.layout)
    sizes = ", ".join(f"{size / 2**20:.0f}" for _, size, _ in layers)
    print(f"bench base: {args.layout} ({len(layers)} layer(s), {sizes} MiB compressed)")


if __name__ == "__main__":
    main()
