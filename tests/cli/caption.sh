#!/usr/bin/env bash
# tests/cli/caption.sh: `multiflow caption` end to end.
#
# Golden: the bundled original-layout model (data/models/blip-tiny) on the first 6 images of
# data/shapes prints, with --json, exactly the ids and captions of
# tests/golden/generate/cli_blip-tiny_shapes.json (tests/golden/gen_generate.py: blip_ref's
# transformers-4.15 greedy and beam search in float64, images through the reference preprocessing),
# for the default beam search (3 beams, max 20, min 5, prompt "a picture of ") and --beams 1.
# Also: one line per distinct image, --threads 1 and 2 and --batch 1 and 4 print identical bytes,
# --image prints the caption of that image alone, plain output is image<TAB>caption, and the
# failure cases exit non-zero with nothing on stdout.
# Needs jq. Usage: bash tests/cli/caption.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

SHAPES=$SRC/data/shapes
M=$SRC/data/models/blip-tiny
GOLD=$SRC/tests/golden/generate/cli_blip-tiny_shapes.json
N=$(jq '.beam | length' "$GOLD")
# --pairs covering the first N records (one distinct image each in data/shapes)
PAIRS=$(jq --argjson n "$N" '[.[:$n][] | .caption | if type == "array" then length else 1 end] | add' \
    "$SHAPES/annotations.json")

run() { # run NAME ARGS...: caption on the shapes pairs, must succeed
    local name=$1
    shift
    run_cmd "$name" "$MF" caption --model "$M" --data "$SHAPES/annotations.json" --images "$SHAPES" --pairs "$PAIRS" \
        --quiet "$@"
    if [ "$RC" -ne 0 ]; then
        fail "$name: exit status $RC: $(cat "$ERR")"
        return 1
    fi
}

# compare GOT.jsonl LABEL: every line equals the golden's entry (image, caption, ids)
compare() {
    jq -n -r --slurpfile got "$1" --slurpfile g "$GOLD" --arg k "$2" '
        $g[0][$k] as $w
        | if ($got | length) != ($w | length) then "\($k): \($got | length) lines, golden has \($w | length)"
          else range(0; $w | length) as $i | $got[$i] as $a | $w[$i] as $b
            | if ($a | keys) != ["caption", "ids", "image"] then "\($k) line \($i): keys \($a | keys)"
              elif $a.image != $b.image then "\($k) line \($i): image \($a.image), golden \($b.image)"
              elif $a.ids != $b.ids then "\($k) \($a.image): ids \($a.ids), golden \($b.ids)"
              elif $a.caption != $b.caption then "\($k) \($a.image): caption \($a.caption|tojson), golden \($b.caption|tojson)"
              else empty end
          end'
}

if run beam --json --threads 1; then
    cp "$OUT" "$TMP/beam.jsonl"
    msg=$(compare "$TMP/beam.jsonl" beam)
    if [ -n "$msg" ]; then fail "$msg"; else ok; fi
fi
if run beam_t2 --json --threads 2 --batch 4; then
    check "beam search: --threads 2 --batch 4 prints the same bytes" cmp -s "$OUT" "$TMP/beam.jsonl"
fi
if run greedy --json --beams 1 --threads 2 --batch 1; then
    msg=$(compare "$OUT" greedy)
    if [ -n "$msg" ]; then fail "$msg"; else ok; fi
fi

# plain text: image<TAB>caption per image
if run plain; then
    want=$(jq -r '.[] | "\(.image)\t\(.caption)"' <(jq '.beam' "$GOLD"))
    check "plain output is image<TAB>caption" test "$(cat "$OUT")" = "$want"
fi

# one image: its caption alone
first=$(jq -r '.beam[0].image' "$GOLD")
run_cmd single "$MF" caption --model "$M" --image "$SHAPES/$first" --quiet
check "--image exits 0" test "$RC" -eq 0
check "--image prints the caption alone" test "$(cat "$OUT")" = "$(jq -r '.beam[0].caption' "$GOLD")"
run_cmd single_json "$MF" caption --model "$M" --image "$SHAPES/$first" --json --quiet --beams 1
check "--image --json: image as given, greedy ids" \
    test "$(jq -c '[.image, .ids]' "$OUT")" = "$(jq -c --arg p "$SHAPES/$first" '[$p, .greedy[0].ids]' "$GOLD")"

# the prompt changes what is generated; --prompt '' is no prompt
run_cmd noprompt "$MF" caption --model "$M" --image "$SHAPES/$first" --json --quiet --prompt ''
check "--prompt '' runs" test "$RC" -eq 0
check "--prompt '' differs from the default prompt" test "$(jq -c .ids "$OUT")" != "$(jq -c '.beam[0].ids' "$GOLD")"

# failures: non-zero exit, empty stdout, a message naming the problem
expect_error no_decoder "blip-tiny-hf|decoder" "$MF" caption --model "$SRC/data/models/blip-tiny-hf" --image "$SHAPES/$first"
expect_error max_len_prompt "prompt|max" "$MF" caption --model "$M" --image "$SHAPES/$first" --max-len 4
expect_error max_len_positions "maximum length 65" "$MF" caption --model "$M" --image "$SHAPES/$first" --max-len 65
expect_error beams_zero "beams" "$MF" caption --model "$M" --image "$SHAPES/$first" --beams 0
expect_error beams_many "beams" "$MF" caption --model "$M" --image "$SHAPES/$first" --beams 65
expect_error min_len_neg "min-len" "$MF" caption --model "$M" --image "$SHAPES/$first" --min-len -1
expect_error image_and_data "exclusive" "$MF" caption --model "$M" --image "$SHAPES/$first" --data "$SHAPES/annotations.json"
expect_error no_input "--image" "$MF" caption --model "$M"
expect_error no_model "--model" "$MF" caption --image "$SHAPES/$first"
expect_error missing_image "$TMP/nope.png" "$MF" caption --model "$M" --image "$TMP/nope.png"
# a broken image halfway through the data set: no partial output
mkdir -p "$TMP/imgs"
cp "$SHAPES/$first" "$TMP/imgs/a.png"
printf 'not a png' >"$TMP/imgs/b.png"
printf '[{"image": "a.png", "caption": "x"}, {"image": "b.png", "caption": "y"}]\n' >"$TMP/ann.json"
expect_error bad_image_in_data "b.png" "$MF" caption --model "$M" --data "$TMP/ann.json" --images "$TMP/imgs" --batch 1
expect_error bad_data "$TMP/nope.json" "$MF" caption --model "$M" --data "$TMP/nope.json" --images "$TMP"
expect_error unknown_option "unknown option" "$MF" caption --model "$M" --image "$SHAPES/$first" --beamz 2

cli_finish
