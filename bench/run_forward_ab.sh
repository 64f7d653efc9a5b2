#!/usr/bin/env bash
# bench/run_forward_ab.sh: the C forward at two revisions of the engine, interleaved in one run.
#
# Builds bench_forward at revision A (default: c0a0833, before the shape-only GEMM grid of
# nn/linear.c) in a temporary git worktree and at the working tree (B), then for every case
# MODE:RES runs A and B alternately ROUNDS times on the same checkpoint and prints the best
# pairs/s of each side and B/A. Interleaving is what makes the ratio readable on a shared machine;
# the absolute numbers are not. Does not assert on time.
#
# Environment (defaults): A=c0a0833  CASES="itm:224 itm:384"  THREADS=2  ROUNDS=3  REPS=2  BATCH=8
#   MODEL_ROOT=/tmp (checkpoints $MODEL_ROOT/mf-bench-<mode>-<res>, shared with run_forward.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=${A:-c0a0833}
CASES=${CASES:-"itm:224 itm:384"}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
REPS=${REPS:-2}
BATCH=${BATCH:-8}
MODEL_ROOT=${MODEL_ROOT:-/tmp}
WT=$(mktemp -d /tmp/mf-ab-XXXXXX)
trap 'git -C "$ROOT" worktree remove --force "$WT/a" >/dev/null 2>&1 || true; rm -rf "$WT"' EXIT

git -C "$ROOT" worktree add --detach "$WT/a" "$A" >/dev/null
for side in a b; do
    src=$ROOT
    [ "$side" = a ] && src=$WT/a
    cmake -S "$src" -B "$WT/build-$side" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$WT/build-$side" -j2 --target bench_forward >/dev/null
done

echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs," \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; A=$A, B=working tree ($(git -C "$ROOT" rev-parse --short HEAD)+)"
printf '%-8s %5s %8s %12s %12s %8s\n' mode res threads "A pairs/s" "B pairs/s" "B/A"
for case in $CASES; do
    mode=${case%%:*}
    res=${case##*:}
    dir=$MODEL_ROOT/mf-bench-$mode-$res
    best_a=0
    best_b=0
    for round in $(seq "$ROUNDS"); do
        for side in a b; do
            out=$("$WT/build-$side/bench/bench_forward" --mode "$mode" --res "$res" --threads "$THREADS" \
                  --batch "$BATCH" --reps "$REPS" --model-dir "$dir" --no-peak | grep '^RESULT')
            v=$(echo "$out" | sed -n 's/.*pairs_per_s=\([0-9.]*\).*/\1/p')
            if [ "$side" = a ]; then
                best_a=$(echo "$v $best_a" | awk '{print ($1 > $2) ? $1 : $2}')
            else
                best_b=$(echo "$v $best_b" | awk '{print ($1 > $2) ? $1 : $2}')
            fi
        done
    done
    printf '%-8s %5s %8s %12s %12s %8s\n' "$mode" "$res" "$THREADS" "$best_a" "$best_b" \
        "$(echo "$best_b $best_a" | awk '{printf "%.3f", $1 / $2}')"
done
