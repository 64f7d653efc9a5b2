#!/usr/bin/env bash
# tests/cli/inspect.sh: `multiflow inspect` (text and --json) on the bundled models and the sharded
# golden checkpoint tests/golden/blip/hf-cap-f32: layout, towers, configuration (eps included),
# prunable parameter counts per modality, tied tensors, and exact-zero sparsity.
#
# Expected counts, from the tiny architecture (vision d=64, 2 layers, mlp 128; text d=64, 2 layers,
# ffn 128; models.md §4.7 and §8.3 scaled down):
#   vision prunable per layer: qkv 192*64 + proj 64*64 + fc1 128*64 + fc2 64*128 = 32768 -> 65536
#   text encoder per layer:    self q,k,v,o 4*64*64 + cross q,k,v,o 4*64*64 + ffn 2*128*64 = 49152
#   blip-orig text = encoder 2*49152 + decoder self-attention 2*4*64*64 (the rest is tied) = 131072
#   blip-hf-itm text = encoder 2*49152 = 98304; blip-hf-cap text = untied decoder 2*49152 = 98304
#   vision parameters = 65536 + cls 64 + patch 64*3*16*16 + 64 + pos 17*64 + 2*(ln 4*64 + biases
#   192+64+128+64) + post-LN 128 = 117440
#   HF text-encoder parameters = 98304 + word 107*64 + pos 64*64 + LN 128 + 2*(biases 8*64 + 128 +
#   64 + 3 LN * 128) = 111552
# Needs jq. Usage: bash tests/cli/inspect.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

# jcheck FILE DESCRIPTION JQ_EXPR: the jq expression must be true on FILE.
jcheck() {
    local file=$1 what=$2 expr=$3 got
    if jq -e "$expr" "$file" >/dev/null 2>&1; then
        ok
    else
        got=$(jq -c 'del(.tensors)' "$file" 2>&1 | head -c 600)
        fail "$what: '$expr' is false; inspect printed: $got"
    fi
}
# tcheck FILE DESCRIPTION REGEX: the text output must have a line matching the extended regex.
tcheck() {
    if grep -qE -- "$3" "$1"; then ok; else fail "$2: no line matches /$3/ in: $(head -n 12 "$1")"; fi
}

# inspect_both NAME MODEL [extra args]: runs text and --json; sets TXT and JS.
inspect_both() {
    local name=$1 model=$2
    shift 2
    run_cmd "$name.txt" "$MF" inspect --model "$model" "$@"
    [ "$RC" -eq 0 ] || fail "$name: inspect exited with $RC: $(cat "$ERR")"
    TXT=$OUT
    run_cmd "$name.json" "$MF" inspect --model "$model" --json "$@"
    [ "$RC" -eq 0 ] || fail "$name: inspect --json exited with $RC: $(cat "$ERR")"
    JS=$OUT
    jcheck "$JS" "$name: valid JSON object" 'type == "object"'
}

# Checks that every modality's prunable count equals the sum over its untied prunable tensors,
# and that params.prunable is the sum over modalities.
consistent() {
    jcheck "$JS" "$1: per-modality prunable = sum over prunable tensors" '
        . as $r
        | ([.tensors[] | select(.prunable and .tied_to == null)]
           | group_by(.modality)
           | map({key: .[0].modality, value: (map(.shape | reduce .[] as $d (1; . * $d)) | add)})
           | from_entries) as $sum
        | ($sum | keys) == ($r.modalities | with_entries(select(.value.prunable > 0)) | keys)
          and all($sum | to_entries[]; $r.modalities[.key].prunable == .value)'
    jcheck "$JS" "$1: params.prunable = sum of modalities" \
        '.params.prunable == ([.modalities[].prunable] | add)'
}

