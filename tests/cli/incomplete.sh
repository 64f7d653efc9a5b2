#!/usr/bin/env bash
# tests/cli/incomplete.sh: an incomplete checkpoint is an error in every layout (issue 9, item 2).
#
# Tensors are removed by renaming them in the safetensors header with an equal-length edit
# (lib/common.bash st_patch): a first letter changed to X moves a name out of every tower, so the
# only problem left is the missing tensor; other edits leave an unexpected name inside a layer too.
# Cases: a missing tensor in each tower (vision, text encoder, decoder, heads) and layer position
# (first, last, outside the layers) of the original layout; a wholly absent last layer that the
# decoder or the momentum copies still show; a gap in the layer indices; incomplete momentum copies;
# the Hugging Face layout (layer missing a tensor, layers beyond config.json's count, a head); every
# problem named in one message; a sharded index naming tensors no shard holds. Each must exit
# non-zero naming the tensors and write nothing; a decoder copy of a tied tensor may be absent.
# Needs jq. Usage: bash tests/cli/incomplete.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

ORIG=$SRC/data/models/blip-tiny
HF=$SRC/data/models/blip-tiny-hf

# edit NAME SRC_MODEL SED_EXPR: $TMP/NAME, a copy of SRC_MODEL with its header edited.
edit() {
    mkdir -p "$TMP/$1"
    cp "$2/vocab.txt" "$TMP/$1/"
    if [ -f "$2/config.json" ]; then cp "$2/config.json" "$TMP/$1/"; fi
    st_patch "$2/model.safetensors" "$TMP/$1/model.safetensors" "$3"
}

# gone NAME SRC_MODEL TENSOR...: each TENSOR renamed X<rest> (out of every tower).
gone() {
    local name=$1 src=$2 expr="" t
    shift 2
    for t in "$@"; do expr="$expr;s/\"$t\"/\"X${t:1}\"/"; done
    edit "$name" "$src" "${expr:1}"
}

# incomplete NAME NEEDLES: inspect and a data-free prune both fail naming NEEDLES; nothing written.
incomplete() {
    expect_error "$1.inspect" "$2" "$MF" inspect --model "$TMP/$1"
    expect_error "$1.prune" "$2" "$MF" prune --model "$TMP/$1" --method omp --sparsity 50 --out "$TMP/out-$1"
    check "$1: no output" test ! -e "$TMP/out-$1"
}

# --- original layout: one missing tensor per tower and position --------------------------------
gone o_vis_first "$ORIG" visual_encoder.blocks.0.norm1.weight
incomplete o_vis_first "missing 'visual_encoder.blocks.0.norm1.weight'|(1 missing, 0 unexpected"

gone o_vis_last "$ORIG" visual_encoder.blocks.1.mlp.fc2.bias
incomplete o_vis_last "missing 'visual_encoder.blocks.1.mlp.fc2.bias'"

gone o_vis_model "$ORIG" visual_encoder.norm.bias
incomplete o_vis_model "missing 'visual_encoder.norm.bias'"

gone o_txt_first "$ORIG" text_encoder.encoder.layer.0.crossattention.self.key.weight
incomplete o_txt_first "missing 'text_encoder.encoder.layer.0.crossattention.self.key.weight'"

gone o_txt_last "$ORIG" text_encoder.encoder.layer.1.output.LayerNorm.bias
incomplete o_txt_last "missing 'text_encoder.encoder.layer.1.output.LayerNorm.bias'"

gone o_txt_emb "$ORIG" text_encoder.embeddings.LayerNorm.weight
incomplete o_txt_emb "missing 'text_encoder.embeddings.LayerNorm.weight'"

gone o_dec_last "$ORIG" text_decoder.bert.encoder.layer.1.attention.self.query.weight
incomplete o_dec_last "missing 'text_decoder.bert.encoder.layer.1.attention.self.query.weight'"

gone o_lm "$ORIG" text_decoder.cls.predictions.transform.dense.bias
incomplete o_lm "missing 'text_decoder.cls.predictions.transform.dense.bias'"

gone o_itm "$ORIG" itm_head.bias
incomplete o_itm "missing 'itm_head.bias'"

gone o_proj "$ORIG" vision_proj.weight
incomplete o_proj "missing 'vision_proj.weight'"

# the decoder's copy of a tied tensor may be absent: the encoder's is used (models.md §4.5)
gone o_tied "$ORIG" text_decoder.bert.encoder.layer.1.output.dense.weight
run_cmd o_tied "$MF" inspect --model "$TMP/o_tied"
check "absent tied decoder copy loads ($(head -c 300 "$ERR"))" test "$RC" -eq 0

