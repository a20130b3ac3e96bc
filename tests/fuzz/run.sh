#!/usr/bin/env bash
# make fuzz: runs every libFuzzer target of BUILD_DIR for SECONDS each (default 60), two at a
# time on a machine with two cores or more (FUZZ_JOBS=1: one after the other), starting from
# the committed seeds and the corpus kept from earlier runs.
#   tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
# The growing corpus and the log of fuzzing time live outside the repo, in
# ${EDGEFORGE_FUZZ_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge/fuzz}. A finding (crash,
# sanitizer report, leak, timeout, out-of-memory) stops the run with exit 1; the input that
# caused it is kept there as crash-* / timeout-* / oom-*, and the command to replay it printed.
# With FUZZ_RECORD=1 (make fuzz-record) each run's line also goes to tests/fuzz/fuzz-hours.tsv,
# the record kept in the repository so that fuzzing time adds up across machines; commit it.
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: run.sh BUILD_DIR [SECONDS] [TARGET...]}
seconds=${2:-60}
shift $(($# >= 2 ? 2 : 1))
state=${EDGEFORGE_FUZZ_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge/fuzz}
mkdir -p "$state"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/tests/sanitizers/lsan.supp:print_suppressions=0}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$src"/tests/fuzz/*_fuzz.cpp; do
        name=$(basename "$f" _fuzz.cpp)
        targets+=("$name")
    done
fi

# Targets run FUZZ_JOBS at a time (default: one per core, at most two): each is one process.
jobs_at_once=${FUZZ_JOBS:-$(nproc)}
[ "$jobs_at_once" -ge 1 ] 2>/dev/null || jobs_at_once=1
[ "$jobs_at_once" -le 2 ] || jobs_at_once=2

# One target for $seconds; its figures go to $state/$name.result as "rc ran execs rate cov ft".
fuzz_one() {
    local name=$1 binary=$build/fuzz_$1 corpus=$state/corpus/$1 log=$state/$1.log
    local dict=() began rc ran execs rate cov ft
    mkdir -p "$corpus"
    [ -f "$src/tests/fuzz/$name.dict" ] && dict=(-dict="$src/tests/fuzz/$name.dict")
    # New inputs go to the first directory (outside the repo); the seeds are only read.
    began=$SECONDS
    "$binary" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$state/" "${dict[@]}" \
        "$corpus" "$src/tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    # What ran, not what was asked: a finding ends the run early.
    ran=$((SECONDS - began))
    [ "$ran" -le "$seconds" ] || ran=$seconds
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    echo "$rc $ran ${execs:-?} ${rate:-?} ${cov:-?} ${ft:-?}" >"$state/$name.result"
}

for name in "${targets[@]}"; do
    [ -x "$build/fuzz_$name" ] || { echo "fuzz: $build/fuzz_$name is missing: make fuzz builds it"; exit 1; }
done

status=0
printf '%-18s %8s %10s %8s %8s %8s  %s\n' target seconds execs exec/s cov ft corpus
for ((first = 0; first < ${#targets[@]} && status == 0; first += jobs_at_once)); do
    batch=("${targets[@]:first:jobs_at_once}")
    for name in "${batch[@]}"; do
        rm -f "$state/$name.result"
        fuzz_one "$name" &
    done
    wait
    for name in "${batch[@]}"; do
        rc=1 ran=0 execs=? rate=? cov=? ft=? # when the target left no result at all
        read -r rc ran execs rate cov ft <"$state/$name.result"
        rm -f "$state/$name.result"
        log=$state/$name.log
        files=$(find "$state/corpus/$name" -type f | wc -l)
        printf '%-18s %8s %10s %8s %8s %8s  %s\n' "$name" "$ran" "$execs" "$rate" "$cov" "$ft" \
            "$files"
        # The accumulated fuzzing time per target, for the record (fuzz-hours.tsv).
        [ "$execs" != "?" ] || execs=0
        [ "$cov" != "?" ] || cov=0
        [ "$ft" != "?" ] || ft=0
        row=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%FT%TZ)" "$name" "$ran" \
            "$execs" "$cov" "$ft" "$rc")
        if [ -n "${FUZZ_RECORD:-}" ]; then
            commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
            printf '%s\t%s\n' "$row" "$commit" >>"$src/tests/fuzz/fuzz-hours.tsv"
        else
            printf '%s\n' "$row" >>"$state/fuzz-hours.tsv"
        fi
        if [ "$rc" -ne 0 ]; then
            status=1
            echo "fuzz: $name found a problem (exit $rc); its log: $log"
            grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -20
            input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
            [ -n "$input" ] && echo "fuzz: replay it with: $build/fuzz_$name $input"
        fi
    done
done
records=()
for file in "$src/tests/fuzz/fuzz-hours.tsv" "$state/fuzz-hours.tsv"; do
    [ -s "$file" ] && records+=("$file")
done
if [ ${#records[@]} -gt 0 ]; then
    echo "fuzz: accumulated clean time per target (${records[*]}):"
    awk -F'\t' '!/^#/ && $7 == 0 { t[$2] += $3 } END { for (n in t) printf "  %-18s %6.1f min\n", n, t[n] / 60 }' \
        "${records[@]}" | sort
fi
exit $status
