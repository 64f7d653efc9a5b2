#!/usr/bin/env bash
# tests/cli/vocab.sh: vocabulary and embeddings agree exactly (issue 9, item 3), and verbs that do
# not tokenise need no vocabulary.
#
# vocab.txt + BLIP's added tokens ([DEC], [ENC]) must equal the word-embedding rows: a vocabulary one
# line shorter (which used to move [DEC]/[ENC] onto ordinary word rows), one line longer, or with a
# repeated token is an error naming the file and the relation, in both layouts, for a verb that
# tokenises (score) and for inspect; so is config.json's vocab_size disagreeing with the rows. A
# vocabulary that already lists [DEC] and [ENC] is fine. Without any vocab.txt, inspect, data-free
# prune and apply work on an original-layout model file and directory, while score, eval and a
# prune with calibration data fail asking for --vocab.
# Needs jq. Usage: bash tests/cli/vocab.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

ORIG=$SRC/data/models/blip-tiny
HF=$SRC/data/models/blip-tiny-hf
SHAPES=$SRC/data/shapes
IMG=$SHAPES/images/0001.png
D=(--data "$SHAPES/annotations.json" --images "$SHAPES" --pairs 8 --quiet)

# with_vocab NAME MODEL: $TMP/NAME, MODEL's files; its vocab.txt is then written by the caller.
with_vocab() {
    copy_model "$(basename "$2")" "$TMP/$1"
    rm -f "$TMP/$1/vocab.txt"
}

for model in blip-tiny blip-tiny-hf; do
    M=$SRC/data/models/$model
    with_vocab "$model.short" "$M"
    head -n -1 "$M/vocab.txt" >"$TMP/$model.short/vocab.txt"
    with_vocab "$model.long" "$M"
    { cat "$M/vocab.txt"; echo "extraword"; } >"$TMP/$model.long/vocab.txt"
    with_vocab "$model.dup" "$M"
    { head -n -1 "$M/vocab.txt"; echo "[CLS]"; } >"$TMP/$model.dup/vocab.txt"
    for verb in score inspect; do
        if [ $verb = score ]; then args=(score --image "$IMG" --text "a red circle"); else args=(inspect); fi
        expect_error "$model.short.$verb" "$TMP/$model.short/vocab.txt|104 tokens + 2 added|107 rows|shorter" \
            "$MF" "${args[@]}" --model "$TMP/$model.short"
        expect_error "$model.long.$verb" "$TMP/$model.long/vocab.txt|106 tokens + 2 added|107 rows|longer" \
            "$MF" "${args[@]}" --model "$TMP/$model.long"
        expect_error "$model.dup.$verb" "$TMP/$model.dup/vocab.txt|line 105 repeats the token '[CLS]' of line" \
            "$MF" "${args[@]}" --model "$TMP/$model.dup"
    done
    # --vocab FILE is held to the same rule
    expect_error "$model.short.option" "104 tokens + 2 added|shorter" \
        "$MF" score --model "$M" --vocab "$TMP/$model.short/vocab.txt" --image "$IMG" --text "a red circle"
    # a vocabulary that already lists BLIP's added tokens
    with_vocab "$model.added" "$M"
    { cat "$M/vocab.txt"; printf '[DEC]\n[ENC]\n'; } >"$TMP/$model.added/vocab.txt"
    run_cmd "$model.added" "$MF" score --model "$TMP/$model.added" --image "$IMG" --text "a red circle"
    check "$model: [DEC]/[ENC] already in vocab.txt ($(head -c 300 "$ERR"))" test "$RC" -eq 0
    run_cmd "$model.ref" "$MF" score --model "$M" --image "$IMG" --text "a red circle"
    check "$model: same scores with [DEC]/[ENC] listed" cmp -s "$OUT" "$TMP/$model.added.out"
done

# config.json vocab_size against the embedding rows
copy_model blip-tiny-hf "$TMP/cfgvocab"
jq '.text_config.vocab_size = 108' "$HF/config.json" >"$TMP/cfgvocab/config.json"
expect_error hf_config_vocab "config.json|vocab_size is 108|text_encoder.embeddings.word_embeddings.weight|107 rows" \
    "$MF" inspect --model "$TMP/cfgvocab"

# no vocabulary at all: verbs that never tokenise work, the others ask for one
mkdir -p "$TMP/novocab"
cp "$ORIG/model.safetensors" "$TMP/novocab/"
run_cmd clean_prune "$MF" prune --model "$ORIG" --method omp --sparsity 50 --out "$TMP/clean" --quiet
check "clean prune ($(cat "$ERR"))" test "$RC" -eq 0
for m in "$TMP/novocab/model.safetensors" "$TMP/novocab"; do
    tag=$(basename "$m")
    run_cmd "nv.inspect.$tag" "$MF" inspect --model "$m"
    check "inspect without vocab.txt ($tag: $(head -c 300 "$ERR"))" test "$RC" -eq 0
    run_cmd "nv.prune.$tag" "$MF" prune --model "$m" --method omp --sparsity 50 --out "$TMP/nvp.$tag" --quiet
    check "data-free prune without vocab.txt ($tag: $(head -c 300 "$ERR"))" test "$RC" -eq 0
    check "same pruned weights without vocab.txt ($tag)" \
        cmp -s "$TMP/nvp.$tag/omp-50/model.safetensors" "$TMP/clean/omp-50/model.safetensors"
    run_cmd "nv.apply.$tag" "$MF" apply --model "$m" --masks "$TMP/clean/omp-50/masks.safetensors" \
        --out "$TMP/nva.$tag" --quiet
    check "apply without vocab.txt ($tag: $(head -c 300 "$ERR"))" test "$RC" -eq 0
done
expect_error nv.score "vocab.txt|--vocab" "$MF" score --model "$TMP/novocab" --image "$IMG" --text "a red circle"
expect_error nv.eval "vocab.txt|--vocab" "$MF" eval retrieval --model "$TMP/novocab" "${D[@]}"
expect_error nv.prune_data "vocab.txt|--vocab" \
    "$MF" prune --model "$TMP/novocab" "${D[@]}" --method multiflow --sparsity 50 --out "$TMP/nvpd"
check "no output from the failed prune" test ! -e "$TMP/nvpd"
# an explicit --vocab that does not exist is still an error for a verb that needs none
expect_error nv.inspect_option "$TMP/none.txt" "$MF" inspect --model "$TMP/novocab" --vocab "$TMP/none.txt"

cli_finish
