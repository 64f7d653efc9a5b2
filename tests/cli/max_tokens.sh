#!/usr/bin/env bash
# --max-tokens defaults to min(35, the model's text positions) (issue 8): copies of both bundled
# models cut to 32 text positions (every *position_embeddings.weight keeps its first 32 rows;
# config.json says 32) run score, grad, eval and finetune without --max-tokens, with the same
# results as --max-tokens 32; an explicit value above the positions is an error naming them; the
# 64-position models keep 35.
set -euo pipefail
. "$(dirname "$0")/lib/common.bash"
cli_setup "$@"
need_jq

# st_cut_rows IN OUT REGEX ROWS: IN with every tensor whose name matches REGEX cut to its first
# ROWS rows (data offsets recomputed, the other tensors' bytes copied unchanged).
st_cut_rows() {
    local in=$1 out=$2 re=$3 rows=$4 n hdr pad b len
    n=$(st_header_len "$in")
    st_json "$in" | jq -r --arg re "$re" --argjson rows "$rows" '
        (if has("__metadata__") then {__metadata__} else {} end) as $meta
        | (del(.__metadata__) | to_entries | sort_by(.value.data_offsets[0]))
        | reduce .[] as $e ({off: 0, hdr: $meta, plan: []};
            ($e.value.data_offsets[1] - $e.value.data_offsets[0]) as $len
            | ($e.key | test($re)) as $cut
            | (if $cut then $len / $e.value.shape[0] * $rows else $len end) as $nl
            | .off as $o
            | .hdr[$e.key] = ($e.value + {shape: (if $cut then [$rows] + $e.value.shape[1:] else $e.value.shape end),
                                          data_offsets: [$o, $o + $nl]})
            | .plan += ["\($e.value.data_offsets[0]) \($nl)"]
            | .off += $nl)
        | (.hdr | tojson), .plan[]' >"$TMP/.cut"
    hdr=$(head -n 1 "$TMP/.cut")
    pad=$(((8 - ${#hdr} % 8) % 8))
    hdr="$hdr$(printf '%*s' "$pad" '')"
    head -c 8 /dev/zero >"$out"
    st_set_header_len "$out" "${#hdr}"
    printf '%s' "$hdr" >>"$out"
    tail -n +2 "$TMP/.cut" | while read -r b len; do
        dd if="$in" iflag=skip_bytes,count_bytes skip=$((8 + n + b)) count="$len" bs=65536 status=none >>"$out"
    done
}

D=(--data "$SRC/data/shapes/annotations.json" --images "$SRC/data/shapes" --pairs 8 --batch 4 --threads 2 --quiet)
for model in blip-tiny-hf blip-tiny; do
    M=$TMP/$model-32
    copy_model "$model" "$M"
    st_cut_rows "$SRC/data/models/$model/model.safetensors" "$M/model.safetensors" 'position_embeddings\.weight$' 32
    if [ -f "$M/config.json" ]; then
        jq '.text_config.max_position_embeddings = 32' "$SRC/data/models/$model/config.json" >"$M/config.json"
    fi
    run_cmd "inspect-$model" "$MF" inspect --model "$M" --json
    check "$model-32: inspect exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    check "$model-32: 32 text positions" test "$(jq '.text.max_positions' "$OUT")" -eq 32
    check "$model-32: default max tokens 32" test "$(jq '.tokens.max_tokens' "$OUT")" -eq 32
    run_cmd "inspect64-$model" "$MF" inspect --model "$SRC/data/models/$model" --json
    check "$model: 64 positions keep the default 35" test "$(jq '.tokens.max_tokens' "$OUT")" -eq 35

    # the default runs, and is --max-tokens 32
    run_cmd "score-$model" "$MF" score --model "$M" "${D[@]}"
    check "$model-32: score without --max-tokens exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    check "$model-32: score prints 8 pairs" test "$(wc -l <"$OUT")" -eq 8
    run_cmd "score32-$model" "$MF" score --model "$M" "${D[@]}" --max-tokens 32
    check "$model-32: --max-tokens 32 exits 0" test "$RC" -eq 0
    check "$model-32: default == --max-tokens 32" cmp -s "$TMP/score-$model.out" "$TMP/score32-$model.out"
    run_cmd "grad-$model" "$MF" grad --model "$M" "${D[@]}" --out "$TMP/$model-grad.st"
    check "$model-32: grad without --max-tokens exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    run_cmd "eval-$model" "$MF" eval retrieval --model "$M" "${D[@]}" --k 4 --json
    check "$model-32: eval without --max-tokens exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    run_cmd "prune-$model" "$MF" prune --model "$M" "${D[@]}" --method multiflow,snip --sparsity 50 \
        --out "$TMP/$model-prune"
    check "$model-32: prune multiflow,snip without --max-tokens exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    check "$model-32: report records max_tokens 32" \
        test "$(jq '.settings.max_tokens' "$TMP/$model-prune/snip-50/report.json")" -eq 32
    if [ "$model" = blip-tiny-hf ]; then
        run_cmd "ft-$model" "$MF" finetune --model "$M" "${D[@]}" --task retrieval --steps 1 --out "$TMP/$model-ft"
        check "$model-32: finetune without --max-tokens exits 0 ($(cat "$ERR"))" test "$RC" -eq 0
    fi

    # an explicit value above the positions stays an error, before any work
    expect_error "score-33-$model" "max tokens 33|32 text positions" "$MF" score --model "$M" "${D[@]}" --max-tokens 33
    expect_error "grad-33-$model" "max tokens 33|32 text positions" \
        "$MF" grad --model "$M" "${D[@]}" --max-tokens 33 --out "$TMP/$model-33.st"
    check "$model-32: grad --max-tokens 33 writes nothing" test ! -e "$TMP/$model-33.st"
    expect_error "prune-33-$model" "max tokens 33|32 text positions" \
        "$MF" prune --model "$M" "${D[@]}" --max-tokens 33 --method snip --sparsity 50 --out "$TMP/$model-33"
    check "$model-32: prune --max-tokens 33 writes nothing" test ! -e "$TMP/$model-33"
done

cli_finish