# every missing tensor is named, across towers
gone o_many "$ORIG" visual_encoder.blocks.0.attn.qkv.bias text_encoder.encoder.layer.1.intermediate.dense.weight \
    text_decoder.bert.encoder.layer.0.attention.output.dense.bias itm_head.weight
incomplete o_many "'visual_encoder.blocks.0.attn.qkv.bias'|'text_encoder.encoder.layer.1.intermediate.dense.weight'|'text_decoder.bert.encoder.layer.0.attention.output.dense.bias'|'itm_head.weight'|(4 missing"

# a wholly absent last text-encoder layer: the decoder and momentum copies still have layer 1
edit o_txt_layer "$ORIG" 's/"text_encoder\.encoder\.layer\.1\./"Xext_encoder.encoder.layer.1./g'
incomplete o_txt_layer "every tensor of layer 'text_encoder.encoder.layer.1.*'|2 text layers"

# a wholly absent last vision layer the momentum copies still have
edit o_vis_layer "$ORIG" 's/"visual_encoder\.blocks\.1\./"Xisual_encoder.blocks.1./g'
incomplete o_vis_layer "every tensor of layer 'visual_encoder.blocks.1.*'|2 vision"

# a gap: layer 1 renumbered 3, so layers 1 and 2 are missing (and the momentum copies of 3 orphaned)
edit o_gap "$ORIG" 's/"visual_encoder\.blocks\.1\./"visual_encoder.blocks.3./g'
incomplete o_gap "every tensor of layer 'visual_encoder.blocks.1.*'|every tensor of layer 'visual_encoder.blocks.2.*'|4 vision"

# an unknown name inside a layer is unexpected (and the tensor it replaced missing)
edit o_unknown "$ORIG" 's/"visual_encoder\.blocks\.0\.norm1\.weight"/"visual_encoder.blocks.0.norm9.weight"/'
incomplete o_unknown "missing 'visual_encoder.blocks.0.norm1.weight'|unexpected 'visual_encoder.blocks.0.norm9.weight'"

# momentum copies present but incomplete
gone o_mom_vis "$ORIG" visual_encoder_m.blocks.0.attn.proj.bias
incomplete o_mom_vis "missing 'visual_encoder_m.blocks.0.attn.proj.bias'|momentum"
gone o_mom_txt "$ORIG" text_encoder_m.encoder.layer.1.crossattention.self.value.weight
incomplete o_mom_txt "missing 'text_encoder_m.encoder.layer.1.crossattention.self.value.weight'"
gone o_mom_proj "$ORIG" text_proj_m.bias
incomplete o_mom_proj "missing 'text_proj_m.bias'"

# --- Hugging Face layout -------------------------------------------------------------------------
gone h_vis "$HF" vision_model.encoder.layers.0.self_attn.qkv.weight
incomplete h_vis "missing 'vision_model.encoder.layers.0.self_attn.qkv.weight'"

gone h_txt "$HF" text_encoder.encoder.layer.1.attention.output.LayerNorm.weight
incomplete h_txt "missing 'text_encoder.encoder.layer.1.attention.output.LayerNorm.weight'"

gone h_head "$HF" text_proj.bias
incomplete h_head "missing 'text_proj.bias'"

# config.json says 2 vision layers; names of a layer 5 are unexpected and layer 1 is missing
edit h_beyond "$HF" 's/"vision_model\.encoder\.layers\.1\./"vision_model.encoder.layers.5./g'
incomplete h_beyond "every tensor of layer 'vision_model.encoder.layers.1.*'|unexpected 'vision_model.encoder.layers.5.|the model has 2 layers there"

# --- sharded directory whose index names tensors no shard holds -----------------------------------
mkdir -p "$TMP/sharded"
cp "$HF/config.json" "$HF/vocab.txt" "$TMP/sharded/"
cp "$HF/model.safetensors" "$TMP/sharded/model-00001-of-00001.safetensors"
st_json "$HF/model.safetensors" | jq '{weight_map: (del(.__metadata__) | map_values("model-00001-of-00001.safetensors")
    + {"extra.one.weight": "model-00001-of-00001.safetensors", "extra.two.bias": "model-00001-of-00001.safetensors"})}' \
    >"$TMP/sharded/model.safetensors.index.json"
incomplete sharded "2 listed tensors no shard holds|'extra.one.weight'|'extra.two.bias'"

cli_finish
