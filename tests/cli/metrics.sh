#!/usr/bin/env bash
# tests/cli/metrics.sh: `multiflow metrics caption` end to end.
# Inputs and expected scores come from tests/golden/gen_capmetrics.py (tests/golden/capmetrics/):
# 30 raw-text predictions ("W3, w4 w6." : capital, comma, period, which the COCO tokenisation
# removes) against their references, plus 5 reference-only images that must be left out (and
# noted on stderr). Checks: --json has exactly images/bleu/rouge_l/cider, within 1e-6 of the
# numpy re-implementation of pycocoevalcap; the same scores with the references one record per
# caption (JSON Lines, the COCO layout) and with the predictions as JSON Lines; --quiet silences
# the note; the text output. Errors (non-zero exit, nothing on stdout, a message naming the
# problem): a predicted image without references, an image predicted twice, a caption list as a
# prediction, empty and malformed files, a missing file, missing options, an unknown task.
# The scorers themselves are tests/eval/test_capmetrics.c. Needs jq.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

G=$SRC/tests/golden/capmetrics
EXP=$G/cli_expected.json

# scores_match FILE LABEL: FILE (the --json output) has the expected keys and values.
scores_match() {
    local f=$1 l=$2
    if jq -e --slurpfile e "$EXP" '
        (keys == ["bleu", "cider", "images", "rouge_l"]) and .images == $e[0].images
        and (.bleu | length) == 4
        and ([range(4) as $k | (.bleu[$k] - $e[0].bleu[$k]) | fabs] | max) < 1e-6
        and ((.rouge_l - $e[0].rouge_l) | fabs) < 1e-6
        and ((.cider - $e[0].cider) | fabs) < 1e-6' "$f" >/dev/null 2>&1; then
        ok
    else
        fail "$l: scores differ from $EXP: $(head -c 400 "$f")"
    fi
}

run_cmd json "$MF" metrics caption --pred "$G/cli_pred.json" --refs "$G/cli_refs.json" --json
if [ "$RC" -ne 0 ]; then
    fail "metrics --json exited with $RC: $(cat "$ERR")"
else
    scores_match "$OUT" "array references"
    check "one line of JSON" test "$(wc -l <"$OUT")" -eq 1
    check "note about the 5 reference-only images" grep -q "5 of its 35 images have no prediction" "$ERR"
fi

run_cmd coco "$MF" metrics caption --pred "$G/cli_pred.json" --refs "$G/cli_refs_coco.jsonl" --json --quiet
if [ "$RC" -ne 0 ]; then
    fail "metrics with one record per caption exited with $RC: $(cat "$ERR")"
else
    scores_match "$OUT" "JSON Lines references, one record per caption"
    check "--quiet: nothing on stderr" test ! -s "$ERR"
fi

jq -c '.[]' "$G/cli_pred.json" >"$TMP/pred.jsonl"
run_cmd jsonl "$MF" metrics caption --pred "$TMP/pred.jsonl" --refs "$G/cli_refs.json" --json --quiet
if [ "$RC" -ne 0 ]; then
    fail "metrics with JSON Lines predictions exited with $RC: $(cat "$ERR")"
else
    scores_match "$OUT" "JSON Lines predictions"
fi

# The ids field of `multiflow caption --json` lines is ignored.
jq -c '.[] | . + {ids: [1, 2, 3]}' "$G/cli_pred.json" >"$TMP/pred_ids.jsonl"
run_cmd ids "$MF" metrics caption --pred "$TMP/pred_ids.jsonl" --refs "$G/cli_refs.json" --json --quiet
[ "$RC" -eq 0 ] && scores_match "$OUT" "caption --json lines" || fail "caption --json lines: exit $RC"

run_cmd text "$MF" metrics caption --pred "$G/cli_pred.json" --refs "$G/cli_refs.json" --quiet
check "text output exits 0" test "$RC" -eq 0
check "text output names the metrics" grep -q "CIDEr-D" "$OUT"
check "text output: 30 images" grep -q "on 30 images" "$OUT"

# ---- errors: non-zero, nothing on stdout ----
jq '. + [{"image": "val/999.png", "caption": "A dog."}]' "$G/cli_pred.json" >"$TMP/missing.json"
expect_error missing "val/999.png|has no reference caption" \
    "$MF" metrics caption --pred "$TMP/missing.json" --refs "$G/cli_refs.json" --json
jq '. + [{"image": "val/003.png", "caption": "Again."}]' "$G/cli_pred.json" >"$TMP/dup.json"
expect_error duplicate "val/003.png|already has a prediction|record 31|record 4" \
    "$MF" metrics caption --pred "$TMP/dup.json" --refs "$G/cli_refs.json" --json
jq '.[0].caption = ["one", "two"]' "$G/cli_pred.json" >"$TMP/list.json"
expect_error list "record 1|one caption string" \
    "$MF" metrics caption --pred "$TMP/list.json" --refs "$G/cli_refs.json" --json
: >"$TMP/empty.json"
expect_error empty_pred "empty.json|empty" "$MF" metrics caption --pred "$TMP/empty.json" --refs "$G/cli_refs.json"
expect_error empty_refs "empty.json|empty" "$MF" metrics caption --pred "$G/cli_pred.json" --refs "$TMP/empty.json"
echo '[]' >"$TMP/none.json"
expect_error no_records "none.json|no records" "$MF" metrics caption --pred "$TMP/none.json" --refs "$G/cli_refs.json"
printf '[{"image": "a.png", "caption": "x"' >"$TMP/bad.json"
expect_error malformed "bad.json|invalid JSON" "$MF" metrics caption --pred "$TMP/bad.json" --refs "$G/cli_refs.json"
expect_error nofile "$TMP/nope.json" "$MF" metrics caption --pred "$TMP/nope.json" --refs "$G/cli_refs.json"
expect_error norefs "--pred and --refs are required" "$MF" metrics caption --pred "$G/cli_pred.json"
expect_error notask "give a task" "$MF" metrics --pred "$G/cli_pred.json"
expect_error badtask "unknown task 'vqa2'" "$MF" metrics vqa2
expect_error operand "unexpected argument 'extra'" \
    "$MF" metrics caption --pred "$G/cli_pred.json" --refs "$G/cli_refs.json" extra

run_cmd help "$MF" metrics caption --help
check "--help exits 0" test "$RC" -eq 0
check "--help describes --pred" grep -q -- "--pred FILE" "$OUT"

cli_finish
