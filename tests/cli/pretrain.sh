#!/usr/bin/env bash
# multiflow pretrain end to end on the tiny data/configs/blip-test.json and the bundled shapes:
# the run directory is a loadable original-layout checkpoint with the evolved momentum copies and
# queues; a run stopped after 3 steps (--stop-after, and a kill -9 at a random point) and resumed
# to 6 gives the same bytes as an uninterrupted 6-step run, at another thread count; the loss
# decreases over 40 steps; the log, the plot and bad input are checked.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")
P=(pretrain --config "$SRC/data/configs/blip-test.json" --vocab "$SRC/data/models/blip-tiny/vocab.txt" "${D[@]}"
   --steps 6 --batch 8 --checkpoint-every 3 --warmup 2 --seed 4 --quiet)

run_cmd full "$MF" "${P[@]}" --out "$TMP/full" --threads 2 --json
check "6-step run exits 0 ($(tail -3 "$ERR"))" test "$RC" -eq 0
for f in model.safetensors state-00000006.safetensors vocab.txt pretrain.json log.jsonl loss.svg; do
    check "$f written" test -s "$TMP/full/$f"
done
check "only the last state file is kept" test "$(ls "$TMP/full" | grep -c '^state-')" -eq 1
check "6 log lines, steps 1..6" test "$(jq -s '[.[].step] == [1,2,3,4,5,6]' "$TMP/full/log.jsonl")" = true
check "log has every field" test "$(jq -s 'all(.[]; has("lr") and has("itc") and has("itm") and has("lm") and has("total") and has("grad_norm") and has("seconds"))' "$TMP/full/log.jsonl")" = true
check "total = itc + itm + lm" test "$(jq -s 'all(.[]; (.total - .itc - .itm - .lm | fabs) < 1e-5)' "$TMP/full/log.jsonl")" = true
check "warm-up then cosine decay" test "$(jq -s '.[0].lr < .[1].lr and .[1].lr == .[2].lr and .[2].lr > .[3].lr and .[3].lr > .[5].lr' "$TMP/full/log.jsonl")" = true
check "loss.svg is an SVG" grep -q '^<svg' "$TMP/full/loss.svg"

# stopped after step 3 on one thread, resumed on two: the same bytes
run_cmd half "$MF" "${P[@]}" --out "$TMP/half" --threads 1 --stop-after 3
check "stop after 3 ($(tail -3 "$ERR"))" test "$RC" -eq 0 -a -s "$TMP/half/state-00000003.safetensors"
run_cmd resume "$MF" "${P[@]}" --out "$TMP/half" --threads 2 --resume
check "resume exits 0 ($(tail -3 "$ERR"))" test "$RC" -eq 0
check "resumed model = uninterrupted model" cmp -s "$TMP/full/model.safetensors" "$TMP/half/model.safetensors"
check "resumed optimiser state = uninterrupted" cmp -s "$TMP/full/state-00000006.safetensors" "$TMP/half/state-00000006.safetensors"
check "resumed log = uninterrupted log (without the times)" test \
    "$(jq -sc 'map(del(.seconds))' "$TMP/full/log.jsonl")" = "$(jq -sc 'map(del(.seconds))' "$TMP/half/log.jsonl")"
run_cmd again "$MF" "${P[@]}" --out "$TMP/half" --resume --json
check "resuming a finished run does nothing" test "$RC" -eq 0 -a "$(jq '.step' "$OUT")" -eq 6
check "... and changes nothing" cmp -s "$TMP/full/model.safetensors" "$TMP/half/model.safetensors"

# killed (SIGKILL) wherever it is, then resumed from its last save
"$MF" "${P[@]}" --checkpoint-every 1 --out "$TMP/kill" --threads 1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do
    ls "$TMP/kill"/state-0000000[2-6].safetensors >/dev/null 2>&1 && break
    sleep 0.05
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
run_cmd kresume "$MF" "${P[@]}" --checkpoint-every 1 --out "$TMP/kill" --threads 2 --resume
check "resume after kill -9 ($(tail -3 "$ERR"))" test "$RC" -eq 0
check "killed and resumed model = uninterrupted model" cmp -s "$TMP/full/model.safetensors" "$TMP/kill/model.safetensors"

