#!/usr/bin/env python3
"""Layer-merge benchmark: edgeforge merging an image's layers into its in-memory tree from a
warm blob cache, against the extract step of the peer pipeline (`tar -x` of each layer into a
directory, as Docker-based builders unpack an image). Target (issue 3): at least 300 MB/s of
layer data, peak RSS under 300 MB whatever the image size.

Three edgeforge figures:
- first merge: the layer blobs are cached, their unpacked copies are not yet; the merge inflates
  each gzip layer once and keeps the tar in the cache (what the first build of a base does);
- warm merge: the unpacked copies are cached too (every later build with that base), read in
  place and hashed against the config's diff_ids;
- no unpacked cache: --no-unpacked-cache, inflating every time with file data copied to a spill
  file (what builds did before the unpacked cache).
Run on the one-layer bench base and on the same files in four layers (base-amd64-layers), where
the layers above the one being merged are unpacked on a second core. Prints figures and
ratios; asserts nothing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from lib import bench_dir, image_layers, measured


def bench_image(edgeforge, layout, work, runs):
    cache = os.path.join(work, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    manifest, layers, layer_bytes = image_layers(layout)
    kinds = sorted({layer["mediaType"].rsplit(".", 1)[-1] for layer in manifest["layers"]})
    mb = layer_bytes / 1e6
    print(f"image {os.path.basename(layout)}: {len(layers)} layer(s), {layer_bytes / 2**20:.1f} MiB "
          f"({', '.join(kinds)}), best of {runs} runs, page cache warm")

    def merge(*flags, fresh_copies=False):
        best = None
        for _ in range(runs):
            if fresh_copies:
                shutil.rmtree(os.path.join(cache, "layers"), ignore_errors=True)
                subprocess.run(["sync"], check=True)
            _, rss, out = measured([edgeforge, "--json", "--cache-dir", cache, "image", "merge",
                                    *flags, f"oci:{layout}:latest"],
                                   stdout=subprocess.PIPE, text=True)
            summary = json.loads(out)
            if best is None or summary["seconds"] < best[0]:
                best = (summary["seconds"], rss, summary)
        return best

    results = {}
    for label, flags, fresh in [("first merge (unpacks)", [], True),
                                ("warm merge (unpacked)", [], False),
                                ("no unpacked cache", ["--no-unpacked-cache"], False)]:
        seconds, rss, summary = merge(*flags, fresh_copies=fresh)
        results[label] = (seconds, rss)
        print(f"edgeforge {label:22} {seconds:6.2f} s  {mb / seconds:6.0f} MB/s of layer data  "
              f"{summary['data_bytes'] / 1e6 / seconds:6.0f} MB/s of file data  "
              f"peak RSS {rss:5.0f} MiB")

    peer = None
    for _ in range(runs):
        target = os.path.join(work, "extract")
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        start = time.monotonic()
        for layer in layers:
            subprocess.run(["tar", "-xf", layer, "-C", target, "--no-same-owner"], check=True)
        elapsed = time.monotonic() - start
        peer = elapsed if peer is None else min(peer, elapsed)
    shutil.rmtree(os.path.join(work, "extract"), ignore_errors=True)
    print(f"peer: tar -x of layers {peer:6.2f} s  {mb / peer:6.0f} MB/s of layer data")
    print("ratios edgeforge/peer (time): " +
          ", ".join(f"{label} {seconds / peer:.2f}x" for label, (seconds, _) in results.items()))
    warm, _ = results["warm merge (unpacked)"]
    worst_rss = max(rss for _, rss in results.values())
    print(f"target 300 MB/s of layer data (warm cache): "
          f"{'met' if mb / warm >= 300 else 'not met'} ({mb / warm:.0f} MB/s); "
          f"peak RSS target 300 MB: {'met' if worst_rss * 1.048576 < 300 else 'not met'} "
          f"({worst_rss:.0f} MiB at most)")


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    bench = bench_dir()
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    work = tempfile.mkdtemp(prefix="edgeforge-merge-bench-", dir=bench)
    try:
        for name in ["base-amd64", "base-amd64-layers"]:
            layout = os.path.join(bench, name)
            if os.path.exists(os.path.join(layout, "index.json")):
                bench_image(edgeforge, layout, work, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
