#!/usr/bin/env bash
# multiflow prune with the gradient-based methods (snip, itersnip, tamt) end to end on the bundled
# tiny BLIP and shapes data: outputs as for the other methods, exact global sparsity, loadable
# checkpoints, report settings and notes, determinism, snip == itersnip with one round, and
# refusal without calibration data or with options of another method.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

# same_data A B: the data sections of two safetensors files are identical (headers hold the method)
same_data() {
    cmp -s <(tail -c +$((9 + $(st_header_len "$1"))) "$1") <(tail -c +$((9 + $(st_header_len "$2"))) "$2")
}

M=$SRC/data/models/blip-tiny
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes" --pairs 16 --batch 4)
O=$TMP/g

run_cmd prune "$MF" prune --model "$M" "${D[@]}" --method snip,itersnip,tamt --sparsity 63,75 --rounds 3 \
    --itm-negatives hardest --out "$O" --save-scores --threads 2 --quiet
check "prune exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "summary lists 6 runs" test "$(jq '.runs | length' "$O/summary.json")" -eq 6
for meth in snip itersnip tamt; do
    for pct in 63 75; do
        R=$O/$meth-$pct
        for f in model.safetensors masks.safetensors report.json scores.safetensors; do
            check "$meth-$pct/$f" test -s "$R/$f"
        done
        n=$(jq '.overall.params' "$R/report.json")
        p=$(jq '.overall.pruned' "$R/report.json")
        check "$meth-$pct: pruned $p == floor($pct% of $n) (global exact-k)" test "$p" -eq $((n * pct / 100))
        check "$meth-$pct: report records the losses" test "$(jq -r '.gradient.losses' "$R/report.json")" = "itc,itm,lm"
        check "$meth-$pct: report records the negatives" \
            test "$(jq -r '.gradient.itm_negatives' "$R/report.json")" = hardest
        check "$meth-$pct: calibration pairs" test "$(jq '.calibration.pairs' "$R/report.json")" -eq 16
        run_cmd "inspect-$meth-$pct" "$MF" inspect --model "$R" --json
        check "$meth-$pct loads" test "$RC" -eq 0
        s=$(jq '.params.sparsity' "$OUT")
        check "$meth-$pct: inspect sparsity $s ~ $pct%" \
            awk -v s="$s" -v p="$pct" 'BEGIN { exit !(s >= p / 100 - 1e-3 && s <= p / 100 + 1e-3) }'
    done
done
check "itersnip: rounds and schedule recorded" \
    test "$(jq -r '"\(.gradient.rounds) \(.gradient.schedule) \(.gradient.round_batches)"' "$O/itersnip-63/report.json")" = "3 exp 1"
check "itersnip draws rounds x round_batches batches" test "$(jq '.gradient.batches_drawn' "$O/itersnip-63/report.json")" -eq 3
check "tamt: one pass by default (4 steps)" test "$(jq '.gradient.steps' "$O/tamt-63/report.json")" -eq 4
check "tamt: notes say scores at 0 stay 0" grep -q "scores at 0 stay 0" "$O/tamt-63/report.json"
check "methods give different masks" bash -c "! cmp -s <(tail -c 100000 '$O/snip-63/masks.safetensors') <(tail -c 100000 '$O/tamt-63/masks.safetensors')"
run_cmd eval-pruned "$MF" eval retrieval --model "$O/tamt-63" "${D[@]}" --k 4 --json
check "eval retrieval on a tamt-pruned model" test "$RC" -eq 0

# determinism (hardest negatives): the same run twice gives the same masks
run_cmd again "$MF" prune --model "$M" "${D[@]}" --method itersnip,tamt --sparsity 63 --rounds 3 \
    --itm-negatives hardest --out "$TMP/again" --threads 2 --quiet
check "rerun exits 0" test "$RC" -eq 0
for meth in itersnip tamt; do
    check "$meth: same masks on a rerun" cmp -s "$O/$meth-63/masks.safetensors" "$TMP/again/$meth-63/masks.safetensors"
done
# one itersnip round over one pass is snip
run_cmd one "$MF" prune --model "$M" "${D[@]}" --method snip,itersnip --sparsity 75 --rounds 1 \
    --itm-negatives hardest --out "$TMP/one" --threads 2 --quiet
check "one round exits 0" test "$RC" -eq 0
check "itersnip --rounds 1 == snip (mask data)" same_data "$TMP/one/snip-75/masks.safetensors" "$TMP/one/itersnip-75/masks.safetensors"
# other schedules and options run
run_cmd lin "$MF" prune --model "$M" "${D[@]}" --method itersnip --sparsity 75 --rounds 2 --schedule linear \
    --round-batches 3 --loss itc,lm --out "$TMP/lin" --quiet
check "linear schedule exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "linear: losses recorded" test "$(jq -r '.gradient.losses' "$TMP/lin/itersnip-75/report.json")" = "itc,lm"
check "linear: 6 batches drawn (cycling past the 4 of a pass)" \
    test "$(jq '.gradient.batches_drawn' "$TMP/lin/itersnip-75/report.json")" -eq 6
run_cmd ep "$MF" prune --model "$M" "${D[@]}" --method tamt --sparsity 63 --epochs 2 --out "$TMP/ep" --quiet
check "tamt --epochs 2 exits 0" test "$RC" -eq 0
check "tamt --epochs 2: 8 steps" test "$(jq '.gradient.steps' "$TMP/ep/tamt-63/report.json")" -eq 8

# refusals: nothing written
expect_error nodata "method snip needs calibration data|--data" \
    "$MF" prune --model "$M" --method snip --sparsity 63 --out "$TMP/e1"
check "nothing written (no data)" test ! -e "$TMP/e1"
expect_error nodata2 "method tamt needs calibration data" \
    "$MF" prune --model "$M" --method omp,tamt --sparsity 63 --out "$TMP/e2"
expect_error rounds-wrong "apply to itersnip" \
    "$MF" prune --model "$M" "${D[@]}" --method snip --sparsity 63 --rounds 3 --out "$TMP/e3"
expect_error sched "expected exp, linear or const" \
    "$MF" prune --model "$M" "${D[@]}" --method itersnip --sparsity 63 --schedule cosine --out "$TMP/e4"
expect_error batch1 "at least 2 pairs" \
    "$MF" prune --model "$M" "${D[@]}" --batch 1 --method snip --sparsity 63 --out "$TMP/e5"
check "nothing written (batch 1)" test ! -e "$TMP/e5"
expect_error steps-epochs "exclusive" \
    "$MF" prune --model "$M" "${D[@]}" --method tamt --sparsity 63 --steps 2 --epochs 2 --out "$TMP/e6"

cli_finish
