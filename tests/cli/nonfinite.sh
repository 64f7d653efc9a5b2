#!/usr/bin/env bash
# tests/cli/nonfinite.sh: no verb silently uses a NaN or an infinity (issue 9, item 1).
#
# 1. Non-finite weights: copies of the bundled models with one value overwritten in place (jq finds
#    the tensor's data offset, dd writes the 4 bytes: NaN, +inf or -inf) in a weight, a bias, a
#    LayerNorm, an embedding, a queue and a momentum copy (original layout) and in a Hugging Face
#    LayerNorm. Every verb (inspect, score, eval retrieval, stats, apply, prune data-free and with
#    calibration data, grad, finetune) must exit non-zero naming the tensor, print nothing on stdout
#    and leave no output (the --out path absent, no temporary beside it).
# 2. Non-finite activations from finite weights: a head or LayerNorm scaled to 3e38 overflows in the
#    forward pass; score, eval retrieval, stats, grad and finetune must stop naming what overflowed
#    (ITM logits, ITC features, LM NLL, a layer's input, the loss) and, where the verb knows it,
#    the pair.
# Needs jq. Usage: bash tests/cli/nonfinite.sh <path-to-multiflow> <source-dir>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
cli_setup "$@"
need_jq

ORIG=$SRC/data/models/blip-tiny
HF=$SRC/data/models/blip-tiny-hf
SHAPES=$SRC/data/shapes
D=(--data "$SHAPES/annotations.json" --images "$SHAPES" --pairs 16 --batch 8 --quiet)

# st_fill FILE TENSOR HEX [COUNT [FIRST]]: overwrites COUNT elements (default 1; "all" = every one)
# of F32 tensor TENSOR, from element FIRST (default 0), with the little-endian bytes HEX ("0000c07f").
st_fill() {
    local f=$1 name=$2 hex=$3 count=${4:-1} first=${5:-0} n b e i bytes=""
    n=$(st_header_len "$f")
    read -r b e < <(st_json "$f" | jq -r --arg k "$name" '.[$k].data_offsets | "\(.[0]) \(.[1])"')
    if [ "$count" = all ]; then count=$(((e - b) / 4)); fi
    for i in 0 2 4 6; do bytes="$bytes\\x${hex:$i:2}"; done
    : >"$TMP/.fill"
    for ((i = 0; i < count; i++)); do printf "$bytes" >>"$TMP/.fill"; done
    dd if="$TMP/.fill" of="$f" bs=1 seek=$((8 + n + b + 4 * first)) conv=notrunc status=none
}

# corrupt NAME SRC_MODEL TENSOR HEX [COUNT]: $TMP/m/NAME, a copy of SRC_MODEL with the values written.
corrupt() {
    local dir=$TMP/m/$1
    copy_model "$(basename "$2")" "$dir"
    chmod u+w "$dir/model.safetensors"
    st_fill "$dir/model.safetensors" "$3" "$4" "${5:-1}"
}

NAN=0000c07f
INF=0000807f
NINF=000080ff
HUGE=e6b1617f # 3e38, finite

# A masks file for apply (omp 50 % of the clean model).
run_cmd masks "$MF" prune --model "$ORIG" --method omp --sparsity 50 --out "$TMP/clean" --quiet
check "clean prune for the masks ($(cat "$ERR"))" test "$RC" -eq 0
MASKS=$TMP/clean/omp-50/masks.safetensors

# no_output NAME: nothing was created in $TMP/out (no --out path, no temporary beside it).
no_output() {
    if [ -n "$(ls -A "$TMP/out")" ]; then
        fail "$1: left output behind: $(ls -A "$TMP/out" | head -5 | tr '\n' ' ')"
        rm -rf "$TMP/out" && mkdir -p "$TMP/out"
    else
        ok
    fi
}
mkdir -p "$TMP/out"

# every_verb CASE MODEL NEEDLES: each verb on MODEL must fail with stderr containing NEEDLES.
every_verb() {
    local c=$1 m=$2 needles=$3
    expect_error "$c.inspect" "$needles" "$MF" inspect --model "$m"
    expect_error "$c.score" "$needles" "$MF" score --model "$m" "${D[@]}"
    expect_error "$c.eval" "$needles" "$MF" eval retrieval --model "$m" "${D[@]}"
    expect_error "$c.stats" "$needles" "$MF" stats --model "$m" "${D[@]}" --out "$TMP/out/stats.st"
    no_output "$c.stats"
    expect_error "$c.apply" "$needles" "$MF" apply --model "$m" --masks "$MASKS" --out "$TMP/out/applied"
    no_output "$c.apply"
    expect_error "$c.prune_omp" "$needles" "$MF" prune --model "$m" --method omp --sparsity 50 --out "$TMP/out/p"
    no_output "$c.prune_omp"
    expect_error "$c.prune_multiflow" "$needles" \
        "$MF" prune --model "$m" "${D[@]}" --method multiflow --sparsity 50 --out "$TMP/out/p"
    no_output "$c.prune_multiflow"
    expect_error "$c.grad" "$needles" "$MF" grad --model "$m" "${D[@]}" --out "$TMP/out/g.st"
    no_output "$c.grad"
    expect_error "$c.finetune" "$needles" \
        "$MF" finetune --model "$m" "${D[@]}" --task retrieval --steps 1 --out "$TMP/out/ft"
    no_output "$c.finetune"
}

