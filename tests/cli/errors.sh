#!/usr/bin/env bash
# tests/cli/errors.sh: one case per failure class of DESIGN.md "Failure behaviour". Each case asserts
# a non-zero exit (and no crash), EMPTY stdout (no partial output), and a stderr message that names
# the offending file and, where relevant, the tensor or field.
#
# Broken checkpoints are made by byte surgery on copies of data/models/blip-tiny-hf/model.safetensors:
# the JSON header (at offset 8) is edited with equal-length sed replacements (lib/common.bash
# st_patch), so every data offset stays valid and exactly one thing is wrong per case.
# Does not: test pruning verbs (sparsity ranges, output directories) -- they do not exist yet.
# Usage: bash tests/cli/errors.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"

HF=$SRC/data/models/blip-tiny-hf
ORIG=$SRC/data/models/blip-tiny
SHAPES=$SRC/data/shapes
ST=$HF/model.safetensors

# A copy of the HF model directory whose model.safetensors is replaced by the caller.
mkhf() {
    mkdir -p "$TMP/$1"
    cp "$HF/config.json" "$HF/vocab.txt" "$TMP/$1/"
}

# --- safetensors container -------------------------------------------------------------------
mkhf trunc
head -c 500000 "$ST" >"$TMP/trunc/model.safetensors"
expect_error truncated_safetensors "$TMP/trunc/model.safetensors|exceed" \
    "$MF" inspect --model "$TMP/trunc"

mkhf trunc8
head -c 5 "$ST" >"$TMP/trunc8/model.safetensors"
expect_error safetensors_shorter_than_length_field "$TMP/trunc8/model.safetensors" \
    "$MF" inspect --model "$TMP/trunc8"

mkhf hlen
cp "$ST" "$TMP/hlen/model.safetensors"
st_set_header_len "$TMP/hlen/model.safetensors" 99999999
expect_error header_length_past_eof "$TMP/hlen/model.safetensors|99999999" \
    "$MF" inspect --model "$TMP/hlen"

mkhf hlen_huge
cp "$ST" "$TMP/hlen_huge/model.safetensors"
st_set_header_len "$TMP/hlen_huge/model.safetensors" 9223372036854775807
expect_error header_length_huge "$TMP/hlen_huge/model.safetensors" \
    "$MF" inspect --model "$TMP/hlen_huge"

mkhf badjson
st_patch "$ST" "$TMP/badjson/model.safetensors" 's/"__metadata__":/"__metadata__" /'
expect_error malformed_header_json "$TMP/badjson/model.safetensors|JSON" \
    "$MF" inspect --model "$TMP/badjson"

mkhf dtype
st_patch "$ST" "$TMP/dtype/model.safetensors" 's/"itm_head.weight":{"dtype":"F32"/"itm_head.weight":{"dtype":"F99"/'
expect_error unknown_dtype "$TMP/dtype/model.safetensors|itm_head.weight|F99" \
    "$MF" inspect --model "$TMP/dtype"

mkhf intdtype
st_patch "$ST" "$TMP/intdtype/model.safetensors" \
    's/"vision_model.encoder.layers.0.mlp.fc1.weight":{"dtype":"F32"/"vision_model.encoder.layers.0.mlp.fc1.weight":{"dtype":"I32"/'
expect_error integer_weight "$TMP/intdtype|vision_model.encoder.layers.0.mlp.fc1.weight|I32" \
    "$MF" inspect --model "$TMP/intdtype"

mkhf offsets
st_patch "$ST" "$TMP/offsets/model.safetensors" 's/\[933120,933128\]/[933120,999128]/'
expect_error data_offsets_out_of_range "$TMP/offsets/model.safetensors|itm_head.bias|999128" \
    "$MF" inspect --model "$TMP/offsets"

mkhf offsets_size
st_patch "$ST" "$TMP/offsets_size/model.safetensors" 's/\[933120,933128\]/[933120,933124]/'
expect_error data_offsets_wrong_size "$TMP/offsets_size/model.safetensors|itm_head.bias" \
    "$MF" inspect --model "$TMP/offsets_size"

