#!/usr/bin/env bash
# tests/cli/determinism.sh: every verb that computes gives byte-identical output for --threads 1,
# 2, 3 and 8, on whatever OpenBLAS core type the environment selects (scripts/test.sh runs this test
# again under each OPENBLAS_CORETYPE the CPU supports; see scripts/coretypes.sh).
#
# Covered: score (both bundled models), eval retrieval (ITC + ITM re-ranking, --json), stats,
# prune with multiflow/omp (checkpoint, masks, --save-scores, --save-stats), grad (hardest and
# sampled negatives), finetune (checkpoint and per-step log), and the gradient-based pruners snip,
# itersnip, tamt, chita and chita++ (checkpoints with updated weights, masks, scores).
# Batches of 32-64 pairs make the tiny model's GEMMs large enough to be cut into several sgemm
# calls (nn/linear.c), which is where thread-count dependence used to come from.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"

M=$SRC/data/models/blip-tiny
MH=$SRC/data/models/blip-tiny-hf
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes" --quiet)
THREADS=(1 2 3 8)
echo "determinism: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}"

# same_bytes LABEL A B: files A and B are identical.
same_bytes() {
    if cmp -s "$2" "$3"; then ok; else fail "$1: $(basename "$3") differs from --threads 1 ($2 vs $3)"; fi
}

# same_dir LABEL A B: every file of directory A is identical in B (report.json, summary.json and
# finetune.json without their time fields), and B has no other files.
same_dir() {
    local f rel
    while IFS= read -r f; do
        rel=${f#"$2"/}
        case "$rel" in
        *.json)
            if cmp -s <(strip_times "$f") <(strip_times "$3/$rel"); then ok; else
                fail "$1: $rel differs from --threads 1"; fi ;;
        *) same_bytes "$1" "$f" "$3/$rel" ;;
        esac
    done < <(find "$2" -type f | sort)
    if [ "$(cd "$2" && find . -type f | sort)" != "$(cd "$3" && find . -type f | sort)" ]; then
        fail "$1: the two output directories hold different files"
    fi
}

# strip_times FILE: the JSON without keys that measure time or name the thread count.
strip_times() {
    jq -S 'walk(if type == "object" then with_entries(select(.key | test("seconds|per_second|time|_s$|threads|elapsed|date|path|out") | not)) else . end)' "$1"
}

need_jq

# run_all LABEL CMD...: runs CMD with --threads 1, 2, 3, 8; stdout to $TMP/LABEL.t<N>.out and
# "$OUTDIR" substituted by $TMP/LABEL.t<N>; each must succeed.
run_all() {
    local label=$1 t
    shift
    for t in "${THREADS[@]}"; do
        local args=() a
        for a in "$@"; do args+=("${a//@OUT@/$TMP/$label.t$t}"); done
        run_cmd "$label.t$t" "$MF" "${args[@]}" --threads "$t"
        if [ "$RC" -ne 0 ]; then
            fail "$label --threads $t exited with $RC: $(tail -3 "$ERR")"
        fi
    done
}

# compare_out LABEL: stdout of every thread count equals --threads 1 (byte for byte, JSON without
# its time fields).
compare_out() {
    local t a=$TMP/$1.t1.out b
    for t in "${THREADS[@]:1}"; do
        b=$TMP/$1.t$t.out
        if jq -e . "$a" >/dev/null 2>&1 && jq -e 'has("seconds")' "$a" >/dev/null 2>&1; then
            if cmp -s <(strip_times "$a") <(strip_times "$b"); then ok; else fail "$1: stdout of --threads $t differs from --threads 1"; fi
        else
            same_bytes "$1 stdout" "$a" "$b"
        fi
    done
}

# compare_path LABEL: the output file or directory of every thread count equals --threads 1.
compare_path() {
    local t a=$TMP/$1.t1
    for t in "${THREADS[@]:1}"; do
        if [ -d "$a" ]; then same_dir "$1" "$a" "$TMP/$1.t$t"; else same_bytes "$1" "$a" "$TMP/$1.t$t"; fi
    done
}

for model in "$M" "$MH"; do
    name=$(basename "$model")
    run_all "score-$name" score --model "$model" "${D[@]}" --batch 64 --pairs 128
    compare_out "score-$name"
    check "score-$name: 128 lines" test "$(wc -l <"$TMP/score-$name.t1.out")" -eq 128
    run_all "eval-$name" eval retrieval --model "$model" "${D[@]}" --batch 64 --k 16 --json
    compare_out "eval-$name"
done

run_all stats stats --model "$M" "${D[@]}" --batch 64 --out @OUT@
compare_path stats

run_all prune prune --model "$M" "${D[@]}" --batch 64 --method multiflow,omp --sparsity 75 \
    --save-scores --save-stats --out @OUT@
compare_path prune

for neg in hardest sample; do
    run_all "grad-$neg" grad --model "$M" "${D[@]}" --batch 32 --pairs 64 --itm-negatives "$neg" --out @OUT@
    compare_path "grad-$neg"
done

run_all finetune finetune --model "$M" "${D[@]}" --task retrieval --batch 32 --steps 3 --lr 1e-3 \
    --warmup 1 --seed 5 --out @OUT@
compare_path finetune

run_all gprune prune --model "$M" "${D[@]}" --batch 32 --pairs 64 --method snip,itersnip,tamt,chita,chita++ \
    --sparsity 75 --rounds 2 --itm-negatives hardest --save-scores --out @OUT@
compare_path gprune

cli_finish
