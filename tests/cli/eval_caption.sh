#!/usr/bin/env bash
# multiflow eval caption end to end on the bundled tiny BLIP (fine-tuned briefly for captioning here,
# so its captions are words) and the shapes data: the metrics equal 'caption --json' piped through
# 'metrics caption' against the same annotation file (default and other generation options),
# --predictions holds exactly the captions 'caption' prints, --pairs limits the images, the text
# report names every metric, and bad input fails with nothing on stdout and no predictions file.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

ANN=$SRC/data/shapes/annotations.json
D=(--data "$ANN" --images "$SRC/data/shapes")
run_cmd ft "$MF" finetune --model "$SRC/data/models/blip-tiny" "${D[@]}" --task captioning --steps 60 --lr 2e-3 \
    --batch 8 --out "$TMP/m" --quiet
check "fine-tune a captioner ($(cat "$ERR"))" test "$RC" -eq 0
M=$TMP/m

for opts in "" "--beams 1 --max-len 12 --min-len 7" "--beams 2 --prompt a"; do
    tag=$(echo "x$opts" | tr -c 'a-z0-9' '_')
    # shellcheck disable=SC2086
    run_cmd ev$tag "$MF" eval caption --model "$M" "${D[@]}" $opts --json --predictions "$TMP/pred$tag.json"
    check "eval caption $opts exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    EV=$OUT
    # shellcheck disable=SC2086
    run_cmd cap$tag "$MF" caption --model "$M" "${D[@]}" $opts --json
    check "caption $opts exits 0" test "$RC" -eq 0
    jq -sc '[.[] | {image, caption}]' "$OUT" >"$TMP/cap$tag.json"
    run_cmd met$tag "$MF" metrics caption --pred "$TMP/cap$tag.json" --refs "$ANN" --json
    check "metrics caption $opts exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    check "eval caption $opts = caption | metrics caption" cmp -s "$EV" "$OUT"
    check "--predictions $opts = the captions of 'caption'" \
        test "$(jq -c '[.[] | {image, caption}]' "$TMP/pred$tag.json")" = "$(cat "$TMP/cap$tag.json")"
done
check "64 images, 4 BLEU values" test "$(jq -c '[.images, (.bleu | length)]' "$EV")" = "[64,4]"
check "metrics in range" test "$(jq '[.bleu[], .rouge_l] | map(. >= 0 and . <= 1) | all' "$EV")" = true
check "options change the captions" bash -c "! cmp -s '$TMP/pred_x.json' '$TMP/pred_x__beams_1__max_len_12__min_len_7.json'"

run_cmd pairs "$MF" eval caption --model "$M" "${D[@]}" --pairs 4 --json
check "--pairs 4: the 2 images of the first 4 pairs" test "$(jq '.images' "$OUT")" -eq 2
run_cmd text "$MF" eval caption --model "$M" "${D[@]}"
for w in BLEU-1 BLEU-4 ROUGE-L CIDEr-D; do check "text report has $w" grep -q "$w" "$OUT"; done

# errors: nothing on stdout, no predictions file
expect_error nodec 'no text decoder' "$MF" eval caption --model "$SRC/data/models/blip-tiny-hf" "${D[@]}" \
    --predictions "$TMP/e1.json"
expect_error nodir 'nodir' "$MF" eval caption --model "$M" "${D[@]}" --predictions "$TMP/nodir/p.json"
expect_error beams "--beams" "$MF" eval caption --model "$M" "${D[@]}" --beams 0 --predictions "$TMP/e2.json"
expect_error nodata '--data' "$MF" eval caption --model "$M" --predictions "$TMP/e3.json"
printf '[{"image": "images/0001.png", "caption": "a square"}, {"image": "images/none.png", "caption": "x"}]\n' \
    >"$TMP/bad.json"
expect_error noimage 'none.png' "$MF" eval caption --model "$M" --data "$TMP/bad.json" --images "$SRC/data/shapes" \
    --predictions "$TMP/e4.json"
expect_error maxlen 'max' "$MF" eval caption --model "$M" "${D[@]}" --max-len 3 --predictions "$TMP/e5.json"
expect_error task 'caption' "$MF" eval captions --model "$M" "${D[@]}"
for e in e1 e2 e3 e4 e5; do check "$e: no predictions file" test ! -e "$TMP/$e.json"; done
check "no temporary files left" test "$(find "$TMP" -maxdepth 1 -name '.*' | wc -l)" -eq 0

cli_finish
