#!/usr/bin/env bash
# tests/cli/score_golden.sh: `multiflow score` end to end against the PyTorch reference.
#
# For both bundled models (data/models/blip-tiny, blip-tiny-hf) and the first 6 pairs of data/shapes
# with --caption-clean none, every itc/itm/lm equals tests/golden/shapes_score_<model>.json
# (tests/golden/gen_blip.py, float64 torch) within 1e-4 relative (+1e-6 absolute, for values near 0).
# Also: single-pair mode (--image/--text) reproduces the first line, --threads 1 and 2 print
# byte-identical output, --batch does not change results, and fields follow the towers (no lm for
# the HF retrieval model).
# Needs jq (apt-get install jq). Usage: bash tests/cli/score_golden.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

SHAPES=$SRC/data/shapes
RTOL=1e-4
ATOL=1e-6

# compare_golden GOT.jsonl GOLDEN.json LABEL: prints one line per mismatch, nothing when equal.
compare_golden() {
    jq -n -r --slurpfile got "$1" --slurpfile want "$2" --argjson rtol $RTOL --argjson atol $ATOL --arg lbl "$3" '
        ($want[0]) as $w
        | if ($got | length) != ($w | length) then
            "\($lbl): \($got | length) pairs printed, golden has \($w | length)"
          else
            range(0; $w | length) as $i
            | $got[$i] as $g | $w[$i] as $r
            | ( if ($g.image | endswith($r.image) | not) then "\($lbl) pair \($i): image \($g.image), golden \($r.image)" else empty end ),
              ( if $g.caption != $r.caption then "\($lbl) pair \($i): caption \($g.caption|tojson), golden \($r.caption|tojson)" else empty end ),
              ( ["itc", "itm", "lm"][] as $k
                | if ($r[$k] == null) and ($g[$k] != null) then "\($lbl) pair \($i): \($k) printed but the golden has none"
                  elif $r[$k] == null then empty
                  elif $g[$k] == null then "\($lbl) pair \($i): \($k) missing"
                  elif (($g[$k] - $r[$k]) | fabs) > ($rtol * ($r[$k] | fabs) + $atol) then
                      "\($lbl) pair \($i): \($k) = \($g[$k]), golden \($r[$k]) (abs diff \(($g[$k] - $r[$k]) | fabs))"
                  else empty end )
          end'
}

for model in blip-tiny blip-tiny-hf; do
    M=$SRC/data/models/$model
    GOLD=$SRC/tests/golden/shapes_score_$model.json
    run_cmd "$model.t1" "$MF" score --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --pairs 6 --caption-clean none --threads 1 --quiet
    if [ "$RC" -ne 0 ]; then
        fail "$model: score exited with $RC: $(cat "$ERR")"
        continue
    fi
    check "$model: 6 lines of output" test "$(wc -l <"$OUT")" -eq 6
    diffs=$(compare_golden "$OUT" "$GOLD" "$model") || diffs="jq failed on the output"
    if [ -n "$diffs" ]; then
        fail "$model: scores differ from $GOLD:"
        echo "$diffs" | sed 's/^/    /' >&2
    else
        ok
        echo "ok: $model: 6 pairs match the golden within rtol $RTOL"
    fi
    # Towers decide the fields: the original pretraining layout has a decoder, HF retrieval has not.
    if [ "$model" = blip-tiny ]; then
        check "$model: every line has itc, itm, lm" \
            jq -e -s 'all(.[]; has("itc") and has("itm") and has("lm"))' "$OUT" >/dev/null
    else
        check "$model: itc and itm but no lm" \
            jq -e -s 'all(.[]; has("itc") and has("itm") and (has("lm") | not))' "$OUT" >/dev/null
    fi
    check "$model: itm is a probability" jq -e -s 'all(.[]; .itm >= 0 and .itm <= 1)' "$OUT" >/dev/null

    # Same bits with 2 threads and with other batch sizes (rows are split, never reduced across threads).
    run_cmd "$model.t2" "$MF" score --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --pairs 6 --caption-clean none --threads 2 --quiet
    if [ "$RC" -ne 0 ] || ! cmp -s "$TMP/$model.t1.out" "$OUT"; then
        fail "$model: --threads 2 output differs from --threads 1 (exit $RC)"
        diff "$TMP/$model.t1.out" "$OUT" | head -6 >&2 || true
    else
        ok
    fi
    run_cmd "$model.b1" "$MF" score --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --pairs 6 --caption-clean none --threads 2 --batch 1 --quiet
    diffs=$([ "$RC" -eq 0 ] && compare_golden "$OUT" "$GOLD" "$model --batch 1" || echo "exit $RC")
    if [ -n "$diffs" ]; then fail "$model: --batch 1 differs from the golden: $diffs"; else ok; fi
    run_cmd "$model.b5" "$MF" score --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" \
        --pairs 6 --caption-clean none --threads 1 --batch 5 --quiet
    diffs=$([ "$RC" -eq 0 ] && compare_golden "$OUT" "$GOLD" "$model --batch 5" || echo "exit $RC")
    if [ -n "$diffs" ]; then fail "$model: --batch 5 (a short last batch) differs from the golden: $diffs"; else ok; fi

    # Single-pair mode on the first pair of the golden.
    cap=$(jq -r '.[0].caption' "$GOLD")
    img=$SHAPES/$(jq -r '.[0].image' "$GOLD")
    run_cmd "$model.one" "$MF" score --model "$M" --image "$img" --text "$cap" --caption-clean none --threads 1 --quiet
    if [ "$RC" -ne 0 ]; then
        fail "$model: single-pair score exited with $RC: $(cat "$ERR")"
    else
        check "$model: single-pair mode prints one line" test "$(wc -l <"$OUT")" -eq 1
        jq '[.[0]]' "$GOLD" >"$TMP/gold1.json"
        diffs=$(compare_golden "$OUT" "$TMP/gold1.json" "$model --image/--text") || diffs="jq failed on the output"
        if [ -n "$diffs" ]; then fail "$model: single pair: $diffs"; else ok; fi
        check "$model: single pair names the image and caption" \
            jq -e --arg img "$img" --arg cap "$cap" '.image == $img and .caption == $cap' "$OUT" >/dev/null
    fi
done

# Default caption cleaning of the original layout is BLIP's (lower-case, strip punctuation); the
# shapes captions end with '.', so the default run must differ from the uncleaned golden in lm.
run_cmd orig.default "$MF" score --model "$SRC/data/models/blip-tiny" --data "$SHAPES/annotations.json" \
    --images "$SHAPES" --pairs 1 --threads 1 --quiet
if [ "$RC" -ne 0 ]; then
    fail "blip-tiny default cleaning: exit $RC: $(cat "$ERR")"
else
    check "blip-tiny: default (blip) caption cleaning changes lm" \
        jq -e --slurpfile w "$SRC/tests/golden/shapes_score_blip-tiny.json" '.lm != $w[0][0].lm' "$OUT" >/dev/null
fi

cli_finish
