#!/usr/bin/env bash
# End-to-end tests of the edgeforge command line: help, exit codes, config resolution on the
# bundled example, error messages for bad input, doctor and version output.
set -uo pipefail

src=${EDGEFORGE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=$(realpath "${EDGEFORGE_BIN:-$src/_build/edgeforge}")
[ -x "$bin" ] || { echo "edgeforge binary not found at $bin: build first (make build)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; shift; printf '     %s\n' "$@"; }

# run NAME EXPECTED_EXIT ARGS... : runs edgeforge in $work, keeps stdout/stderr for checks.
run() {
    local name=$1 expected=$2
    shift 2
    (cd "$work" && "$bin" "$@") >"$work/out" 2>"$work/err"
    local code=$?
    if [ "$code" -eq "$expected" ]; then
        return 0
    fi
    fail "$name" "exit code $code, expected $expected" "stderr: $(head -c 600 "$work/err")"
    return 1
}
contains() { # contains NAME FILE TEXT
    if grep -qF -- "$3" "$2"; then return 0; fi
    fail "$1" "missing in $(basename "$2"): $3" "got: $(head -c 800 "$2")"
    return 1
}

# Help reads well: top level and every command exit 0 and mention their commands.
run "help" 0 --help && contains "help" "$work/out" "Exit codes: 0 success" &&
    contains "help" "$work/out" "config" && pass "help"
for cmd in "build" "build iso" "build iso-disk-image" "build site-media" "build disk" "build provider" "build all" "content" \
    "content build" "validate" "validate config" "validate user-data" "inspect" "config show" \
    "doctor" "version" "keys" "keys generate"; do
    # shellcheck disable=SC2086
    run "help: $cmd" 0 $cmd --help && contains "help: $cmd" "$work/out" "Usage:" && pass "help: $cmd"
done
run "build iso help lists settings" 0 build iso --help &&
    contains "build iso help lists settings" "$work/out" "--user-data" &&
    contains "build iso help lists settings" "$work/out" "env EDGEFORGE_USER_DATA" &&
    pass "build iso help lists settings"

run "no arguments is usage" 2 && contains "no arguments is usage" "$work/err" "Usage:" &&
    pass "no arguments is usage"
run "unknown command" 2 frobnicate && contains "unknown command" "$work/err" "edgeforge: error:" &&
    pass "unknown command"
run "unknown flag" 2 config show --no-such-flag &&
    contains "unknown flag" "$work/err" "--no-such-flag" && pass "unknown flag"

# Commands run with nothing configured: exit 2, every missing input named with what to set,
# and nothing built.
for entry in "build provider|no Kubernetes distribution: set kubernetes.distribution" \
    "build all|no base image: set base.image" \
    "build iso-disk-image|no base image: set base.image" \
    "content build|nothing to bundle; give --image, --images-file or --manifest" \
    "content ls x.tar.zst|the bundle x.tar.zst does not exist" \
    "content verify x.tar.zst|the bundle x.tar.zst does not exist"; do
    cmd=${entry%%|*}
    # shellcheck disable=SC2086
    run "nothing configured: $cmd" 2 $cmd &&
        contains "nothing configured: $cmd" "$work/err" "${entry#*|}" &&
        { [ ! -e "$work/build" ] || fail "nothing configured: $cmd" "created build/"; } &&
        pass "nothing configured: $cmd"
done

# build iso checks every input before it would start: --dry-run prints the plan.
run "build iso --dry-run" 0 --config "$src/examples/basic/edgeforge.yaml" build iso --dry-run &&
    contains "build iso --dry-run" "$work/out" "plan: build $work/build/edge-demo-installer.iso for amd64" &&
    contains "build iso --dry-run" "$work/out" "examples/basic/user-data -> /config.yaml" &&
    [ ! -e "$work/build" ] && pass "build iso --dry-run"
run "build iso --dry-run --json" 0 --json --config "$src/examples/basic/edgeforge.yaml" build iso --dry-run --arch arm64 &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["arch"]=="arm64" and d["kind"]=="iso", d' "$work/out" &&
    pass "build iso --dry-run --json"
run "build iso: all input problems at once" 2 build iso &&
    contains "build iso: all input problems at once" "$work/err" "2 problems found:" &&
    contains "build iso: all input problems at once" "$work/err" "no base image" &&
    contains "build iso: all input problems at once" "$work/err" "user-data file $work/user-data is missing" &&
    pass "build iso: all input problems at once"

# config show on the bundled example: values and where they came from.
run "config show example" 0 --config "$src/examples/basic/edgeforge.yaml" config show &&
    contains "config show example" "$work/out" "edge-demo-installer" &&
    contains "config show example" "$work/out" "examples/basic/edgeforge.yaml:6:1" &&
    contains "config show example" "$work/out" "base-amd64:latest" && pass "config show example"

run "config show --json" 0 --json --config "$src/examples/basic/edgeforge.yaml" config show &&
    python3 - "$work/out" <<'PY' && pass "config show --json"
import json, sys
doc = json.load(open(sys.argv[1]))
values = {s["key"]: s for s in doc["settings"]}
assert values["name"]["value"] == "edge-demo-installer", values["name"]
assert values["name"]["origin"] == "config", values["name"]
assert values["user_data"]["resolved"][0].endswith("examples/basic/user-data")
assert values["outputs"]["value"] == ["iso", "raw", "qcow2", "ova", "provider"], values["outputs"]
PY
[ $? -eq 0 ] || fail "config show --json" "JSON did not match"

# Precedence across every source, seen through the CLI.
mkdir -p "$work/proj"
printf 'ISO_IMAGE=from-installer-env\n' >"$work/proj/.installer.env"
printf 'ISO_NAME=from-arg\nK8S_DISTRIBUTION=rke2\n' >"$work/proj/.arg"
printf 'name: from-yaml\n' >"$work/proj/edgeforge.yaml"
(cd "$work/proj" && "$bin" config show) >"$work/out" 2>"$work/err"
grep -qE '^name +from-yaml +edgeforge.yaml:1:1' "$work/out" &&
    grep -qE '^kubernetes.distribution +rke2 +.arg:2:1' "$work/out" &&
    pass "precedence: yaml over .arg over .installer.env" ||
    fail "precedence: yaml over .arg over .installer.env" "$(cat "$work/out" "$work/err")"
(cd "$work/proj" && EDGEFORGE_NAME=from-env "$bin" config show) >"$work/out" 2>&1
grep -qE '^name +from-env +environment variable EDGEFORGE_NAME' "$work/out" &&
    pass "precedence: environment over yaml" || fail "precedence: environment over yaml" "$(cat "$work/out")"
(cd "$work/proj" && EDGEFORGE_NAME=from-env "$bin" config show --name from-flag) >"$work/out" 2>&1
grep -qE '^name +from-flag +--name' "$work/out" &&
    pass "precedence: flag over environment" || fail "precedence: flag over environment" "$(cat "$work/out")"

# Bad input: exit 2, file:line:col, key, allowed values; nothing written.
printf 'name: ok\nkubernetes:\n  distribution: k9s\nsquashfs:\n  compresion: xz\n' >"$work/bad.yaml"
run "bad config" 2 --config bad.yaml validate config &&
    contains "bad config" "$work/err" "bad.yaml:3:17: invalid value 'k9s' for kubernetes.distribution: allowed values are k3s" &&
    contains "bad config" "$work/err" "bad.yaml:5:3: unknown key 'squashfs.compresion' (did you mean 'squashfs.compression'?)" &&
    pass "bad config"
printf 'ARCH=x86\n' >"$work/bad.arg"
run "bad .arg" 2 --arg-file bad.arg config show &&
    contains "bad .arg" "$work/err" "bad.arg:1:6: invalid value 'x86' for ARCH: allowed values are amd64 (alias x86_64), arm64 (alias aarch64)" &&
    pass "bad .arg"
run "bad flag value" 2 config show --compression brotli &&
    contains "bad flag value" "$work/err" "--compression: invalid value 'brotli' for squashfs.compression: allowed values are zstd, gzip, xz, lz4" &&
    pass "bad flag value"
run "missing --config" 2 --config nope.yaml config show &&
    contains "missing --config" "$work/err" "--config: 'nope.yaml' does not exist" && pass "missing --config"
run "validate config ok" 0 --config "$src/examples/basic/edgeforge.yaml" validate config &&
    contains "validate config ok" "$work/out" "configuration is valid" && pass "validate config ok"

# inspect shows an image without unpacking it (artifacts: tests/e2e/inspect_test.sh).
fixtures=${EDGEFORGE_FIXTURES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeforge/fixtures}
run "inspect oci" 0 inspect "oci:$fixtures/base-arm64:latest" &&
    contains "inspect oci" "$work/out" "platform  linux/arm64/v8" &&
    contains "inspect oci" "$work/out" "layers    2" && contains "inspect oci" "$work/out" "tar+zstd" &&
    pass "inspect oci"
run "inspect --json" 0 --json inspect "oci:$fixtures/agent-amd64:latest" &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["platform"]=="linux/amd64" and len(d["layers"])==1, d' "$work/out" &&
    pass "inspect --json"
run "inspect wrong arch" 2 --arch amd64 inspect "oci:$fixtures/base-arm64:latest" &&
    contains "inspect wrong arch" "$work/err" "is for arm64, but the build targets amd64" && pass "inspect wrong arch"
run "inspect missing artifact" 2 inspect build/x.iso &&
    contains "inspect missing artifact" "$work/err" "edgeforge: error: inspect: build/x.iso: cannot open it: No such file or directory" &&
    pass "inspect missing artifact"

# validate user-data: findings with file:line:col, key, hint; exit 2 on errors; --strict; --json.
run "validate user-data example" 0 validate user-data "$src/examples/basic/user-data" &&
    contains "validate user-data example" "$work/out" "0 errors, 0 warnings; registration: auto (registration token)" &&
    pass "validate user-data example"
printf '#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.example.com\n    nmae: edge-1\n    network:\n      type: static\n      ipAddress: 10.0.0.5\n      mask: 24\n      gateway: 10.0.1.1\n' >"$work/ud.yaml"
run "validate user-data errors" 2 validate user-data ud.yaml &&
    contains "validate user-data errors" "$work/out" "ud.yaml:10:16: error: stylus.site.network.gateway: gateway 10.0.1.1 is outside the subnet of 10.0.0.5/24" &&
    contains "validate user-data errors" "$work/out" "ud.yaml:5:5: warning: stylus.site.nmae: unknown key 'nmae' looks like a misspelling of 'name'" &&
    pass "validate user-data errors"
printf '#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.example.com\n    nmae: edge-1\n' >"$work/warn.yaml"
run "validate user-data warnings pass" 0 validate user-data warn.yaml && pass "validate user-data warnings pass"
run "validate user-data --strict" 2 validate user-data --strict warn.yaml && pass "validate user-data --strict"
run "validate user-data --json" 2 --json validate user-data ud.yaml &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["errors"]==1 and d["findings"][1]["line"]==10, d' "$work/out" &&
    pass "validate user-data --json"
run "build iso validates user-data" 2 --config "$src/examples/basic/edgeforge.yaml" build iso --dry-run --user-data "$work/ud.yaml" &&
    contains "build iso validates user-data" "$work/err" "ud.yaml:10:16: stylus.site.network.gateway: gateway 10.0.1.1 is outside the subnet" &&
    pass "build iso validates user-data"

# build site-media: a CIDATA seed ISO whose files xorriso reads back byte-equal to the inputs.
printf '#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.example.com\n    name: store-042\n' >"$work/site.yaml"
run "build site-media" 0 --source-date-epoch 1700000000 --output-dir sm build site-media --user-data site.yaml &&
    xorriso -indev "$work/sm/palette-edge-installer-cidata.iso" -report_system_area plain 2>&1 | grep -q "Volume id    : 'CIDATA'" &&
    xorriso -osirrox on -indev "$work/sm/palette-edge-installer-cidata.iso" -extract /user-data "$work/sm-ud" \
        -extract /meta-data "$work/sm-md" >/dev/null 2>&1 &&
    cmp -s "$work/sm-ud" "$work/site.yaml" && grep -qx "local-hostname: store-042" "$work/sm-md" &&
    grep -qE "^instance-id: edgeforge-[0-9a-f]{16}$" "$work/sm-md" && pass "build site-media" ||
    fail "build site-media" "$(cat "$work/err")"
run "build site-media rejects bad user-data" 2 --output-dir sm-bad build site-media --user-data ud.yaml &&
    contains "build site-media rejects bad user-data" "$work/err" "the site user-data has errors; nothing was written" &&
    [ ! -e "$work/sm-bad" ] && pass "build site-media rejects bad user-data"

# doctor and version report tools and libraries; doctor --json is machine-readable.
run "doctor" 0 --config "$src/examples/basic/edgeforge.yaml" doctor &&
    contains "doctor" "$work/out" "mkfs.fat" && contains "doctor" "$work/out" "libisofs" &&
    pass "doctor"
run "doctor --json" 0 --json doctor --tests &&
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "checks" in d and d["libraries"]["libarchive"]' "$work/out" &&
    pass "doctor --json"
PATH=/nonexistent "$bin" doctor >"$work/out" 2>"$work/err"
code=$?
[ "$code" -eq 1 ] && grep -q "apt-get install" "$work/out" && pass "doctor reports missing tools" ||
    fail "doctor reports missing tools" "exit $code" "$(cat "$work/out")"
run "version" 0 version && contains "version" "$work/out" "edgeforge 0.1.0" && pass "version"
run "--version" 0 --version && contains "--version" "$work/out" "0.1.0" && pass "--version"

# A CanvOS project: CanvOS's own .arg.template (tests/fixtures/canvos, see its NOTICE) is read as
# Earthly reads it, with no edgeforge file present.
mkdir -p "$work/canvos"
cp "$src/tests/fixtures/canvos/arg.template" "$work/canvos/.arg"
(cd "$work/canvos" && "$bin" config show) >"$work/out" 2>"$work/err"
code=$?
[ "$code" -eq 0 ] &&
    grep -qE '^provider.repository +ubuntu +\.arg:4:1' "$work/out" &&
    grep -qF 'docker://us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-{arch}-generic-v0.17.1' "$work/out" &&
    grep -qF 'docker://us-docker.pkg.dev/palette-images/edge/stylus-framework-linux-{arch}:v4.10.0-rc.2' "$work/out" &&
    grep -qE '^UPDATE_KERNEL +false +\.arg:11:1 +none: false is the default' "$work/out" &&
    grep -qE '^iso.interactive_default +false +\.arg:15:1' "$work/out" &&
    grep -qE '^CLUSTERCONFIG +spc.tgz +\.arg:12:1 +none: spc.tgz does not exist' "$work/out" &&
    [ ! -s "$work/err" ] &&
    pass "CanvOS .arg.template: config show expands \$OS_DISTRIBUTION, derives base and agent, marks each CanvOS variable" ||
    fail "CanvOS .arg.template: config show expands \$OS_DISTRIBUTION, derives base and agent, marks each CanvOS variable" "exit $code" "$(cat "$work/out" "$work/err")"
printf 'UPDATE_KERNEL=true\nIMAGE_REPO=$NOT_DEFINED_ANYWHERE/edge\n' >>"$work/canvos/.arg"
(cd "$work/canvos" && "$bin" config show) >"$work/out" 2>"$work/err"
code=$?
[ "$code" -eq 2 ] &&
    grep -qF '.arg:111:1: UPDATE_KERNEL=true is not supported: edgeforge composes the base image and does not modify the OS inside it' "$work/err" &&
    grep -qF 'warning: .arg:112:12: $NOT_DEFINED_ANYWHERE is not set earlier in this file nor in the environment' "$work/err" &&
    pass "CanvOS .arg: UPDATE_KERNEL=true is exit 2 with what to do; an undefined \$NAME warns with its position" ||
    fail "CanvOS .arg: UPDATE_KERNEL=true is exit 2 with what to do; an undefined \$NAME warns with its position" "exit $code" "$(cat "$work/err")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