# --- architecture: tensors and shapes ----------------------------------------------------------
mkhf missing_layer
st_patch "$ST" "$TMP/missing_layer/model.safetensors" \
    's/"vision_model.encoder.layers.1.mlp.fc2.weight"/"vision_model.encoder.layers.1.mlp.fc2.weighs"/'
expect_error missing_required_tensor "$TMP/missing_layer|vision_model.encoder.layers.1.mlp.fc2.weight|missing" \
    "$MF" inspect --model "$TMP/missing_layer"

# itm_head.bias is present, itm_head.weight is not: a half-present head of the declared
# BlipForImageTextRetrieval must be an error, not a model silently loaded without ITM.
mkhf missing_head
st_patch "$ST" "$TMP/missing_head/model.safetensors" 's/"itm_head.weight"/"itm_heae.weight"/'
expect_error missing_itm_head_weight "$TMP/missing_head|itm_head.weight" \
    "$MF" inspect --model "$TMP/missing_head"

mkhf missing_proj
st_patch "$ST" "$TMP/missing_proj/model.safetensors" 's/"text_proj.weight"/"text_proe.weight"/'
expect_error missing_text_proj_weight "$TMP/missing_proj|text_proj.weight" \
    "$MF" inspect --model "$TMP/missing_proj"

# A whole head absent: the architecture config.json declares requires it.
mkhf no_itm
st_patch "$ST" "$TMP/no_itm/model.safetensors" 's/"itm_head\./"itx_head./g'
expect_error missing_whole_itm_head "$TMP/no_itm/config.json|BlipForImageTextRetrieval|ITM head" \
    "$MF" inspect --model "$TMP/no_itm"

mkdir -p "$TMP/orig_missing"
cp "$ORIG/vocab.txt" "$TMP/orig_missing/"
st_patch "$ORIG/model.safetensors" "$TMP/orig_missing/model.safetensors" \
    's/"text_encoder.encoder.layer.1.output.dense.weight"/"text_encoder.encoder.layer.1.output.dense.weighs"/'
expect_error orig_missing_required_tensor "$TMP/orig_missing|text_encoder.encoder.layer.1.output.dense.weight" \
    "$MF" inspect --model "$TMP/orig_missing"

mkhf shape
st_patch "$ST" "$TMP/shape/model.safetensors" \
    's/"vision_model.encoder.layers.0.mlp.fc1.weight":{"dtype":"F32","shape":\[128,64\]/"vision_model.encoder.layers.0.mlp.fc1.weight":{"dtype":"F32","shape":[64,128]/'
expect_error shape_mismatch "$TMP/shape|vision_model.encoder.layers.0.mlp.fc1.weight|[64,128]|[128,64]" \
    "$MF" inspect --model "$TMP/shape"

# --- checkpoint directory ------------------------------------------------------------------------
mkdir -p "$TMP/nocfg"
cp "$ST" "$HF/vocab.txt" "$TMP/nocfg/"
expect_error hf_missing_config "$TMP/nocfg/config.json" "$MF" inspect --model "$TMP/nocfg"

mkhf badcfg
cp "$ST" "$TMP/badcfg/"
printf '{"vision_config": {' >"$TMP/badcfg/config.json"
expect_error hf_config_not_json "$TMP/badcfg/config.json" "$MF" inspect --model "$TMP/badcfg"

mkhf cfgfield
cp "$ST" "$TMP/cfgfield/"
sed 's/"num_hidden_layers": 2/"num_hidden_layers": -2/' "$HF/config.json" >"$TMP/cfgfield/config.json"
expect_error hf_config_bad_field "$TMP/cfgfield/config.json|num_hidden_layers" "$MF" inspect --model "$TMP/cfgfield"

mkdir -p "$TMP/novocab"
cp "$ST" "$HF/config.json" "$TMP/novocab/"
# verbs that tokenise need the vocabulary (inspect, apply and data-free prune do not: nonfinite.sh)
expect_error missing_vocab "$TMP/novocab/vocab.txt" \
    "$MF" score --model "$TMP/novocab" --image "$SHAPES/images/0001.png" --text "a red circle"

