#!/usr/bin/env python3
"""Content bundle benchmark: edgeforge content build against skopeo + tar + zstd.

The images: the bench base (bench/make-base.sh, one ~290 MB gzip layer), three images made
from it with one extra layer each (usr/bin, usr/sbin and usr/share of the bench root
filesystem plus a marker, so each extra layer is distinct), and the fixture base and agent
images: about 1.3 GB referenced, about half of it distinct. The peer pipelines are what people
script today: `skopeo copy` every image into an OCI layout, then `tar | zstd -T0 -<level>`,
once with one layout per image and once with all images in one layout (skopeo then stores
shared blobs once too). edgeforge and zstd run at the same level. Prints wall times, sizes and
ratios; asserts nothing (tests never assert on time).
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from lib import bench_dir, fixtures_dir, timed

LEVEL = 3


def derive(base, out, name, rootfs):
    """The base image plus one gzip layer with a few rootfs directories and a marker."""
    if os.path.exists(os.path.join(out, "index.json")):
        return
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, copy_function=os.link)  # shared blobs: hard links
    blobs = os.path.join(tmp, "blobs", "sha256")

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest, len(data)

    def read(digest):
        with open(os.path.join(blobs, digest[7:]), "rb") as f:
            return f.read()

    index = json.load(open(os.path.join(tmp, "index.json")))
    manifest = json.loads(read(index["manifests"][0]["digest"]))
    config = json.loads(read(manifest["config"]["digest"]))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        marker = name.encode()
        info = tarfile.TarInfo("etc/bench-image")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
        for directory in ("usr/bin", "usr/sbin", "usr/share"):
            tar.add(os.path.join(rootfs, directory), arcname=directory)
    layer = gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    digest, size = blob(layer)
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": digest, "size": size})
    cdigest, csize = blob(json.dumps(config).encode())
    manifest["config"].update(digest=cdigest, size=csize)
    mdigest, msize = blob(json.dumps(manifest).encode())
    index["manifests"][0].update(digest=mdigest, size=msize)
    # index.json is a hard link to the base's: replace it, never write through it.
    os.remove(os.path.join(tmp, "index.json"))
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump(index, f)
    os.rename(tmp, out)


def referenced_bytes(layout):
    blobs = os.path.join(layout, "blobs", "sha256")
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest_desc = index["manifests"][0]
    manifest = json.load(open(os.path.join(blobs, manifest_desc["digest"][7:])))
    return manifest_desc["size"] + manifest["config"]["size"] + sum(
        layer["size"] for layer in manifest["layers"])


def mib(size):
    return f"{size / 1048576:8.1f} MiB"


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    bench = bench_dir()
    fixtures = fixtures_dir()
    base = os.path.join(bench, "base-amd64")
    images = [("bench-base", base)]
    for number in range(1, 4):
        out = os.path.join(bench, f"content-app{number}")
        derive(base, out, f"app{number}", os.path.join(bench, "rootfs-amd64"))
        images.append((f"app{number}", out))
    for name in ("base-amd64", "agent-amd64"):
        if os.path.exists(os.path.join(fixtures, name, "index.json")):
            images.append((f"fixture-{name}", os.path.join(fixtures, name)))
    referenced = sum(referenced_bytes(layout) for _, layout in images)
    print(f"{len(images)} images, {mib(referenced)} referenced (compressed layers)")

    work = tempfile.mkdtemp(prefix="edgeforge-content-bench-", dir=bench)
    try:
        # Tags: the bench layouts are tagged "latest".
        refs = [f"oci:{layout}:latest" for _, layout in images]
        with open(os.path.join(work, "images.txt"), "w") as f:
            for (name, _), ref in zip(images, refs):
                f.write(f"{ref} {name}:latest\n")
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
        ours = timed([edgeforge, "-q", "--output-dir", os.path.join(work, "out"), "content",
                      "build", "--name", "bench", "--images-file", os.path.join(work, "images.txt"),
                      "--level", str(LEVEL)], env=env, stdout=subprocess.DEVNULL)
        ours_size = os.path.getsize(os.path.join(work, "out", "content-bench", "bench.tar.zst"))

        # Peer 1: one OCI layout per image, then tar | zstd -T0.
        os.makedirs(os.path.join(work, "separate"))
        start = time.monotonic()
        for (name, _), ref in zip(images, refs):
            subprocess.run(["skopeo", "copy", "-q", ref, f"oci:{work}/separate/{name}:latest"],
                           check=True)
        copy_separate = time.monotonic() - start
        separate_file = os.path.join(work, "separate.tar.zst")
        pack_separate = timed(["bash", "-c", f"tar -C {work} -cf - separate | zstd -q -T0 -{LEVEL} "
                                             f"-o {separate_file}"])
        # Peer 2: all images in one OCI layout (skopeo stores shared blobs once), then tar | zstd.
        start = time.monotonic()
        for (name, _), ref in zip(images, refs):
            subprocess.run(["skopeo", "copy", "-q", ref, f"oci:{work}/shared:{name}"], check=True)
        copy_shared = time.monotonic() - start
        shared_file = os.path.join(work, "shared.tar.zst")
        pack_shared = timed(["bash", "-c", f"tar -C {work} -cf - shared | zstd -q -T0 -{LEVEL} "
                                           f"-o {shared_file}"])

        separate_total = copy_separate + pack_separate
        shared_total = copy_shared + pack_shared
        print(f"zstd level {LEVEL}, {os.cpu_count()} CPUs")
        print(f"  edgeforge content build           {ours:7.1f} s  {mib(ours_size)}")
        print(f"  skopeo per-image layouts + zstd   {separate_total:7.1f} s  "
              f"{mib(os.path.getsize(separate_file))}  (copy {copy_separate:.1f} s, "
              f"tar|zstd {pack_separate:.1f} s)")
        print(f"  skopeo one shared layout + zstd   {shared_total:7.1f} s  "
              f"{mib(os.path.getsize(shared_file))}  (copy {copy_shared:.1f} s, "
              f"tar|zstd {pack_shared:.1f} s)")
        print(f"  ratios vs per-image layouts: time {ours / separate_total:.2f}x, "
              f"size {ours_size / os.path.getsize(separate_file):.2f}x")
        print(f"  ratios vs one shared layout: time {ours / shared_total:.2f}x, "
              f"size {ours_size / os.path.getsize(shared_file):.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
