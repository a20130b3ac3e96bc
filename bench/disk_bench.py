#!/usr/bin/env python3
"""Disk benchmark: edgeforge's raw -> qcow2 / VMDK converters against qemu-img, and the reuse of
the rootfs step when several disk formats are built together.

1. `edgeforge build disk --format raw` from the bench base (bench/make-base.sh): a cold build
   (rootfs step included), then the same again from the warm cache (only the disk is written).
2. `--format raw,qcow2,ova,ami` from the warm cache: one rootfs step for all four (a cache hit,
   shown by the log), so the extra formats cost only their conversions; the time against raw
   alone shows what they add.
3. On the same raw disk: edgeforge's qcow2 and OVA (VMDK streamOptimized + OVF + tar), timed
   per format from its progress line in a build of it alone (a build of several makes them two
   at a time, and flushes a kept raw disk meanwhile), against `qemu-img convert -O qcow2` and
   `qemu-img convert -O vmdk -o subformat=streamOptimized` (+ tar), with sizes; and the times of
   ami, vhd and gce for reference. edgeforge's times include hashing the output for its .sha256
   and fsync; qemu-img's include neither (convert's default cache mode never flushes), so each
   qemu-img figure is also shown plus a SHA-256 of its output and an fsync ("qemu-img+sha"),
   the same work.
Prints wall times, sizes and ratios; asserts nothing (tests never assert on time).
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from lib import bench_dir, timed


def hash_and_fsync(path):
    """Seconds to SHA-256 a file (hashlib: OpenSSL, as edgeforge) and fsync it."""
    start = time.monotonic()
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
        os.fsync(stream.fileno())
    return time.monotonic() - start


def best_of_with_hash(count, argv, output, after=None, **kwargs):
    """Best of `count` runs of argv then `after` (if given), then hash_and_fsync of `output`:
    (argv alone, argv + after, argv + after + hash and fsync), in seconds."""
    alone = []
    plain = []
    hashed = []
    for _ in range(count):
        seconds = timed(argv, **kwargs)
        alone.append(seconds)
        if after:
            seconds += timed(after, **kwargs)
        plain.append(seconds)
        hashed.append(seconds + hash_and_fsync(output))
    return min(alone), min(plain), min(hashed)


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    source = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    bench = bench_dir()
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    layout = os.path.join(bench, "base-amd64")
    user_data = os.path.join(source, "examples", "basic", "user-data")
    work = tempfile.mkdtemp(prefix="edgeforge-disk-bench-", dir=bench)
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        os.makedirs(os.path.join(work, "no-overlay"))

        def build_argv(formats, out):
            return [edgeforge, "--no-progress", "--verbose", "--cache-dir", os.path.join(work, "cache"),
                    "--output-dir", os.path.join(work, out), "build", "disk", "--name", "bench",
                    "--base", f"oci:{layout}:latest", "--user-data", user_data,
                    "--overlay", os.path.join(work, "no-overlay"), "--compression", "zstd",
                    "--block-size", "1M", "--format", formats]

        def build_disk(formats, out):
            """Runs a build; returns (total seconds, {format: seconds}, stderr lines). A format's
            time is what it reports ("disk: wrote <artifact> in N s", -v), else from its "disk:
            writing <artifact>" line to the next line (stderr is read as it comes)."""
            start = time.monotonic()
            marks = []
            lines = []
            with subprocess.Popen(build_argv(formats, out), env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) as process:
                for line in process.stderr:
                    marks.append((time.monotonic(), line.strip()))
                    lines.append(line)
            end = time.monotonic()
            if process.returncode != 0:
                sys.exit("".join(lines))
            per_format = {}
            for i, (at, line) in enumerate(marks):
                # Formats made side by side say how long they took (-v).
                wrote = re.match(r"disk: wrote (\S+) in ([0-9.]+) s$", line)
                if wrote:
                    per_format[os.path.basename(wrote.group(1))] = float(wrote.group(2))
                elif line.startswith("disk: writing ") and ".edgeforge-disk-" not in line:
                    name = os.path.basename(line.split()[-1])
                    following = marks[i + 1][0] if i + 1 < len(marks) else end
                    per_format.setdefault(name, following - at)
            return end - start, per_format, lines

        def best(runs, key):
            return min(run[1][key] for run in runs)

        cold, _, _ = build_disk("raw", "cold")
        raw = os.path.join(work, "cold", "bench.raw")
        raw_size = os.path.getsize(raw)
        raw_data = int(subprocess.run(["du", "-B1", raw], capture_output=True, text=True,
                                      check=True).stdout.split()[0])
        warm_raw = min(build_disk("raw", f"raw-{i}")[0] for i in range(repeat))
        runs = [build_disk("raw,qcow2,ova,ami", f"all-{i}") for i in range(repeat)]
        all_four = min(run[0] for run in runs)
        log = "".join(runs[0][2])
        rootfs_hits = log.count("rootfs: reusing cached rootfs.squashfs")
        rootfs_builds = log.count("rootfs: merging")
        for i in range(repeat):
            shutil.rmtree(os.path.join(work, f"all-{i}"))

        def alone(fmt, artifact):
            """A format's own time: it runs two at a time with others in a build of several,
            and a kept raw disk is flushed while it runs, so each is timed in a build of it
            alone (the raw disk then stays in the work directory, unflushed). Returns (seconds,
            output dir)."""
            timed = [build_disk(fmt, f"{fmt}-{i}") for i in range(repeat)]
            for i in range(1, repeat):
                shutil.rmtree(os.path.join(work, f"{fmt}-{i}"))
            return best(timed, artifact), os.path.join(work, f"{fmt}-0")

        ours_qcow2, qcow2_dir = alone("qcow2", "bench.qcow2")
        ours_ova, ova_dir = alone("ova", "bench.ova")
        ours_ami, _ = alone("ami", "bench-ami.raw")
        ours_vhd, _ = alone("vhd", "bench.vhd")
        ours_gce, gce_dir = alone("gce", "bench-gce.tar.gz")
        qcow2_size = os.path.getsize(os.path.join(qcow2_dir, "bench.qcow2"))
        ova_size = os.path.getsize(os.path.join(ova_dir, "bench.ova"))
        gce_size = os.path.getsize(os.path.join(gce_dir, "bench-gce.tar.gz"))

        peer_qcow2 = os.path.join(work, "peer.qcow2")
        peer_vmdk = os.path.join(work, "peer.vmdk")
        ovf_tar = os.path.join(work, "peer.tar")
        _, qemu_qcow2, qemu_qcow2_hashed = best_of_with_hash(
            repeat, ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, peer_qcow2], peer_qcow2,
            **quiet)
        qemu_vmdk, qemu_ova, qemu_ova_hashed = best_of_with_hash(
            repeat, ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                     "subformat=streamOptimized", raw, peer_vmdk], ovf_tar,
            after=["tar", "-cf", ovf_tar, "-C", work, "peer.vmdk"], **quiet)

        print(f"base image: {layout}; raw disk {raw_size / 2**20:.0f} MiB "
              f"({raw_data / 2**20:.0f} MiB of data); best of {repeat}; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}")
        print()
        print(f"{'':44}{'seconds':>10}")
        print(f"{'build disk raw, cold (rootfs step + disk)':44}{cold:10.1f}")
        print(f"{'build disk raw, warm cache':44}{warm_raw:10.1f}")
        print(f"{'build disk raw,qcow2,ova,ami, warm cache':44}{all_four:10.1f}")
        print(f"  rootfs step in that build: {rootfs_hits} cache hit(s), {rootfs_builds} build(s) "
              f"(one step for all four formats; qcow2 and ova are made side by side)")
        print(f"  all four (warm) / raw alone (warm): {all_four / warm_raw:.2f}x; "
              f"all four (warm) / raw cold: {all_four / cold:.2f}x")
        print(f"  all four cold would be about {cold + all_four - warm_raw:.1f} s: "
              f"{(cold + all_four - warm_raw) / cold:.2f}x the cold raw")
        print()
        print(f"{'conversion of the same raw':30}{'edgeforge s':>12}{'qemu-img s':>12}{'ratio':>8}"
              f"{'qemu-img+sha s':>16}{'ratio':>8}{'ours MiB':>10}{'qemu MiB':>10}")
        print(f"{'raw -> qcow2':30}{ours_qcow2:12.2f}{qemu_qcow2:12.2f}"
              f"{ours_qcow2 / qemu_qcow2:8.2f}{qemu_qcow2_hashed:16.2f}"
              f"{ours_qcow2 / qemu_qcow2_hashed:8.2f}{qcow2_size / 2**20:10.1f}"
              f"{os.path.getsize(peer_qcow2) / 2**20:10.1f}")
        print(f"{'raw -> ova (vmdk stream + tar)':30}{ours_ova:12.2f}{qemu_ova:12.2f}"
              f"{ours_ova / qemu_ova:8.2f}{qemu_ova_hashed:16.2f}"
              f"{ours_ova / qemu_ova_hashed:8.2f}{ova_size / 2**20:10.1f}"
              f"{os.path.getsize(ovf_tar) / 2**20:10.1f}")
        print(f"{'  of which qemu-img -O vmdk':30}{'':12}{qemu_vmdk:12.2f}")
        print(f"{'raw -> ami (re-laid at GiB)':30}{ours_ami:12.2f}")
        print(f"{'raw -> vhd (re-laid + footer)':30}{ours_vhd:12.2f}")
        print(f"{'raw -> gce tar.gz (1 GiB+)':30}{ours_gce:12.2f}{'':12}{'':8}{'':16}{'':8}{gce_size / 2**20:10.1f}")
        print("  (edgeforge's times are per format, each in a build of it alone, and include "
              "hashing the output "
              "for its .sha256 and fsync; qemu-img's default cache mode for convert neither hashes "
              "nor flushes: qemu-img+sha adds a SHA-256 of its output (hashlib) and an fsync; the "
              "qemu-img ova column is qemu-img convert -O vmdk -o subformat=streamOptimized plus "
              "tar of the result)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
