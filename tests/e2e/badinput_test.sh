#!/usr/bin/env bash
# A catalogue of hostile LOCAL inputs (registries are covered by registry_test.sh): YAML bombs,
# deep nesting, duplicate keys, bad bytes and huge values in every settings source; OCI layouts
# with traversal paths, link escapes, missing/corrupt/truncated blobs and lying descriptors;
# damaged artifacts for `inspect`; tampered content bundles; unwritable, full, raced and
# interrupted outputs. The inputs are written by badinput_gen.py (python3) into $work.
#
# Every case, run by case_run, must:
#   1. exit with the expected code (2 bad input or usage, 1 build failure) and never be killed
#      by a signal (SIGSEGV, SIGABRT) or hang;
#   2. name the culprit (file:line:col, the image and layer, the file or the setting): a grep;
#   3. leave nothing in the output directory (neither the final name nor a temporary);
#   4. leave nothing in TMPDIR (a private, empty directory);
#   5. write nothing anywhere else under $work: HOME, XDG_CACHE_HOME and the inputs are
#      snapshotted before and after (only the output and cache directories may change);
# and at the end, 6. the shared cache is still valid: `cache ls` exits 0 and a good
# `build iso` with the same cache succeeds.
# A case that shows an edgeforge bug not fixed yet is marked `known_bug "..."`: it is reported
# and counted apart, and does not fail the test.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_tools python3 zstd mount umount
export EDGEFORGE_FIXTURES_DIR=$fixtures
started=$SECONDS