# --- original BLIP layout (single safetensors + vocab.txt, configuration inferred) -------------
ORIG=$SRC/data/models/blip-tiny
inspect_both orig "$ORIG"
tcheck "$TXT" "orig: layout" '^layout: +blip-orig \(configuration: inferred from tensor shapes\)'
tcheck "$TXT" "orig: towers" '^towers: +vision text_encoder text_decoder itc_heads itm_head momentum_copies$'
tcheck "$TXT" "orig: vision config" '^vision: +hidden 64, layers 2, .*mlp 128, patch 16, image 64 px \(17 tokens\), LayerNorm eps 1e-06$'
tcheck "$TXT" "orig: text config" '^text: +hidden 64, layers 2, .*ffn 128, vocab 107, .*LayerNorm eps 1e-12$'
tcheck "$TXT" "orig: vision counts" '^vision +117440 +65536 +0\.00%$'
tcheck "$TXT" "orig: text counts" '^text +156438 +131072 +0\.00%$'
tcheck "$TXT" "orig: total prunable" '^all +[0-9]+ +196608 +0\.00%$'
tcheck "$TXT" "orig: caption cleaning" 'caption cleaning blip$'
jcheck "$JS" "orig: layout" '.layout == "blip-orig" and .family == "blip" and .config_source == "inferred from tensor shapes"'
jcheck "$JS" "orig: towers" '.towers == ["vision","text_encoder","text_decoder","itc_heads","itm_head","momentum_copies"]'
jcheck "$JS" "orig: vision" '.vision | .hidden == 64 and .layers == 2 and .mlp == 128 and .patch == 16 and .image_size == 64 and .tokens == 17'
jcheck "$JS" "orig: vision eps 1e-6" '(.vision.layer_norm_eps - 1e-6 | fabs) < 1e-12'
jcheck "$JS" "orig: text eps 1e-12" '(.text.layer_norm_eps - 1e-12 | fabs) < 1e-18'
jcheck "$JS" "orig: text" '.text | .hidden == 64 and .layers == 2 and .ffn == 128 and .vocab == 107 and .cross_width == 64'
jcheck "$JS" "orig: prunable per modality" \
    '.modalities.vision.prunable == 65536 and .modalities.text.prunable == 131072 and (.modalities | has("fusion") | not)'
jcheck "$JS" "orig: vision params" '.modalities.vision.params == 117440'
jcheck "$JS" "orig: 36 untied prunable tensors" '[.tensors[] | select(.prunable and .tied_to == null)] | length == 36'
jcheck "$JS" "orig: prunable tensor order (models.md 4.7)" '
    [.tensors[] | select(.prunable and .tied_to == null) | .name] as $n
    | $n[0] == "visual_encoder.blocks.0.attn.qkv.weight"
      and $n[8] == "text_encoder.encoder.layer.0.attention.self.query.weight"
      and $n[28] == "text_decoder.bert.encoder.layer.0.attention.self.query.weight"'
jcheck "$JS" "orig: decoder cross-attention tied to the encoder" '
    .tensors[] | select(.name == "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight")
    | .tied_to == "text_encoder.encoder.layer.1.crossattention.self.key.weight"'
jcheck "$JS" "orig: heads and projections not prunable" \
    'all(.tensors[] | select(.name | test("^(itm_head|vision_proj|text_proj|visual_encoder_m|text_encoder_m)")); .prunable | not)'
jcheck "$JS" "orig: no bias is prunable" 'all(.tensors[] | select(.name | endswith(".bias")); .prunable | not)'
jcheck "$JS" "orig: sparsity 0" '.params.sparsity == 0 and all(.modalities[]; .zeros == 0)'
consistent orig

# A .safetensors file path works as --model too (vocab.txt from the same folder).
run_cmd orig.file "$MF" inspect --model "$ORIG/model.safetensors" --json
jcheck "$OUT" "orig via the .safetensors path" '.layout == "blip-orig" and .params.prunable == 196608'

# --- Hugging Face BlipForImageTextRetrieval (config.json) --------------------------------------
HF=$SRC/data/models/blip-tiny-hf
inspect_both hf "$HF"
tcheck "$TXT" "hf: layout" '^layout: +blip-hf \(configuration: config.json\)'
tcheck "$TXT" "hf: towers" '^towers: +vision text_encoder itc_heads itm_head$'
tcheck "$TXT" "hf: vision eps" 'LayerNorm eps 1e-05$'
tcheck "$TXT" "hf: vision counts" '^vision +117440 +65536 +0\.00%$'
tcheck "$TXT" "hf: text counts" '^text +111552 +98304 +0\.00%$'
tcheck "$TXT" "hf: caption cleaning" 'caption cleaning none$'
jcheck "$JS" "hf: layout" '.layout == "blip-hf" and .config_source == "config.json"'
jcheck "$JS" "hf: towers" '.towers == ["vision","text_encoder","itc_heads","itm_head"]'
jcheck "$JS" "hf: heads from config" '.vision.heads == 2 and .text.heads == 2'
jcheck "$JS" "hf: vision eps 1e-5" '(.vision.layer_norm_eps - 1e-5 | fabs) < 1e-11'
jcheck "$JS" "hf: prunable per modality" '.modalities.vision.prunable == 65536 and .modalities.text.prunable == 98304'
jcheck "$JS" "hf: params" '.modalities.text.params == 111552 and .params.tied_copies == 0 and .params.unused == 0'
jcheck "$JS" "hf: 28 prunable tensors" '[.tensors[] | select(.prunable)] | length == 28'
jcheck "$JS" "hf: ITM first token is [CLS]" '.tokens.itm_first == .tokens.cls'
consistent hf

