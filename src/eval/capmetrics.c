/*
 * eval/capmetrics.c: BLEU-1..4, ROUGE-L and CIDEr-D as the COCO caption evaluation computes them.
 *
 * Reference: pycocoevalcap (tylin/coco-caption; salaniz/pycocoevalcap is the same code):
 * bleu/bleu_scorer.py, rouge/rouge.py, cider/cider_scorer.py. Reproduced to the operation:
 *   - BLEU: clipped n-gram matches against the per-n-gram maximum count over the references;
 *     corpus score = (prod_k (correct_k + 1e-15) / (guess_k + 1e-9))^(1/n), times
 *     exp(1 - 1/ratio) when ratio = (testlen + 1e-15) / (reflen + 1e-9) < 1, where reflen sums
 *     each image's 'closest' reference length (ties: the shorter). Per-image scores likewise.
 *   - ROUGE-L: LCS over tokens split on single spaces, so an empty caption is one empty token
 *     (as Python's "".split(" ") == [""]); precision and recall each maxed over the references;
 *     F with beta 1.2 when both are non-zero; mean over images.
 *   - CIDEr-D: document frequency = number of images whose references contain the n-gram; tf-idf
 *     weight tf * (log(N) - log(max(1, df))); per n, sum over the candidate's n-grams of
 *     min(w_c, w_r) * w_r over the product of the norms (when both are non-zero), times
 *     e^(-delta^2 / (2 * 6^2)) where delta is the difference of the *bigram* counts (the
 *     reference code counts length at n-gram index 1); mean over n, over references, x10; mean
 *     over images.
 * Does not: tokenise (eval/captok.c), read files (the CLI does), compute METEOR or SPICE (Java).
 * Sums run in a fixed order; they may differ from numpy's pairwise sums in the last bits.
 *
 * Representation: every word gets an id, every n-gram (n <= 4) an id in one table; a sentence is
 * a "bag", its (n-gram id, count) pairs sorted by id, so clipping and dot products are merges.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "multiflow/eval.h"

#define NGRAM 4

struct bag_entry {
    int32_t id;    /* n-gram id */
    int32_t count; /* occurrences in the sentence */
};

/* Open-addressing table of fixed-width keys (n-grams: NGRAM word ids, -1 padded). */
struct table {
    int32_t *keys; /* (cap, NGRAM) */
    int32_t *val;  /* (cap) id or -1 */
    size_t cap, n;
};

struct words {
    char **str;   /* (n) */
    int32_t *slot; /* (cap) index into str or -1 */
    size_t cap, n, n_str_cap;
};

