#!/usr/bin/env python3
"""Incremental builds: what a rebuild costs after a typical daily change, against a cold build
of the same new inputs (empty edgeforge cache, base image already local).

Cases (issue 17): a new version of a 20 MB agent layer, and one changed overlay file. Each
rebuild runs on the cache a build of the old inputs left (its compressed squashfs blocks
included); the cold build of the new inputs runs with an empty cache. Both ISOs are compared
byte for byte (the rebuild must equal the cold build). Prints wall times, the ratio, peak RSS
and the bytes the squashfs writer compressed vs reused; asserts nothing on time.
"""
import filecmp
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

from lib import bench_dir, measured


def block_cache(document):
    """The rootfs step's block_cache figures in a --json document, or None."""
    if isinstance(document, dict):
        if "block_cache" in document:
            return document["block_cache"]
        values = document.values()
    elif isinstance(document, list):
        values = document
    else:
        return None
    for value in values:
        found = block_cache(value)
        if found:
            return found
    return None


def write_agent(directory, version):
    """A 20 MB agent: a binary-like file (compresses about as a Go binary does) and a version."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(os.path.join(directory, "usr", "local", "bin"))
    generator = random.Random(version)
    words = [generator.randbytes(generator.randint(4, 24)) for _ in range(4096)]
    chunks = []
    size = 0
    while size < 20 * 2**20:
        word = words[generator.randrange(len(words))]
        chunks.append(word)
        size += len(word)
    with open(os.path.join(directory, "usr", "local", "bin", "agent"), "wb") as f:
        f.write(b"".join(chunks)[: 20 * 2**20])
    with open(os.path.join(directory, "etc-agent-version"), "w") as f:
        f.write(f"{version}\n")


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    source = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    layout = os.path.join(bench_dir(), "base-amd64")
    user_data = os.path.join(source, "examples", "basic", "user-data")
    work = tempfile.mkdtemp(prefix="edgeforge-incremental-", dir=bench_dir())
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    try:
        agent = os.path.join(work, "agent")
        overlay = os.path.join(work, "overlay")
        os.makedirs(os.path.join(overlay, "etc", "edge"))
        with open(os.path.join(overlay, "etc", "edge", "site.conf"), "w") as f:
            f.write("site=one\n")

        def build(cache, out, target=("iso",)):
            argv = [edgeforge, "--json", "--no-progress", "--cache-dir", os.path.join(work, cache),
                    "--output-dir", os.path.join(work, out), "build", *target, "--name", "bench",
                    "--base", f"oci:{layout}:latest", "--agent", f"dir:{agent}",
                    "--user-data", user_data, "--overlay", overlay, "--compression", "zstd",
                    "--block-size", "1M"]
            seconds, rss, output = measured(argv, env=env, stdout=subprocess.PIPE, text=True)
            return seconds, rss, block_cache(json.loads(output))

        def iso(out):
            return os.path.join(work, out, "bench.iso")

        rows = []
        # The cache a daily build finds: the previous inputs built once.
        write_agent(agent, "v1")
        build("cache", "out-old")

        def case(name, change):
            change()
            warm, warm_rss, warm_blocks = build("cache", f"out-{name}")
            cold, cold_rss, _ = build(f"cold-{name}", f"cold-out-{name}")
            same = filecmp.cmp(iso(f"out-{name}"), iso(f"cold-out-{name}"), shallow=False)
            rows.append((name, warm, cold, warm_rss, cold_rss, warm_blocks, same))
            shutil.rmtree(os.path.join(work, f"cold-{name}"))

        case("agent layer changed (20 MB agent, new version)", lambda: write_agent(agent, "v2"))

        def edit_overlay():
            with open(os.path.join(overlay, "etc", "edge", "site.conf"), "w") as f:
                f.write("site=two\n")
        case("one overlay file changed", edit_overlay)

        # Disk images: raw + qcow2 + ova from the same rootfs step, after an agent change.
        disks = ("disk", "--format", "raw,qcow2,ova")
        build("cache", "disk-old", disks)
        write_agent(agent, "v3")
        warm, warm_rss, warm_blocks = build("cache", "disk-new", disks)
        cold, cold_rss, _ = build("cold-disk", "cold-disk-new", disks)
        same = all(filecmp.cmp(os.path.join(work, "disk-new", f"bench.{ext}"),
                               os.path.join(work, "cold-disk-new", f"bench.{ext}"), shallow=False)
                   for ext in ("raw", "qcow2", "ova"))
        rows.append(("raw + qcow2 + ova after an agent change", warm, cold, warm_rss, cold_rss,
                     warm_blocks, same))

        print(f"{'':48}{'rebuild s':>10}{'cold s':>8}{'ratio':>8}{'RSS MiB':>9}"
              f"{'compressed':>12}{'reused':>10}  identical")
        for name, warm, cold, warm_rss, cold_rss, blocks, same in rows:
            compressed = blocks["compressed_bytes"] / 2**20 if blocks else 0
            reused = blocks["reused_bytes"] / 2**20 if blocks else 0
            print(f"{name:48}{warm:10.1f}{cold:8.1f}{warm / cold:7.3f}x{max(warm_rss, cold_rss):9.0f}"
                  f"{compressed:10.1f}Mi{reused:8.1f}Mi  {'yes' if same else 'NO'}")
        print("targets: ISO rebuilds <= 0.10x cold, disks <= 0.15x, byte-identical, "
              "peak RSS <= 300 MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