# --- 1. non-finite weights, every verb --------------------------------------------------------
corrupt weight "$ORIG" text_encoder.encoder.layer.1.attention.self.query.weight $NAN
every_verb nan_weight "$TMP/m/weight" "text_encoder.encoder.layer.1.attention.self.query.weight|non-finite|nan"

corrupt bias "$ORIG" visual_encoder.blocks.0.mlp.fc1.bias $INF
every_verb inf_bias "$TMP/m/bias" "visual_encoder.blocks.0.mlp.fc1.bias|non-finite|inf"

corrupt layernorm "$ORIG" text_encoder.encoder.layer.0.output.LayerNorm.weight $NINF
every_verb ninf_layernorm "$TMP/m/layernorm" "text_encoder.encoder.layer.0.output.LayerNorm.weight|non-finite"

corrupt embedding "$ORIG" text_encoder.embeddings.word_embeddings.weight $NAN
every_verb nan_embedding "$TMP/m/embedding" "text_encoder.embeddings.word_embeddings.weight|non-finite"

corrupt queue "$ORIG" image_queue $INF
every_verb inf_queue "$TMP/m/queue" "image_queue|non-finite"

corrupt momentum "$ORIG" visual_encoder_m.blocks.1.attn.qkv.weight $NAN
every_verb nan_momentum "$TMP/m/momentum" "visual_encoder_m.blocks.1.attn.qkv.weight|non-finite"

corrupt hf_ln "$HF" vision_model.encoder.layers.1.layer_norm2.bias $NAN
every_verb nan_hf_layernorm "$TMP/m/hf_ln" "vision_model.encoder.layers.1.layer_norm2.bias|non-finite"

# --- 2. finite weights, non-finite activations --------------------------------------------------
# ITM head weights of 3e38: logits overflow to +-inf (the first pair is named)
corrupt itm "$ORIG" itm_head.weight $HUGE all
expect_error huge_itm.score "ITM logits|not finite|record 1 (image" "$MF" score --model "$TMP/m/itm" "${D[@]}"
expect_error huge_itm.score_one "ITM logits|not finite|0001.png" \
    "$MF" score --model "$TMP/m/itm" --image "$SHAPES/images/0001.png" --text "a red circle"
expect_error huge_itm.eval "ITM logits|not finite|with the caption of record" \
    "$MF" eval retrieval --model "$TMP/m/itm" "${D[@]}"
expect_error huge_itm.grad "not finite|pairs 0-7" "$MF" grad --model "$TMP/m/itm" "${D[@]}" --out "$TMP/out/g.st"
no_output huge_itm.grad
expect_error huge_itm.finetune "not finite" \
    "$MF" finetune --model "$TMP/m/itm" "${D[@]}" --task retrieval --steps 1 --out "$TMP/out/ft"
no_output huge_itm.finetune

# text projection of 3e38: the text ITC features are inf / inf = NaN
corrupt tproj "$ORIG" text_proj.weight $HUGE all
expect_error huge_tproj.score "text ITC features|not finite|record 1 (image" \
    "$MF" score --model "$TMP/m/tproj" "${D[@]}"
expect_error huge_tproj.eval "text ITC features|not finite|record 1 (image" \
    "$MF" eval retrieval --model "$TMP/m/tproj" "${D[@]}"

# LM output layer of 3e38: the decoder NLL is not finite
corrupt lm "$ORIG" text_decoder.cls.predictions.decoder.weight $HUGE all
expect_error huge_lm.score "LM NLL|not finite|record 1 (image" "$MF" score --model "$TMP/m/lm" "${D[@]}"

# the first vision LayerNorm at 3e38: attention overflows inside the first block, so the next
# prunable layer's calibration input is NaN
corrupt vln "$ORIG" visual_encoder.blocks.0.norm1.weight $HUGE all
expect_error huge_ln.stats "calibration pairs 1-8|is not finite|visual_encoder.blocks.0" \
    "$MF" stats --model "$TMP/m/vln" "${D[@]}" --out "$TMP/out/stats.st"
no_output huge_ln.stats
expect_error huge_ln.prune "calibration pairs 1-8|is not finite" \
    "$MF" prune --model "$TMP/m/vln" "${D[@]}" --method multiflow --sparsity 50 --out "$TMP/out/p"
no_output huge_ln.prune

cli_finish
