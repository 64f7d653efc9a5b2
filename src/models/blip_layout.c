/*
 * models/blip_layout.c: the two BLIP name layouts (models.md §4.3 Hugging Face, §4.5 original
 * Salesforce). Text-stack names are the same in both; the vision names differ, and the original
 * layout ties every text-decoder tensor except self-attention to the text encoder (§4.5, §4.7):
 * those rules carry the encoder name as fallback, so a file that stores the tied copy once or
 * twice loads the same, and the decoder copy receives the encoder's mask.
 */
#include <stddef.h>

#include "models/layout.h"

#define MOFF(field) offsetof(struct mf_model, field)
#define VOFF(field) offsetof(struct mf_vit_layer, field)
#define TOFF(field) offsetof(struct mf_bert_layer, field)

#define PR MF_RULE_PRUNABLE
#define LIN MF_BIND_LINEAR
#define LNB MF_BIND_LN
#define RAW MF_BIND_RAW

/* One BERT layer's rules; P = layer name prefix, F = tied fallback prefix (or NULL), D/FF/E = dims. */
#define BERT_LAYER_RULES(TW, SC, P, F, TF, R, D, FF, E)                                                              \
    {TW, SC, LIN, P ".attention.self.query", NULL, TOFF(q), 2, {D, D}, PR, R ".self.q"},                         \
    {TW, SC, LIN, P ".attention.self.key", NULL, TOFF(k), 2, {D, D}, PR, R ".self.k"},                           \
    {TW, SC, LIN, P ".attention.self.value", NULL, TOFF(v), 2, {D, D}, PR, R ".self.v"},                         \
    {TW, SC, LIN, P ".attention.output.dense", NULL, TOFF(o), 2, {D, D}, PR, R ".self.o"},                       \
    {TW, SC, LNB, P ".attention.output.LayerNorm", NULL, TOFF(ln_attn), 1, {D}, 0, R ".ln_self"},                \
    {TW, SC, LIN, P ".crossattention.self.query", F ".crossattention.self.query", TOFF(cq), 2, {D, D},           \
     PR | MF_RULE_CROSS | TF, R ".cross.q"},                                                                          \
    {TW, SC, LIN, P ".crossattention.self.key", F ".crossattention.self.key", TOFF(ck), 2, {D, E},               \
     PR | MF_RULE_CROSS | TF, R ".cross.k"},                                                                          \
    {TW, SC, LIN, P ".crossattention.self.value", F ".crossattention.self.value", TOFF(cv), 2, {D, E},           \
     PR | MF_RULE_CROSS | TF, R ".cross.v"},                                                                          \
    {TW, SC, LIN, P ".crossattention.output.dense", F ".crossattention.output.dense", TOFF(co), 2, {D, D},       \
     PR | MF_RULE_CROSS | TF, R ".cross.o"},                                                                          \
    {TW, SC, LNB, P ".crossattention.output.LayerNorm", F ".crossattention.output.LayerNorm", TOFF(ln_cross), 1, \
     {D}, MF_RULE_CROSS | TF, R ".ln_cross"},                                                                         \
    {TW, SC, LIN, P ".intermediate.dense", F ".intermediate.dense", TOFF(inter), 2, {FF, D}, PR | TF, R ".ffn.in"},   \
    {TW, SC, LIN, P ".output.dense", F ".output.dense", TOFF(out), 2, {D, FF}, PR | TF, R ".ffn.out"},                \
    {TW, SC, LNB, P ".output.LayerNorm", F ".output.LayerNorm", TOFF(ln_out), 1, {D}, TF, R ".ln_ffn"}

/* Text encoder (both layouts) and heads. */
#define TEXT_RULES                                                                                               \
    {MF_TOWER_TEXT, MF_SCOPE_MODEL, RAW, "text_encoder.embeddings.word_embeddings.weight", NULL, MOFF(text.word),  \
     2, {D_TVOCAB, D_TD}, 0, "text.embed.word"},                                                                 \
    {MF_TOWER_TEXT, MF_SCOPE_MODEL, RAW, "text_encoder.embeddings.position_embeddings.weight", NULL,              \
     MOFF(text.pos), 2, {D_TPOS, D_TD}, 0, "text.embed.pos"},                                                    \
    {MF_TOWER_TEXT, MF_SCOPE_MODEL, LNB, "text_encoder.embeddings.LayerNorm", NULL, MOFF(text.ln_emb), 1, {D_TD}, \
     0, "text.embed.ln"},                                                                                        \
    BERT_LAYER_RULES(MF_TOWER_TEXT, MF_SCOPE_TEXT_LAYER, "text_encoder.encoder.layer.%d", "", 0, "text.layer%d",    \
                     D_TD, D_TFF, D_TENC),                                                                       \
    {MF_TOWER_ITC, MF_SCOPE_MODEL, LIN, "vision_proj", NULL, MOFF(vision_proj), 2, {D_PROJ, D_VD}, 0,            \
     "head.vision_proj"},                                                                                        \
    {MF_TOWER_ITC, MF_SCOPE_MODEL, LIN, "text_proj", NULL, MOFF(text_proj), 2, {D_PROJ, D_TD}, 0,                \
     "head.text_proj"},                                                                                          \
    {MF_TOWER_ITM, MF_SCOPE_MODEL, LIN, "itm_head", NULL, MOFF(itm_head), 2, {D_TWO, D_TD}, 0, "head.itm"}

