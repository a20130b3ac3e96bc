#!/usr/bin/env python3
"""ISO benchmark: edgeforge build iso against the peer pipeline that existing tools run.

The peer pipeline is what Docker-based builders do: extract the image layers to a directory,
mksquashfs it with the same compressor (zstd, mksquashfs's default level 15) and block size
(1 MiB), then xorriso with the same hybrid BIOS+UEFI boot options. edgeforge runs with its own
defaults (zstd level 10: see k_default_zstd_level); the ISO size ratio shows what that costs,
and a second cold build at level 15 shows the like-for-like figure. Both start from the same
OCI image (bench/make-base.sh, a debootstrapped Debian of about 775 MB). Then the per-site
cost: `build iso --sites` with 1 and with 20 sites from the warm cache, against copying the
ISO's bytes durably (cp + fsync). Prints wall times, ratios, sizes and peak RSS; it asserts
nothing (tests never assert on time).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from lib import bench_dir, image_layers, measured


def timed(argv, **kwargs):
    """(seconds, peak RSS MiB) of argv."""
    seconds, rss, _ = measured(argv, **kwargs)
    return seconds, rss


def main():
    edgeforge = os.path.realpath(sys.argv[1])
    source = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    bench = bench_dir()
    layout = os.path.join(bench, "base-amd64")
    user_data = os.path.join(source, "examples", "basic", "user-data")
    peer_level = os.environ.get("BENCH_PEER_ZSTD_LEVEL", "15")
    work = tempfile.mkdtemp(prefix="edgeforge-bench-", dir=bench)
    quiet = {"stdout": subprocess.DEVNULL}
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    try:
        _, layers, layer_bytes = image_layers(layout)

        os.makedirs(os.path.join(work, "no-overlay"))

        def build_iso(user_data_file, *extra, cache="cache", out="out"):
            return [edgeforge, "--no-progress", "--cache-dir", os.path.join(work, cache),
                    "--output-dir", os.path.join(work, out), "build", "iso", "--name", "bench",
                    "--base", f"oci:{layout}:latest", "--user-data", user_data_file,
                    "--overlay", os.path.join(work, "no-overlay"), "--iso-overlay",
                    os.path.join(work, "no-overlay"), "--compression", "zstd",
                    "--block-size", "1M", *extra]

        cold, cold_rss = timed(build_iso(user_data), env=env, **quiet)
        ours = os.path.join(work, "out", "bench.iso")
        ours_size = os.path.getsize(ours)
        cold15, _ = timed(build_iso(user_data, "--compression-level", peer_level, cache="cache15",
                                    out="out15"), env=env, **quiet)
        ours15_size = os.path.getsize(os.path.join(work, "out15", "bench.iso"))
        shutil.rmtree(os.path.join(work, "cache15"))
        shutil.rmtree(os.path.join(work, "out15"))

        site = os.path.join(work, "site.yaml")
        with open(user_data) as f, open(site, "w") as out:
            out.write(f.read() + "\n# another site\n")
        rebuild, rebuild_rss = timed(build_iso(site), env=env, **quiet)

        # The peer pipeline: extract, mksquashfs, xorriso with the same boot setup.
        root = os.path.join(work, "peer-root")
        iso_root = os.path.join(work, "peer-iso")
        os.makedirs(root)
        os.makedirs(os.path.join(iso_root, "boot", "grub2"))
        # Boot images are inputs for the peer (its builders keep them prebuilt): take ours.
        for path in ["/boot/eltorito.img", "/boot/uefi.img", "/boot/kernel", "/boot/initrd",
                     "/boot/grub2/grub.cfg", "/config.yaml"]:
            subprocess.run(["xorriso", "-osirrox", "on", "-indev", ours, "-extract", path,
                            os.path.join(iso_root, path.lstrip("/"))], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        extract_rss = 0.0
        for layer in layers:
            _, rss = timed(["tar", "-xzf", layer, "-C", root, "--numeric-owner", "--xattrs"], **quiet)
            extract_rss = max(extract_rss, rss)
        extract = time.monotonic() - start
        for mount_point in ["proc", "sys", "dev", "run", "tmp"]:
            os.makedirs(os.path.join(root, mount_point), exist_ok=True)
        squash, squash_rss = timed(["mksquashfs", root, os.path.join(iso_root, "rootfs.squashfs"),
                                    "-comp", "zstd", "-Xcompression-level", peer_level, "-b", "1M",
                                    "-noappend", "-no-progress", "-quiet"], **quiet)
        peer_iso = os.path.join(work, "peer.iso")
        # The same layout as ours: /boot/uefi.img on the ISO and appended as the GPT ESP.
        shutil.copy(os.path.join(iso_root, "boot", "uefi.img"), os.path.join(work, "uefi.img"))
        assemble, xorriso_rss = timed(
            ["xorriso", "-as", "mkisofs", "-V", "COS_LIVE", "-R", "-J", "-iso-level", "3",
             "-partition_offset", "16", "--grub2-mbr", "/usr/lib/grub/i386-pc/boot_hybrid.img",
             "--mbr-force-bootable", "-b", "boot/eltorito.img", "-no-emul-boot",
             "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info",
             "-eltorito-catalog", "boot/boot.catalog", "-eltorito-alt-boot", "-e",
             "--interval:appended_partition_2:all::", "-no-emul-boot", "-append_partition", "2",
             "0xef", os.path.join(work, "uefi.img"), "-appended_part_as_gpt", "-o", peer_iso,
             iso_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        peer = extract + squash + assemble
        peer_size = os.path.getsize(peer_iso)
        rootfs_bytes = int(subprocess.run(["du", "-sb", root], capture_output=True, text=True,
                                          check=True).stdout.split()[0])

        # Per-site installers from the warm cache: 1 site, then 20; each extra site's cost.
        def sites_build(count):
            sites = os.path.join(work, f"sites-{count}")
            os.makedirs(sites)
            for i in range(count):
                with open(os.path.join(sites, f"store-{i:03}.yaml"), "w") as f:
                    f.write(f"stylus:\n  site:\n    name: store-{i:03}\n")
            out = f"out-sites-{count}"
            seconds, _ = timed(build_iso(user_data, "--sites", sites, out=out), env=env, **quiet)
            shutil.rmtree(os.path.join(work, out))
            return seconds
        sites_1 = sites_build(1)
        sites_20 = sites_build(20)
        per_site = (sites_20 - sites_1) / 19
        copies = os.path.join(work, "copies")
        os.makedirs(copies)
        subprocess.run(["sync"], check=True)
        start = time.monotonic()
        for i in range(20):
            target = os.path.join(copies, f"copy-{i}.iso")
            shutil.copyfile(ours, target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())
        copy_seconds = (time.monotonic() - start) / 20
        shutil.rmtree(copies)

        print(f"base image: {layout} ({layer_bytes / 2**20:.0f} MiB of layers, "
              f"{rootfs_bytes / 2**20:.0f} MiB root filesystem); 1 MiB blocks, "
              f"{os.cpu_count()} cores")
        print()
        print(f"{'':34}{'seconds':>10}{'ISO MiB':>10}{'peak RSS MiB':>14}")
        print(f"{'edgeforge build iso (cold, zstd 10)':34}{cold:10.1f}{ours_size / 2**20:10.1f}{cold_rss:14.0f}")
        print(f"{'edgeforge cold, zstd ' + peer_level:34}{cold15:10.1f}{ours15_size / 2**20:10.1f}")
        print(f"{'edgeforge rebuild (user-data)':34}{rebuild:10.1f}{'':10}{rebuild_rss:14.0f}")
        print(f"{'peer: extract (tar -xzf)':34}{extract:10.1f}{'':10}{extract_rss:14.0f}")
        print(f"{'peer: mksquashfs (zstd ' + peer_level + ')':34}{squash:10.1f}{'':10}{squash_rss:14.0f}")
        print(f"{'peer: xorriso':34}{assemble:10.1f}{'':10}{xorriso_rss:14.0f}")
        print(f"{'peer pipeline total':34}{peer:10.1f}{peer_size / 2**20:10.1f}")
        ours_squashfs = os.path.join(work, "ours.squashfs")
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", ours, "-extract", "/rootfs.squashfs",
                        ours_squashfs], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"rootfs.squashfs MiB: edgeforge {os.path.getsize(ours_squashfs) / 2**20:.1f}, "
              f"mksquashfs {os.path.getsize(os.path.join(iso_root, 'rootfs.squashfs')) / 2**20:.1f}")
        print()
        print(f"cold build / peer time:      {cold / peer:.2f}x   (issue 17: <= 0.25)")
        print(f"ISO size / peer ISO size:    {ours_size / peer_size:.4f}  (issue 17: <= 1.000)")
        print(f"same level ({peer_level}) / peer time:  {cold15 / peer:.2f}x   "
              f"(size ratio {ours15_size / peer_size:.3f}; issue 17: <= 0.80)")
        print(f"rebuild / cold build time:   {rebuild / cold * 100:.1f}%   (issue 17: <= 5%)")
        print()
        print(f"per-site installers ({ours_size / 2**20:.0f} MiB ISO): 1 site {sites_1:.1f} s, "
              f"20 sites {sites_20:.1f} s")
        print(f"each extra site:             {per_site:.2f} s   (target < 2 s)")
        print(f"copying the ISO (cp+fsync):  {copy_seconds:.2f} s")
        print(f"extra site / copy time:      {per_site / copy_seconds:.2f}x   (issue 17: <= 1.0)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
