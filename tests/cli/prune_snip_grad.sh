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

# st_dump FILE: "name<TAB>value" for every 4-byte element of every tensor, in data order (F32
# values; other dtypes print as garbage under their own name, and the comparison skips them).
st_dump() {
    local n
    n=$(st_header_len "$1")
    st_json "$1" | jq -r 'del(.__metadata__) | to_entries | sort_by(.value.data_offsets[0]) | .[]
        | "\(.key)\t\(.value.data_offsets[0] / 4 | floor)\t\(.value.data_offsets[1] / 4 | floor)"' >"$TMP/.tab"
    od -An -v -f -j $((8 + n)) "$1" | tr -s ' ' '\n' | sed '/^$/d' | awk -F'\t' -v tab="$TMP/.tab" '
        BEGIN { while ((getline l < tab) > 0) { split(l, f, "\t"); nm[++k] = f[1]; b[k] = f[2]; e[k] = f[3] }; t = 1 }
        { i = NR - 1; while (t <= k && i >= e[t]) t++; if (t <= k && i >= b[t]) print nm[t] "\t" $1 }'
}

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
    # "name value" of grad's tensors in each file, grouped by name (stable: element order kept)
    for f in g:"$TMP/$model-grad.st" w:"$M/model.safetensors" s:"$R/scores.safetensors"; do
        st_dump "${f#*:}" | awk -F'\t' -v names="$names" 'BEGIN { split(names, a, "\n"); for (i in a) keep[a[i]] = 1 }
            $1 in keep' | LC_ALL=C sort -s -t"$(printf '\t')" -k1,1 >"$TMP/$model-${f%%:*}.txt"
    done
    # score == |g w| / sum |g w| over every weight of grad's tensors, within 1e-5 relative (exactly 0
    # where g w is 0)
    paste "$TMP/$model-g.txt" "$TMP/$model-w.txt" "$TMP/$model-s.txt" | awk -F'\t' -v model="$model" '
        $1 != $3 || $1 != $5 || NF != 6 { print model ": misaligned rows at " NR ": " $0 > "/dev/stderr"; exit 1 }
        { p = $2 * $4; if (p < 0) p = -p; P[NR] = p; S[NR] = $6 + 0; T[NR] = $1; sum += p }
        END {
            if (NR < 1000) { print model ": only " NR " values" > "/dev/stderr"; exit 1 }
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
        }' >"$TMP/$model-cmp.txt" 2>&1 && ok || fail "$model: snip scores differ from grad"
    cat "$TMP/$model-cmp.txt"
done

cli_finish
