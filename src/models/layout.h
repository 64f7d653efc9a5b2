/*
 * models/layout.h: name-layout tables. A layout is a list of rules, each binding one checkpoint
 * name pattern (with %d for the layer index) to a field of the model structure, with a symbolic
 * expected shape. Adding a layout (XVLM, CLIP, another BLIP export) is a new table, not new code.
 */
#ifndef MF_MODELS_LAYOUT_H
#define MF_MODELS_LAYOUT_H

#include "models/model_impl.h"

enum mf_scope { MF_SCOPE_MODEL, MF_SCOPE_VIT_LAYER, MF_SCOPE_TEXT_LAYER, MF_SCOPE_DEC_LAYER };
/* Which part of the model a rule belongs to; rules of absent parts are skipped. */
enum mf_tower { MF_TOWER_VISION, MF_TOWER_TEXT, MF_TOWER_DEC, MF_TOWER_LM, MF_TOWER_ITC, MF_TOWER_ITM };
enum mf_bind_kind {
    MF_BIND_LINEAR,        /* <fmt>.weight (out,in) + <fmt>.bias (out) into struct mf_linear */
    MF_BIND_LINEAR_NOBIAS, /* <fmt>.weight only */
    MF_BIND_LN,            /* <fmt>.weight + <fmt>.bias (d) into struct mf_ln */
    MF_BIND_RAW,           /* the tensor named <fmt> into a const float * */
};
/* Symbolic dimensions resolved from the configuration. */
enum mf_dim {
    D_NONE = 0, D_ONE, D_TWO, D_THREE,
    D_VD, D_VD3, D_VFF, D_VPATCH, D_VPATCHIN, D_VNTOK,
    D_TD, D_TFF, D_TVOCAB, D_TPOS, D_TENC, D_PROJ,
    D_DD, D_DFF, D_DVOCAB, D_DPOS, D_DENC, /* decoder stack */
};
enum {
    MF_RULE_OPTIONAL = 1u << 0, /* absent is fine (field stays NULL) */
    MF_RULE_PRUNABLE = 1u << 1, /* the .weight is a prunable tensor */
    MF_RULE_CROSS = 1u << 2,    /* only in layers that have cross-attention */
    MF_RULE_BIAS_OPT = 1u << 3, /* LINEAR whose bias may be absent */
    MF_RULE_TIED = 1u << 4,     /* fallback names the tensor this one is tied to */
};

struct mf_name_rule {
    enum mf_tower tower;
    enum mf_scope scope;
    enum mf_bind_kind kind;
    const char *fmt;      /* checkpoint name (prefix for LINEAR/LN), %d = layer */
    const char *fallback; /* with MF_RULE_TIED: the tied tensor, used when fmt is absent */
    size_t off;           /* field offset in the scope's struct */
    int ndim;
    enum mf_dim shape[4]; /* weight shape (LINEAR: out, in; LN: d) */
    unsigned flags;
    const char *role;     /* role text for inspect, %d = layer */
};

/* Prefix aliases: tensors named <from>X receive the mask of <to>X (momentum copies, tied decoder). */
struct mf_alias {
    const char *from, *to;
};

struct mf_layout_def {
    const char *name;
    const struct mf_name_rule *rules;
    size_t n_rules;
    const struct mf_alias *aliases;
    size_t n_aliases;
    enum mf_modality (*modality)(enum mf_scope scope, int64_t layer, const struct mf_model *m);
};

extern const struct mf_layout_def mf_layout_blip_hf;
extern const struct mf_layout_def mf_layout_blip_orig;

/* Highest number of layers a tower may have; a layer index at or above it is an unexpected name. */
#define MF_MAX_LAYERS 1024

/* The layer index N of a name "<prefix>N.<rest>" (N decimal without leading zeros, below
 * MF_MAX_LAYERS); -1 when name does not start with prefix or N is malformed or too large. */
int64_t mf_layout_layer_index(const char *name, const char *prefix);

/* Checks the names and shapes of m->tensors against def for the towers and layer counts in m's
 * configuration, before anything is bound: every tensor of every rule and layer is present (or its
 * tied fallback) with the expected shape; no name inside a layer (<tower prefix>N.) is outside the
 * table or beyond the layer count; every alias (momentum) prefix that is present copies every
 * tensor of its target with the same shape. Reports every problem by name in one MF_ERR_MISSING
 * or MF_ERR_SHAPE message (a wholly absent layer as one entry). Needs m->by_name, not the mapping. */
enum mf_status mf_layout_check_names(const struct mf_model *m, const struct mf_layout_def *def, struct mf_err *err);

/* Every floating-point tensor of the checkpoint (as bound in f32, else as stored: momentum copies,
 * queues) holds only finite values; else MF_ERR_NUMERIC naming the tensor, the element and the
 * value. One pass over the weights at load. */
enum mf_status mf_layout_check_finite(const struct mf_model *m, struct mf_err *err);

/* blip_config.c: BLIP layout detection and configuration from the tensor list alone (m->tensors and
 * m->by_name; no file access), shared by mf_model_load and the fuzz target. */
/* Whether any tensor name starts with prefix: a tower counts as present if any of its tensors is,
 * so a partial tower is reported as missing tensors rather than silently dropped. */
bool mf_model_has_prefix(const struct mf_model *m, const char *prefix);
/* Detects the layout (HF or original) and which towers are present; *def = its name table. */
enum mf_status mf_blip_detect(struct mf_model *m, const struct mf_model_opts *o, const struct mf_layout_def **def,
                              struct mf_err *err);
/* Original layout: the configuration inferred from names and shapes (models.md §4.5, §4.6); layer
 * counts are 1 + the highest layer index of any copy of the tower (online, momentum, decoder). */
enum mf_status mf_blip_orig_config(struct mf_model *m, const struct mf_model_opts *o, struct mf_err *err);
/* Derived configuration (grid, tokens, decoder = text shape) and its consistency checks. */
enum mf_status mf_blip_config_finish(struct mf_model *m, struct mf_err *err);

/* Binds every rule of def into m (configs must be filled and layer arrays allocated), fills
 * m->tensors' roles, prunable flags, modalities, tied_to, and converts weights to f32. */
enum mf_status mf_layout_bind(struct mf_model *m, const struct mf_layout_def *def, struct mf_err *err);

/* Gradient owner of a bound weight pointer p: the model tensor index whose f32 data is p, followed
 * through tied_to (a tied decoder copy accumulates into the encoder tensor, as the reference's
 * shared nn.Parameter does); -1 for NULL or an unbound pointer. */
int mf_layout_grad_owner(const struct mf_model *m, const float *p);
/* Fills every gradient index field (wi/bi, patch_wi, word_i, ...) of the vision, text, decoder and
 * head structures from their pointers (mf_layout_bind calls it; the LM head's tied decoder weight
 * is fixed up by blip.c). */
void mf_layout_grad_indices(struct mf_model *m);

#endif