# Everything edgeforge may write goes under $work: a private HOME, XDG cache, TMPDIR, one shared
# cache and the output directory $work/out (each case's output; it must be empty after a case).
export HOME=$work/home XDG_CACHE_HOME=$work/xdg TMPDIR=$work/tmp
export EDGEFORGE_CACHE_DIR=$work/cache EDGEFORGE_OUTPUT_DIR=$work/out
export LIBGUESTFS_PATH=$work/no-appliance # inspect must refuse damaged artifacts before any launch
mkdir -p "$HOME" "$XDG_CACHE_HOME" "$TMPDIR" "$work/log" "$work/in"
mounts=()
cleanup() {
    local m
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
escape=edgeforge-catalogue-escape # the file name every traversal case tries to create
rm -f "/tmp/$escape" "/$escape"

# run.py OUT ERR COMMAND...: prints the exit code, negative when a signal killed the command,
# "timeout" when it had to be killed after CASE_TIMEOUT seconds.
cat >"$work/run.py" <<'PY'
import os, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    try:
        r = subprocess.run(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                           timeout=float(os.environ.get("CASE_TIMEOUT", "120")))
        print(r.returncode)
    except subprocess.TimeoutExpired:
        print("timeout")
PY

# snapshot: every path under $work except the output, cache, log and TMPDIR, with its type,
# size, mtime and mode.
snapshot() {
    find "$work" -mindepth 1 \( -path "$work/out" -o -path "$work/cache" -o -path "$work/log" -o \
        -path "$TMPDIR" -o -path "$work/mnt" \) -prune -o -printf '%P|%y|%s|%T@|%m\n' | LC_ALL=C sort
}

class=
classes=()
# section NAME: the class of the cases that follow; prints how long the last one took.
section() {
    [ -z "$class" ] || echo "--- $class done at $((SECONDS - started)) s"
    class=$1
}
declare -A class_count=()
known=0
known_list=()
pending_known=
# known_bug DESCRIPTION: the next case shows an edgeforge bug that is not fixed yet.
known_bug() { pending_known=$1; }
# case_run NAME EXPECTED_EXIT PATTERN [--not REGEX] [--out DIR] [--left NAMES] -- COMMAND...
#   EXPECTED_EXIT is a regex (2, or 1|2); PATTERN an extended regex that stdout+stderr must
#   match (the culprit); --not a regex they must not match (impossible values printed as
#   facts); --out the case's output directory (default $work/out), which must be empty or
#   absent afterwards except for the space-separated --left names (made by the case itself).
case_run() {
    local name=$1 expected=$2 pattern=$3 forbid= outdir=$work/out left=
    shift 3
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        case $1 in
        --not) forbid=$2 ;;
        --out) outdir=$2 ;;
        --left) left=$2 ;;
        *) echo "case_run: unknown option $1" >&2; exit 1 ;;
        esac
        shift 2
    done
    shift
    local title="[$class] $name" bug=$pending_known
    pending_known=
    [ -n "${class_count[$class]:-}" ] || classes+=("$class")
    class_count[$class]=$((${class_count[$class]:-0} + 1))
    snapshot >"$work/log/before"
    local rc
    local t0=$SECONDS
    rc=$(python3 "$work/run.py" "$work/log/stdout" "$work/log/stderr" "$@")
    [ $((SECONDS - t0)) -lt 3 ] || title+=" ($((SECONDS - t0)) s)"
    snapshot >"$work/log/after"
    cat "$work/log/stdout" "$work/log/stderr" >"$work/log/all"
    local problems=()
    if [ "$rc" = timeout ]; then
        problems+=("hung: killed after ${CASE_TIMEOUT:-120} s")
    elif [ "$rc" -lt 0 ]; then
        problems+=("killed by signal $((-rc))")
    elif ! [[ $rc =~ ^($expected)$ ]]; then
        problems+=("exit $rc, expected $expected")
    fi
    grep -qiE -- "$pattern" "$work/log/all" || problems+=("the message does not match: $pattern")
    if [ -n "$forbid" ] && grep -qE -- "$forbid" "$work/log/all"; then
        problems+=("the message states what cannot be true: $(grep -oE -- "$forbid" "$work/log/all" | head -1)")
    fi
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|terminate called|std::bad_alloc' "$work/log/all"; then
        problems+=("crash report: $(grep -E 'AddressSanitizer|LeakSanitizer|runtime error:|terminate called|bad_alloc' "$work/log/all" | head -2)")
    fi
    local stray
    if [ -d "$outdir" ]; then
        stray=$(ls -A "$outdir" | while read -r f; do [[ " $left " == *" $f "* ]] || echo "$f"; done | head -5 | tr '\n' ' ')
        [ -z "$stray" ] || problems+=("left in the output directory: $stray")
    fi
    stray=$(ls -A "$TMPDIR" | head -5 | tr '\n' ' ')
    [ -z "$stray" ] || problems+=("temporaries left in TMPDIR: $stray")
    if ! cmp -s "$work/log/before" "$work/log/after"; then
        problems+=("written outside the output and cache: $(diff "$work/log/before" "$work/log/after" | grep '^[<>]' | head -4 | tr '\n' ' ')")
    fi
    if [ -e "/tmp/$escape" ] || [ -e "/$escape" ]; then
        problems+=("a traversal wrote /tmp/$escape or /$escape on the host")
        rm -f "/tmp/$escape" "/$escape"
    fi
    local message
    message="exit $rc: $(head -c 400 "$work/log/stderr" | tr '\n' ' ')"
    if [ ${#problems[@]} -eq 0 ]; then
        if [ -n "$bug" ]; then
            pass "$title (marked known_bug but passes now: remove the mark: $bug)"
        else
            pass "$title"
        fi
    elif [ -n "$bug" ]; then
        known=$((known + 1))
        known_list+=("$title: $bug")
        echo "KNOWN $title: $bug"
        printf '     %s\n' "${problems[@]}"
    else
        fail "$title" "${problems[@]}" "$message"
    fi
    rm -rf "$work/out" "${TMPDIR:?}"/* "${TMPDIR:?}"/.[!.]* 2>/dev/null
}

# --- inputs ---------------------------------------------------------------------------------
python3 "$src/tests/e2e/badinput_gen.py" "$work/in" "$fixtures" || { echo "badinput_gen.py failed"; exit 1; }
in=$work/in
proj=$work/proj
mkdir -p "$proj/overlays/files" "$proj/overlays/files-iso"
cp "$src/examples/basic/user-data" "$proj/user-data"
cat >"$proj/edgeforge.yaml" <<YAML
name: cat
arch: amd64
base:
  image: oci:$fixtures/base-amd64:latest
agent:
  images: [oci:$fixtures/agent-amd64:latest]
user_data: user-data
squashfs: {level: 1}
YAML
printf 'a file, not a directory\n' >"$in/afile"
cd "$proj"
huge=$(head -c 130000 /dev/zero | tr '\0' a) # the longest single argument or variable execve takes
project_snapshot=$(git -C "$src" status --porcelain 2>/dev/null)

# --- YAML ------------------------------------------------------------------------------------
section yaml
y=$in/yaml
case_run "edgeforge.yaml: billion laughs" 2 "cfg-bomb.yaml:[0-9]+:[0-9]+:.*(alias|nodes)" -- "$bin" --config "$y/cfg-bomb.yaml" validate config
case_run "edgeforge.yaml: billion laughs in a list setting" 2 "cfg-bomb-value.yaml:[0-9]+:[0-9]+:.*(alias|nodes)" -- "$bin" --config "$y/cfg-bomb-value.yaml" validate config
case_run "edgeforge.yaml: 100,000 nested flow lists" 2 "cfg-flow-deep.yaml:[0-9]+:[0-9]+:.*nests deeper than 64 levels" -- "$bin" --config "$y/cfg-flow-deep.yaml" validate config
case_run "edgeforge.yaml: 400 nested block mappings" 2 "cfg-block-deep.yaml:[0-9]+:[0-9]+:.*nests deeper than 64 levels" -- "$bin" --config "$y/cfg-block-deep.yaml" validate config
case_run "edgeforge.yaml: duplicate key, both positions" 2 "cfg-dup.yaml:3:1:.*'name'.*first at line 1, column 1" -- "$bin" --config "$y/cfg-dup.yaml" validate config
case_run "edgeforge.yaml: duplicate nested key" 2 "cfg-dup-nested.yaml:4:3:.*'level'.*first at line 2, column 3" -- "$bin" --config "$y/cfg-dup-nested.yaml" validate config
case_run "edgeforge.yaml: invalid UTF-8" 2 "cfg-utf8.yaml:2:[0-9]+:.*UTF-8" -- "$bin" --config "$y/cfg-utf8.yaml" validate config
case_run "edgeforge.yaml: NUL byte in a value" 2 "cfg-nul.yaml:2:8:.*control character 0x00 \\(NUL\\)" -- "$bin" --config "$y/cfg-nul.yaml" validate config
case_run "edgeforge.yaml: NUL byte in a key" 2 "cfg-nul-key.yaml:2:3:.*control character 0x00 \\(NUL\\)" -- "$bin" --config "$y/cfg-nul-key.yaml" validate config
case_run "edgeforge.yaml: unknown keys, all reported" 2 "cfg-unknown.yaml:3:3: unknown key 'squashfs.compresion'.*" -- "$bin" --config "$y/cfg-unknown.yaml" validate config
case_run "edgeforge.yaml: unknown top-level key" 2 "cfg-unknown.yaml:4:1: unknown key 'frobnicate'" -- "$bin" --config "$y/cfg-unknown.yaml" validate config
case_run "edgeforge.yaml: a list where a string goes" 2 "cfg-type-name.yaml:1:7:.*name" -- "$bin" --config "$y/cfg-type-name.yaml" validate config
case_run "edgeforge.yaml: a string where a mapping goes" 2 "cfg-type-base.yaml:1:7:.*base" -- "$bin" --config "$y/cfg-type-base.yaml" validate config
case_run "edgeforge.yaml: a mapping where a number goes" 2 "cfg-type-level.yaml:2:10:.*squashfs.level" -- "$bin" --config "$y/cfg-type-level.yaml" validate config
case_run "edgeforge.yaml: a list as the document" 2 "cfg-type-root.yaml:1:1:" -- "$bin" --config "$y/cfg-type-root.yaml" validate config
case_run "edgeforge.yaml: unterminated quote" 2 "cfg-unterminated.yaml:[0-9]+:[0-9]+:" -- "$bin" --config "$y/cfg-unterminated.yaml" validate config
case_run "edgeforge.yaml: tab indentation" 2 "cfg-tab.yaml:3:[0-9]+:" -- "$bin" --config "$y/cfg-tab.yaml" validate config
case_run "edgeforge.yaml: two documents" 2 "cfg-multidoc.yaml:3:1:.*second YAML document" -- "$bin" --config "$y/cfg-multidoc.yaml" validate config
case_run "edgeforge.yaml: a number past 64 bits" 2 "cfg-level-huge.yaml:2:10:.*squashfs.level" -- "$bin" --config "$y/cfg-level-huge.yaml" validate config
case_run "user-data: billion laughs" 2 "ud-bomb.yaml:[0-9]+:[0-9]+:.*(alias|nodes)" -- "$bin" validate user-data "$y/ud-bomb.yaml"
case_run "user-data: 100,000 nested flow lists" 2 "ud-flow-deep.yaml:[0-9]+:[0-9]+:.*nests deeper than 64 levels" -- "$bin" validate user-data "$y/ud-flow-deep.yaml"
case_run "user-data: 400 nested block mappings" 2 "ud-block-deep.yaml:[0-9]+:[0-9]+:.*nests deeper than 64 levels" -- "$bin" validate user-data "$y/ud-block-deep.yaml"
case_run "user-data: duplicate key, both positions" 2 "ud-dup.yaml:6:5:.*'paletteEndpoint'.*first at line 4, column 5" -- "$bin" validate user-data "$y/ud-dup.yaml"
case_run "user-data: invalid UTF-8" 2 "ud-utf8.yaml:5:[0-9]+:.*UTF-8" -- "$bin" validate user-data "$y/ud-utf8.yaml"
case_run "user-data: NUL byte" 2 "ud-nul.yaml:5:19:.*control character 0x00" -- "$bin" validate user-data "$y/ud-nul.yaml"
case_run "user-data: a list where stylus.site goes" 2 "ud-type.yaml:3:[0-9]+:.*stylus.site" -- "$bin" validate user-data "$y/ud-type.yaml"
case_run "user-data: a scalar document" 2 "ud-root-scalar.yaml:2:1:" -- "$bin" validate user-data "$y/ud-root-scalar.yaml"
case_run "user-data via build iso: billion laughs" 2 "ud-bomb.yaml:[0-9]+:[0-9]+:.*(alias|nodes)" -- "$bin" build iso --dry-run --user-data "$y/ud-bomb.yaml"
case_run "site file: billion laughs" 2 "s1.yaml:[0-9]+:[0-9]+:.*(alias|nodes)" -- "$bin" build iso --fail-fast --sites "$y/sites-bomb"
case_run "site file: 100,000 nested flow lists" 2 "s1.yaml:[0-9]+:[0-9]+:.*nests deeper than 64 levels" -- "$bin" build iso --fail-fast --sites "$y/sites-deep"
case_run "site file: duplicate key, both positions" 2 "s1.yaml:4:5:.*'name'.*first at line 3, column 5" -- "$bin" build iso --fail-fast --sites "$y/sites-dup"
case_run "site file: invalid UTF-8" 2 "s1.yaml:3:[0-9]+:.*UTF-8" -- "$bin" build iso --fail-fast --sites "$y/sites-utf8"
case_run "site file: a broken site in --dry-run" 2 "s1.yaml:4:5:.*'name'.*first at line 3, column 5" -- "$bin" build iso --dry-run --sites "$y/sites-dup"
case_run "bundle manifest: billion laughs" 2 "man-bomb.yaml:[0-9]+:[0-9]+:.*(alias|nodes)" -- "$bin" content build --name x --manifest "$y/man-bomb.yaml" --dry-run
case_run "bundle manifest: 100,000 nested flow lists" 2 "man-deep.yaml:[0-9]+:[0-9]+:.*nests deeper than 64 levels" -- "$bin" content build --name x --manifest "$y/man-deep.yaml" --dry-run
case_run "bundle manifest: duplicate key, both positions" 2 "man-dup.yaml:4:1:.*'images'.*first at line 1, column 1" -- "$bin" content build --name x --manifest "$y/man-dup.yaml" --dry-run
case_run "bundle manifest: unknown key" 2 "man-unknown.yaml:2:1:.*fiels" -- "$bin" content build --name x --manifest "$y/man-unknown.yaml" --dry-run
case_run "bundle manifest: a number where a list goes" 2 "man-type.yaml:1:9:.*images" -- "$bin" content build --name x --manifest "$y/man-type.yaml" --dry-run
case_run "bundle manifest: a file dest climbing out" 2 "man-file-escape.yaml:[0-9]+:[0-9]+:.*dest '../../$escape'" -- "$bin" content build --name x --manifest "$y/man-file-escape.yaml" --dry-run
case_run "bundle manifest: an impossible file mode" 2 "man-file-mode.yaml:3:[0-9]+:.*mode" -- "$bin" content build --name x --manifest "$y/man-file-mode.yaml" --dry-run

# --- huge and nested values in every settings source -------------------------------------
section values
limit="at most (8192|4352)"
case_run "flag --name: 130,000 characters" 2 "--name.*($limit)" -- "$bin" build iso --dry-run --name "$huge"
case_run "flag --base: a 130,000-character image reference" 2 "--base.*($limit)" -- "$bin" build iso --dry-run --base "oci:$huge"
case_run "flag --agent: a 130,000-character docker:// reference" 2 "--agent.*($limit)" -- "$bin" build iso --dry-run --agent "docker://registry.example.com/$huge:1"
case_run "flag --extra-cmdline: 130,000 characters" 2 "--extra-cmdline.*($limit)" -- "$bin" build iso --dry-run --extra-cmdline "$huge"
case_run "inspect: a 130,000-character image reference" 2 "($limit)" -- "$bin" inspect "oci:$huge"
case_run "env EDGEFORGE_NAME: 130,000 characters" 2 "EDGEFORGE_NAME.*($limit)" -- env EDGEFORGE_NAME="$huge" "$bin" build iso --dry-run
case_run "env EDGEFORGE_BASE_IMAGE: 130,000 characters" 2 "EDGEFORGE_BASE_IMAGE.*($limit)" -- env EDGEFORGE_BASE_IMAGE="oci:$huge" "$bin" --config /dev/null build iso --dry-run
case_run "env EDGEFORGE_HTTP_PROXY: 130,000 characters" 2 "EDGEFORGE_HTTP_PROXY.*($limit)" -- env EDGEFORGE_HTTP_PROXY="http://$huge:3128" "$bin" config show
for entry in "arg|ISO_NAME" "arg|HTTP_PROXY" "arg|NO_PROXY" "installer-env|IMAGE_NAME" "installer-env|ISO_IMAGE"; do
    kind=${entry%%|*} var=${entry#*|}
    file=$in/values-$var.$kind
    printf 'ARCH=amd64\n%s=%s\n' "$var" "$(head -c 200001 /dev/zero | tr '\0' a)" >"$file"
    [ "$kind" = arg ] && opt=--arg-file || opt=--installer-env
    case_run "$kind $var: 200,001 characters" 2 "values-$var.$kind:2:[0-9]+:.*($limit)" -- "$bin" "$opt" "$file" build iso --dry-run
done
printf 'ARCH=amd64\nISO_NAME=%s\n' "$(printf '${X:-%.0s' $(seq 20000))deep$(printf '}%.0s' $(seq 20000))" >"$in/nested.arg"
case_run ".arg: \${X:-\${Y:-...}} nested 20,000 deep" 2 "nested.arg:2:[0-9]+:.*(16 levels|nest|at most 8192)" -- "$bin" --arg-file "$in/nested.arg" build iso --dry-run
printf 'ARCH=amd64\n%s=1\n' "$(head -c 200001 /dev/zero | tr '\0' K)" >"$in/longkey.arg"
case_run ".arg: a 200,001-character key" 2 "longkey.arg:2:1:" -- "$bin" --arg-file "$in/longkey.arg" build iso --dry-run
printf 'ARCH=amd64\nISO_NAME=a\0b\n' >"$in/nul.arg"
case_run ".arg: a NUL byte" 2 "nul.arg:2:[0-9]+:" -- "$bin" --arg-file "$in/nul.arg" build iso --dry-run
printf 'ARCH=amd64\nISO_NAME=caf\xe9\n' >"$in/utf8.installer.env"
case_run ".installer.env: invalid UTF-8" 2 "utf8.installer.env:2:[0-9]+:" -- "$bin" --installer-env "$in/utf8.installer.env" build iso --dry-run
case_run "edgeforge.yaml name: 200,001 characters" 2 "cfg-huge-name.yaml:1:7:.*($limit)" -- "$bin" --config "$y/cfg-huge-name.yaml" validate config
case_run "edgeforge.yaml: a 200,001-character key" 2 "cfg-huge-key.yaml:1:[0-9]+:" -- "$bin" --config "$y/cfg-huge-key.yaml" validate config
case_run "edgeforge.yaml: \${X:-\${X:-...}} nested 20,000 deep" 2 "cfg-nested-default.yaml:1:7:.*(16|nest|deep)" -- "$bin" --config "$y/cfg-nested-default.yaml" validate config
# 17 levels: short enough that no length limit answers first, so the nesting limit itself does.
printf 'name: %sdeep%s\n' "$(printf '${X:-%.0s' $(seq 17))" "$(printf '}%.0s' $(seq 17))" >"$in/nested17.yaml"
case_run "edgeforge.yaml: \${X:-...} nested 17 deep (one past the limit)" 2 "nested17.yaml:1:7:.*nested more than 16 deep" -- "$bin" --config "$in/nested17.yaml" validate config
printf 'name: %sdeep%s\n' "$(printf '${X:-%.0s' $(seq 16))" "$(printf '}%.0s' $(seq 16))" >"$in/nested16.yaml"
case_run "edgeforge.yaml: \${X:-...} nested 16 deep (the limit) is fine" 0 "." -- "$bin" --config "$in/nested16.yaml" validate config
case_run "user-data paletteEndpoint: 200,001 characters" 2 "ud-huge-endpoint.yaml:4:22:.*paletteEndpoint" -- "$bin" validate user-data "$y/ud-huge-endpoint.yaml"
case_run "user-data noProxy entry: 200,001 characters" 2 "ud-huge-noproxy.yaml:8:11:.*noProxy" -- "$bin" validate user-data "$y/ud-huge-noproxy.yaml"
case_run "site file paletteEndpoint: 200,001 characters" 2 "s1.yaml:4:[0-9]+:.*paletteEndpoint" -- "$bin" build iso --fail-fast --sites "$y/sites-huge"
case_run "images file: a 200,005-character line" 2 "images-huge.txt:1.*($limit)" -- "$bin" content build --name x --images-file "$y/images-huge.txt" --dry-run
case_run "images file: a NUL byte" 2 "images-nul.txt:1:6:.*control character 0x00" -- "$bin" content build --name x --images-file "$y/images-nul.txt" --dry-run
case_run "images file: extra fields" 2 "images-many-fields.txt:1" -- "$bin" content build --name x --images-file "$y/images-many-fields.txt" --dry-run
case_run "bundle manifest charts: a 200,005-character path" 2 "man-huge-chart.yaml:2:5:" -- "$bin" content build --name x --manifest "$y/man-huge-chart.yaml" --dry-run

# --- local images -----------------------------------------------------------------------------
section images
i=$in/img
# Layer contents: a real build, so the layer is merged; every one must stop at that layer.
for entry in "trav-dotdot|escapes the image root" "trav-middle|escapes the image root" \
    "trav-absolute|escapes the image root" "trav-dir|escapes the image root" \
    "trav-zstd|escapes the image root" \
    "sym-abs-escape|goes through the symbolic link" "sym-rel-escape|goes through the symbolic link" \
    "hardlink-escape|hard link .*escapes the image root" "hardlink-abs-host|hard link to '/etc/shadow', which does not exist in the image" \
    "hardlink-dir|hard link to the directory" "whiteout-dotdot|escapes the image root"; do
    image=${entry%%|*}
    case_run "layer: $image" 2 "$image.*(layer|sha256:[0-9a-f]{12}).*${entry#*|}" -- "$bin" build iso --base "oci:$i/$image:latest"
done
for entry in "missing-layer|blob sha256:[0-9a-f]{64} \\(layer\\) is missing" "layer-digest-mismatch|layer sha256:[0-9a-f]{64}" "truncated-gzip|truncated|unexpected end|corrupt" \
    "truncated-zstd|truncated|unexpected end|corrupt" "not-a-tar|tar|corrupt|format" "huge-layer-size|descriptor says 4611686018427387904" \
    "negative-layer-size|size" "digest-traversal|digest" "digest-bad-algo|digest|md5" "layer-media-type|media ?type|application/x-edgeforge-nonsense"; do
    image=${entry%%|*}
    case_run "blob: $image" "1|2" "$image.*(${entry#*|})" -- "$bin" build iso --base "oci:$i/$image:latest"
done
for entry in "missing-config|sha256:" "missing-manifest|sha256:" "config-digest-mismatch|sha256:" \
    "huge-config-size|descriptor says 4611686018427387904" "wrong-arch|arm64.*amd64" "wrong-os|windows" "index-garbage|index.json" \
    "index-empty|index.json" "index-no-manifests|latest" "index-deep|index.json" \
    "index-wrong-type|index.json" "index-size-lies|is 4[0-9]+ bytes, but its descriptor says 3" "index-dangling-child|sha256:0000"; do
    image=${entry%%|*}
    case_run "manifest: $image" "1|2" "$image.*(${entry#*|})" -- "$bin" inspect "oci:$i/$image:latest"
done
# Configs that contradict their manifest, and diff_ids that are not the layers' (every storage).
case_run "config: no rootfs.diff_ids" 2 "diff-ids-missing.*no rootfs.diff_ids" -- "$bin" inspect "oci:$i/diff-ids-missing:latest"
case_run "config: 0 diff_ids for 1 layer" 2 "diff-ids-short.*lists 0 diff_ids \\(rootfs.diff_ids\\) for 1 layer" -- "$bin" inspect "oci:$i/diff-ids-short:latest"
case_run "config: a diff_id that is a number" 2 "diff-id-number.*layer 2 of 2 .*rootfs.diff_ids\\[1\\]\\) is 42" -- "$bin" inspect "oci:$i/diff-id-number:latest"
for how in none gzip zstd xz; do
    case_run "layer: wrong diff_id ($how)" 1 "diff-id-wrong-$how.*layer sha256:[0-9a-f]{12}.*uncompressed tar hashes to sha256:[0-9a-f]{64}, but the image config lists the diff_id sha256:(ab){32}" -- "$bin" build iso --base "oci:$i/diff-id-wrong-$how:latest"
done
case_run "tag that the layout lacks" 2 "trav-dotdot.*nope" -- "$bin" inspect "oci:$i/trav-dotdot:nope"
case_run "oci-archive: truncated" "1|2" "truncated-oci-archive.tar.*(truncated|corrupt|unexpected)" -- "$bin" build iso --base "oci-archive:$i/truncated-oci-archive.tar"
case_run "docker-archive: truncated" "1|2" "truncated-docker-archive.tar.*(truncated|corrupt|unexpected)" -- "$bin" build iso --base "docker-archive:$i/truncated-docker-archive.tar"
case_run "docker-archive: manifest names host files" 2 "docker-archive-escape.tar.*(\.\./|escape|not)" -- "$bin" inspect "docker-archive:$i/docker-archive-escape.tar"
: >"$in/empty.yaml"
case_run "tar: a truncated tar.gz artifact" "1|2" "truncated-layer.tar.gz.*(truncated|corrupt|unexpected)" -- "$bin" --config "$in/empty.yaml" build provider --k8s-distribution k3s --k8s-version 1.30.4 --base "oci:$fixtures/base-amd64:latest" --k8s-artifact "tar:$i/truncated-layer.tar.gz"
for entry in "local-ui-dotdot|entry '\\.\\./\\.\\./tmp/edgeforge-catalogue-escape' escapes" \
    "local-ui-symlink|entry 'up/edgeforge-catalogue-escape' goes through the symbolic link" \
    "local-ui-hardlink|entry 'shadow' is a hard link to '\\.\\./\\.\\./etc/shadow', which escapes" \
    "local-ui-truncated|(truncated|corrupt|unexpected)"; do
    name=${entry%%|*}
    case_run "local-ui.tar: $name" "1|2" "local UI archive .*$name.tar.*${entry#*|}" -- "$bin" build iso --base "oci:$fixtures/base-amd64:latest" --local-ui "$i/$name.tar"
done
case_run "content build: a layer whose digest lies" "1|2" "layer-digest-mismatch.*sha256:" -- "$bin" content build --name x --image "oci:$i/layer-digest-mismatch:latest"
case_run "content build: a missing layer blob" "1|2" "missing-layer.*sha256:" -- "$bin" content build --name x --image "oci:$i/missing-layer:latest"

# --- inspect of damaged artifacts -------------------------------------------------------------
section inspect
a=$in/art
"$bin" --output-dir "$work/site" build site-media --user-data "$proj/user-data" >"$work/log/site-media" 2>&1 ||
    fail "setup: build site-media for the ISO cases" "$(cat "$work/log/site-media")"
iso=$(ls "$work/site"/*.iso | head -1)
head -c 34816 "$iso" >"$a/cut-34k.iso"
python3 - "$iso" "$a" <<'PY'
import sys
iso, out = sys.argv[1:]
data = bytearray(open(iso, "rb").read())
pvd = 16 * 2048
assert data[pvd + 1:pvd + 6] == b"CD001"
ff = bytearray(data)
ff[pvd + 80:pvd + 88] = b"\xff" * 8          # volume space size, both byte orders
open(out + "/volume-size-ff.iso", "wb").write(ff)
bs = bytearray(data)
bs[pvd + 128:pvd + 132] = b"\xff" * 4         # logical block size
open(out + "/block-size-ff.iso", "wb").write(bs)
root = bytearray(data)
root[pvd + 156 + 2:pvd + 156 + 10] = b"\xff" * 8  # root directory extent location
open(out + "/root-extent-ff.iso", "wb").write(root)
PY
impossible="4294967295|18446744073709551615|17592186040320|8796093020160"
case_run "ISO cut to 34 KiB" 2 "cut-34k.iso" --not "$impossible" -- "$bin" inspect "$a/cut-34k.iso"
case_run "ISO volume size 0xFFFFFFFF" 2 "volume-size-ff.iso.*(volume|size|block)" --not "$impossible" -- "$bin" inspect "$a/volume-size-ff.iso"
case_run "ISO logical block size 0xFFFF" 2 "block-size-ff.iso.*(block|size)" --not "$impossible" -- "$bin" inspect "$a/block-size-ff.iso"
case_run "ISO root directory past the end" 2 "root-extent-ff.iso" --not "$impossible" -- "$bin" inspect "$a/root-extent-ff.iso"
case_run "GPT with 2^32-1 partition entries" 2 "gpt-count.raw.*(partition|entries|GPT)" --not "$impossible" -- "$bin" inspect "$a/gpt-count.raw"
case_run "GPT with a 2 GiB entry size" 2 "gpt-entry-size.raw.*(entry|GPT)" --not "2147483648|$impossible" -- "$bin" inspect "$a/gpt-entry-size.raw"
case_run "GPT with a 4 GiB header size" 2 "gpt-header-size.raw.*(header|GPT)" --not "$impossible" -- "$bin" inspect "$a/gpt-header-size.raw"
case_run "qcow2 with an 8 EiB disk and 2^32 L1 entries" 2 "qcow2-huge.qcow2" --not "9223372036854775296|$impossible" -- "$bin" inspect "$a/qcow2-huge.qcow2"
case_run "qcow2 whose backing file is /etc/shadow" 2 "qcow2-backing.qcow2.*backing" -- "$bin" inspect "$a/qcow2-backing.qcow2"
case_run "random bytes" 2 "random.bin: not a built artifact" -- "$bin" inspect "$a/random.bin"
case_run "empty file" 2 "empty.iso: .*(empty|not a built artifact)" -- "$bin" inspect "$a/empty.iso"
case_run "a directory" 2 "a-directory.iso: .*(directory|not a built artifact)" -- "$bin" inspect "$a/a-directory.iso"
mkfifo "$a/fifo.iso"
CASE_TIMEOUT=20 case_run "a FIFO" 2 "fifo.iso" -- "$bin" inspect "$a/fifo.iso"

# --- content bundles -------------------------------------------------------------------------
section bundles
b=$work/bundles
openssl genpkey -algorithm ed25519 -out "$in/ed.pem" 2>/dev/null
openssl pkey -in "$in/ed.pem" -pubout -out "$in/ed.pub" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$in/other.pem" 2>/dev/null
openssl pkey -in "$in/other.pem" -pubout -out "$in/other.pub" 2>/dev/null
head -c 6000 /dev/urandom >"$in/payload.bin"
printf 'files:\n  - path: payload.bin\n' >"$in/payload.yaml"
{
    "$bin" --output-dir "$b" content build --name good --image "oci:$fixtures/agent-amd64:latest" --sign "$in/ed.pem" &&
        "$bin" --output-dir "$b" content build --name split --manifest "$in/payload.yaml" --split-size 2048 --sign "$in/ed.pem"
} >"$work/log/bundles" 2>&1 || fail "setup: content build of the test bundles" "$(cat "$work/log/bundles")"
bundle_copy() { # bundle_copy NAME KIND: a fresh copy of build KIND (good|split) in $work/bc/NAME
    rm -rf "$work/bc/$1" && mkdir -p "$work/bc/$1" && cp "$b/content-$2/"* "$work/bc/$1/"
}
flip() { printf '\xff' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
bundle_copy tamper good && flip "$work/bc/tamper/good.tar.zst" 100
case_run "verify: one byte flipped" 1 "good.tar.zst.*good.tar.zst.sha256" -- "$bin" content verify "$work/bc/tamper/good.tar.zst" --pubkey "$in/ed.pub"
bundle_copy trunc good && truncate -s 300 "$work/bc/trunc/good.tar.zst"
case_run "verify: truncated to 300 bytes" 1 "good.tar.zst.*good.tar.zst.sha256" -- "$bin" content verify "$work/bc/trunc/good.tar.zst"
case_run "ls: truncated to 300 bytes" "1|2" "good.tar.zst.*(truncated|corrupt|unexpected|end)" -- "$bin" content ls "$work/bc/trunc/good.tar.zst"
bundle_copy sig good && head -c 64 /dev/urandom >"$work/bc/sig/good.tar.zst.sig"
case_run "verify: a random signature" 1 "signature good.tar.zst.sig does not match" -- "$bin" content verify "$work/bc/sig/good.tar.zst" --pubkey "$in/ed.pub"
bundle_copy sigempty good && : >"$work/bc/sigempty/good.tar.zst.sig"
case_run "verify: an empty signature" "1|2" "good.tar.zst.sig" -- "$bin" content verify "$work/bc/sigempty/good.tar.zst" --pubkey "$in/ed.pub"
bundle_copy wrongkey good
case_run "verify: another key" 1 "signature good.tar.zst.sig does not match" -- "$bin" content verify "$work/bc/wrongkey/good.tar.zst" --pubkey "$in/other.pub"
case_run "verify: a public key that is garbage" 2 "payload.bin" -- "$bin" content verify "$work/bc/wrongkey/good.tar.zst" --pubkey "$in/payload.bin"
bundle_copy nosig good && rm "$work/bc/nosig/good.tar.zst.sig"
case_run "verify: the signature is missing" 2 "good.tar.zst.sig" -- "$bin" content verify "$work/bc/nosig/good.tar.zst" --pubkey "$in/ed.pub"
bundle_copy nosum good && rm "$work/bc/nosum/good.tar.zst.sha256"
case_run "verify: the checksum file is missing" 2 "good.tar.zst.sha256" -- "$bin" content verify "$work/bc/nosum/good.tar.zst"
bundle_copy badsum good && printf 'not a checksum at all\n' >"$work/bc/badsum/good.tar.zst.sha256"
case_run "verify: the checksum file is garbage" "1|2" "good.tar.zst.sha256" -- "$bin" content verify "$work/bc/badsum/good.tar.zst"
bundle_copy nopart split && rm "$work/bc/nopart/split.tar.zst.part-001"
case_run "verify: a part is missing" "1|2" "split.tar.zst.part-001" -- "$bin" content verify "$work/bc/nopart/split.tar.zst.parts.json"
case_run "ls: a part is missing" "1|2" "split.tar.zst.part-001" -- "$bin" content ls "$work/bc/nopart/split.tar.zst.parts.json"
edit_index() { # edit_index DIR PYTHON-STATEMENT (on `index`)
    python3 - "$1/split.tar.zst.parts.json" "$2" <<'PY'
import json, sys
path, statement = sys.argv[1:]
index = json.load(open(path))
exec(statement)
json.dump(index, open(path, "w"))
PY
}
bundle_copy liesize split && edit_index "$work/bc/liesize" 'index["parts"][1]["size"] += 1'
case_run "verify: the parts index lies about a size" 1 "split.tar.zst.part-001" -- "$bin" content verify "$work/bc/liesize/split.tar.zst.parts.json"
bundle_copy liesha split && edit_index "$work/bc/liesha" 'index["parts"][0]["sha256"] = "0" * 64'
case_run "verify: the parts index lies about a sha256" 1 "split.tar.zst.part-000" -- "$bin" content verify "$work/bc/liesha/split.tar.zst.parts.json"
bundle_copy liehuge split && edit_index "$work/bc/liehuge" 'index["size"] = 2**63; index["parts"][0]["size"] = 2**63'
case_run "verify: the parts index claims 8 EiB" "1|2" "split.tar.zst" --not "9223372036854775808 bytes? (read|verified)" -- "$bin" content verify "$work/bc/liehuge/split.tar.zst.parts.json"
bundle_copy lietrav split && edit_index "$work/bc/lietrav" 'index["parts"][0]["name"] = "../../../../../../etc/passwd"'
case_run "verify: a part named ../../etc/passwd" 2 "part name '../../../../../../etc/passwd' is not a file name" -- "$bin" content verify "$work/bc/lietrav/split.tar.zst.parts.json"
bundle_copy liedots split && edit_index "$work/bc/liedots" 'index["parts"][0]["name"] = ".."'
case_run "verify: a part named .." 2 "part name '..' is not a file name" -- "$bin" content verify "$work/bc/liedots/split.tar.zst.parts.json"
bundle_copy liegarbage split && head -c 3000 /dev/urandom >"$work/bc/liegarbage/split.tar.zst.parts.json"
case_run "verify: the parts index is garbage" 2 "split.tar.zst.parts.json" -- "$bin" content verify "$work/bc/liegarbage/split.tar.zst.parts.json"
bundle_copy liedeep split && python3 -c 'import sys; open(sys.argv[1], "w").write("{\"parts\": " + "[" * 100000 + "]" * 100000 + "}")' "$work/bc/liedeep/split.tar.zst.parts.json"
case_run "verify: a parts index nested 100,000 deep" 2 "split.tar.zst.parts.json" -- "$bin" content verify "$work/bc/liedeep/split.tar.zst.parts.json"
head -c 5000 /dev/urandom >"$in/random.tar.zst"
case_run "ls: random bytes" "1|2" "random.tar.zst" -- "$bin" content ls "$in/random.tar.zst"
python3 - "$in/lying-bundle.tar.zst" <<'PY'
import io, subprocess, sys, tarfile
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w") as tar:
    body = b'{"images": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    info = tarfile.TarInfo("bundle.json")
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))
open(sys.argv[1], "wb").write(subprocess.run(["zstd", "-q", "-c"], input=raw.getvalue(), stdout=subprocess.PIPE).stdout)
PY
case_run "ls: a bundle.json nested 100,000 deep" "1|2" "lying-bundle.tar.zst.*bundle.json" -- "$bin" content ls "$in/lying-bundle.tar.zst"
case_run "content build: a random file as --existing-bundle" 2 "random.tar.zst" -- "$bin" content build --name x --image "oci:$fixtures/agent-amd64:latest" --existing-bundle "$in/random.tar.zst" --dry-run
bundle_copy iso-tamper good && flip "$work/bc/iso-tamper/good.tar.zst" 100
case_run "build iso: a split bundle whose part is missing" 2 "split.tar.zst.part-001" -- "$bin" build iso --dry-run --content "$work/bc/nopart/split.tar.zst.parts.json"

# --- scale-out: remote cache settings, shards, plans, hostile cache repositories -------------
section scale-out
case_run "--cache-remote with a transport that is no repository" 2 "--cache-remote.*'dir:/srv/cache' is not a cache repository" -- "$bin" build iso --dry-run --cache-remote dir:/srv/cache
case_run "--cache-from with a tag" 2 "--cache-from.*names a tag or digest" -- "$bin" build iso --dry-run --cache-from docker://127.0.0.1:1/cache:v1
case_run "--shard past the count" 2 "--shard '5/4': expected I/N" -- "$bin" build all --shard 5/4
case_run "--shard 0/4" 2 "--shard '0/4': expected I/N" -- "$bin" build all --shard 0/4
case_run "--shard with a huge count" 2 "--shard '1/99999999999999999999'" -- "$bin" build all --shard 1/99999999999999999999
case_run "build all --assemble with --shard" 2 "--assemble joins what every shard built; give it without --shard" -- "$bin" build all --assemble --shard 1/2
case_run "outputs lists content with no content.manifests" 2 "outputs lists content, but content.manifests names no bundle" -- env EDGEFORGE_OUTPUTS=content "$bin" plan
mkdir -p "$in/bundles-a" "$in/bundles-b"
echo "oci:$fixtures/agent-amd64:latest" >"$in/bundles-a/apps.txt"
printf 'images: [oci:%s/agent-amd64:latest]\n' "$fixtures" >"$in/bundles-b/apps.yaml"
case_run "two content.manifests files that give one bundle name" 2 "bundles-a/apps.txt and .*bundles-b/apps.yaml both give the bundle name 'apps'" -- "$bin" build all --dry-run --outputs content --content-manifest "$in/bundles-a/apps.txt" --content-manifest "$in/bundles-b/apps.yaml"
case_run "arches that leave out the configured arch" 2 "arch amd64 is not one of arches .*EDGEFORGE_ARCHES: arm64" -- env EDGEFORGE_ARCHES=arm64 "$bin" plan
case_run "build iso --arch outside arches" 2 "arch arm64 is not one of arches" -- "$bin" build iso --dry-run --arches amd64 --arch arm64
case_run "plan --emit for an unknown engine" 2 "--emit 'jenkins': expected one of gitlab-ci, github-actions, k8s-job" -- "$bin" plan --emit jenkins
case_run "plan --shards past the limit" 2 "--shards 5000: at most 1000" -- "$bin" plan --shards 5000
# A cache repository someone else can push to: its index nested 100,000 deep, then a well-formed
# artifact of the right step whose layer title climbs out of the entry. Each is refused with a
# warning and the step computed; nothing is written outside the cache.
mkdir -p "$in/cache-deep" "$in/cache-escape/blobs/sha256"
printf '{"imageLayoutVersion":"1.0.0"}' >"$in/cache-deep/oci-layout"
python3 -c 'import sys; sys.stdout.write("{\"manifests\":" + "[" * 100000 + "]" * 100000 + "}")' >"$in/cache-deep/index.json"
# (Each with a cache of its own, inside the allowed one: the shared cache has the step already,
# and would not pull.)
case_run "a cache repository whose index.json nests 100,000 deep" 0 "remote cache oci:$in/cache-deep: .*not used: index.json has no manifests list" -- "$bin" --cache-dir "$work/cache/scale-out-deep" build rootfs --cache-from "oci:$in/cache-deep"
rootfs_key=$("$bin" --json build rootfs --dry-run 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["rootfs"][0]["key"])')
python3 - "$in/cache-escape" "$rootfs_key" "$escape" <<'PY'
import hashlib, json, os, sys
layout, key, escape = sys.argv[1:]
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    open(os.path.join(layout, "blobs", "sha256", digest), "wb").write(data)
    return "sha256:" + digest, len(data)
config = json.dumps({"step": "rootfs", "key": key, "inputs": {}, "files": []}).encode()
config_digest, config_size = blob(config)
layer_digest, layer_size = blob(b"escaped\n")
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": "application/vnd.edgeforge.step.v1",
    "config": {"mediaType": "application/vnd.edgeforge.step.config.v1+json", "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.edgeforge.step.file.v1", "digest": layer_digest, "size": layer_size,
                "annotations": {"org.opencontainers.image.title": "../../../../../../tmp/" + escape}}]}).encode()
manifest_digest, manifest_size = blob(manifest)
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": manifest_digest, "size": manifest_size,
           "annotations": {"org.opencontainers.image.ref.name": "rootfs-" + key}}]},
          open(os.path.join(layout, "index.json"), "w"))
PY
case_run "a cache artifact whose layer title climbs out of the entry" 0 "remote cache oci:$in/cache-escape: .*not used: layers\[0\] has a missing, repeated or unsafe title" -- "$bin" --cache-dir "$work/cache/scale-out-escape" build rootfs --cache-from "oci:$in/cache-escape"

# --- output ----------------------------------------------------------------------------------
section output
mkdir -p "$work/mnt/ro" "$work/mnt/full"
if mount -t tmpfs -o ro,size=1m tmpfs "$work/mnt/ro" 2>/dev/null; then
    mounts+=("$work/mnt/ro")
    case_run "read-only output directory" "1|2" "$work/mnt/ro.*(Read-only|read-only|cannot)" --out "$work/mnt/ro" -- "$bin" --output-dir "$work/mnt/ro" build site-media --user-data "$proj/user-data"
    case_run "output directory below a read-only one" "1|2" "$work/mnt/ro/sub.*(Read-only|read-only|cannot)" --out "$work/mnt/ro" -- "$bin" --output-dir "$work/mnt/ro/sub" build site-media --user-data "$proj/user-data"
else
    fail "mount a read-only tmpfs (root needed)"
fi
case_run "output directory is a file" "1|2" "$in/afile" -- "$bin" --output-dir "$in/afile" build site-media --user-data "$proj/user-data"
case_run "output directory below a file" "1|2" "$in/afile" -- "$bin" --output-dir "$in/afile/sub" build site-media --user-data "$proj/user-data"
mkdir -p "$work/out/cat-cidata.iso"
case_run "the output name is taken by a directory" "1|2" "cat-cidata.iso" --left cat-cidata.iso -- "$bin" build site-media --user-data "$proj/user-data"
case_run "cache directory is a file" "1|2" "$in/afile" -- "$bin" --cache-dir "$in/afile" build iso
# Signals: SIGINT and SIGTERM about 1.5 s into a build. edgeforge removes its temporaries and
# exits 128+N (130, 143); it never ends by a signal, and nothing is published.
signal_case() { # signal_case SIGNAL
    local sig=$1 num
    num=$(kill -l "${1#SIG}")
    [ -n "${class_count[$class]:-}" ] || classes+=("$class")
    class_count[$class]=$((${class_count[$class]:-0} + 1))
    snapshot >"$work/log/before"
    local result
    result=$(python3 - "$num" "$work/log/$sig" "$bin" build iso --compression-level 19 <<'PY'
import subprocess, sys, time
p = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=open(sys.argv[2], "w"))
time.sleep(1.5)
p.send_signal(int(sys.argv[1]))
try:
    print(p.wait(timeout=60))
except subprocess.TimeoutExpired:
    p.kill()
    print("timeout")
PY
)
    snapshot >"$work/log/after"
    local problems=()
    case $result in
    "$((128 + num))") ;;
    timeout) problems+=("still running 60 s after $sig") ;;
    -*) problems+=("killed by signal $((-result)) after $sig") ;;
    *) problems+=("exit $result after $sig (expected 128+$num)") ;;
    esac
    [ -z "$(ls -A "$work/out" 2>/dev/null)" ] || problems+=("left in the output directory: $(ls -A "$work/out")")
    [ -z "$(ls -A "$TMPDIR")" ] || problems+=("left in TMPDIR: $(ls -A "$TMPDIR")")
    cmp -s "$work/log/before" "$work/log/after" || problems+=("written outside the output and cache")
    if [ ${#problems[@]} -eq 0 ]; then
        pass "[$class] $sig 1.5 s into build iso (ended by $result)"
    else
        fail "[$class] $sig 1.5 s into build iso" "${problems[@]}" "$(tail -3 "$work/log/$sig")"
    fi
    rm -rf "$work/out" "${TMPDIR:?}"/*
}
signal_case SIGINT
signal_case SIGTERM

if mount -t tmpfs -o size=20m tmpfs "$work/mnt/full" 2>/dev/null; then
    mounts+=("$work/mnt/full")
    case_run "disk full while writing the ISO (20 MiB)" 1 "$work/mnt/full.*(No space|space)" --out "$work/mnt/full" -- "$bin" --output-dir "$work/mnt/full" build iso
    head -c 8M /dev/urandom >"$in/big.bin"
    printf 'files:\n  - path: big.bin\n' >"$in/big.yaml"
    dd if=/dev/zero of="$work/mnt/full/filler" bs=1M count=14 status=none
    case_run "disk full while writing a bundle" 1 "cannot write $work/mnt/full/.*: No space left on device" --out "$work/mnt/full" --left filler -- "$bin" --output-dir "$work/mnt/full" content build --name big --manifest "$in/big.yaml" --level 1
    rm -f "$work/mnt/full/filler"
else
    fail "mount a 20 MiB tmpfs (root needed)"
fi

# The cache holds the build's work, but its store of unpacked layer copies (optional) is full or
# read-only: the build warns once and goes on without copies; nothing partial is left there.
for how in full read-only; do
    [ -n "${class_count[$class]:-}" ] || classes+=("$class")
    class_count[$class]=$((${class_count[$class]:-0} + 1))
    cache9=$work/cache-layers-$how
    mkdir -p "$cache9/layers"
    opts=size=2m
    [ "$how" = read-only ] && opts=ro,size=1m
    if ! mount -t tmpfs -o "$opts" tmpfs "$cache9/layers" 2>/dev/null; then
        fail "[$class] mount a $how tmpfs on the cache's layers store (root needed)"
        continue
    fi
    mounts+=("$cache9/layers")
    "$bin" --cache-dir "$cache9" --output-dir "$work/out9" build iso >"$work/log/layers-$how" 2>&1
    rc=$?
    problems=()
    [ "$rc" = 0 ] || problems+=("exit $rc, expected 0")
    warned=$(grep -c 'cannot take unpacked layer copies' "$work/log/layers-$how")
    [ "$warned" = 1 ] || problems+=("the warning appears $warned times, expected once")
    (cd "$work/out9" 2>/dev/null && sha256sum --quiet -c cat.iso.sha256) >/dev/null 2>&1 ||
        problems+=("no whole cat.iso")
    left=$(find "$cache9/layers" -type f ! -name '*.lock' | head -3)
    [ -z "$left" ] || problems+=("left in the layers store: $left")
    if [ ${#problems[@]} -eq 0 ]; then
        pass "[$class] the cache's layer copies store is $how: warned once, built without copies"
    else
        fail "[$class] the cache's layer copies store is $how" "${problems[@]}" "$(tail -3 "$work/log/layers-$how")"
    fi
    rm -rf "$work/out9"
done


# Two builds race on one output name and one cache: both succeed, or one says it is busy; the
# ISO left is whole (its .sha256 checks).
[ -n "${class_count[$class]:-}" ] || classes+=("$class")
class_count[$class]=$((${class_count[$class]:-0} + 1))
"$bin" build iso >"$work/log/race1" 2>&1 &
p1=$!
"$bin" build iso >"$work/log/race2" 2>&1 &
p2=$!
wait $p1
r1=$?
wait $p2
r2=$?
race_ok=1
for n in 1 2; do
    r=$((n == 1 ? r1 : r2))
    if [ "$r" != 0 ] && ! { [ "$r" = 1 ] && grep -qiE 'busy|another edgeforge|in use' "$work/log/race$n"; }; then race_ok=0; fi
done
(cd "$work/out" && sha256sum --quiet -c cat.iso.sha256) >/dev/null 2>&1 || race_ok=0
stray=$(ls -A "$work/out" 2>/dev/null | grep -vxF -e cat.iso -e cat.iso.sha256)
[ -z "$stray" ] && [ -z "$(ls -A "$TMPDIR")" ] || race_ok=0
if [ "$race_ok" = 1 ]; then
    pass "[$class] two builds race on one output and cache (exits $r1 $r2)"
else
    fail "[$class] two builds race on one output and cache" "exits $r1 $r2; stray: $stray $(ls -A "$TMPDIR")" \
        "$(tail -3 "$work/log/race1")" "$(tail -3 "$work/log/race2")"
fi
rm -rf "$work/out"

section end
# --- the cache survived all of it ---------------------------------------------------------------
"$bin" cache ls >"$work/log/cache-ls" 2>&1
rc=$?
detail="exit $rc: $(head -c 600 "$work/log/cache-ls")"
check "cache ls exits 0 after the catalogue" test "$rc" = 0
"$bin" --source-date-epoch 1700000000 build iso >"$work/log/final" 2>&1
rc=$?
detail="exit $rc: $(tail -5 "$work/log/final")"
check "a good build iso with the same cache succeeds" test "$rc" = 0 -a -s "$work/out/cat.iso"
(cd "$work/out" && sha256sum --quiet -c cat.iso.sha256) >/dev/null 2>&1
check "its sha256 checks" test $? = 0
# Compared as strings: on a clean checkout both are empty (echo would add a newline to one side).
project_after=$(git -C "$src" status --porcelain 2>/dev/null)
detail="before: ${project_snapshot:-(clean)}; after: ${project_after:-(clean)}"
check "nothing written into the project checkout" test "$project_snapshot" = "$project_after"

summary="catalogue:"
total=0
for c in "${classes[@]}"; do
    summary+=" $c ${class_count[$c]},"
    total=$((total + class_count[$c]))
done
echo "${summary%,} (total $total; known bugs $known; $((SECONDS - started)) s)"
for k in "${known_list[@]}"; do echo "known bug: $k"; done
finish badinput_test