# an ordinary checkpoint: every verb loads it; the momentum state evolved
run_cmd inspect "$MF" inspect --model "$TMP/full" --json
check "inspect: original layout with momentum copies" test "$(jq -r '.layout' "$OUT")" = blip-orig
run_cmd eval "$MF" eval retrieval --model "$TMP/full" "${D[@]}" --k 4 --json
check "eval retrieval loads it ($(tail -2 "$ERR"))" test "$RC" -eq 0
run_cmd prune "$MF" prune --model "$TMP/full" "${D[@]}" --pairs 16 --method omp --sparsity 50 --out "$TMP/p" --quiet
check "prune loads it ($(tail -2 "$ERR"))" test "$RC" -eq 0
check "queue pointer = 6 steps x 8 mod 64 = 48" test "$(st_vals "$TMP/full/model.safetensors" queue_ptr d8)" = 48
mb=$(st_vals "$TMP/full/model.safetensors" vision_proj_m.bias | head -3)
ob=$(st_vals "$TMP/full/model.safetensors" vision_proj.bias | head -3)
check "momentum copies trail the online weights (m = 0.995 m + 0.005 theta)" test "$mb" != "$ob"
check "step 6 in the metadata" test "$(st_json "$TMP/full/model.safetensors" | jq -r '.__metadata__.multiflow_pretrain_step')" = 6

# from an existing checkpoint (blip-tiny stores its tied decoder copies twice)
run_cmd from "$MF" pretrain --init-from "$SRC/data/models/blip-tiny" "${D[@]}" --steps 2 --batch 4 --out "$TMP/from" --quiet
check "--init-from ($(tail -2 "$ERR"))" test "$RC" -eq 0
run_cmd from-score "$MF" score --model "$TMP/from" "${D[@]}" --pairs 2 --json
check "its checkpoint scores" test "$RC" -eq 0

# the loss decreases over 40 steps (a real bound: the mean of the last 5 steps below 90 % of the first 5)
run_cmd long "$MF" pretrain --config "$SRC/data/configs/blip-test.json" --vocab "$SRC/data/models/blip-tiny/vocab.txt" \
    "${D[@]}" --steps 40 --batch 8 --warmup 4 --lr 5e-4 --checkpoint-every 0 --out "$TMP/long" --quiet --json
check "40-step run ($(tail -2 "$ERR"))" test "$RC" -eq 0
first=$(jq '.loss_first5' "$OUT")
last=$(jq '.loss_last5' "$OUT")
check "loss decreases: first 5 mean $first, last 5 mean $last" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.9 * a) }'
lm0=$(jq -s '[.[0:5][].lm] | add / 5' "$TMP/long/log.jsonl")
lm1=$(jq -s '[.[35:40][].lm] | add / 5' "$TMP/long/log.jsonl")
check "LM loss decreases ($lm0 -> $lm1)" awk -v a="$lm0" -v b="$lm1" 'BEGIN { exit !(b < a - 0.3) }'

# bad input: clear messages; nothing written where nothing existed
expect_error e1 "options differ" "$MF" "${P[@]}" --out "$TMP/full" --resume --lr 1e-3
expect_error e2 "output directory exists" "$MF" "${P[@]}" --out "$TMP/full"
expect_error e3 "either --config" "$MF" pretrain --config "$SRC/data/configs/blip-test.json" --init-from "$TMP/full" "${D[@]}" --out "$TMP/e3"
expect_error e4 "--config needs --vocab" "$MF" pretrain --config "$SRC/data/configs/blip-test.json" "${D[@]}" --out "$TMP/e4"
expect_error e5 "ITM loss needs at least 2" "$MF" "${P[@]}" --batch 1 --out "$TMP/e5"
expect_error e6 "not a run directory" "$MF" "${P[@]}" --out "$TMP/e6" --resume
expect_error e7 "fewer than one batch" "$MF" "${P[@]}" --batch 100 --out "$TMP/e7"
for e in e3 e4 e5 e6 e7; do check "$e: nothing written" test ! -e "$TMP/$e"; done

cli_finish
