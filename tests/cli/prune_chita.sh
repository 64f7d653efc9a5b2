#!/usr/bin/env bash
# multiflow prune --method chita,chita++ end to end on the bundled tiny BLIP (original layout) and the
# bundled shapes data: exact sparsity, the checkpoint holds UPDATED surviving weights (different from
# the input where kept, exactly 0 where pruned), the output loads, report.json records the CHITA
# settings, runs are deterministic with hardest negatives, the gradient-row file leaves nothing in
# --tmp, and misuse fails cleanly.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes" --pairs 24 --batch 8 --quiet
   --itm-negatives hardest)

mkdir -p "$TMP/rows"
run_cmd run "$MF" prune --model "$M" "${D[@]}" --method chita,chita++ --sparsity 63 --rounds 3 --lambda 1e-4 \
    --tmp "$TMP/rows" --out "$TMP/out"
check "prune chita,chita++ exits 0 ($(head -c 300 "$TMP/run.err"))" test "$RC" -eq 0
check "the gradient-row file is gone" test "$(ls -A "$TMP/rows" | wc -l)" -eq 0

for r in chita-63 chita++-63; do
    R=$TMP/out/$r
    params=$(jq '.overall.params' "$R/report.json")
    pruned=$(jq '.overall.pruned' "$R/report.json")
    want=$(awk -v p="$params" 'BEGIN { printf "%d", p * 0.63 }')
    check "$r: exactly floor(0.63 n) pruned ($pruned of $params, want $want)" test "$pruned" -eq "$want"
    check "$r: report lambda" test "$(jq '.gradient.lambda' "$R/report.json")" = "0.0001"
    check "$r: output loads" "$MF" inspect --model "$R" --json
    # one prunable tensor: masked -> exactly 0, kept -> updated (not all equal to the input)
    name=$(st_json "$R/masks.safetensors" | jq -r 'keys[] | select(. != "__metadata__")' | grep attention | head -n 1)
    st_vals "$R/masks.safetensors" "$name" u1 >"$TMP/mask"
    st_vals "$R/model.safetensors" "$name" f4 >"$TMP/new"
    st_vals "$M/model.safetensors" "$name" f4 >"$TMP/old"
    read -r zeros_ok changed kept < <(paste "$TMP/mask" "$TMP/new" "$TMP/old" | awk '
        { if ($1 == 0) { if ($2 + 0 != 0) bad++ } else { k++; if ($2 != $3) c++ } }
        END { printf "%d %d %d\n", bad == 0, c, k }')
    check "$r: $name masked weights are exactly 0" test "$zeros_ok" -eq 1
    check "$r: $name kept weights updated ($changed of $kept changed)" test "$changed" -gt $((kept / 2))
done
check "chita++ ran 3 rounds" test "$(jq '.gradient.rounds' "$TMP/out/chita++-63/report.json")" -eq 3

# deterministic (hardest negatives, one thread count)
run_cmd run2 "$MF" prune --model "$M" "${D[@]}" --method chita --sparsity 63 --lambda 1e-4 --out "$TMP/out2"
check "second run exits 0" test "$RC" -eq 0
check "same checkpoint bytes" cmp -s "$TMP/out/chita-63/model.safetensors" "$TMP/out2/chita-63/model.safetensors"
# a different lambda changes the updated weights
run_cmd run3 "$MF" prune --model "$M" "${D[@]}" --method chita --sparsity 63 --lambda 1 --out "$TMP/out3"
check "lambda 1 exits 0" test "$RC" -eq 0
check "lambda changes the weights" bash -c "! cmp -s '$TMP/out/chita-63/model.safetensors' '$TMP/out3/chita-63/model.safetensors'"

expect_error nodata "chita|--data" "$MF" prune --model "$M" --method chita --sparsity 50 --out "$TMP/e1" --quiet
expect_error lambda_other "--lambda" "$MF" prune --model "$M" "${D[@]}" --method snip --sparsity 50 --lambda 1e-3 \
    --out "$TMP/e2"
expect_error rounds_chita "--rounds" "$MF" prune --model "$M" "${D[@]}" --method chita --sparsity 50 --rounds 3 \
    --out "$TMP/e3"
expect_error badtmp "/nonexistent/tmp" "$MF" prune --model "$M" "${D[@]}" --method chita --sparsity 50 \
    --tmp /nonexistent/tmp --out "$TMP/e4"
check "failed run leaves no output" test ! -e "$TMP/e4"
cli_finish
