#!/usr/bin/env python3
"""Scale-out (issue 18): a fresh CI runner with a warm registry-backed build cache against a cold
build of the same ISO, and one worker against four shards.

The remote cache is Debian's docker-registry on loopback. "Cold" is an empty edgeforge cache with
the base image already local; "fresh runner" is an empty edgeforge cache whose root filesystem
step is pulled from the registry (pushed there once by `build rootfs --cache-to`). The ISOs are
compared byte for byte. Then eight site ISOs: one worker (`build all`) against four shards at
once (`build all --shard I/4`), every one a fresh runner on the warm remote cache; on this
2-core machine the point is that the root filesystem is built once, not the speed-up. Prints
wall times and ratios; asserts nothing on time.
"""
import filecmp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from lib import bench_dir, measured


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work):
    port = free_port()
    config = os.path.join(work, "registry.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("docker-registry did not start")


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    source = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    layout = os.path.join(bench_dir(), "base-amd64")
    user_data = os.path.join(source, "examples", "basic", "user-data")
    site_template = os.path.join(source, "examples", "basic", "sites", "store-042.yaml")
    work = tempfile.mkdtemp(prefix="edgeforge-scaleout-", dir=bench_dir())
    registry, port = start_registry(work)
    cache = f"docker://127.0.0.1:{port}/bench/cache"
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000",
               EDGEFORGE_INSECURE_REGISTRIES=f"127.0.0.1:{port}", no_proxy="127.0.0.1")
    try:
        sites = os.path.join(work, "sites")
        os.makedirs(sites)
        template = open(site_template).read()
        for i in range(8):
            with open(os.path.join(sites, f"store-{i:03}.yaml"), "w") as f:
                f.write(template.replace("store-042", f"store-{i:03}"))

        def edgeforge_argv(cache_dir, out, *command):
            return [edgeforge, "--json", "--no-progress", "--cache-dir", os.path.join(work, cache_dir),
                    "--output-dir", os.path.join(work, out), *command, "--name", "bench",
                    "--base", f"oci:{layout}:latest", "--user-data", user_data,
                    "--compression", "zstd", "--block-size", "1M"]

        cold, cold_rss, _ = measured(edgeforge_argv("cold", "cold-out", "build", "iso"), env=env,
                                     stdout=subprocess.DEVNULL)
        push, _, _ = measured(edgeforge_argv("cold", "push-out", "build", "rootfs",
                                             "--cache-to", cache), env=env,
                              stdout=subprocess.DEVNULL)
        fresh, fresh_rss, _ = measured(edgeforge_argv("fresh", "fresh-out", "build", "iso",
                                                      "--cache-from", cache), env=env,
                                       stdout=subprocess.DEVNULL)
        same = filecmp.cmp(os.path.join(work, "cold-out", "bench.iso"),
                           os.path.join(work, "fresh-out", "bench.iso"), shallow=False)
        print(f"{'':52}{'seconds':>9}{'ratio':>8}{'RSS MiB':>9}")
        print(f"{'cold ISO (empty cache, base local)':52}{cold:9.1f}{1:7.2f}x{cold_rss:9.0f}")
        print(f"{'push of the rootfs step (build rootfs --cache-to)':52}{push:9.1f}"
              f"{push / cold:7.2f}x")
        print(f"{'fresh runner, warm remote cache (--cache-from)':52}{fresh:9.1f}"
              f"{fresh / cold:7.2f}x{fresh_rss:9.0f}  identical: {'yes' if same else 'NO'}")
        print("target: fresh runner with a warm remote cache <= 0.2x the cold build")

        all_argv = ["build", "all", "--sites", sites, "--cache-remote", cache]
        one, _, _ = measured(edgeforge_argv("one", "one-out", *all_argv), env=env,
                             stdout=subprocess.DEVNULL)
        start = time.monotonic()
        workers = [subprocess.Popen(edgeforge_argv(f"shard{i}", f"shard{i}-out", *all_argv,
                                                   "--shard", f"{i}/4"),
                                    env=env, stdout=subprocess.DEVNULL)
                   for i in range(1, 5)]
        codes = [worker.wait() for worker in workers]
        four = time.monotonic() - start
        if any(codes):
            raise SystemExit(f"a shard failed: exit codes {codes}")
        identical = all(
            filecmp.cmp(os.path.join(work, "one-out", name),
                        os.path.join(work, f"shard{i}-out", name), shallow=False)
            for i in range(1, 5)
            for name in os.listdir(os.path.join(work, f"shard{i}-out")) if name.endswith(".iso"))
        print(f"{'8 site ISOs, 1 worker (fresh runner, warm remote)':52}{one:9.1f}")
        print(f"{'8 site ISOs, 4 shards at once on 2 cores':52}{four:9.1f}{four / one:7.2f}x"
              f"{'':9}  identical: {'yes' if identical else 'NO'}")
    finally:
        registry.kill()
        registry.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
