#!/usr/bin/env bash
# multiflow finetune end to end on the bundled tiny BLIP (original layout) and the shapes data:
# prune with omp at 50 %, fine-tune with the masks for a fixed-seed run, then: the output directory
# is a loadable checkpoint with the pruned sparsity unchanged (every masked weight still exactly 0),
# the weights moved, the loss is logged per step (stderr, --log, finetune.json) and decreases, the
# same seed gives the same bytes, eval retrieval runs on it, and bad input fails cleanly with
# nothing written.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")

run_cmd prune "$MF" prune --model "$M" --method omp --sparsity 50 --out "$TMP/p" --quiet
check "prune exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
P=$TMP/p/omp-50

FT=(finetune --model "$P" --masks "$P/masks.safetensors" "${D[@]}" --task retrieval --steps 30 --lr 1e-3
    --warmup 3 --clip 50 --batch 8 --seed 3 --threads 2)
run_cmd ft "$MF" "${FT[@]}" --out "$TMP/ft" --log "$TMP/ft.log"
check "finetune exits 0 ($(tail -3 "$ERR"))" test "$RC" -eq 0
for f in model.safetensors masks.safetensors vocab.txt finetune.json; do check "$f written" test -s "$TMP/ft/$f"; done
check "30 step lines on stderr" test "$(grep -c '^step [0-9]*/30 ' "$ERR")" -eq 30
check "30 JSON lines in --log" test "$(jq -s 'length' "$TMP/ft.log")" -eq 30
check "log steps 1..30" test "$(jq -s '[.[].step] == [range(1;31)]' "$TMP/ft.log")" = true
check "finetune.json has the log" test "$(jq '.log | length' "$TMP/ft/finetune.json")" -eq 30
first=$(jq -s '[.[0:5][].loss] | add / 5' "$TMP/ft.log")
last=$(jq -s '[.[25:30][].loss] | add / 5' "$TMP/ft.log")
check "loss decreases: first 5 mean $first > last 5 mean $last * 1.1" awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 1.1 * b) }'
check "lr warms up then decays" test "$(jq -s '.[0].lr < .[2].lr and .[2].lr > .[29].lr' "$TMP/ft.log")" = true

# sparsity: every masked weight still exactly 0 (inspect counts zeros), same as the pruned input
run_cmd inspect-p "$MF" inspect --model "$P" --json
sp=$(jq '.params.sparsity' "$OUT")
run_cmd inspect-ft "$MF" inspect --model "$TMP/ft" --json
check "fine-tuned checkpoint loads" test "$RC" -eq 0
sf=$(jq '.params.sparsity' "$OUT")
check "sparsity unchanged by fine-tuning ($sp -> $sf)" test "$sp" = "$sf"
check "sparsity ~ 50 % ($sf)" awk -v s="$sf" 'BEGIN { exit !(s >= 0.499 && s <= 0.501) }'
check "weights changed" bash -c "! cmp -s '$P/model.safetensors' '$TMP/ft/model.safetensors'"
check "masks copied" cmp -s "$P/masks.safetensors" "$TMP/ft/masks.safetensors"

# determinism: same seed, same bytes; another seed, other bytes
run_cmd ft2 "$MF" "${FT[@]}" --out "$TMP/ft2" --quiet
check "same seed, same checkpoint" cmp -s "$TMP/ft/model.safetensors" "$TMP/ft2/model.safetensors"
check "--quiet: no step lines" test "$(grep -c '^step ' "$ERR" || true)" -eq 0
run_cmd ft3 "$MF" "${FT[@]/--seed/--epochs}" --seed 4 --out "$TMP/ft3" --quiet
check "other seed, other checkpoint" bash -c "! cmp -s '$TMP/ft/model.safetensors' '$TMP/ft3/model.safetensors'"

# eval retrieval measures it
run_cmd eval "$MF" eval retrieval --model "$TMP/ft" "${D[@]}" --k 8 --json
check "eval retrieval on the fine-tuned model ($(cat "$ERR"))" test "$RC" -eq 0 -a -s "$OUT"

# --epochs: 128 pairs / batch 16 = 8 steps per epoch, drop_last
run_cmd ep "$MF" finetune --model "$M" "${D[@]}" --task retrieval --epochs 2 --batch 16 --out "$TMP/ep" --json
check "epochs run ($(tail -2 "$ERR"))" test "$RC" -eq 0
check "2 epochs = 16 steps" test "$(jq '.steps' "$OUT")" -eq 16

# errors: nothing written
expect_error exists 'exists' "$MF" "${FT[@]}" --out "$TMP/ft"
expect_error task '--task' "$MF" finetune --model "$M" "${D[@]}" --task segmentation --out "$TMP/e1"
expect_error batch1 'at least 2 pairs' "$MF" finetune --model "$M" "${D[@]}" --task retrieval --batch 1 --out "$TMP/e2"
expect_error nomask 'none.safetensors|cannot open' "$MF" finetune --model "$M" "${D[@]}" --task retrieval --masks "$TMP/none.safetensors" --out "$TMP/e3"
expect_error warmup 'warmup' "$MF" finetune --model "$M" "${D[@]}" --task retrieval --steps 2 --warmup 3 --out "$TMP/e4"
expect_error lr "--lr: '-1'" "$MF" finetune --model "$M" "${D[@]}" --task retrieval --lr -1 --out "$TMP/e5"
for e in e1 e2 e3 e4 e5; do check "$e: nothing written" test ! -e "$TMP/$e"; done
check "no temp directories left" test "$(find "$TMP" -maxdepth 1 -name '.*' | wc -l)" -eq 0

cli_finish
