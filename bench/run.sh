#!/usr/bin/env bash
# Benchmarks: figures and ratios against the peer pipeline (extract + mksquashfs + xorriso).
# Tests never assert on wall-clock time; this script only measures and prints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
edgeforge=$(realpath "${1:-$here/../_build/edgeforge}")
echo "edgeforge benchmarks ($("$edgeforge" version | head -1))"
bash "$here/make-base.sh"
echo
echo "== layer merge: edgeforge image merge vs. tar -x of the layers (warm cache)"
python3 "$here/merge_bench.py" "$edgeforge"
echo
echo "== installer ISO: edgeforge vs. extract + mksquashfs + xorriso"
python3 "$here/iso_bench.py" "$edgeforge"
echo
echo "== content bundle: edgeforge content build vs. skopeo copy + tar | zstd -T0"
python3 "$here/content_bench.py" "$edgeforge"
echo
echo "== disk images: edgeforge conversions vs. qemu-img, one rootfs step for every format"
python3 "$here/disk_bench.py" "$edgeforge"
echo
echo "== incremental builds: a rebuild after a daily change vs. a cold build of the same inputs"
python3 "$here/incremental_bench.py" "$edgeforge"
echo
echo "== scale-out: a fresh runner on a warm registry-backed cache vs. a cold build; 1 worker vs. 4 shards"
python3 "$here/scaleout_bench.py" "$edgeforge"
