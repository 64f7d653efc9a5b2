#!/usr/bin/env bash
# scripts/check_valgrind.sh: runs the multiflow CLI under valgrind memcheck on the bundled data and
# fails on any memory error or leak: `score` on a few data/shapes pairs with both bundled models
# (batched, two threads, and single-pair mode), `inspect` (text and --json, sharded checkpoint),
# a small `eval retrieval`, and error paths (a truncated image halfway through the data, a broken
# safetensors header) where cleanup is easiest to get wrong. With --tests it also runs the C
# allocation-failure sweep (tests/models/test_model_errors) under valgrind.
#
#   scripts/check_valgrind.sh [--tests]        (builds $MF_BUILD, default build-valgrind, if needed)
#   MF_BUILD=build-cli scripts/check_valgrind.sh   (reuse an existing non-sanitized build)
#
# Leak policy: definite, indirect and possible leaks are errors. "Still reachable" blocks are not
# (OpenBLAS and glibc keep some until exit). Memory errors are errors. Exit 1 on any of them.
# Does not: run under ASan (scripts/check_sanitize.sh); valgrind and ASan do not mix.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${MF_BUILD:-$root/build-valgrind}"
jobs="${MF_JOBS:-2}"
with_tests=0
[ "${1:-}" = "--tests" ] && with_tests=1

command -v valgrind >/dev/null || { echo "check_valgrind: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
if grep -qs 'MF_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
    echo "check_valgrind: $build is a sanitizer build; use a plain one (MF_BUILD=...)" >&2
    exit 1
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(multiflow)
[ "$with_tests" -eq 1 ] && targets+=(test_model_errors)
cmake --build "$build" -j"$jobs" --target "${targets[@]}"
mf="$build/multiflow"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mf-valgrind.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0
n=0
VG=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 --track-origins=yes
    --num-callers=30)

# vg NAME EXPECTED_EXIT COMMAND...: runs COMMAND under valgrind; valgrind's exit 99 means an error
# or leak; any other exit status than EXPECTED_EXIT means the command itself misbehaved.
vg() {
    local name=$1 want=$2 rc=0
    shift 2
    n=$((n + 1))
    OPENBLAS_NUM_THREADS=1 "${VG[@]}" --log-file="$tmp/$name.vg" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
    local summary
    summary=$(grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost' "$tmp/$name.vg" | sed 's/^==[0-9]*== *//' | tr '\n' ';')
    if [ "$rc" -eq 99 ]; then
        echo "FAIL: $name: valgrind found errors or leaks: $summary" >&2
        sed 's/^/    /' "$tmp/$name.vg" | grep -vE '^    ==[0-9]+== *$' | head -80 >&2
        failures=$((failures + 1))
    elif [ "$rc" -ne "$want" ]; then
        echo "FAIL: $name: exit status $rc, expected $want; stderr:" >&2
        head -20 "$tmp/$name.err" | sed 's/^/    /' >&2
        failures=$((failures + 1))
    else
        echo "ok: $name (exit $rc): $summary"
    fi
}

HF="$root/data/models/blip-tiny-hf"
ORIG="$root/data/models/blip-tiny"
SHAPES="$root/data/shapes"

vg score_orig 0 "$mf" score --model "$ORIG" --data "$SHAPES/annotations.json" --images "$SHAPES" --pairs 5 --batch 2 --threads 2 --quiet
vg score_hf 0 "$mf" score --model "$HF" --data "$SHAPES/annotations.json" --images "$SHAPES" --pairs 3 --threads 1 --quiet
vg score_pair 0 "$mf" score --model "$ORIG" --image "$SHAPES/images/0007.png" --text "a red square." --threads 2 --quiet
vg inspect_orig 0 "$mf" inspect --model "$ORIG"
vg inspect_sharded_json 0 "$mf" inspect --model "$root/tests/golden/blip/hf-cap-f32" --json
vg eval_small 0 "$mf" eval retrieval --model "$HF" --data "$SHAPES/annotations.json" --images "$SHAPES" --pairs 12 --k 3 --threads 2 --json --quiet
vg prune_small 0 "$mf" prune --model "$ORIG" --data "$SHAPES/annotations.json" --images "$SHAPES" --pairs 8 \
    --method multiflow,omp,lamp,rand --sparsity 50,90 --out "$tmp/pruned" --save-stats --threads 2 --quiet
vg apply_small 0 "$mf" apply --model "$ORIG" --masks "$tmp/pruned/omp-50/masks.safetensors" --out "$tmp/applied" --quiet
vg prune_exists 1 "$mf" prune --model "$ORIG" --method omp --sparsity 50 --out "$tmp/pruned"

# Error paths: the second batch holds a truncated PNG; a safetensors header that is not JSON.
mkdir -p "$tmp/img" "$tmp/bad"
cp "$SHAPES/images/0001.png" "$tmp/img/"
head -c 200 "$SHAPES/images/0002.png" >"$tmp/img/0002.png"
printf '[{"image":"0001.png","caption":"a circle"},{"image":"0002.png","caption":"a square"}]\n' >"$tmp/ann.json"
vg score_bad_image 1 "$mf" score --model "$ORIG" --data "$tmp/ann.json" --images "$tmp/img" --batch 1 --quiet
cp "$HF/config.json" "$HF/vocab.txt" "$tmp/bad/"
{ head -c 8 "$HF/model.safetensors"; printf 'not json'; tail -c +17 "$HF/model.safetensors"; } >"$tmp/bad/model.safetensors"
vg inspect_bad_header 1 "$mf" inspect --model "$tmp/bad"

if [ "$with_tests" -eq 1 ]; then
    n=$((n + 1))
    rc=0
    (cd "$build" && MF_SOURCE_DIR="$root" OPENBLAS_NUM_THREADS=1 "${VG[@]}" --log-file="$tmp/sweep.vg" \
        tests/test_model_errors >"$tmp/sweep.out" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: test_model_errors under valgrind: exit $rc" >&2
        grep -E 'FAILED|ERROR' "$tmp/sweep.out" | head >&2 || true
        grep -vE '^==[0-9]+== *$' "$tmp/sweep.vg" | head -80 >&2
        failures=$((failures + 1))
    else
        echo "ok: test_model_errors under valgrind: $(grep 'ERROR SUMMARY' "$tmp/sweep.vg" | sed 's/^==[0-9]*== *//')"
    fi
fi

if [ "$failures" -ne 0 ]; then
    echo "check_valgrind: $failures of $n runs failed" >&2
    exit 1
fi
echo "check_valgrind: all $n runs clean (no memory errors, no leaks)"
