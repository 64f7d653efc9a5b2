#!/usr/bin/env bash
# multiflow grad end to end on the bundled tiny BLIP (original layout: decoder, queues, temp) and the
# bundled shapes data: the output holds exactly the prunable tensors (names, shapes, F32), finite
# values, --loss subsets reach the right towers and add up to the full gradient, hardest negatives
# are deterministic, the seed drives the sampled negatives, --momentum on/off, and bad input fails
# cleanly.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

M=$SRC/data/models/blip-tiny
MH=$SRC/data/models/blip-tiny-hf
D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes" --pairs 24 --batch 8 --quiet)

# st_json FILE: the JSON header of a safetensors file.
st_json() {
    local n
    n=$(st_header_len "$1")
    head -c $((8 + n)) "$1" | tail -c +9
}

# st_floats FILE NAME: the F32 values of tensor NAME, one per line.
st_floats() {
    local n b e
    n=$(st_header_len "$1")
    read -r b e < <(st_json "$1" | jq -r --arg k "$2" '.[$k].data_offsets | "\(.[0]) \(.[1])"')
    od -An -v -f -j $((8 + n + b)) -N $((e - b)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

# all_floats FILE: every tensor's values, in header order.
all_floats() {
    local k
    for k in $(st_json "$1" | jq -r 'to_entries | map(select(.key != "__metadata__")) | sort_by(.value.data_offsets[0]) | .[].key'); do
        st_floats "$1" "$k"
    done
}

run_cmd full "$MF" grad --model "$M" "${D[@]}" --itm-negatives hardest --out "$TMP/full.st"
check "grad exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "output written" test -s "$TMP/full.st"
check "summary names the three losses" grep -q "itc .* itm .* lm " "$OUT"

# exactly the prunable tensors, with the checkpoint's shapes, as F32
"$MF" inspect --model "$M" --json --tensors >"$TMP/inspect.json"
jq -c '[.tensors[] | select(.prunable) | {key: .name, value: .shape}] | from_entries' "$TMP/inspect.json" |
    jq -S . >"$TMP/want_shapes.json"
st_json "$TMP/full.st" | jq -S 'del(.__metadata__) | map_values(.shape)' >"$TMP/got_shapes.json"
check "every prunable tensor, nothing else, same shapes" cmp -s "$TMP/want_shapes.json" "$TMP/got_shapes.json"
n_prunable=$(jq 'length' "$TMP/want_shapes.json")
check "some prunable tensors ($n_prunable)" test "$n_prunable" -gt 20
check "all F32" test "$(st_json "$TMP/full.st" | jq '[del(.__metadata__)[] | select(.dtype != "F32")] | length')" -eq 0
check "metadata records the losses" test "$(st_json "$TMP/full.st" | jq -r '.__metadata__.losses')" = "itc,itm,lm"
all_floats "$TMP/full.st" >"$TMP/full.txt"
check "finite values" test "$(grep -ciE 'nan|inf' "$TMP/full.txt" || true)" -eq 0
# nonzero: stdin has a value != 0 (awk reads everything: no SIGPIPE under pipefail)
nonzero() { awk '$1 + 0 != 0 { nz = 1 } END { exit !nz }'; }
check "not all zero" nonzero <"$TMP/full.txt"

# every prunable tensor gets a non-zero gradient from the full objective
nz_all=1
for k in $(jq -r 'keys[]' "$TMP/want_shapes.json"); do
    if ! st_floats "$TMP/full.st" "$k" | nonzero; then
        fail "tensor $k has an all-zero gradient under itc+itm+lm"
        nz_all=0
    fi
done
[ $nz_all -eq 1 ] && ok

# hardest negatives: deterministic, also in a second process with the same threads
run_cmd full2 "$MF" grad --model "$M" "${D[@]}" --itm-negatives hardest --out "$TMP/full2.st"
check "second run exits 0" test "$RC" -eq 0
check "hardest: identical output" cmp -s "$TMP/full.st" "$TMP/full2.st"

# loss subsets: itc reaches no decoder or cross-attention tensor; lm reaches the decoder
for l in itc itm lm; do
    run_cmd "$l" "$MF" grad --model "$M" "${D[@]}" --itm-negatives hardest --loss "$l" --out "$TMP/$l.st"
    check "--loss $l exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    check "--loss $l metadata" test "$(st_json "$TMP/$l.st" | jq -r '.__metadata__.losses')" = "$l"
done
zero_tensor() { ! st_floats "$1" "$2" | nonzero; }
dec=$(jq -r 'keys[] | select(startswith("text_decoder."))' "$TMP/want_shapes.json" | head -n 1)
cross=$(jq -r 'keys[] | select(contains("crossattention"))' "$TMP/want_shapes.json" | head -n 1)
check "decoder tensor present ($dec)" test -n "$dec"
check "itc: $dec is zero" zero_tensor "$TMP/itc.st" "$dec"
check "itc: $cross is zero" zero_tensor "$TMP/itc.st" "$cross"
check "itm: $dec is zero" zero_tensor "$TMP/itm.st" "$dec"
nonzero_tensor() { st_floats "$1" "$2" | nonzero; }
check "lm: $dec is not zero" nonzero_tensor "$TMP/lm.st" "$dec"

# linearity: grad(itc,itm,lm) = grad(itc) + grad(itm) + grad(lm), within float32 rounding
for l in itc itm lm; do all_floats "$TMP/$l.st" >"$TMP/$l.txt"; done
rel=$(paste "$TMP/full.txt" "$TMP/itc.txt" "$TMP/itm.txt" "$TMP/lm.txt" |
    awk '{ d = $1 - ($2 + $3 + $4); if (d < 0) d = -d; if (d > md) md = d; a = $1 < 0 ? -$1 : $1; if (a > ma) ma = a }
         END { printf "%.3g", (ma > 0 ? md / ma : 1) }')
echo "linearity: max |full - (itc + itm + lm)| / max |full| = $rel"
check "full = itc + itm + lm (rel $rel <= 1e-4)" awk -v r="$rel" 'BEGIN { exit !(r <= 1e-4) }'

# sampled negatives: same seed, same bits; another seed, other negatives (ITM only)
run_cmd s1 "$MF" grad --model "$M" "${D[@]}" --loss itm --seed 1 --out "$TMP/s1.st"
check "sample seed 1 exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
run_cmd s1b "$MF" grad --model "$M" "${D[@]}" --loss itm --seed 1 --out "$TMP/s1b.st"
check "sample: same seed, identical output" cmp -s "$TMP/s1.st" "$TMP/s1b.st"
run_cmd s2 "$MF" grad --model "$M" "${D[@]}" --loss itm --seed 2 --out "$TMP/s2.st"
check "sample seed 2 exits 0" test "$RC" -eq 0
check "sample: seed 2 differs from seed 1" bash -c "! cmp -s '$TMP/s1.st' '$TMP/s2.st'"
check "metadata records the seed" test "$(st_json "$TMP/s2.st" | jq -r '.__metadata__.seed')" = "2"

# JSON summary and the Hugging Face layout (no decoder: itc+itm by default)
run_cmd hf "$MF" grad --model "$MH" "${D[@]}" --itm-negatives hardest --json --out "$TMP/hf.st"
check "hf exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "hf: default losses itc,itm" test "$(jq -r '.mean_loss | keys | join(",")' "$OUT")" = "itc,itm"
check "hf: 3 batches" test "$(jq '.batches' "$OUT")" -eq 3
"$MF" inspect --model "$MH" --json --tensors | jq '[.tensors[] | select(.prunable)] | length' >"$TMP/hf_n"
check "hf: every prunable tensor" test "$(st_json "$TMP/hf.st" | jq 'del(.__metadata__) | length')" -eq "$(cat "$TMP/hf_n")"

# momentum encoders and queues: on by default for the original layout's *_m copies; off is the
# online-feature approximation (other gradients); a checkpoint without copies is unaffected; the
# evolving state gives the same bytes for any thread count
check "metadata: momentum on" test "$(st_json "$TMP/full.st" | jq -r '.__metadata__.momentum')" = "on"
run_cmd moff "$MF" grad --model "$M" "${D[@]}" --itm-negatives hardest --momentum off --out "$TMP/moff.st"
check "--momentum off exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "--momentum off metadata" test "$(st_json "$TMP/moff.st" | jq -r '.__metadata__.momentum')" = "off"
check "--momentum off: other gradients on blip-tiny" bash -c "! cmp -s '$TMP/full.st' '$TMP/moff.st'"
run_cmd mon3 "$MF" grad --model "$M" "${D[@]}" --itm-negatives hardest --momentum on --threads 3 --out "$TMP/mon3.st"
check "--threads 3 exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
check "momentum on: --threads 3 gives the same bytes" cmp -s "$TMP/full.st" "$TMP/mon3.st"
run_cmd hfoff "$MF" grad --model "$MH" "${D[@]}" --itm-negatives hardest --momentum off --out "$TMP/hfoff.st"
check "hf --momentum off exits 0" test "$RC" -eq 0
check "hf: no momentum copies (metadata none)" test "$(st_json "$TMP/hf.st" | jq -r '.__metadata__.momentum')" = "none"
check "hf: same gradients with --momentum on and off" cmp -s <(all_floats "$TMP/hf.st") <(all_floats "$TMP/hfoff.st")

# errors: clear message, non-zero exit, nothing written
expect_error lm_no_decoder "needs a text decoder" \
    "$MF" grad --model "$MH" "${D[@]}" --loss lm --out "$TMP/e1.st"
check "no output after an error" test ! -e "$TMP/e1.st"
expect_error batch1 "at least 2 pairs" \
    "$MF" grad --model "$M" "${D[@]}" --batch 1 --out "$TMP/e2.st"
expect_error last_batch1 "last batch has 1 pair" \
    "$MF" grad --model "$M" "${D[@]}" --pairs 9 --out "$TMP/e3.st"
check "no output after an error" test ! -e "$TMP/e3.st"
expect_error bad_loss "unknown loss 'mlm'" \
    "$MF" grad --model "$M" "${D[@]}" --loss itc,mlm --out "$TMP/e4.st"
expect_error bad_neg "--itm-negatives" \
    "$MF" grad --model "$M" "${D[@]}" --itm-negatives hard --out "$TMP/e5.st"
expect_error bad_momentum "--momentum" \
    "$MF" grad --model "$M" "${D[@]}" --momentum maybe --out "$TMP/e6.st"
check "no output after an error" test ! -e "$TMP/e6.st"
expect_error exists "exists" \
    "$MF" grad --model "$M" "${D[@]}" --out "$TMP/full.st"
check "existing output untouched" cmp -s "$TMP/full.st" "$TMP/full2.st"
run_cmd force "$MF" grad --model "$M" "${D[@]}" --loss itc --out "$TMP/full.st" --force
check "--force replaces it" bash -c "test $RC -eq 0 && ! cmp -s '$TMP/full.st' '$TMP/full2.st'"
# --loss lm alone with a single-pair batch is fine (no in-batch negatives needed)
run_cmd lm1 "$MF" grad --model "$M" "${D[@]}" --loss lm --batch 1 --pairs 3 --out "$TMP/lm1.st"
check "lm with --batch 1 exits 0 ($(cat "$ERR"))" test "$RC" -eq 0

cli_finish
