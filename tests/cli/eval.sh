#!/usr/bin/env bash
# tests/cli/eval.sh: `multiflow eval retrieval` on data/shapes with both bundled models: the run
# succeeds, counts 64 images / 128 texts, every recall is in [0, 100] and a multiple of 100/64
# (i2t) or 100/128 (t2i), R@1 <= R@5 <= R@10, mean = the average of the six, --k 0 is ITC-only,
# --k 16 and the default k re-rank by ITM, --pairs truncates, --threads 1 / 2 give identical recalls.
# Then the recalls against BLIP's evaluation + itm_eval run by the PyTorch reference
# (tests/golden/gen_retrieval.py -> tests/golden/retrieval/shapes_<model>.json) on its 64 pairs, for
# k = 0, 4, 16, 64. The ranking maths on hand-made matrices and the score matrices against the same
# golden are tests/eval/test_retrieval.c (ctest test_retrieval).
# Needs jq. Usage: bash tests/cli/eval.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

SHAPES=$SRC/data/shapes

jcheck() {
    local file=$1 what=$2 expr=$3
    if jq -e "$expr" "$file" >/dev/null 2>&1; then
        ok
    else
        fail "$what: '$expr' is false; eval printed: $(jq -c . "$file" 2>&1 | head -c 600)"
    fi
}

# sane FILE LABEL K RERANK: the invariants of one --json result.
sane() {
    local f=$1 l=$2
    jcheck "$f" "$l: task and counts" '.task == "retrieval" and .images == 64 and .texts == 128'
    jcheck "$f" "$l: k and re-ranking" ".k == $3 and .itm_rerank == $4"
    jcheck "$f" "$l: recalls in [0, 100]" '[.i2t[], .t2i[]] | length == 6 and all(. >= 0 and . <= 100)'
    jcheck "$f" "$l: R@1 <= R@5 <= R@10" \
        '(.i2t.r1 <= .i2t.r5 and .i2t.r5 <= .i2t.r10) and (.t2i.r1 <= .t2i.r5 and .t2i.r5 <= .t2i.r10)'
    # 6-significant-digit output: recalls are counts / 64 or / 128 up to printing precision.
    jcheck "$f" "$l: recalls are counts of 64 images / 128 texts" \
        'all(.i2t[]; (. * 64 / 100 - (. * 64 / 100 | round) | fabs) < 1e-3)
         and all(.t2i[]; (. * 128 / 100 - (. * 128 / 100 | round) | fabs) < 1e-3)'
    jcheck "$f" "$l: mean of the six" '(.mean - (([.i2t[], .t2i[]] | add) / 6) | fabs) < 1e-3'
    jcheck "$f" "$l: seconds" '.seconds >= 0'
}

for model in blip-tiny blip-tiny-hf; do
    M=$SRC/data/models/$model
    run_cmd "$model.k16" "$MF" eval retrieval --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --k 16 --json --quiet --threads 1
    if [ "$RC" -ne 0 ]; then
        fail "$model: eval --k 16 exited with $RC: $(cat "$ERR")"
        continue
    fi
    sane "$OUT" "$model --k 16" 16 true
    K16=$OUT

    run_cmd "$model.k0" "$MF" eval retrieval --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --k 0 --json --quiet --threads 2
    if [ "$RC" -ne 0 ]; then
        fail "$model: eval --k 0 exited with $RC: $(cat "$ERR")"
        continue
    fi
    sane "$OUT" "$model --k 0" 0 false
    K0=$OUT

    run_cmd "$model.k0t1" "$MF" eval retrieval --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --k 0 --json --quiet --threads 1
    if [ "$RC" -eq 0 ] && [ "$(jq -c '[.i2t, .t2i, .mean]' "$OUT")" = "$(jq -c '[.i2t, .t2i, .mean]' "$K0")" ]; then
        ok
    else
        fail "$model: --k 0 recalls differ between --threads 1 and 2 (exit $RC)"
    fi

    # Text output carries the same numbers.
    run_cmd "$model.text" "$MF" eval retrieval --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --k 0 --quiet
    if [ "$RC" -ne 0 ]; then
        fail "$model: text eval exited with $RC"
    else
        check "$model: text output counts" grep -q '64 images, 128 texts, ITC ranking only' "$OUT"
        r1=$(jq -r '.i2t.r1' "$K0")
        check "$model: text output i2t R@1" grep -qE "image->text +R@1 +$(printf '%6.2f' "$r1" | tr -d ' ')" "$OUT"
    fi

    # --pairs 20 keeps the first 20 pairs (10 images of 2 captions each).
    run_cmd "$model.pairs" "$MF" eval retrieval --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --k 4 --pairs 20 --json --quiet
    jcheck "$OUT" "$model --pairs 20" '.images == 10 and .texts == 20 and .k == 4 and .itm_rerank'
done

# The PyTorch reference's recalls (tests/golden/gen_retrieval.py), within printing precision.
GR=$SRC/tests/golden/retrieval
for model in blip-tiny blip-tiny-hf; do
    for k in 0 4 16 64; do
        run_cmd "$model.gold$k" "$MF" eval retrieval --model "$SRC/data/models/$model" --data "$GR/shapes_pairs.json" \
            --images "$SHAPES" --caption-clean none --k "$k" --batch 5 --json --quiet --threads 2
        if [ "$RC" -ne 0 ]; then
            fail "$model golden k=$k: exit $RC: $(cat "$ERR")"
            continue
        fi
        jcheck "$OUT" "$model golden k=$k: counts" '.images == 33 and .texts == 64'
        want=$(jq -c --arg k "$k" '.k[$k] | [.i2t.r1, .i2t.r5, .i2t.r10, .t2i.r1, .t2i.r5, .t2i.r10, .mean]' \
            "$GR/shapes_$model.json")
        jcheck "$OUT" "$model golden k=$k: recalls $want" \
            "[.i2t.r1, .i2t.r5, .i2t.r10, .t2i.r1, .t2i.r5, .t2i.r10, .mean] as \$g | $want as \$w
             | [range(7) | (\$g[.] - \$w[.]) | fabs < 1e-3] | all"
    done
done

# One run with the default k (128 = every candidate re-ranked by ITM) on the HF model.
run_cmd default "$MF" eval retrieval --model "$SRC/data/models/blip-tiny-hf" --data "$SHAPES/annotations.json" \
    --images "$SHAPES" --json --quiet --threads 1
if [ "$RC" -ne 0 ]; then fail "default k: exit $RC: $(cat "$ERR")"; else sane "$OUT" "blip-tiny-hf default k" 128 true; fi

cli_finish
