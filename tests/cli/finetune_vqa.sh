#!/usr/bin/env bash
# multiflow finetune --task vqa end to end on a small world with the bundled tiny BLIP (original
# layout) pruned with omp at 50 %: every masked weight is still exactly 0 in the written checkpoint
# (re-applying the masks changes no data byte), the weights moved, the loss is logged and
# decreases, the schedule is cosine, finetune.json describes the run, eval vqa loads the result, the
# same seed gives the same bytes at 1 and 2 threads, and bad input fails cleanly with nothing written.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

W=$TMP/w
run_cmd world "$MF" world --out "$W" --pretrain 4 --calib 2 --train 16 --test 4 --novel 2 --size 32 --quiet
check "world exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
D=(--data "$W/vqa_train.json" --images "$W")
body() { tail -c +$((9 + $(st_header_len "$1"))) "$1"; }

M=$SRC/data/models/blip-tiny
run_cmd prune "$MF" prune --model "$M" --method omp --sparsity 50 --out "$TMP/p" --quiet
check "prune exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
P=$TMP/p/omp-50
FT=(finetune --task vqa --model "$P" --masks "$P/masks.safetensors" "${D[@]}" --steps 30 --lr 2e-3 --batch 8 --seed 1)
run_cmd ft "$MF" "${FT[@]}" --threads 2 --out "$TMP/ft" --log "$TMP/ft.log"
check "finetune --task vqa exits 0 ($(tail -3 "$ERR"))" test "$RC" -eq 0
F=$TMP/ft
for f in model.safetensors masks.safetensors vocab.txt finetune.json; do check "$f written" test -e "$F/$f"; done
check "30 step lines" test "$(grep -c '^step [0-9]*/30 .*(vqa)' "$ERR")" -eq 30
first=$(jq -s '[.[0:5][].loss] | add / 5' "$TMP/ft.log")
last=$(jq -s '[.[25:30][].loss] | add / 5' "$TMP/ft.log")
check "loss decreases: first 5 mean $first > last 5 mean $last * 1.2" \
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 1.2 * b) }'
check "cosine: lr at step 16 is half the peak" test "$(jq -s '(.[15].lr - 1e-3 | fabs) < 1e-9' "$TMP/ft.log")" = true
check "finetune.json: task, questions, schedule" test "$(jq -c '[.task, .questions, .schedule, .steps]' \
    "$F/finetune.json")" = "[\"vqa\",$(jq length "$W/vqa_train.json"),\"cosine\",30]"
check "model trained (differs from the pruned input)" bash -c "! cmp -s <(tail -c +\$((9 + $(st_header_len \
    "$P/model.safetensors"))) '$P/model.safetensors') <(tail -c +\$((9 + $(st_header_len "$F/model.safetensors"))) \
    '$F/model.safetensors')"
run_cmd apply "$MF" apply --model "$F" --masks "$F/masks.safetensors" --out "$TMP/ap" --quiet
check "apply exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "every masked weight still exactly 0" cmp -s <(body "$F/model.safetensors") <(body "$TMP/ap/model.safetensors")
run_cmd ev "$MF" eval vqa --model "$F" --data "$W/vqa_test.json" --images "$W" --json
check "eval vqa loads the result ($(cat "$ERR"))" test "$RC" -eq 0
check "eval vqa scores every test question" test "$(jq .questions "$OUT")" -eq "$(jq length "$W/vqa_test.json")"

run_cmd ft1 "$MF" "${FT[@]}" --threads 1 --out "$TMP/ft1" --quiet
check "same seed (1 thread vs 2), same checkpoint" cmp -s "$F/model.safetensors" "$TMP/ft1/model.safetensors"
run_cmd ep "$MF" finetune --task vqa --model "$M" "${D[@]}" --batch 16 --out "$TMP/ep" --json
check "default 10 epochs of 80 / 16 = 50 steps ($(tail -1 "$ERR"))" test "$(jq '.steps' "$OUT")" -eq 50

# errors: nothing written
expect_error nodec 'decoder' "$MF" finetune --task vqa --model "$SRC/data/models/blip-tiny-hf" "${D[@]}" \
    --steps 2 --out "$TMP/e1"
jq '.[3] |= del(.answer)' "$W/vqa_train.json" >"$TMP/noans.json"
expect_error noans "record 4|no 'answer'" "$MF" finetune --task vqa --model "$M" --data "$TMP/noans.json" \
    --images "$W" --steps 2 --out "$TMP/e2"
expect_error big 'fewer than one batch' "$MF" finetune --task vqa --model "$M" "${D[@]}" --batch 1000 --out "$TMP/e3"
expect_error qc 'question-clean' "$MF" finetune --task vqa --model "$M" "${D[@]}" --question-clean x --out "$TMP/e4"
expect_error task 'expected retrieval, captioning or vqa' "$MF" finetune --task vq --model "$M" "${D[@]}" \
    --out "$TMP/e5"
for e in e1 e2 e3 e4 e5; do check "$e: nothing written" test ! -e "$TMP/$e"; done
check "no temp directories left" test "$(find "$TMP" -maxdepth 1 -name '.*' | wc -l)" -eq 0

cli_finish