struct state {
    int64_t n_sent; /* n_images candidates, then n_refs references */
    int32_t *tok;   /* all word ids */
    int64_t *tok_off; /* (n_sent + 1) */
    int64_t n_tok, cap_tok;
    struct bag_entry *bag;
    int64_t *bag_off; /* (n_sent + 1) */
    int64_t n_bag, cap_bag;
    struct words w;
    struct table ng;
    int8_t *order;    /* (n-grams) n - 1 */
    int64_t n_order_cap;
    int32_t empty_id; /* word id standing for ROUGE's empty token */
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool table_grow(struct table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 1024;
    int32_t *keys = mf_malloc(cap * NGRAM * sizeof *keys), *val = mf_malloc(cap * sizeof *val);
    if (!keys || !val) {
        mf_free(keys);
        mf_free(val);
        return false;
    }
    memset(val, 0xff, cap * sizeof *val);
    for (size_t i = 0; i < t->cap; i++) {
        if (t->val[i] < 0)
            continue;
        size_t j = hash_bytes(&t->keys[i * NGRAM], NGRAM * sizeof(int32_t)) & (cap - 1);
        while (val[j] >= 0)
            j = (j + 1) & (cap - 1);
        memcpy(&keys[j * NGRAM], &t->keys[i * NGRAM], NGRAM * sizeof(int32_t));
        val[j] = t->val[i];
    }
    mf_free(t->keys);
    mf_free(t->val);
    t->keys = keys;
    t->val = val;
    t->cap = cap;
    return true;
}

/* Id of key (NGRAM ints), added if new; -1 on NOMEM. */
static int32_t table_intern(struct table *t, const int32_t *key)
{
    if ((t->n + 1) * 2 > t->cap && !table_grow(t))
        return -1;
    size_t j = hash_bytes(key, NGRAM * sizeof(int32_t)) & (t->cap - 1);
    while (t->val[j] >= 0) {
        if (memcmp(&t->keys[j * NGRAM], key, NGRAM * sizeof(int32_t)) == 0)
            return t->val[j];
        j = (j + 1) & (t->cap - 1);
    }
    if (t->n >= INT32_MAX)
        return -1;
    memcpy(&t->keys[j * NGRAM], key, NGRAM * sizeof(int32_t));
    t->val[j] = (int32_t)t->n;
    return (int32_t)t->n++;
}

static bool words_grow(struct words *w)
{
    size_t cap = w->cap ? 2 * w->cap : 1024;
    int32_t *slot = mf_malloc(cap * sizeof *slot);
    if (!slot)
        return false;
    memset(slot, 0xff, cap * sizeof *slot);
    for (size_t i = 0; i < w->n; i++) {
        size_t j = hash_bytes(w->str[i], strlen(w->str[i])) & (cap - 1);
        while (slot[j] >= 0)
            j = (j + 1) & (cap - 1);
        slot[j] = (int32_t)i;
    }
    mf_free(w->slot);
    w->slot = slot;
    w->cap = cap;
    return true;
}

/* Id of the word s[0..len); -1 on NOMEM. */
static int32_t word_intern(struct words *w, const char *s, size_t len)
{
    if ((w->n + 1) * 2 > w->cap && !words_grow(w))
        return -1;
    size_t j = hash_bytes(s, len) & (w->cap - 1);
    while (w->slot[j] >= 0) {
        const char *o = w->str[w->slot[j]];
        if (strlen(o) == len && memcmp(o, s, len) == 0)
            return w->slot[j];
        j = (j + 1) & (w->cap - 1);
    }
    if (w->n == w->n_str_cap) {
        size_t cap = w->n_str_cap ? 2 * w->n_str_cap : 1024;
        char **str = mf_realloc(w->str, cap * sizeof *str);
        if (!str)
            return -1;
        w->str = str;
        w->n_str_cap = cap;
    }
    char *copy = mf_malloc(len + 1);
    if (!copy || w->n >= INT32_MAX) {
        mf_free(copy);
        return -1;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    w->str[w->n] = copy;
    w->slot[j] = (int32_t)w->n;
    return (int32_t)w->n++;
}

static void state_free(struct state *s)
{
    for (size_t i = 0; i < s->w.n; i++)
        mf_free(s->w.str[i]);
    mf_free(s->w.str);
    mf_free(s->w.slot);
    mf_free(s->ng.keys);
    mf_free(s->ng.val);
    mf_free(s->order);
    mf_free(s->tok);
    mf_free(s->tok_off);
    mf_free(s->bag);
    mf_free(s->bag_off);
}

static bool reserve(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    int64_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = mf_realloc(*p, (size_t)c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Appends sentence k's words (tokens separated by spaces in text) and its bag. */
static enum mf_status add_sentence(struct state *s, int64_t k, const char *text, int32_t *ids_scratch,
                                   struct mf_err *err)
{
    int64_t start = s->n_tok;
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if (e > p) {
            int32_t id = word_intern(&s->w, p, (size_t)(e - p));
            if (id < 0 || !reserve((void **)&s->tok, &s->cap_tok, s->n_tok + 1, sizeof *s->tok))
                goto nomem;
            s->tok[s->n_tok++] = id;
        }
        p = e;
    }
    s->tok_off[k + 1] = s->n_tok;
    /* n-gram ids of every position and order, sorted, then run-length counted */
    int64_t L = s->n_tok - start, m = 0;
    const int32_t *w = s->tok + start;
    for (int n = 1; n <= NGRAM; n++)
        for (int64_t i = 0; i + n <= L; i++) {
            int32_t key[NGRAM] = {-1, -1, -1, -1};
            memcpy(key, w + i, (size_t)n * sizeof *key);
            int32_t id = table_intern(&s->ng, key);
            if (id < 0)
                goto nomem;
            if ((int64_t)id >= s->n_order_cap) {
                if (!reserve((void **)&s->order, &s->n_order_cap, (int64_t)id + 1, 1))
                    goto nomem;
            }
            s->order[id] = (int8_t)(n - 1);
            ids_scratch[m++] = id;
        }
    qsort(ids_scratch, (size_t)m, sizeof *ids_scratch, cmp_i32);
    if (!reserve((void **)&s->bag, &s->cap_bag, s->n_bag + m, sizeof *s->bag))
        goto nomem;
    for (int64_t i = 0; i < m;) {
        int64_t j = i;
        while (j < m && ids_scratch[j] == ids_scratch[i])
            j++;
        s->bag[s->n_bag++] = (struct bag_entry){ids_scratch[i], (int32_t)(j - i)};
        i = j;
    }
    s->bag_off[k + 1] = s->n_bag;
    return MF_OK;
nomem:
    return mf_err_set(err, MF_ERR_NOMEM, "caption metrics: out of memory");
}

/* Longest common subsequence length of a[0..na) and b[0..nb) (row: nb + 1 ints). */
static int64_t lcs(const int32_t *a, int64_t na, const int32_t *b, int64_t nb, int64_t *row)
{
    for (int64_t j = 0; j <= nb; j++)
        row[j] = 0;
    for (int64_t i = 0; i < na; i++) {
        int64_t diag = 0;
        for (int64_t j = 1; j <= nb; j++) {
            int64_t up = row[j];
            row[j] = a[i] == b[j - 1] ? diag + 1 : MF_MAX(up, row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

/* A sentence as ROUGE sees it: "".split(" ") is [""], one empty token. */
static const int32_t *rouge_tokens(const struct state *s, int64_t k, int64_t *n)
{
    *n = s->tok_off[k + 1] - s->tok_off[k];
    if (*n == 0) {
        *n = 1;
        return &s->empty_id;
    }
    return s->tok + s->tok_off[k];
}

/* CIDEr-D of one sentence: tf-idf weights per bag entry, norms per order, bigram count. */
static void tfidf(const struct state *s, int64_t k, const int32_t *df, double log_n, double *wt, double norm[NGRAM],
                  double *length)
{
    const struct bag_entry *b = s->bag + s->bag_off[k];
    int64_t nb = s->bag_off[k + 1] - s->bag_off[k];
    double sq[NGRAM] = {0};
    *length = 0;
    for (int64_t i = 0; i < nb; i++) {
        int o = s->order[b[i].id];
        wt[i] = (double)b[i].count * (log_n - log(MF_MAX(1.0, (double)df[b[i].id])));
        sq[o] += pow(wt[i], 2);
        if (o == 1)
            *length += b[i].count;
    }
    for (int o = 0; o < NGRAM; o++)
        norm[o] = sqrt(sq[o]);
}

/* For each entry a of the candidate bag cb, the index of the same n-gram in rb, or -1 (a merge of
 * the two id-sorted bags). */
static void match_bags(const struct bag_entry *cb, int64_t ncb, const struct bag_entry *rb, int64_t nrb,
                       int64_t *match)
{
    int64_t b = 0;
    for (int64_t a = 0; a < ncb; a++) {
        while (b < nrb && rb[b].id < cb[a].id)
            b++;
        match[a] = b < nrb && rb[b].id == cb[a].id ? b : -1;
    }
}

enum mf_status mf_caption_metrics(const struct mf_caption_set *set, struct mf_caption_metrics *out,
                                  double *per_image, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct state s = {0};
    int64_t N = set->n_images, R = set->n_refs;
    int64_t *ref_off = NULL, *ref_list = NULL, *row = NULL, *maxc = NULL, *match = NULL;
    int32_t *ids = NULL, *df = NULL, *seen = NULL;
    char *tokbuf = NULL;
    double *wt = NULL, *img_scores = NULL;
    memset(out, 0, sizeof *out);
    if (N < 1 || R < 0 || N > INT32_MAX || R > INT32_MAX)
        return mf_err_set(err, MF_ERR_ARG, "caption metrics: %lld images and %lld references (need at least "
                          "one image)", (long long)N, (long long)R);
    /* references grouped by image, in their order */
    ref_off = mf_calloc((size_t)N + 1, sizeof *ref_off);
    ref_list = mf_malloc(((size_t)R + 1) * sizeof *ref_list);
    s.tok_off = mf_calloc((size_t)(N + R) + 1, sizeof *s.tok_off);
    s.bag_off = mf_calloc((size_t)(N + R) + 1, sizeof *s.bag_off);
    img_scores = mf_calloc((size_t)N * MF_CAPTION_PER_IMAGE, sizeof *img_scores);
    if (!ref_off || !ref_list || !s.tok_off || !s.bag_off || !img_scores)
        goto nomem;
    for (int64_t r = 0; r < R; r++) {
        if (set->ref_image[r] < 0 || set->ref_image[r] >= N) {
            st = mf_err_set(err, MF_ERR_RANGE, "caption metrics: reference %lld belongs to image %lld, outside "
                            "[0, %lld)", (long long)r, (long long)set->ref_image[r], (long long)N);
            goto fail;
        }
        ref_off[set->ref_image[r] + 1]++;
    }
    for (int64_t i = 0; i < N; i++) {
        if (ref_off[i + 1] == 0) {
            if (set->image)
                st = mf_err_set(err, MF_ERR_MISSING, "caption metrics: image '%s' has no reference caption",
                                set->image[i]);
            else
                st = mf_err_set(err, MF_ERR_MISSING, "caption metrics: image %lld has no reference caption",
                                (long long)i);
            goto fail;
        }
        ref_off[i + 1] += ref_off[i];
    }
    {
        int64_t *fill = mf_malloc((size_t)N * sizeof *fill);
        if (!fill)
            goto nomem;
        memcpy(fill, ref_off, (size_t)N * sizeof *fill);
        for (int64_t r = 0; r < R; r++)
            ref_list[fill[set->ref_image[r]]++] = r;
        mf_free(fill);
    }

    /* words and bags of every sentence: candidates 0..N-1, then references N..N+R-1 */
    size_t max_len = 0;
    for (int64_t k = 0; k < N + R; k++) {
        const char *t = k < N ? set->candidate[k] : set->ref[k - N];
        max_len = MF_MAX(max_len, strlen(t));
    }
    size_t tb_size = set->pretokenized ? 1 : MF_CAPTION_TOKENS_SIZE(max_len);
    tokbuf = mf_malloc(tb_size);
    ids = mf_malloc((4 * (MF_CAPTION_TOKENS_SIZE(max_len) / 2 + 1)) * sizeof *ids);
    if (!tokbuf || !ids)
        goto nomem;
    s.empty_id = -2; /* never a real word id */
    for (int64_t k = 0; k < N + R; k++) {
        const char *t = k < N ? set->candidate[k] : set->ref[k - N];
        if (!set->pretokenized) {
            if ((st = mf_caption_tokenize(t, tokbuf, tb_size, NULL, err)) != MF_OK) {
                char where[MF_ERR_MSG_LEN / 2];
                int64_t img = k < N ? k : set->ref_image[k - N];
                if (set->image)
                    snprintf(where, sizeof where, "caption metrics: image '%s': %s", set->image[img],
                             k < N ? "candidate" : "reference");
                else
                    snprintf(where, sizeof where, "caption metrics: image %lld: %s", (long long)img,
                             k < N ? "candidate" : "reference");
                mf_err_prefix(err, where);
                goto fail;
            }
            t = tokbuf;
        }
        if ((st = add_sentence(&s, k, t, ids, err)) != MF_OK)
            goto fail;
    }

    /* ---- BLEU ---- */
    int64_t max_bag = 0, max_tok = 1;
    for (int64_t k = 0; k < N + R; k++) {
        max_bag = MF_MAX(max_bag, s.bag_off[k + 1] - s.bag_off[k]);
        max_tok = MF_MAX(max_tok, s.tok_off[k + 1] - s.tok_off[k]);
    }
    maxc = mf_malloc(((size_t)max_bag + 1) * sizeof *maxc);
    match = mf_malloc(((size_t)max_bag + 1) * sizeof *match);
    row = mf_malloc(((size_t)max_tok + 2) * sizeof *row);
    wt = mf_malloc(((size_t)max_bag + 1) * 2 * sizeof *wt);
    if (!maxc || !match || !row || !wt)
        goto nomem;
    const double tiny = 1e-15, small = 1e-9;
    int64_t tot_guess[NGRAM] = {0}, tot_correct[NGRAM] = {0}, tot_test = 0, tot_ref = 0;
    for (int64_t i = 0; i < N; i++) {
        const struct bag_entry *cb = s.bag + s.bag_off[i];
        int64_t ncb = s.bag_off[i + 1] - s.bag_off[i];
        int64_t testlen = s.tok_off[i + 1] - s.tok_off[i];
        int64_t reflen = -1;
        for (int64_t j = 0; j < ncb; j++)
            maxc[j] = 0;
        for (int64_t q = ref_off[i]; q < ref_off[i + 1]; q++) {
            int64_t k = N + ref_list[q];
            int64_t rl = s.tok_off[k + 1] - s.tok_off[k];
            /* closest length, ties to the shorter: min over (|l - testlen|, l) */
            if (reflen < 0 || llabs(rl - testlen) < llabs(reflen - testlen) ||
                (llabs(rl - testlen) == llabs(reflen - testlen) && rl < reflen))
                reflen = rl;
            const struct bag_entry *rb = s.bag + s.bag_off[k];
            int64_t nrb = s.bag_off[k + 1] - s.bag_off[k];
            match_bags(cb, ncb, rb, nrb, match);
            for (int64_t a = 0; a < ncb; a++)
                if (match[a] >= 0)
                    maxc[a] = MF_MAX(maxc[a], rb[match[a]].count);
        }
        int64_t correct[NGRAM] = {0}, guess[NGRAM];
        for (int64_t j = 0; j < ncb; j++)
            correct[s.order[cb[j].id]] += MF_MIN(cb[j].count, maxc[j]);
        for (int k = 0; k < NGRAM; k++) {
            guess[k] = MF_MAX(0, testlen - k);
            tot_guess[k] += guess[k];
            tot_correct[k] += correct[k];
        }
        tot_test += testlen;
        tot_ref += reflen;
        double bleu = 1.0, ratio = ((double)testlen + tiny) / ((double)reflen + small);
        for (int k = 0; k < NGRAM; k++) {
            bleu *= ((double)correct[k] + tiny) / ((double)guess[k] + small);
            double b = pow(bleu, 1.0 / (k + 1));
            if (ratio < 1)
                b *= exp(1 - 1 / ratio);
            img_scores[i * MF_CAPTION_PER_IMAGE + k] = b;
        }
    }
    {
        double bleu = 1.0, ratio = ((double)tot_test + tiny) / ((double)tot_ref + small);
        for (int k = 0; k < NGRAM; k++) {
            bleu *= ((double)tot_correct[k] + tiny) / ((double)tot_guess[k] + small);
            out->bleu[k] = pow(bleu, 1.0 / (k + 1));
            if (ratio < 1)
                out->bleu[k] *= exp(1 - 1 / ratio);
        }
    }

    /* ---- ROUGE-L ---- */
    const double beta = 1.2;
    for (int64_t i = 0; i < N; i++) {
        int64_t nc;
        const int32_t *c = rouge_tokens(&s, i, &nc);
        double pmax = 0, rmax = 0;
        for (int64_t q = ref_off[i]; q < ref_off[i + 1]; q++) {
            int64_t nr;
            const int32_t *r = rouge_tokens(&s, N + ref_list[q], &nr);
            /* the reference code puts the longer sequence first; LCS length is symmetric */
            int64_t l = nr >= nc ? lcs(r, nr, c, nc, row) : lcs(c, nc, r, nr, row);
            pmax = MF_MAX(pmax, (double)l / (double)nc);
            rmax = MF_MAX(rmax, (double)l / (double)nr);
        }
        double score = 0.0;
        if (pmax != 0 && rmax != 0)
            score = ((1 + beta * beta) * pmax * rmax) / (rmax + beta * beta * pmax);
        img_scores[i * MF_CAPTION_PER_IMAGE + 4] = score;
    }

    /* ---- CIDEr-D ---- */
    df = mf_calloc(s.ng.n + 1, sizeof *df);
    seen = mf_malloc((s.ng.n + 1) * sizeof *seen);
    if (!df || !seen)
        goto nomem;
    memset(seen, 0xff, (s.ng.n + 1) * sizeof *seen);
    for (int64_t i = 0; i < N; i++)
        for (int64_t q = ref_off[i]; q < ref_off[i + 1]; q++) {
            int64_t k = N + ref_list[q];
            for (int64_t j = s.bag_off[k]; j < s.bag_off[k + 1]; j++) {
                int32_t id = s.bag[j].id;
                if (seen[id] != (int32_t)i) { /* once per image */
                    seen[id] = (int32_t)i;
                    df[id]++;
                }
            }
        }
    const double log_n = log((double)N), sigma = 6.0;
    double *wc = wt, *wr = wt + max_bag + 1;
    for (int64_t i = 0; i < N; i++) {
        double nc[NGRAM], lc;
        tfidf(&s, i, df, log_n, wc, nc, &lc);
        const struct bag_entry *cb = s.bag + s.bag_off[i];
        int64_t ncb = s.bag_off[i + 1] - s.bag_off[i];
        double score[NGRAM] = {0};
        for (int64_t q = ref_off[i]; q < ref_off[i + 1]; q++) {
            int64_t k = N + ref_list[q];
            double nr[NGRAM], lr;
            tfidf(&s, k, df, log_n, wr, nr, &lr);
            const struct bag_entry *rb = s.bag + s.bag_off[k];
            int64_t nrb = s.bag_off[k + 1] - s.bag_off[k];
            double val[NGRAM] = {0};
            match_bags(cb, ncb, rb, nrb, match);
            for (int64_t a = 0; a < ncb; a++)
                if (match[a] >= 0)
                    val[s.order[cb[a].id]] += MF_MIN(wc[a], wr[match[a]]) * wr[match[a]];
            double delta = lc - lr;
            for (int o = 0; o < NGRAM; o++) {
                if (nc[o] != 0 && nr[o] != 0)
                    val[o] /= nc[o] * nr[o];
                val[o] *= pow(M_E, -(delta * delta) / (2 * sigma * sigma));
                score[o] += val[o];
            }
        }
        double mean = (score[0] + score[1] + score[2] + score[3]) / NGRAM;
        mean /= (double)(ref_off[i + 1] - ref_off[i]);
        mean *= 10.0;
        img_scores[i * MF_CAPTION_PER_IMAGE + 5] = mean;
    }

    double sum_r = 0, sum_c = 0;
    for (int64_t i = 0; i < N; i++) {
        sum_r += img_scores[i * MF_CAPTION_PER_IMAGE + 4];
        sum_c += img_scores[i * MF_CAPTION_PER_IMAGE + 5];
    }
    out->n_images = N;
    out->n_refs = R;
    out->rouge_l = sum_r / (double)N;
    out->cider = sum_c / (double)N;
    if (per_image)
        memcpy(per_image, img_scores, (size_t)N * MF_CAPTION_PER_IMAGE * sizeof *per_image);
    goto fail;
nomem:
    st = mf_err_set(err, MF_ERR_NOMEM, "caption metrics: out of memory (%lld images, %lld references)",
                    (long long)N, (long long)R);
fail:
    if (st != MF_OK)
        memset(out, 0, sizeof *out);
    mf_free(img_scores);
    mf_free(wt);
    mf_free(seen);
    mf_free(df);
    mf_free(row);
    mf_free(match);
    mf_free(maxc);
    mf_free(ids);
    mf_free(tokbuf);
    mf_free(ref_list);
    mf_free(ref_off);
    state_free(&s);
    return st;
}