mkdir -p "$TMP/orig_novocab"
cp "$ORIG/model.safetensors" "$TMP/orig_novocab/"
expect_error orig_missing_vocab "$TMP/orig_novocab/vocab.txt" \
    "$MF" score --model "$TMP/orig_novocab" --image "$SHAPES/images/0001.png" --text "a red circle"

expect_error vocab_option_missing "$TMP/none/vocab.txt" \
    "$MF" inspect --model "$HF" --vocab "$TMP/none/vocab.txt"

expect_error model_path_missing "$TMP/nonexistent" "$MF" inspect --model "$TMP/nonexistent"

mkdir -p "$TMP/shard"
cp "$SRC/tests/golden/blip/hf-cap-f32"/* "$TMP/shard/"
rm "$TMP/shard/model-00002-of-00002.safetensors"
expect_error missing_shard "model-00002-of-00002.safetensors" "$MF" inspect --model "$TMP/shard"

# --- images --------------------------------------------------------------------------------------
mkdir -p "$TMP/img"
cp "$SHAPES/images/0001.png" "$SHAPES/images/0002.png" "$TMP/img/"
head -c 300 "$SHAPES/images/0001.png" >"$TMP/img/trunc.png"
echo "hello, I am not an image" >"$TMP/img/text.png"
: >"$TMP/img/empty.png"

expect_error image_missing "$TMP/img/nope.png" \
    "$MF" score --model "$HF" --image "$TMP/img/nope.png" --text "a circle"
expect_error image_truncated_png "$TMP/img/trunc.png" \
    "$MF" score --model "$HF" --image "$TMP/img/trunc.png" --text "a circle"
expect_error image_not_an_image "$TMP/img/text.png" \
    "$MF" score --model "$HF" --image "$TMP/img/text.png" --text "a circle"
expect_error image_empty_file "$TMP/img/empty.png" \
    "$MF" score --model "$HF" --image "$TMP/img/empty.png" --text "a circle"

# A bad image in the second batch: the first batch's scores must not be printed either.
printf '[{"image":"0001.png","caption":"a circle"},{"image":"trunc.png","caption":"a square"}]\n' >"$TMP/badimg.json"
expect_error data_truncated_png_batch2 "$TMP/img/trunc.png" \
    "$MF" score --model "$HF" --data "$TMP/badimg.json" --images "$TMP/img" --batch 1
printf '[{"image":"0001.png","caption":"a circle"},{"image":"0009.png","caption":"a square"}]\n' >"$TMP/missimg.json"
expect_error data_missing_image_batch2 "$TMP/img/0009.png" \
    "$MF" score --model "$HF" --data "$TMP/missimg.json" --images "$TMP/img" --batch 1
expect_error eval_missing_image "$TMP/img/0009.png" \
    "$MF" eval retrieval --model "$HF" --data "$TMP/missimg.json" --images "$TMP/img" --json

# --- captions and annotation files -----------------------------------------------------------
expect_error caption_empty_text "caption|empty" \
    "$MF" score --model "$HF" --image "$TMP/img/0001.png" --text ""
printf '[{"image":"0001.png","caption":"a"},{"image":"0002.png","caption":""}]\n' >"$TMP/empty.json"
expect_error caption_empty "$TMP/empty.json|record 2|caption|empty" \
    "$MF" score --model "$HF" --data "$TMP/empty.json" --images "$TMP/img"
printf '{"image":"0001.png","caption":"a circle"}\n{"image":"0002.png","caption":"!!! ..."}\n' >"$TMP/clean.jsonl"
expect_error caption_empty_after_cleaning "$TMP/clean.jsonl|line 2|empty after cleaning" \
    "$MF" score --model "$ORIG" --data "$TMP/clean.jsonl" --images "$TMP/img" --caption-clean blip
long=$(head -c 20000 /dev/zero | tr '\0' a)
printf '[{"image":"0001.png","caption":"a"},{"image":"0002.png","caption":"%s"}]\n' "$long" >"$TMP/long.json"
expect_error caption_over_long "$TMP/long.json|record 2|20000|10000" \
    "$MF" score --model "$HF" --data "$TMP/long.json" --images "$TMP/img"
printf 'this is not JSON\n' >"$TMP/notjson.json"
expect_error annotations_not_json "$TMP/notjson.json" \
    "$MF" score --model "$HF" --data "$TMP/notjson.json" --images "$TMP/img"
printf '[{"image":"0001.png","caption":"a"},\n' >"$TMP/cut.json"
expect_error annotations_truncated_json "$TMP/cut.json|line" \
    "$MF" score --model "$HF" --data "$TMP/cut.json" --images "$TMP/img"
printf '{"image":"0001.png","caption":"a circle"}\n{"image":"0002.png", bad}\n' >"$TMP/badline.jsonl"
expect_error annotations_bad_json_line "$TMP/badline.jsonl|line 2" \
    "$MF" score --model "$HF" --data "$TMP/badline.jsonl" --images "$TMP/img"
printf '[{"image":"0001.png","caption":"a"},{"image":"0002.png","text":"b"}]\n' >"$TMP/nocap.json"
expect_error record_without_caption "$TMP/nocap.json|record 2|caption" \
    "$MF" score --model "$HF" --data "$TMP/nocap.json" --images "$TMP/img"
printf '[{"caption":"a"}]\n' >"$TMP/noimage.json"
expect_error record_without_image "$TMP/noimage.json|record 1|image" \
    "$MF" score --model "$HF" --data "$TMP/noimage.json" --images "$TMP/img"
: >"$TMP/emptyfile.json"
expect_error annotations_empty_file "$TMP/emptyfile.json" \
    "$MF" score --model "$HF" --data "$TMP/emptyfile.json" --images "$TMP/img"
expect_error annotations_missing "$TMP/nothere.json" \
    "$MF" score --model "$HF" --data "$TMP/nothere.json" --images "$TMP/img"

# --- command line --------------------------------------------------------------------------------
expect_error no_verb "usage" "$MF"
expect_error unknown_verb "frobnicate" "$MF" frobnicate
expect_error unknown_option "--frobnicate" "$MF" score --model "$HF" --frobnicate
expect_error unknown_option_inspect "--frobnicate" "$MF" inspect --model "$HF" --frobnicate
expect_error threads_zero "--threads|'0'" \
    "$MF" score --model "$HF" --threads 0 --image "$TMP/img/0001.png" --text a
expect_error batch_not_a_number "--batch|'x'" \
    "$MF" score --model "$HF" --batch x --image "$TMP/img/0001.png" --text a
expect_error pairs_negative "--pairs|'-3'" \
    "$MF" score --model "$HF" --pairs -3 --data "$SHAPES/annotations.json" --images "$SHAPES"
expect_error caption_clean_unknown "--caption-clean|'fancy'" \
    "$MF" score --model "$HF" --caption-clean fancy --image "$TMP/img/0001.png" --text a
expect_error max_tokens_past_positions "100|64" \
    "$MF" score --model "$HF" --max-tokens 100 --image "$TMP/img/0001.png" --text a
expect_error heads_not_dividing "64|3 heads" \
    "$MF" score --model "$ORIG" --heads 3 --image "$TMP/img/0001.png" --text a
expect_error eval_unknown_task "frobnicate" "$MF" eval frobnicate
expect_error eval_no_task "usage" "$MF" eval
expect_error eval_k_negative "--k|'-1'" \
    "$MF" eval retrieval --model "$HF" --data "$SHAPES/annotations.json" --images "$SHAPES" --k -1
expect_error score_model_required "--model" "$MF" score --image "$TMP/img/0001.png" --text a
expect_error score_image_without_text "--text" "$MF" score --model "$HF" --image "$TMP/img/0001.png"
expect_error inspect_extra_argument "stray" "$MF" inspect --model "$HF" stray

cli_finish
