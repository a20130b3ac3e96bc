#!/usr/bin/env bash
# Benchmarks: figures and ratios against the peer pipeline (extract + mksquashfs + xorriso).
# Tests never assert on wall-clock time; this script only measures and prints.
set -euo pipefail
edgeforge=${1:-_build/edgeforge}
echo "edgeforge benchmarks ($("$edgeforge" version | head -1))"
echo
echo "No build step exists yet to measure: the ISO writer, layer merge and disk formats add"
echo "their benchmarks here (cold build vs. extract + mksquashfs + xorriso, rebuild after a"
echo "user-data change, merge throughput, conversion throughput vs. qemu-img)."
