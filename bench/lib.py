"""What the benchmark scripts share: where the bench images live, timing, and layer lists."""
import json
import os
import subprocess
import tempfile
import time


def cache_root():
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "edgeforge")


def bench_dir():
    """Where make-base.sh keeps the bench images (EDGEFORGE_BENCH_DIR overrides)."""
    return os.environ.get("EDGEFORGE_BENCH_DIR", os.path.join(cache_root(), "bench"))


def fixtures_dir():
    return os.environ.get("EDGEFORGE_FIXTURES_DIR", os.path.join(cache_root(), "fixtures"))


def timed(argv, **kwargs):
    """Runs argv (check=True); returns its wall time in seconds."""
    start = time.monotonic()
    subprocess.run(argv, check=True, **kwargs)
    return time.monotonic() - start


def measured(argv, **kwargs):
    """Runs argv under /usr/bin/time; returns (seconds, peak RSS MiB, stdout or None). Pass
    stdout=subprocess.PIPE and text=True to get what it printed."""
    with tempfile.NamedTemporaryFile("r") as stats:
        start = time.monotonic()
        done = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", stats.name, *argv],
                              check=True, **kwargs)
        seconds = time.monotonic() - start
        rss_kib = int(stats.read().strip().splitlines()[-1])
    return seconds, rss_kib / 1024, done.stdout


def image_layers(layout):
    """The first image of an OCI layout: (manifest, layer blob paths, stored layer bytes)."""
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(open(os.path.join(layout, "blobs", "sha256", manifest_digest)))
    layers = [os.path.join(layout, "blobs", "sha256", layer["digest"].split(":")[1])
              for layer in manifest["layers"]]
    return manifest, layers, sum(layer["size"] for layer in manifest["layers"])
