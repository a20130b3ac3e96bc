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
# finish NAME: the summary line and the exit status.
finish() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
