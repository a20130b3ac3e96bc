# Shared start of the end-to-end tests (sourced, not run): where the source and the binary are,
# the fixture images (built if missing), a work directory removed at exit, fixed timestamps,
# and pass/fail counters that finish() turns into the exit status.
src=${EDGEFORGE_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[1]}")/../.." && pwd)}
bin=$(realpath "${EDGEFORGE_BIN:-$src/_build/edgeforge}")
[ -x "$bin" ] || { echo "edgeforge binary not found at $bin: build first (make build)"; exit 1; }
fixtures=${EDGEFORGE_FIXTURES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge/fixtures}
"$src/tests/fixtures/build-fixtures" -q >/dev/null || { echo "fixture build failed"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SOURCE_DATE_EPOCH=1700000000
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; shift; printf '     %s\n' "$@"; }
# check NAME COMMAND...: pass when the command succeeds, else fail with $detail (then cleared).
detail=
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name" "${detail:-}"; fi
    detail=
}
# need_tools TOOL...: stop (exit 1) naming the first tool that is not installed.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$tool is missing: run make deps"; exit 1; }
    done
}
# finish NAME: the summary line and the exit status.
finish() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