# HF defaults when config.json omits layer_norm_eps: 1e-5 vision (BlipVisionConfig), 1e-12 text.
mkdir -p "$TMP/hfdefault"
cp "$HF/model.safetensors" "$HF/vocab.txt" "$TMP/hfdefault/"
jq 'del(.vision_config.layer_norm_eps) | del(.text_config.layer_norm_eps)' "$HF/config.json" >"$TMP/hfdefault/config.json"
run_cmd hfdefault "$MF" inspect --model "$TMP/hfdefault" --json
jcheck "$OUT" "hf default eps" '(.vision.layer_norm_eps - 1e-5 | fabs) < 1e-11 and (.text.layer_norm_eps - 1e-12 | fabs) < 1e-18'

# --- sharded HF BlipForConditionalGeneration (index + 2 shards) --------------------------------
CAP=$SRC/tests/golden/blip/hf-cap-f32
inspect_both cap "$CAP"
tcheck "$TXT" "cap: layout" '^layout: +blip-hf \(configuration: config.json\)'
tcheck "$TXT" "cap: towers" '^towers: +vision text_decoder$'
tcheck "$TXT" "cap: vision eps from config" 'LayerNorm eps 1e-06$'
tcheck "$TXT" "cap: vision counts" '^vision +117440 +65536 +0\.00%$'
tcheck "$TXT" "cap: text counts" '^text +[0-9]+ +98304 +0\.00%$'
jcheck "$JS" "cap: towers" '.towers == ["vision","text_decoder"]'
jcheck "$JS" "cap: vision eps 1e-6 (config)" '(.vision.layer_norm_eps - 1e-6 | fabs) < 1e-12'
jcheck "$JS" "cap: prunable per modality" '.modalities.vision.prunable == 65536 and .modalities.text.prunable == 98304'
jcheck "$JS" "cap: untied decoder cross-attention is prunable" '
    .tensors[] | select(.name == "text_decoder.bert.encoder.layer.1.crossattention.self.value.weight")
    | .prunable and .modality == "text" and .tied_to == null'
jcheck "$JS" "cap: LM head not prunable" 'all(.tensors[] | select(.name | startswith("text_decoder.cls.")); .prunable | not)'
jcheck "$JS" "cap: tensors from both shards" '[.tensors[].name] | index("vision_model.embeddings.patch_embedding.weight") != null and index("text_decoder.bert.encoder.layer.1.output.dense.weight") != null'
consistent cap

# --- exact-zero sparsity: zero one prunable tensor (vision layer 0 fc1, 128x64 f32) -------------
mkdir -p "$TMP/zero"
cp "$HF"/* "$TMP/zero/"
n=$(st_header_len "$HF/model.safetensors")
off=$(jq -r '."vision_model.encoder.layers.0.mlp.fc1.weight".data_offsets[0]' <(head -c $((8 + n)) "$HF/model.safetensors" | tail -c +9))
dd if=/dev/zero of="$TMP/zero/model.safetensors" bs=1 seek=$((8 + n + off)) count=32768 conv=notrunc status=none
inspect_both zero "$TMP/zero"
tcheck "$TXT" "zero: vision sparsity 12.50%" '^vision +117440 +65536 +12\.50%$'
tcheck "$TXT" "zero: text sparsity 0" '^text +111552 +98304 +0\.00%$'
jcheck "$JS" "zero: counts" '.modalities.vision.zeros == 8192 and .modalities.text.zeros == 0 and .params.sparsity == 0.05'
jcheck "$JS" "zero: per-tensor sparsity" '.tensors[] | select(.name == "vision_model.encoder.layers.0.mlp.fc1.weight") | .sparsity == 1'

# --- reduced precision: the bf16 golden checkpoint has the same counts ---------------------------
inspect_both bf16 "$SRC/tests/golden/blip/hf-itm-bf16"
jcheck "$JS" "bf16: dtype and counts" \
    '(.tensors[0].dtype == "BF16") and .modalities.vision.prunable == 65536 and .modalities.text.prunable == 98304'

# --- help ------------------------------------------------------------------------------------
run_cmd help "$MF" inspect --help
check "inspect --help exits 0 and prints usage" test "$RC" -eq 0 -a -s "$OUT"

cli_finish
