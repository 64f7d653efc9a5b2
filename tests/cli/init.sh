#!/usr/bin/env bash
# multiflow init end to end: a random original-layout BLIP from data/configs/blip-test.json is
# written (model.safetensors, vocab.txt, init.json), is the same bytes for the same seed and other
# bytes for another, and every verb loads it (inspect, score, eval retrieval, prune, grad,
# finetune); f16/bf16 work; bad input fails cleanly with nothing written.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

CFG=$SRC/data/configs/blip-test.json
VOC=$SRC/data/models/blip-tiny/vocab.txt
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")

run_cmd init "$MF" init --config "$CFG" --vocab "$VOC" --out "$TMP/m" --seed 5 --json
check "init exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
for f in model.safetensors vocab.txt init.json; do check "$f written" test -s "$TMP/m/$f"; done
check "vocab copied" cmp -s "$VOC" "$TMP/m/vocab.txt"
check "json: seed 5, 107 vocabulary rows" test "$(jq '.seed == 5 and .arch.vocab_rows == 107' "$OUT")" = true
run_cmd init2 "$MF" init --config "$CFG" --vocab "$VOC" --out "$TMP/m2" --seed 5 --quiet
check "same seed, same bytes" cmp -s "$TMP/m/model.safetensors" "$TMP/m2/model.safetensors"
run_cmd init3 "$MF" init --config "$CFG" --vocab "$VOC" --out "$TMP/m3" --seed 6 --quiet
check "other seed, other bytes" bash -c "! cmp -s '$TMP/m/model.safetensors' '$TMP/m3/model.safetensors'"

M=$TMP/m
run_cmd inspect "$MF" inspect --model "$M" --json
check "inspect ($(cat "$ERR"))" test "$RC" -eq 0
check "original layout with momentum copies" test "$(jq -r '.layout' "$OUT")" = blip-orig
check "17 image tokens, text width 64, 40 positions" test "$(jq '.vision.tokens == 17 and .text.hidden == 64 and .text.max_positions == 40' "$OUT")" = true
check "momentum copies present" test "$(jq '.towers | index("momentum_copies") != null' "$OUT")" = true
run_cmd score "$MF" score --model "$M" "${D[@]}" --pairs 4 --json
check "score ($(cat "$ERR"))" test "$RC" -eq 0 -a "$(wc -l <"$OUT")" -eq 4
run_cmd eval "$MF" eval retrieval --model "$M" "${D[@]}" --k 4 --json
check "eval retrieval ($(cat "$ERR"))" test "$RC" -eq 0
run_cmd prune "$MF" prune --model "$M" "${D[@]}" --pairs 16 --method multiflow --sparsity 50 --out "$TMP/p" --quiet
check "prune ($(cat "$ERR"))" test "$RC" -eq 0 -a -s "$TMP/p/multiflow-50/model.safetensors"
run_cmd grad "$MF" grad --model "$M" "${D[@]}" --pairs 8 --out "$TMP/g.safetensors" --quiet
check "grad ($(cat "$ERR"))" test "$RC" -eq 0 -a -s "$TMP/g.safetensors"
run_cmd ft "$MF" finetune --model "$M" "${D[@]}" --task retrieval --steps 2 --batch 4 --out "$TMP/ft" --quiet
check "finetune ($(cat "$ERR"))" test "$RC" -eq 0 -a -s "$TMP/ft/model.safetensors"
for dt in f16 bf16; do
    run_cmd "init-$dt" "$MF" init --config "$CFG" --vocab "$VOC" --out "$TMP/m-$dt" --dtype "$dt" --quiet
    check "init --dtype $dt ($(cat "$ERR"))" test "$RC" -eq 0
    run_cmd "score-$dt" "$MF" score --model "$TMP/m-$dt" "${D[@]}" --pairs 2 --json
    check "score on $dt" test "$RC" -eq 0
done

# bad input: clear message, nothing written
printf '{"vision": {"width": 128, "heads": 4, "layers": 1, "mlp": 64, "patch": 16, "image_size": 32},
 "text": {"width": 64, "layers": 1, "ffn": 64, "positions": 8}, "embed_dim": 8, "queue_size": 8}' >"$TMP/heads.json"
expect_error e1 "vision.heads 4|width/64" "$MF" init --config "$TMP/heads.json" --vocab "$VOC" --out "$TMP/e1"
expect_error e2 "output directory exists" "$MF" init --config "$CFG" --vocab "$VOC" --out "$TMP/m"
expect_error e3 "--config, --vocab and --out are required" "$MF" init --config "$CFG" --out "$TMP/e3"
expect_error e4 "nope.txt" "$MF" init --config "$CFG" --vocab "$TMP/nope.txt" --out "$TMP/e4"
expect_error e5 "--dtype" "$MF" init --config "$CFG" --vocab "$VOC" --out "$TMP/e5" --dtype f64
for e in e1 e3 e4 e5; do check "$e: nothing written" test ! -e "$TMP/$e"; done
check "no temp directories left" test "$(find "$TMP" -maxdepth 1 -name '.*' | wc -l)" -eq 0

cli_finish
