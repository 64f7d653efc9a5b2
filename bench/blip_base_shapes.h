/*
 * bench/blip_base_shapes.h: the 216 prunable tensors of BLIP-base (226,492,416 weights; models.md
 * §4.7 / §8.3) as a list of names and shapes, for benchmarks that need the real sizes without a
 * checkpoint. Header-only (static functions), used by bench_chita.c; bench_prune.c builds the same
 * list with the same names and order.
 *
 *   vision  12 x {qkv 2304x768, proj 768x768, fc1 3072x768, fc2 768x3072}
 *   text    12 x {4 self 768x768, 4 cross 768x768, fc1 3072x768, fc2 768x3072}
 *   decoder 12 x 4 self-attention 768x768 (text modality)
 *
 * What it deliberately does not do: no weights, no statistics, no model loading (bench programs
 * fill their own buffers); the selection order (names byte-wise ascending, pruning.md) is left to
 * bench_shapes_sort.
 *
 * Reference: shared/spec/models.md (the prunable set), shared/spec/pruning.md (selection order).
 */
#ifndef MF_BENCH_BLIP_BASE_SHAPES_H
#define MF_BENCH_BLIP_BASE_SHAPES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiflow/model.h"

enum { BENCH_D = 768, BENCH_FF = 3072, BENCH_LAYERS = 12, BENCH_MAX_SHAPES = 256 };

struct bench_shape {
    char name[96];
    int64_t out, in;
    enum mf_modality mod;
};

struct bench_shapes {
    int n;
    struct bench_shape s[BENCH_MAX_SHAPES];
};

static void bench_shapes_add(struct bench_shapes *b, enum mf_modality mod, int64_t out, int64_t in, const char *fmt,
                             int layer)
{
    struct bench_shape *s = &b->s[b->n++];
    snprintf(s->name, sizeof s->name, fmt, layer);
    s->out = out;
    s->in = in;
    s->mod = mod;
}

/* The first `layers` (1..12) layers of every tower, in construction order (not selection order). */
static void bench_shapes_build(struct bench_shapes *b, int layers)
{
    static const char *const self[4] = {"query", "key", "value", "output"};
    const int64_t D = BENCH_D, FF = BENCH_FF;
    char fmt[96];
    b->n = 0;
    for (int l = 0; l < layers; l++) {
        bench_shapes_add(b, MF_MOD_VISION, 3 * D, D, "visual_encoder.blocks.%d.attn.qkv.weight", l);
        bench_shapes_add(b, MF_MOD_VISION, D, D, "visual_encoder.blocks.%d.attn.proj.weight", l);
        bench_shapes_add(b, MF_MOD_VISION, FF, D, "visual_encoder.blocks.%d.mlp.fc1.weight", l);
        bench_shapes_add(b, MF_MOD_VISION, D, FF, "visual_encoder.blocks.%d.mlp.fc2.weight", l);
        for (int q = 0; q < 4; q++) {
            snprintf(fmt, sizeof fmt, "text_encoder.encoder.layer.%%d.attention.%s.weight", self[q]);
            bench_shapes_add(b, MF_MOD_TEXT, D, D, fmt, l);
            snprintf(fmt, sizeof fmt, "text_encoder.encoder.layer.%%d.crossattention.%s.weight", self[q]);
            bench_shapes_add(b, MF_MOD_TEXT, D, D, fmt, l);
            snprintf(fmt, sizeof fmt, "text_decoder.bert.encoder.layer.%%d.attention.%s.weight", self[q]);
            bench_shapes_add(b, MF_MOD_TEXT, D, D, fmt, l);
        }
        bench_shapes_add(b, MF_MOD_TEXT, FF, D, "text_encoder.encoder.layer.%d.intermediate.dense.weight", l);
        bench_shapes_add(b, MF_MOD_TEXT, D, FF, "text_encoder.encoder.layer.%d.output.dense.weight", l);
    }
}

static int bench_shape_cmp(const void *a, const void *b)
{
    return strcmp(((const struct bench_shape *)a)->name, ((const struct bench_shape *)b)->name);
}

/* Selection order: names byte-wise ascending (pruning.md exact-k tie rule). */
static void bench_shapes_sort(struct bench_shapes *b)
{
    qsort(b->s, (size_t)b->n, sizeof b->s[0], bench_shape_cmp);
}

static int64_t bench_shapes_total(const struct bench_shapes *b)
{
    int64_t t = 0;
    for (int i = 0; i < b->n; i++)
        t += b->s[i].out * b->s[i].in;
    return t;
}

#endif
