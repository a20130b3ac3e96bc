#!/usr/bin/env python3
"""Disk benchmark: edgeforge's raw -> qcow2 / VMDK converters against qemu-img, and the reuse of
the rootfs step when several disk formats are built together.

1. `edgeforge build disk --format raw` from the bench base (bench/make-base.sh): a cold build
   (rootfs step included), then the same again from the warm cache (only the disk is written).
2. `--format raw,qcow2,ova,ami` from the warm cache: one rootfs step for all four (a cache hit,
   shown by the log), so the extra formats cost only their conversions; the time against raw
   alone shows what they add.
3. On the same raw disk: edgeforge's qcow2 (raw + qcow2 build minus raw build) and VMDK
   (ova build minus raw build: VMDK streamOptimized + OVF + tar) against `qemu-img convert -O
   qcow2` and `qemu-img convert -O vmdk -o subformat=streamOptimized`, with sizes.
Prints wall times, sizes and ratios; asserts nothing (tests never assert on time).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time


def timed(argv, **kwargs):
    start = time.monotonic()
    subprocess.run(argv, check=True, **kwargs)
    return time.monotonic() - start


def best_of(count, argv, **kwargs):
    return min(timed(argv, **kwargs) for _ in range(count))


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    source = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    bench = os.environ.get("EDGEFORGE_BENCH_DIR",
                           os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                        "edgeforge", "bench"))
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    layout = os.path.join(bench, "base-amd64")
    user_data = os.path.join(source, "examples", "basic", "user-data")
    work = tempfile.mkdtemp(prefix="edgeforge-disk-bench-", dir=bench)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        os.makedirs(os.path.join(work, "no-overlay"))

        def build_disk(formats, out, log=None):
            argv = [edgeforge, "--no-progress", "--cache-dir", os.path.join(work, "cache"),
                    "--output-dir", os.path.join(work, out), "build", "disk", "--name", "bench",
                    "--base", f"oci:{layout}:latest", "--user-data", user_data,
                    "--overlay", os.path.join(work, "no-overlay"), "--compression", "zstd",
                    "--block-size", "1M", "--format", formats]
            if log is None:
                return timed(argv, env=env, **quiet)
            with open(log, "w") as f:
                return timed(argv, env=env, stdout=subprocess.DEVNULL, stderr=f)

        cold = build_disk("raw", "cold", os.path.join(work, "cold.log"))
        raw = os.path.join(work, "cold", "bench.raw")
        raw_size = os.path.getsize(raw)
        raw_data = int(subprocess.run(["du", "-B1", raw], capture_output=True, text=True,
                                      check=True).stdout.split()[0])
        shutil.rmtree(os.path.join(work, "cold"))
        warm_raw = min(build_disk("raw", f"raw-{i}") for i in range(repeat))
        all_log = os.path.join(work, "all.log")
        all_four = build_disk("raw,qcow2,ova,ami", "all", all_log)
        with open(all_log) as f:
            log = f.read()
        rootfs_hits = log.count("rootfs: reusing cached rootfs.squashfs")
        rootfs_builds = log.count("rootfs: merging")
        with_qcow2 = min(build_disk("raw,qcow2", f"qcow2-{i}") for i in range(repeat))
        with_ova = min(build_disk("raw,ova", f"ova-{i}") for i in range(repeat))
        ours_qcow2 = max(with_qcow2 - warm_raw, 0.0)
        ours_vmdk = max(with_ova - warm_raw, 0.0)
        raw = os.path.join(work, "raw-0", "bench.raw")
        qcow2_size = os.path.getsize(os.path.join(work, "qcow2-0", "bench.qcow2"))
        ova_size = os.path.getsize(os.path.join(work, "ova-0", "bench.ova"))

        peer_qcow2 = os.path.join(work, "peer.qcow2")
        peer_vmdk = os.path.join(work, "peer.vmdk")
        qemu_qcow2 = best_of(repeat, ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw,
                                      peer_qcow2], **quiet)
        qemu_vmdk = best_of(repeat, ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                                     "subformat=streamOptimized", raw, peer_vmdk], **quiet)

        print(f"base image: {layout}; raw disk {raw_size / 2**20:.0f} MiB "
              f"({raw_data / 2**20:.0f} MiB of data); best of {repeat}; {os.cpu_count()} cores")
        print()
        print(f"{'':44}{'seconds':>10}")
        print(f"{'build disk raw, cold (rootfs step + disk)':44}{cold:10.1f}")
        print(f"{'build disk raw, warm cache':44}{warm_raw:10.1f}")
        print(f"{'build disk raw,qcow2,ova,ami, warm cache':44}{all_four:10.1f}")
        print(f"  rootfs step in that build: {rootfs_hits} cache hit(s), {rootfs_builds} build(s) "
              f"(one step for all four formats)")
        print(f"  all four / raw alone:      {all_four / warm_raw:.2f}x   "
              f"(all four / cold raw {all_four / cold:.2f}x)")
        print()
        print(f"{'conversion of the same raw':30}{'edgeforge s':>12}{'qemu-img s':>12}{'ratio':>8}"
              f"{'ours MiB':>10}{'qemu MiB':>10}")
        print(f"{'raw -> qcow2':30}{ours_qcow2:12.2f}{qemu_qcow2:12.2f}"
              f"{ours_qcow2 / qemu_qcow2:8.2f}{qcow2_size / 2**20:10.1f}"
              f"{os.path.getsize(peer_qcow2) / 2**20:10.1f}")
        print(f"{'raw -> vmdk streamOptimized':30}{ours_vmdk:12.2f}{qemu_vmdk:12.2f}"
              f"{ours_vmdk / qemu_vmdk:8.2f}{ova_size / 2**20:10.1f}"
              f"{os.path.getsize(peer_vmdk) / 2**20:10.1f}")
        print("  (edgeforge's figures are build time with the format minus build time without it;"
              " its VMDK column includes the OVF and the OVA tar, its size is the .ova)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
