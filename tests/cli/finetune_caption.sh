#!/usr/bin/env bash
# multiflow finetune --task captioning end to end, on the bundled tiny BLIP (original layout: the
# decoder shares its FFN/cross-attention with the text encoder) pruned with omp at 50 % and on the
# tiny Hugging Face captioning fixture (tests/golden/blip/hf-cap-f32) pruned the same way, with the
# shapes data: every masked weight is still exactly 0 in the written checkpoint (re-applying the
# masks changes no data byte), the weights moved, the loss (lm only) is logged and decreases, the
# schedule is cosine, finetune.json names the prompt and its 4 tokens, eval caption and caption
# load the result, and bad input fails cleanly with nothing written.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes")
# the tensor data of a safetensors file (after its header)
body() { tail -c +$((9 + $(st_header_len "$1"))) "$1"; }

for layout in orig hf; do
    case $layout in
    orig) M=$SRC/data/models/blip-tiny ;;
    hf) M=$SRC/tests/golden/blip/hf-cap-f32 ;;
    esac
    run_cmd prune-$layout "$MF" prune --model "$M" --method omp --sparsity 50 --out "$TMP/p-$layout" --quiet
    check "$layout: prune exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    P=$TMP/p-$layout/omp-50
    FT=(finetune --model "$P" --masks "$P/masks.safetensors" "${D[@]}" --task captioning --steps 80 --lr 2e-3
        --batch 8 --seed 1 --threads 2)
    run_cmd ft-$layout "$MF" "${FT[@]}" --out "$TMP/ft-$layout" --log "$TMP/ft-$layout.log"
    check "$layout: finetune exits 0 ($(tail -3 "$ERR"))" test "$RC" -eq 0
    F=$TMP/ft-$layout
    for f in model.safetensors masks.safetensors vocab.txt finetune.json; do
        check "$layout: $f written" test -e "$F/$f" -o -e "$F/model.safetensors.index.json"
    done
    check "$layout: 80 step lines, lm only" test "$(grep -c '^step [0-9]*/80 .*(lm)' "$ERR")" -eq 80
    check "$layout: log has lm = loss" test "$(jq -s 'map(.lm == .loss) | all' "$TMP/ft-$layout.log")" = true
    first=$(jq -s '[.[0:5][].loss] | add / 5' "$TMP/ft-$layout.log")
    last=$(jq -s '[.[75:80][].loss] | add / 5' "$TMP/ft-$layout.log")
    check "$layout: loss decreases: first 5 mean $first > last 5 mean $last * 1.2" \
        awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 1.2 * b) }'
    check "$layout: cosine: lr at step 41 is half the peak" \
        test "$(jq -s '(.[40].lr - 1e-3 | fabs) < 1e-9' "$TMP/ft-$layout.log")" = true
    check "$layout: finetune.json: task, prompt, 4 prompt tokens" test "$(jq -c '[.task, .prompt, .prompt_tokens]' \
        "$F/finetune.json")" = '["captioning","a picture of ",4]'

    # masks held: re-applying the masks to the fine-tuned checkpoint changes no data byte
    for sh in "$P"/model*.safetensors; do
        name=$(basename "$sh")
        check "$layout: $name trained (differs from the pruned input)" \
            bash -c "! cmp -s <(tail -c +\$((9 + $(st_header_len "$sh"))) '$sh') <(tail -c +\$((9 + $(st_header_len "$F/$name"))) '$F/$name')"
    done
    run_cmd apply-$layout "$MF" apply --model "$F" --masks "$F/masks.safetensors" --out "$TMP/ap-$layout" --quiet
    check "$layout: apply exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    for sh in "$F"/model*.safetensors; do
        name=$(basename "$sh")
        check "$layout: every masked weight of $name still exactly 0" cmp -s <(body "$sh") <(body "$TMP/ap-$layout/$name")
    done

    # the result captions and is scored; eval caption loads it
    prompt=()
    [ $layout = hf ] && prompt=(--prompt "a picture of ")
    run_cmd eval-$layout "$MF" eval caption --model "$F" "${D[@]}" "${prompt[@]}" --json
    check "$layout: eval caption on the fine-tuned model ($(cat "$ERR"))" test "$RC" -eq 0
    check "$layout: 64 images scored" test "$(jq '.images' "$OUT")" -eq 64
    run_cmd eval0-$layout "$MF" eval caption --model "$P" "${D[@]}" "${prompt[@]}" --json
    c0=$(jq '.cider' "$TMP/eval0-$layout.out")
    c1=$(jq '.cider' "$TMP/eval-$layout.out")
    check "$layout: CIDEr-D rises with fine-tuning ($c0 -> $c1)" awk -v a="$c0" -v b="$c1" 'BEGIN { exit !(b > a) }'
done

# same seed, same bytes
M=$SRC/data/models/blip-tiny
P=$TMP/p-orig/omp-50
run_cmd ft2 "$MF" finetune --model "$P" --masks "$P/masks.safetensors" "${D[@]}" --task captioning --steps 80 --lr 2e-3 \
    --batch 8 --seed 1 --threads 1 --out "$TMP/ft2" --quiet
check "same seed (1 thread vs 2), same checkpoint" cmp -s "$TMP/ft-orig/model.safetensors" "$TMP/ft2/model.safetensors"
# --epochs default for captioning: 5 epochs of 128 / 16 = 8 batches
run_cmd ep "$MF" finetune --model "$M" "${D[@]}" --task captioning --batch 16 --out "$TMP/ep" --json
check "default 5 epochs = 40 steps ($(tail -1 "$ERR"))" test "$(jq '.steps' "$OUT")" -eq 40
run_cmd b1 "$MF" finetune --model "$M" "${D[@]}" --task captioning --batch 1 --steps 2 --out "$TMP/b1" --quiet
check "captioning runs with batch 1 ($(cat "$ERR"))" test "$RC" -eq 0

# errors: nothing written
expect_error nodec 'needs a text decoder' "$MF" finetune --model "$SRC/data/models/blip-tiny-hf" "${D[@]}" \
    --task captioning --steps 2 --out "$TMP/e1"
expect_error longprompt 'no room for a caption' "$MF" finetune --model "$M" "${D[@]}" --task captioning --steps 2 \
    --prompt "$(printf 'a %.0s' $(seq 34))" --out "$TMP/e2"
expect_error hugeprompt '--prompt|at most 64' "$MF" finetune --model "$M" "${D[@]}" --task captioning --steps 2 \
    --prompt "$(printf 'word %.0s' $(seq 100))" --out "$TMP/e4"
expect_error task 'expected retrieval' "$MF" finetune --model "$M" "${D[@]}" --task caption --out "$TMP/e3"
for e in e1 e2 e3 e4; do check "$e: nothing written" test ! -e "$TMP/$e"; done
check "no temp directories left" test "$(find "$TMP" -maxdepth 1 -name '.*' | wc -l)" -eq 0

cli_finish