/* Decoder embeddings and LM head; F = fallback for the embeddings (tied in the original layout). */
#define DEC_COMMON_RULES(FW, FP, FL, TF)                                                                             \
    {MF_TOWER_DEC, MF_SCOPE_MODEL, RAW, "text_decoder.bert.embeddings.word_embeddings.weight", FW,               \
     MOFF(dec.word), 2, {D_DVOCAB, D_DD}, TF, "decoder.embed.word"},                                              \
    {MF_TOWER_DEC, MF_SCOPE_MODEL, RAW, "text_decoder.bert.embeddings.position_embeddings.weight", FP,           \
     MOFF(dec.pos), 2, {D_DPOS, D_DD}, TF, "decoder.embed.pos"},                                                  \
    {MF_TOWER_DEC, MF_SCOPE_MODEL, LNB, "text_decoder.bert.embeddings.LayerNorm", FL, MOFF(dec.ln_emb), 1,       \
     {D_DD}, TF, "decoder.embed.ln"},                                                                             \
    {MF_TOWER_LM, MF_SCOPE_MODEL, LIN, "text_decoder.cls.predictions.transform.dense", NULL, MOFF(lm.dense), 2,  \
     {D_DD, D_DD}, 0, "lm.transform"},                                                                           \
    {MF_TOWER_LM, MF_SCOPE_MODEL, LNB, "text_decoder.cls.predictions.transform.LayerNorm", NULL, MOFF(lm.ln), 1, \
     {D_DD}, 0, "lm.ln"},                                                                                        \
    {MF_TOWER_LM, MF_SCOPE_MODEL, RAW, "text_decoder.cls.predictions.decoder.weight", NULL, MOFF(lm.dec_w), 2,   \
     {D_DVOCAB, D_DD}, MF_RULE_OPTIONAL, "lm.decoder"},                                                          \
    {MF_TOWER_LM, MF_SCOPE_MODEL, RAW, "text_decoder.cls.predictions.bias", NULL, MOFF(lm.dec_b), 1, {D_DVOCAB},  \
     MF_RULE_OPTIONAL, "lm.bias"},                                                                               \
    {MF_TOWER_LM, MF_SCOPE_MODEL, RAW, "text_decoder.cls.predictions.decoder.bias", NULL, MOFF(lm.dec_b_alt), 1, \
     {D_DVOCAB}, MF_RULE_OPTIONAL, "lm.bias"}

static enum mf_modality blip_modality(enum mf_scope scope, int64_t layer, const struct mf_model *m)
{
    (void)layer;
    (void)m;
    switch (scope) {
    case MF_SCOPE_VIT_LAYER: return MF_MOD_VISION;
    case MF_SCOPE_TEXT_LAYER:
    case MF_SCOPE_DEC_LAYER: return MF_MOD_TEXT;
    default: return MF_MOD_NONE;
    }
}

static const struct mf_name_rule blip_hf_rules[] = {
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "vision_model.embeddings.class_embedding", NULL, MOFF(vision.cls), 3,
     {D_ONE, D_ONE, D_VD}, 0, "vision.embed.cls"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "vision_model.embeddings.position_embedding", NULL, MOFF(vision.pos), 3,
     {D_ONE, D_VNTOK, D_VD}, 0, "vision.embed.pos"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "vision_model.embeddings.patch_embedding.weight", NULL,
     MOFF(vision.patch_w), 4, {D_VD, D_THREE, D_VPATCH, D_VPATCH}, 0, "vision.embed.patch.weight"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "vision_model.embeddings.patch_embedding.bias", NULL,
     MOFF(vision.patch_b), 1, {D_VD}, 0, "vision.embed.patch.bias"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LNB, "vision_model.encoder.layers.%d.layer_norm1", NULL, VOFF(ln1), 1,
     {D_VD}, 0, "vision.layer%d.ln1"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "vision_model.encoder.layers.%d.self_attn.qkv", NULL, VOFF(qkv), 2,
     {D_VD3, D_VD}, PR, "vision.layer%d.qkv"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "vision_model.encoder.layers.%d.self_attn.projection", NULL,
     VOFF(proj), 2, {D_VD, D_VD}, PR, "vision.layer%d.proj"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LNB, "vision_model.encoder.layers.%d.layer_norm2", NULL, VOFF(ln2), 1,
     {D_VD}, 0, "vision.layer%d.ln2"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "vision_model.encoder.layers.%d.mlp.fc1", NULL, VOFF(fc1), 2,
     {D_VFF, D_VD}, PR, "vision.layer%d.fc1"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "vision_model.encoder.layers.%d.mlp.fc2", NULL, VOFF(fc2), 2,
     {D_VD, D_VFF}, PR, "vision.layer%d.fc2"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, LNB, "vision_model.post_layernorm", NULL, MOFF(vision.ln_post), 1, {D_VD}, 0,
     "vision.ln_post"},
    TEXT_RULES,
    DEC_COMMON_RULES(NULL, NULL, NULL, 0),
    BERT_LAYER_RULES(MF_TOWER_DEC, MF_SCOPE_DEC_LAYER, "text_decoder.bert.encoder.layer.%d", "", 0,
                     "decoder.layer%d", D_DD, D_DFF, D_DENC),
};

