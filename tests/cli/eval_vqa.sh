#!/usr/bin/env bash
# multiflow eval vqa end to end on a small world and the bundled tiny BLIP (original layout): --json
# has exactly questions/accuracy/per_type with one entry per question type, the accuracy agrees with
# the written predictions (the world's ten answers are identical, so a question scores 100 or 0) and
# with the per-type means, predictions follow the data's question ids in order and come from the
# answer list, the answer list defaults to answers.json next to the data, results do not depend on
# the thread count, and bad input fails cleanly with nothing written.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
W=$TMP/w
run_cmd world "$MF" world --out "$W" --pretrain 4 --calib 2 --train 4 --test 8 --novel 2 --size 32 --quiet
check "world exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
D=(--model "$M" --data "$W/vqa_test.json" --images "$W")
NQ=$(jq length "$W/vqa_test.json")

run_cmd ev "$MF" eval vqa "${D[@]}" --json --predictions "$TMP/pred.json" --threads 2
check "eval vqa exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "json keys: accuracy, per_type, questions" test "$(jq -c 'keys' "$OUT")" = '["accuracy","per_type","questions"]'
check "every question scored" test "$(jq .questions "$OUT")" -eq "$NQ"
check "per_type: the data's question types" test "$(jq -c '.per_type | keys' "$OUT")" = \
    "$(jq -c '[.[].question_type] | unique' "$W/vqa_test.json")"
check "accuracy in [0, 100]" test "$(jq '.accuracy >= 0 and .accuracy <= 100' "$OUT")" = true
check "predictions: one per question, ids in order" test "$(jq -c '[.[].question_id]' "$TMP/pred.json")" = \
    "$(jq -c '[.[].question_id]' "$W/vqa_test.json")"
check "predictions come from answers.json" test "$(jq -n --slurpfile p "$TMP/pred.json" --slurpfile a \
    "$W/answers.json" '[$p[0][].answer] - $a[0] | length')" -eq 0
acc=$(jq -n --slurpfile p "$TMP/pred.json" --slurpfile d "$W/vqa_test.json" \
    '[range($d[0] | length) as $i | if $p[0][$i].answer == $d[0][$i].answer[0] then 100 else 0 end] | add / length')
check "accuracy = share of exact answers ($acc)" \
    test "$(jq --argjson a "$acc" '(.accuracy - $a | fabs) < 1e-9' "$OUT")" = true
mean=$(jq -n --slurpfile d "$W/vqa_test.json" --slurpfile r "$OUT" \
    '[$d[0][].question_type] | group_by(.) | map($r[0].per_type[.[0]] * length) | add / ($d[0] | length)')
check "accuracy = per-type means weighted by counts" \
    test "$(jq --argjson a "$mean" '(.accuracy - $a | fabs) < 1e-6' "$OUT")" = true

# threads: same predictions; explicit --answers and --k-test 1 run; text output names the types
run_cmd ev1 "$MF" eval vqa "${D[@]}" --answers "$W/answers.json" --predictions "$TMP/pred1.json" --threads 1
check "eval vqa --threads 1 exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "same predictions at 1 and 2 threads" cmp -s "$TMP/pred.json" "$TMP/pred1.json"
run_cmd evb "$MF" eval vqa "${D[@]}" --batch 1 --predictions "$TMP/predb1.json" --quiet
check "same predictions with --batch 1 (one question at a time) ($(cat "$ERR"))" \
    cmp -s "$TMP/pred.json" "$TMP/predb1.json"
check "text output: accuracy line" grep -q "^  accuracy " "$OUT"
run_cmd k1 "$MF" eval vqa "${D[@]}" --k-test 1 --json --question-clean blip
check "--k-test 1 --question-clean blip exits 0 ($(cat "$ERR"))" test "$RC" -eq 0

# errors: non-zero exit, nothing on stdout, no predictions file
mkdir -p "$TMP/noans"
cp "$W/vqa_test.json" "$TMP/noans/"
expect_error noanswers 'answers.json' "$MF" eval vqa --model "$M" --data "$TMP/noans/vqa_test.json" --images "$W"
echo '["red", "blue", "red"]' >"$TMP/dup.json"
expect_error dup 'repeats answer 1' "$MF" eval vqa "${D[@]}" --answers "$TMP/dup.json" --predictions "$TMP/e1.json"
jq '.[1] |= del(.question)' "$W/vqa_test.json" >"$TMP/badq.json"
expect_error badq "record 2" "$MF" eval vqa "${D[@]/$W\/vqa_test.json/$TMP/badq.json}" --answers "$W/answers.json" \
    --predictions "$TMP/e2.json"
jq '.[0] |= del(.answer)' "$W/vqa_test.json" >"$TMP/noscore.json"
expect_error noanswer "no 'answer'" "$MF" eval vqa "${D[@]/$W\/vqa_test.json/$TMP/noscore.json}" \
    --answers "$W/answers.json"
expect_error nodec 'decoder' "$MF" eval vqa --model "$SRC/data/models/blip-tiny-hf" --data "$W/vqa_test.json" \
    --images "$W" --predictions "$TMP/e3.json"
expect_error k0 'k-test' "$MF" eval vqa "${D[@]}" --k-test 0
expect_error qc 'question-clean' "$MF" eval vqa "${D[@]}" --question-clean albef
expect_error preddir 'nodir' "$MF" eval vqa "${D[@]}" --predictions "$TMP/nodir/p.json"
cp "$W/test/000000.png" "$TMP/outside.png"
jq '.[0].image = "../outside.png"' "$W/vqa_test.json" >"$W/out.json"
expect_error outside 'outside' "$MF" eval vqa --model "$M" --data "$W/out.json" --images "$W"
for e in e1 e2 e3; do check "$e: no predictions written" test ! -e "$TMP/$e.json"; done
check "no temporaries left" test "$(find "$TMP" -maxdepth 1 -name '.*' | wc -l)" -eq 0

# a record without answers is answered with --predictions and left out of the score
run_cmd partial "$MF" eval vqa "${D[@]/$W\/vqa_test.json/$TMP/noscore.json}" --answers "$W/answers.json" \
    --predictions "$TMP/pp.json" --json
check "unanswered record: exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "unanswered record: $((NQ - 1)) scored" test "$(jq .questions "$OUT")" -eq $((NQ - 1))
check "unanswered record: still predicted" test "$(jq length "$TMP/pp.json")" -eq "$NQ"

cli_finish
