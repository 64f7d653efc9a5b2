#!/usr/bin/env bash
# prune --method snip scores the gradient `multiflow grad` writes (issue 8): on each bundled model
# and the shapes data (4 batches of 4 pairs), scores.safetensors of a snip run must equal
# |g * w| / sum(|g * w|) with g from `grad` with the same flags and w the checkpoint's weights,
# element by element within 1e-5 relative (the gradients are the same code path; the tolerance
# covers only the normalisation, redone here in double from the printed floats). SNIP used to
# average IterSNIP's per-round count of batches (1 of 4 here), which disagrees on most tensors.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

for model in blip-tiny blip-tiny-hf; do
    M=$SRC/data/models/$model
    D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes" --pairs 16 --batch 4 --threads 2
       --quiet)
    run_cmd "grad-$model" "$MF" grad --model "$M" "${D[@]}" --out "$TMP/$model-grad.st"
    check "$model: grad exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    run_cmd "snip-$model" "$MF" prune --model "$M" "${D[@]}" --method snip --sparsity 50 --save-scores \
        --out "$TMP/$model-snip"
    check "$model: prune --method snip exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    R=$TMP/$model-snip/snip-50
    check "$model: snip draws every batch (4)" test "$(jq '.gradient.batches_drawn' "$R/report.json")" -eq 4
    check "$model: one pass is 4 batches" test "$(jq '.gradient.batches_per_pass' "$R/report.json")" -eq 4

    # the same tensors in both files
    names=$(st_json "$TMP/$model-grad.st" | jq -r 'del(.__metadata__) | keys[]')
    check "$model: scores and grad name the same tensors" test "$names" = \
        "$(st_json "$R/scores.safetensors" | jq -r 'del(.__metadata__) | keys[]')"
    # "tensor g w score" rows, every prunable weight
    for k in $names; do
        paste <(st_vals "$TMP/$model-grad.st" "$k") <(st_vals "$M/model.safetensors" "$k") \
            <(st_vals "$R/scores.safetensors" "$k") | sed "s|^|$k\t|"
    done >"$TMP/$model-rows.txt"
    check "$model: every row has g, w and a score" \
        awk -F'\t' 'NF != 4 || $4 == "" { bad = 1 } END { exit bad || NR < 1000 }' "$TMP/$model-rows.txt"
    # score == |g w| / sum |g w| within 1e-5 relative (exactly 0 where g w is 0)
    awk -F'\t' -v model="$model" '
        { p = $2 * $3; if (p < 0) p = -p; P[NR] = p; S[NR] = $4 + 0; T[NR] = $1; sum += p }
        END {
            if (!(sum > 0)) { print model ": sum of |g w| is " sum > "/dev/stderr"; exit 1 }
            for (i = 1; i <= NR; i++) {
                e = P[i] / sum; d = S[i] - e; if (d < 0) d = -d
                r = e > 0 ? d / e : d
                if (r > worst) worst = r
                if ((e == 0 && S[i] != 0) || d > 1e-5 * e + 1e-30) { bad++; if (!(T[i] in seen)) { seen[T[i]] = 1; nt++ } }
            }
            printf "%s: %d weights, score vs |g w|/sum: worst relative difference %.3g, %d mismatches in %d tensors\n",
                model, NR, worst, bad, nt
            exit bad > 0
        }' "$TMP/$model-rows.txt" >"$TMP/$model-cmp.txt" 2>&1 && ok || fail "$model: snip scores differ from grad"
    cat "$TMP/$model-cmp.txt"
done

cli_finish