static const struct mf_name_rule blip_orig_rules[] = {
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "visual_encoder.cls_token", NULL, MOFF(vision.cls), 3,
     {D_ONE, D_ONE, D_VD}, 0, "vision.embed.cls"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "visual_encoder.pos_embed", NULL, MOFF(vision.pos), 3,
     {D_ONE, D_VNTOK, D_VD}, 0, "vision.embed.pos"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "visual_encoder.patch_embed.proj.weight", NULL, MOFF(vision.patch_w), 4,
     {D_VD, D_THREE, D_VPATCH, D_VPATCH}, 0, "vision.embed.patch.weight"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, RAW, "visual_encoder.patch_embed.proj.bias", NULL, MOFF(vision.patch_b), 1,
     {D_VD}, 0, "vision.embed.patch.bias"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LNB, "visual_encoder.blocks.%d.norm1", NULL, VOFF(ln1), 1, {D_VD}, 0,
     "vision.layer%d.ln1"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "visual_encoder.blocks.%d.attn.qkv", NULL, VOFF(qkv), 2,
     {D_VD3, D_VD}, PR, "vision.layer%d.qkv"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "visual_encoder.blocks.%d.attn.proj", NULL, VOFF(proj), 2,
     {D_VD, D_VD}, PR, "vision.layer%d.proj"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LNB, "visual_encoder.blocks.%d.norm2", NULL, VOFF(ln2), 1, {D_VD}, 0,
     "vision.layer%d.ln2"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "visual_encoder.blocks.%d.mlp.fc1", NULL, VOFF(fc1), 2,
     {D_VFF, D_VD}, PR, "vision.layer%d.fc1"},
    {MF_TOWER_VISION, MF_SCOPE_VIT_LAYER, LIN, "visual_encoder.blocks.%d.mlp.fc2", NULL, VOFF(fc2), 2,
     {D_VD, D_VFF}, PR, "vision.layer%d.fc2"},
    {MF_TOWER_VISION, MF_SCOPE_MODEL, LNB, "visual_encoder.norm", NULL, MOFF(vision.ln_post), 1, {D_VD}, 0,
     "vision.ln_post"},
    TEXT_RULES,
    DEC_COMMON_RULES("text_encoder.embeddings.word_embeddings.weight",
                     "text_encoder.embeddings.position_embeddings.weight", "text_encoder.embeddings.LayerNorm", MF_RULE_TIED),
    BERT_LAYER_RULES(MF_TOWER_DEC, MF_SCOPE_DEC_LAYER, "text_decoder.bert.encoder.layer.%d",
                     "text_encoder.encoder.layer.%d", MF_RULE_TIED, "decoder.layer%d", D_DD, D_DFF, D_DENC),
};

/* Momentum copies (BLIP_Pretrain, retrieval models): each, when present, copies its whole module
 * (mf_layout_check_names requires that); the encoders' copies receive their masks. */
static const struct mf_alias blip_orig_aliases[] = {
    {"visual_encoder_m.", "visual_encoder."},
    {"text_encoder_m.", "text_encoder."},
    {"vision_proj_m.", "vision_proj."},
    {"text_proj_m.", "text_proj."},
};

const struct mf_layout_def mf_layout_blip_hf = {
    "blip-hf", blip_hf_rules, MF_ARRAY_LEN(blip_hf_rules), NULL, 0, blip_modality,
};

const struct mf_layout_def mf_layout_blip_orig = {
    "blip-orig", blip_orig_rules, MF_ARRAY_LEN(blip_orig_rules), blip_orig_aliases, MF_ARRAY_LEN(blip_orig_aliases),
    blip_modality,
};
