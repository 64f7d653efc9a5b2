/*
 * prune/chita.c: CHITA (Benbaki et al., "Fast as CHITA: Neural Network Pruning with Combinatorial
 * Optimization", ICML 2023) as the MULTIFLOW reference runs it (pruners/chita.py Chita.run ->
 * utils/solvers.py Heuristic_LSBlock, split_type 1; read, not copied). With A (n, p) the per-batch
 * gradient rows, w the current weights, alpha = (sum of the rows) / batch size and
 * lam2 = n * lambda / 2, the loss is modelled by
 *
 *     f(b) = 0.5 ||A (w - b)||^2 + lam2 ||b - w||^2 + alpha . b
 *
 * and minimised over b with at most k = p - floor(s p) non-zeros:
 *   1. global step (prune_ls on all p weights from b = w): one iterative-hard-thresholding step
 *      along grad = alpha with the optimal step t = sum_S alpha^2 / (||A_S alpha_S||^2 +
 *      2 lam2 sum_S alpha^2), S = top-k |w|; if t would leave a weight off S larger than one on
 *      it, halve the step until it does not, then a line search doubling it while f decreases
 *      (at most 10 tries, each re-selecting the top k of |w - L alpha|). The support of the
 *      result fixes how many survivors each block gets (the reference: |b| > its (k+1)-th largest).
 *   2. blocks: tensors cut into blocks of about 10^4 consecutive weights (get_blocklist_custom:
 *      a smaller tensor is one block; else int(P / bs) blocks of int(P / int(P / bs)), the last
 *      one taking the remainder). Per block with k_b survivors: prune_ls again on the block (the
 *      general form, r = A_b (w_b - b_b)), then the ridge solve on its top-k_b support S_b:
 *      (A_S^T A_S + 2 lam2 I) b_S = A_S^T A_b w_b + 2 lam2 w_S - alpha_S, by Woodbury when
 *      k_b > n (an n x n Cholesky), else directly (k_b x k_b): the survivors absorb the pruned
 *      weights' contribution to A w. Masks = the supports, new weights = the solutions.
 *
 * Memory: the rows live in an unlinked temporary file written row by row (pwrite) and read
 * column window by column window (one mmap per row per window, window_bytes in all, unmapped
 * before the next), so RAM holds per weight: alpha (double), one float score and one byte of
 * candidate mask besides the caller's weights, masks and outputs. Passes over the file: one for
 * A_S alpha_S, up to 11 more in the line search, one for the blocks.
 *
 * Deviations (pruning.md: "the solve runs in double precision"): float64 everywhere (the reference
 * runs float32); exact-k with the position tie rule in every top-k (the reference's argsort is
 * unstable and its |b| > threshold count loses survivors on ties); previously pruned weights
 * (chita++) rank below every other weight; a line search that never improves keeps the
 * magnitude-pruned start (the reference would fail on an unbound variable); a maximum over an
 * empty set is -inf (numpy raises); a zero step denominator gives step 0. The global selection
 * ranks float32 scores |w - L alpha| (rounded from double once) through mf_select_lowest.
 *
 * Does not: compute gradients (the caller puts rows), second-order (Hessian) terms beyond the
 * empirical Fisher A^T A, other CHITA variants (the reference uses this one only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/common.h"
#include "core/pool.h"
#include "io/fs.h"
#include "multiflow/prune.h"

#define CHITA_SEARCH_ITERS 10 /* the reference's sea_max_itr */
#define CHITA_HALVINGS 100
#define CHITA_GROUP 4         /* line-search objectives evaluated per pass over the row file (at most 4:
                                 pass_kernel keeps their v vectors in 4 block scratch arrays) */

/* ---- the row file -------------------------------------------------------------------------- */

struct mf_chita_rows {
    int fd;
    char path[MF_PATH_MAX];
    int64_t n_rows, n_cols;
    double *colsum;   /* (n_cols) sum over rows */
    uint8_t *done;    /* (n_rows) */
};

enum mf_status mf_chita_rows_create(const char *tmp_dir, int64_t n_rows, int64_t n_cols, struct mf_chita_rows **out,
                                    struct mf_err *err)
{
    enum mf_status st = MF_OK;
    *out = NULL;
    if (n_rows < 1 || n_cols < 1)
        return mf_err_set(err, MF_ERR_ARG, "chita: %lld gradient rows of %lld weights (both must be >= 1)",
                          (long long)n_rows, (long long)n_cols);
    size_t cells, bytes, colbytes;
    if (!mf_mul_size((size_t)n_rows, (size_t)n_cols, &cells) || !mf_mul_size(cells, sizeof(float), &bytes) ||
        bytes > (size_t)INT64_MAX || !mf_mul_size((size_t)n_cols, sizeof(double), &colbytes))
        return mf_err_set(err, MF_ERR_RANGE, "chita: %lld gradient rows of %lld weights overflow a file size",
                          (long long)n_rows, (long long)n_cols);
    if (!tmp_dir || !tmp_dir[0])
        tmp_dir = getenv("TMPDIR");
    if (!tmp_dir || !tmp_dir[0])
        tmp_dir = "/tmp";
    struct mf_chita_rows *r = mf_calloc(1, sizeof *r);
    if (!r)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    r->fd = -1;
    r->n_rows = n_rows;
    r->n_cols = n_cols;
    r->colsum = mf_calloc((size_t)n_cols, sizeof *r->colsum);
    r->done = mf_calloc((size_t)n_rows, 1);
    if (!r->colsum || !r->done) {
        st = mf_err_set(err, MF_ERR_NOMEM, "chita: out of memory for the column sums of %lld weights",
                        (long long)n_cols);
        goto fail;
    }
    if (!mf_fs_join(r->path, sizeof r->path, tmp_dir, ".multiflow-chita-XXXXXX")) {
        st = mf_err_set(err, MF_ERR_ARG, "%s: temporary directory path too long", tmp_dir);
        goto fail;
    }
    r->fd = mkstemp(r->path);
    if (r->fd < 0) {
        st = mf_err_set(err, MF_ERR_IO, "%s: cannot create the gradient-row file: %s", tmp_dir, strerror(errno));
        goto fail;
    }
    unlink(r->path); /* gone with the descriptor, whatever happens */
    int e = posix_fallocate(r->fd, 0, (off_t)bytes);
    if (e == EOPNOTSUPP || e == EINVAL)
        e = ftruncate(r->fd, (off_t)bytes) ? errno : 0;
    if (e) {
        st = mf_err_set(err, MF_ERR_IO, "%s: cannot reserve %.2f GiB for %lld gradient rows of %lld weights: %s",
                        tmp_dir, (double)bytes / 1073741824.0, (long long)n_rows, (long long)n_cols, strerror(e));
        goto fail;
    }
    *out = r;
    return MF_OK;
fail:
    mf_chita_rows_free(r);
    return st;
}

void mf_chita_rows_free(struct mf_chita_rows *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    mf_free(r->colsum);
    mf_free(r->done);
    mf_free(r);
}

static enum mf_status pwrite_all(int fd, const void *buf, size_t len, off_t off, const char *path, struct mf_err *err)
{
    const char *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return mf_err_set(err, MF_ERR_IO, "%s: writing gradient rows: %s", path,
                              w < 0 ? strerror(errno) : "no progress");
        p += w;
        len -= (size_t)w;
        off += w;
    }
    return MF_OK;
}

enum mf_status mf_chita_rows_put(struct mf_chita_rows *r, int64_t row, const struct mf_prune_set *set,
                                 const float *const *g, const uint8_t *const *keep, struct mf_err *err)
{
    enum { CHUNK = 16384 };
    if (row < 0 || row >= r->n_rows)
        return mf_err_set(err, MF_ERR_RANGE, "chita: gradient row %lld out of range [0, %lld)", (long long)row,
                          (long long)r->n_rows);
    if (set->total != r->n_cols)
        return mf_err_set(err, MF_ERR_SHAPE, "chita: %lld prunable weights, the row file holds rows of %lld",
                          (long long)set->total, (long long)r->n_cols);
    float *buf = mf_malloc(CHUNK * sizeof *buf); /* (CHUNK) masked copy */
    if (!buf)
        return mf_err_set(err, MF_ERR_NOMEM, "out of memory");
    enum mf_status st = MF_OK;
    int64_t col = 0;
    for (size_t i = 0; i < set->n && !st; i++) {
        const struct mf_prune_tensor *t = &set->t[i];
        for (int64_t j0 = 0; j0 < t->n && !st; j0 += CHUNK) {
            int64_t m = MF_MIN((int64_t)CHUNK, t->n - j0);
            for (int64_t j = 0; j < m; j++) {
                float v = (keep && keep[i] && !keep[i][j0 + j]) ? 0.0f : g[i][j0 + j];
                if (!isfinite(v)) {
                    st = mf_err_set(err, MF_ERR_NUMERIC, "chita: gradient row %lld of '%s' holds %g at element %lld",
                                    (long long)row, t->name, (double)v, (long long)(j0 + j));
                    goto fail;
                }
                buf[j] = v;
                r->colsum[col + j0 + j] += v;
            }
            off_t off = (off_t)(((size_t)row * (size_t)r->n_cols + (size_t)(col + j0)) * sizeof(float));
            st = pwrite_all(r->fd, buf, (size_t)m * sizeof(float), off, r->path, err);
        }
        col += t->n;
    }
    if (!st)
        r->done[row] = 1;
fail:
    mf_free(buf);
    return st;
}

/* ---- blocks and windows -------------------------------------------------------------------- */

struct block {
    int64_t c0, c1;  /* columns [c0, c1) of the row file = positions in selection order */
    int32_t t;       /* tensor */
    int64_t l0;      /* first element inside the tensor */
};

/* get_blocklist_custom: a tensor below bs weights is one block; else int(P / bs) blocks of
 * step = int(P / int(P / bs)) weights, the last one ending at P. */
static enum mf_status make_blocks(const struct mf_prune_set *set, int64_t bs, struct block **out, int64_t *n_out,
                                  int64_t *max_len, struct mf_err *err)
{
    int64_t n = 0;
    for (size_t i = 0; i < set->n; i++) {
        int64_t P = set->t[i].n;
        n += P < bs ? 1 : P / (P / (P / bs));
    }
    struct block *b = mf_malloc((size_t)n * sizeof *b);
    if (!b)
        return mf_err_set(err, MF_ERR_NOMEM, "chita: out of memory for %lld blocks", (long long)n);
    int64_t k = 0, col = 0, mx = 0;
    for (size_t i = 0; i < set->n; i++) {
        int64_t P = set->t[i].n;
        int64_t step = P < bs ? P : P / (P / bs);
        int64_t nb = P < bs ? 1 : P / step;
        for (int64_t j = 0; j < nb; j++) {
            int64_t l0 = j * step, l1 = j == nb - 1 ? P : (j + 1) * step;
            b[k] = (struct block){col + l0, col + l1, (int32_t)i, l0};
            mx = MF_MAX(mx, l1 - l0);
            k++;
        }
        col += P;
    }
    MF_ASSERT(k == n);
    *out = b;
    *n_out = n;
    *max_len = mx;
    return MF_OK;
}

/* A column window [c0, c1) of every row, mapped read-only. */
struct window {
    int64_t b0, b1, c0, c1;  /* blocks and columns */
    void **map;              /* (n) */
    size_t *len;             /* (n) */
    const float **row;       /* (n) column c0 of row i */
};

struct solver {
    const struct mf_prune_set *set;
    const struct mf_chita_rows *rows;
    int64_t n, p;                     /* rows, columns */
    const float *const *w;            /* (set order) current weights */
    const uint8_t *const *prev;       /* (set order) or NULL */
    uint8_t *const *masks;            /* (set order) outputs */
    float *const *w_new;
    double lam2;
    double *alpha;                    /* (p) */
    struct block *blocks;
    int64_t n_blocks, max_len;
    int64_t win_cols;                 /* most columns per window */
    struct window win;
    struct mf_chita_info *info;
    size_t page;
};

static void unmap_window(struct solver *S)
{
    for (int64_t i = 0; i < S->n; i++) {
        if (S->win.map[i])
            munmap(S->win.map[i], S->win.len[i]);
        S->win.map[i] = NULL;
    }
}

/* Maps the window starting at block b0 (as many whole blocks as fit in win_cols, at least one). */
static enum mf_status map_window(struct solver *S, int64_t b0, struct mf_err *err)
{
    int64_t b1 = b0 + 1;
    while (b1 < S->n_blocks && S->blocks[b1].c1 - S->blocks[b0].c0 <= S->win_cols)
        b1++;
    S->win.b0 = b0;
    S->win.b1 = b1;
    S->win.c0 = S->blocks[b0].c0;
    S->win.c1 = S->blocks[b1 - 1].c1;
    size_t mapped = 0;
    for (int64_t i = 0; i < S->n; i++) {
        size_t off = ((size_t)i * (size_t)S->p + (size_t)S->win.c0) * sizeof(float);
        size_t base = off / S->page * S->page;
        size_t len = (size_t)(S->win.c1 - S->win.c0) * sizeof(float) + (off - base);
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, S->rows->fd, (off_t)base);
        if (m == MAP_FAILED) {
            unmap_window(S);
            return mf_err_set(err, MF_ERR_IO, "chita: cannot map %zu bytes of gradient row %lld: %s", len,
                              (long long)i, strerror(errno));
        }
        madvise(m, len, MADV_SEQUENTIAL);
        S->win.map[i] = m;
        S->win.len[i] = len;
        S->win.row[i] = (const float *)((const char *)m + (off - base));
        mapped += len;
    }
    S->info->windows++;
    if (mapped > S->info->max_mapped)
        S->info->max_mapped = mapped;
    return MF_OK;
}

/* ---- dense double helpers ------------------------------------------------------------------ */

/* In-place Cholesky of the SPD (m, m) matrix a (lower triangle used); false if not positive. */
static bool cholesky(double *a, int64_t m)
{
    for (int64_t j = 0; j < m; j++) {
        double d = a[j * m + j];
        for (int64_t k = 0; k < j; k++)
            d -= a[j * m + k] * a[j * m + k];
        if (!(d > 0) || !isfinite(d))
            return false;
        d = sqrt(d);
        a[j * m + j] = d;
        for (int64_t i = j + 1; i < m; i++) {
            double s = a[i * m + j];
            for (int64_t k = 0; k < j; k++)
                s -= a[i * m + k] * a[j * m + k];
            a[i * m + j] = s / d;
        }
    }
    return true;
}

/* Solves L L^T x = b in place. */
static void chol_solve(const double *l, int64_t m, double *b)
{
    for (int64_t i = 0; i < m; i++) {
        double s = b[i];
        for (int64_t k = 0; k < i; k++)
            s -= l[i * m + k] * b[k];
        b[i] = s / l[i * m + i];
    }
    for (int64_t i = m - 1; i >= 0; i--) {
        double s = b[i];
        for (int64_t k = i + 1; k < m; k++)
            s -= l[k * m + i] * b[k];
        b[i] = s / l[i * m + i];
    }
}

static inline bool key_less(const double *s, int32_t a, int32_t b)
{
    return s[a] < s[b] || (s[a] == s[b] && a < b);
}

/* Rearranges idx[0..n) so that idx[0..k) hold the k smallest keys (score, position). */
static void select_smallest(const double *s, int32_t *idx, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1, target = k - 1;
    if (k <= 0 || k >= n)
        return;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int32_t t;
        if (key_less(s, idx[mid], idx[lo])) { t = idx[mid]; idx[mid] = idx[lo]; idx[lo] = t; }
        if (key_less(s, idx[hi], idx[lo])) { t = idx[hi]; idx[hi] = idx[lo]; idx[lo] = t; }
        if (key_less(s, idx[hi], idx[mid])) { t = idx[hi]; idx[hi] = idx[mid]; idx[mid] = t; }
        int32_t pivot = idx[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (key_less(s, idx[i], pivot))
                i++;
            while (key_less(s, pivot, idx[j]))
                j--;
            if (i <= j) {
                t = idx[i]; idx[i] = idx[j]; idx[j] = t;
                i++;
                j--;
            }
        }
        if (target <= j)
            hi = j;
        else if (target >= i)
            lo = i;
        else
            break;
    }
}

/* ---- one block ----------------------------------------------------------------------------- */

struct scratch {
    double *X;       /* (n, len) the block's rows */
    double *w, *a, *beta, *grad, *bt, *best, *score; /* (len) */
    double *r, *xg;  /* (n) */
    double *M;       /* (m, m), m = min(n, len) at most n */
    double *rhs;     /* (len) */
    double *Xa;      /* (n, len) survivors' columns */
    int32_t *idx;    /* (len) */
    uint8_t *keep, *keep2, *forced; /* (len) */
};

static void scratch_free(struct scratch *sc)
{
    mf_free(sc->X);
    mf_free(sc->w);
    mf_free(sc->Xa);
    mf_free(sc->M);
    mf_free(sc->r);
    mf_free(sc->idx);
    mf_free(sc->keep);
}

static bool scratch_alloc(struct scratch *sc, int64_t n, int64_t len)
{
    memset(sc, 0, sizeof *sc);
    size_t nl = (size_t)n * (size_t)len;
    sc->X = mf_malloc(nl * sizeof(double));
    sc->Xa = mf_malloc(nl * sizeof(double));
    sc->w = mf_malloc(8 * (size_t)len * sizeof(double));
    sc->M = mf_malloc((size_t)n * (size_t)n * sizeof(double));
    sc->r = mf_malloc(2 * (size_t)n * sizeof(double));
    sc->idx = mf_malloc((size_t)len * sizeof(int32_t));
    sc->keep = mf_malloc(3 * (size_t)len);
    if (!sc->X || !sc->Xa || !sc->w || !sc->M || !sc->r || !sc->idx || !sc->keep) {
        scratch_free(sc);
        return false;
    }
    sc->a = sc->w + len;
    sc->beta = sc->a + len;
    sc->grad = sc->beta + len;
    sc->bt = sc->grad + len;
    sc->best = sc->bt + len;
    sc->score = sc->best + len;
    sc->rhs = sc->score + len;
    sc->xg = sc->r + n;
    sc->keep2 = sc->keep + len;
    sc->forced = sc->keep2 + len;
    return true;
}

/* keep = top k of |v| (forced ranked lowest), ties: lower position pruned first. */
static void block_topk(struct scratch *sc, const double *v, int64_t len, int64_t k, uint8_t *keep)
{
    for (int64_t j = 0; j < len; j++) {
        sc->score[j] = sc->forced[j] ? -1.0 : fabs(v[j]);
        sc->idx[j] = (int32_t)j;
        keep[j] = 1;
    }
    select_smallest(sc->score, sc->idx, len, len - k);
    for (int64_t j = 0; j < len - k; j++)
        keep[sc->idx[j]] = 0;
}

/* r = X (w - b); returns f(b) = 0.5 r.r + lam2 ||b - w||^2 + alpha . b */
static double block_obj(const struct scratch *sc, int64_t n, int64_t len, const double *b, double lam2, double *r)
{
    double d2 = 0, ab = 0, rr = 0;
    for (int64_t i = 0; i < n; i++)
        r[i] = 0;
    for (int64_t j = 0; j < len; j++) {
        double d = sc->w[j] - b[j];
        d2 += d * d;
        ab += sc->a[j] * b[j];
        if (d != 0)
            for (int64_t i = 0; i < n; i++)
                r[i] += sc->X[i * len + j] * d;
    }
    for (int64_t i = 0; i < n; i++)
        rr += r[i] * r[i];
    return 0.5 * rr + lam2 * d2 + ab;
}

static void maxabs_split(const double *b, const double *g, double L, const uint8_t *keep, int64_t len, double *in,
                         double *out)
{
    double mi = -INFINITY, mo = -INFINITY;
    for (int64_t j = 0; j < len; j++) {
        double v = fabs(b[j] - L * g[j]);
        if (keep[j])
            mi = v > mi ? v : mi;
        else
            mo = v > mo ? v : mo;
    }
    *in = mi;
    *out = mo;
}

/* The reference's prune_ls on one block (y = X w, beta_tilde2 = w): sc->beta in, out. */
static void block_prune_ls(struct scratch *sc, int64_t n, int64_t len, int64_t k, double lam2)
{
    double *beta = sc->beta, *grad = sc->grad, *r = sc->r, *xg = sc->xg;
    (void)block_obj(sc, n, len, beta, lam2, r);
    block_topk(sc, beta, len, k, sc->keep);
    for (int64_t j = 0; j < len; j++) {
        double xtr = 0;
        for (int64_t i = 0; i < n; i++)
            xtr += sc->X[i * len + j] * r[i];
        grad[j] = -xtr + sc->a[j] - 2 * lam2 * (sc->w[j] - beta[j]);
    }
    double ga = 0, gwb = 0, gg = 0, rx = 0, xx = 0;
    for (int64_t i = 0; i < n; i++)
        xg[i] = 0;
    for (int64_t j = 0; j < len; j++) {
        if (!sc->keep[j])
            continue;
        ga += grad[j] * sc->a[j];
        gwb += (sc->w[j] - beta[j]) * grad[j];
        gg += grad[j] * grad[j];
        for (int64_t i = 0; i < n; i++)
            xg[i] += sc->X[i * len + j] * grad[j];
    }
    for (int64_t i = 0; i < n; i++) {
        rx += r[i] * xg[i];
        xx += xg[i] * xg[i];
    }
    double num = ga - rx - 2 * lam2 * gwb, den = xx + 2 * lam2 * gg;
    double t = den != 0 && isfinite(num / den) ? num / den : 0;
    double mi, mo;
    maxabs_split(beta, grad, t, sc->keep, len, &mi, &mo);
    if (mi >= mo - 1e-10) {
        for (int64_t j = 0; j < len; j++)
            beta[j] = sc->keep[j] ? beta[j] - t * grad[j] : 0;
        return;
    }
    double L = t / 2;
    for (int it = 0; it < CHITA_HALVINGS; it++) {
        maxabs_split(beta, grad, L, sc->keep, len, &mi, &mo);
        if (mi >= mo - 1e-10)
            break;
        L /= 2;
    }
    for (int64_t j = 0; j < len; j++)
        sc->best[j] = sc->keep[j] ? beta[j] : 0;
    double f_best = block_obj(sc, n, len, sc->best, lam2, r);
    for (int it = 0; it < CHITA_SEARCH_ITERS; it++) {
        for (int64_t j = 0; j < len; j++)
            sc->bt[j] = beta[j] - L * grad[j];
        block_topk(sc, sc->bt, len, k, sc->keep2);
        for (int64_t j = 0; j < len; j++)
            if (!sc->keep2[j])
                sc->bt[j] = 0;
        double f = block_obj(sc, n, len, sc->bt, lam2, r);
        if (!(f < f_best))
            break;
        f_best = f;
        memcpy(sc->best, sc->bt, (size_t)len * sizeof(double));
        L *= 2;
    }
    memcpy(beta, sc->best, (size_t)len * sizeof(double));
}

/* Ridge solve on the support sc->keep (k columns): b_S = (X_S^T X_S + 2 lam2 I)^-1 (X_S^T X w +
 * 2 lam2 w_S - alpha_S), Woodbury when k > n. Result in sc->rhs[0..k). False if not SPD. */
static bool block_ridge(struct scratch *sc, int64_t n, int64_t len, int64_t k, double lam2)
{
    double *y = sc->r, *Xa = sc->Xa, *rhs = sc->rhs, *M = sc->M, *z = sc->xg;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < len; j++)
            s += sc->X[i * len + j] * sc->w[j];
        y[i] = s;
    }
    int64_t c = 0;
    for (int64_t j = 0; j < len; j++) {
        if (!sc->keep[j])
            continue;
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            Xa[i * k + c] = sc->X[i * len + j];
            s += sc->X[i * len + j] * y[i];
        }
        rhs[c] = s + 2 * lam2 * sc->w[j] - sc->a[j];
        c++;
    }
    MF_ASSERT(c == k);
    double l2 = 2 * lam2;
    if (n < k) {
        /* b = rhs / l2 - Xa^T (I + Xa Xa^T / l2)^-1 Xa rhs / l2^2 */
        for (int64_t i = 0; i < n; i++)
            for (int64_t i2 = 0; i2 <= i; i2++) {
                double s = 0;
                for (int64_t j = 0; j < k; j++)
                    s += Xa[i * k + j] * Xa[i2 * k + j];
                M[i * n + i2] = s / l2 + (i == i2);
            }
        if (!cholesky(M, n))
            return false;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < k; j++)
                s += Xa[i * k + j] * rhs[j];
            z[i] = s;
        }
        chol_solve(M, n, z);
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += Xa[i * k + j] * z[i];
            rhs[j] = rhs[j] / l2 - s / (l2 * l2);
        }
    } else {
        for (int64_t j = 0; j < k; j++)
            for (int64_t j2 = 0; j2 <= j; j2++) {
                double s = 0;
                for (int64_t i = 0; i < n; i++)
                    s += Xa[i * k + j] * Xa[i * k + j2];
                M[j * k + j2] = s + (j == j2 ? l2 : 0);
            }
        if (!cholesky(M, k))
            return false;
        chol_solve(M, k, rhs);
    }
    return true;
}

/* ---- passes -------------------------------------------------------------------------------- */

enum pass_kind { PASS_XG, PASS_OBJ, PASS_BLOCKS };

struct pass {
    struct solver *S;
    enum pass_kind kind;
    double L;                 /* PASS_BLOCKS: the global step */
    const uint8_t *const *keep; /* PASS_XG support */
    int n_obj;                /* PASS_OBJ: objectives evaluated in this pass (1..CHITA_GROUP) */
    double obj_L[CHITA_GROUP];            /* b_q = keep_q ? w - L_q alpha : 0 */
    const uint64_t *obj_keep[CHITA_GROUP]; /* (ceil(p / 64)) keep_q as bits, column order */
    double *part;             /* (blocks in window, n_obj, n + 2) per-block partial sums */
    struct scratch *sc;       /* (threads) */
    atomic_llong next;
    atomic_int failed_block;  /* -1, or a block whose solve failed */
};

static void pass_kernel(void *arg, int ith, int nth)
{
    (void)nth;
    struct pass *P = arg;
    struct solver *S = P->S;
    const int64_t n = S->n;
    for (;;) {
        int64_t b = atomic_fetch_add(&P->next, 1);
        if (b >= S->win.b1)
            break;
        const struct block *bl = &S->blocks[b];
        const int64_t len = bl->c1 - bl->c0, wo = bl->c0 - S->win.c0;
        const float *w = S->w[bl->t] + bl->l0;
        const double *al = S->alpha + bl->c0;
        if (P->kind == PASS_XG) {
            const uint8_t *keep = P->keep[bl->t] + bl->l0;
            double *part = P->part + (b - S->win.b0) * (n + 2); /* (n) A v, then 0, 0 */
            for (int64_t i = 0; i < n; i++) {
                const float *row = S->win.row[i] + wo;
                double s = 0;
                for (int64_t j = 0; j < len; j++) {
                    double v = keep[j] ? al[j] : 0;
                    s += (double)row[j] * v;
                }
                part[i] = s;
            }
            part[n] = 0;
            part[n + 1] = 0;
            continue;
        }
        if (P->kind == PASS_OBJ) {
            /* every objective q of the group from one read of the window; each q sums in the same
             * order as a pass of its own would (columns ascending), so the bits do not depend on
             * the group size */
            const int Q = P->n_obj;
            double *part = P->part + (b - S->win.b0) * Q * (n + 2); /* (Q, n + 2): A v_q, ||b_q - w||^2, alpha.b_q */
            /* v_q = keep_q ? L_q alpha : w (so that A v_q = A (w - b_q)), once per block in the
             * thread's block scratch (four len arrays unused by this pass) */
            struct scratch *sc = &P->sc[ith];
            double *vq[CHITA_GROUP] = {sc->beta, sc->grad, sc->bt, sc->best};
            for (int q = 0; q < Q; q++) {
                double d2 = 0, ab = 0;
                for (int64_t j = 0; j < len; j++) {
                    const uint64_t c = (uint64_t)(bl->c0 + j);
                    const bool kq = (P->obj_keep[q][c >> 6] >> (c & 63)) & 1;
                    vq[q][j] = kq ? P->obj_L[q] * al[j] : w[j];
                    double bj = kq ? (double)w[j] - P->obj_L[q] * al[j] : 0;
                    double d = bj - w[j];
                    d2 += d * d;
                    ab += al[j] * bj;
                }
                part[q * (n + 2) + n] = d2;
                part[q * (n + 2) + n + 1] = ab;
            }
            double s[CHITA_GROUP];
            for (int64_t i = 0; i < n; i++) {
                const float *row = S->win.row[i] + wo;
                for (int q = 0; q < Q; q++)
                    s[q] = 0;
                for (int64_t j = 0; j < len; j++) {
                    const double x = (double)row[j];
                    for (int q = 0; q < Q; q++)
                        s[q] += x * vq[q][j];
                }
                for (int q = 0; q < Q; q++)
                    part[q * (n + 2) + i] = s[q];
            }
            continue;
        }
        /* PASS_BLOCKS: the global support sits in masks */
        struct scratch *sc = &P->sc[ith];
        uint8_t *mask = S->masks[bl->t] + bl->l0;
        float *wn = S->w_new[bl->t] + bl->l0;
        const uint8_t *prev = S->prev && S->prev[bl->t] ? S->prev[bl->t] + bl->l0 : NULL;
        int64_t k = 0;
        double an = 0;
        for (int64_t j = 0; j < len; j++) {
            k += mask[j];
            sc->w[j] = w[j];
            sc->a[j] = al[j];
            an += al[j] * al[j];
            sc->beta[j] = mask[j] ? (double)w[j] - P->L * al[j] : 0;
            sc->forced[j] = prev ? !prev[j] : 0;
        }
        if (k == 0) {
            for (int64_t j = 0; j < len; j++)
                wn[j] = 0;
            continue;
        }
        for (int64_t i = 0; i < n; i++) {
            const float *row = S->win.row[i] + wo;
            for (int64_t j = 0; j < len; j++)
                sc->X[i * len + j] = row[j];
        }
        if (sqrt(an) > 1e-8)
            block_prune_ls(sc, n, len, k, S->lam2);
        block_topk(sc, sc->beta, len, k, sc->keep);
        if (!block_ridge(sc, n, len, k, S->lam2)) {
            int expect = -1;
            atomic_compare_exchange_strong(&P->failed_block, &expect, (int)b);
            continue;
        }
        int64_t c = 0;
        for (int64_t j = 0; j < len; j++) {
            mask[j] = sc->keep[j];
            wn[j] = sc->keep[j] ? (float)sc->rhs[c++] : 0.0f;
        }
    }
}

/* Runs one pass over the row file, window by window. PASS_XG/OBJ reduce into red ((n + 2), times
 * n_obj for PASS_OBJ) in block order (thread-count independent). */
static enum mf_status run_pass(struct mf_pool *pool, struct pass *P, double *red, struct mf_err *err)
{
    struct solver *S = P->S;
    enum mf_status st = MF_OK;
    const int64_t width = (P->kind == PASS_OBJ ? P->n_obj : 1) * (S->n + 2);
    if (red)
        memset(red, 0, (size_t)width * sizeof *red);
    for (int64_t b0 = 0; b0 < S->n_blocks && !st; b0 = S->win.b1) {
        if ((st = map_window(S, b0, err)))
            break;
        atomic_store(&P->next, S->win.b0);
        atomic_store(&P->failed_block, -1);
        mf_pool_run(pool, pass_kernel, P);
        if (red)
            for (int64_t b = S->win.b0; b < S->win.b1; b++)
                for (int64_t i = 0; i < width; i++)
                    red[i] += P->part[(b - S->win.b0) * width + i];
        unmap_window(S);
        int fb = atomic_load(&P->failed_block);
        if (fb >= 0)
            st = mf_err_set(err, MF_ERR_NUMERIC,
                            "chita: block %d of '%s' (columns %lld-%lld): the ridge system is not positive definite",
                            fb, S->set->t[S->blocks[fb].t].name, (long long)S->blocks[fb].c0,
                            (long long)S->blocks[fb].c1);
    }
    S->info->passes++;
    return st;
}

/* ---- global step --------------------------------------------------------------------------- */

struct gsel {
    struct solver *S;
    double L;
    float *const *score;          /* (set order) */
    const uint8_t *const *keep;   /* for the max split */
    double mi[64], mo[64];
    int mode;                     /* 0 scores, 1 max split */
};

static void gsel_kernel(void *arg, int ith, int nth)
{
    struct gsel *G = arg;
    struct solver *S = G->S;
    int64_t b0, b1;
    mf_split_range(S->n_blocks, ith, nth, &b0, &b1);
    double mi = -INFINITY, mo = -INFINITY;
    for (int64_t b = b0; b < b1; b++) {
        const struct block *bl = &S->blocks[b];
        const int64_t len = bl->c1 - bl->c0;
        const float *w = S->w[bl->t] + bl->l0;
        const double *al = S->alpha + bl->c0;
        if (G->mode == 0) {
            float *sc = G->score[bl->t] + bl->l0;
            const uint8_t *prev = S->prev && S->prev[bl->t] ? S->prev[bl->t] + bl->l0 : NULL;
            for (int64_t j = 0; j < len; j++)
                sc[j] = prev && !prev[j] ? -1.0f : (float)fabs((double)w[j] - G->L * al[j]);
        } else {
            const uint8_t *keep = G->keep[bl->t] + bl->l0;
            for (int64_t j = 0; j < len; j++) {
                double v = fabs((double)w[j] - G->L * al[j]);
                if (keep[j])
                    mi = v > mi ? v : mi;
                else
                    mo = v > mo ? v : mo;
            }
        }
    }
    G->mi[ith] = mi;
    G->mo[ith] = mo;
}

static bool global_cond(struct mf_pool *pool, struct gsel *G, double L, const uint8_t *const *keep)
{
    G->mode = 1;
    G->L = L;
    G->keep = keep;
    mf_pool_run(pool, gsel_kernel, G);
    double mi = -INFINITY, mo = -INFINITY;
    int nth = pool ? mf_pool_size(pool) : 1;
    for (int t = 0; t < nth; t++) {
        mi = G->mi[t] > mi ? G->mi[t] : mi;
        mo = G->mo[t] > mo ? G->mo[t] : mo;
    }
    return mi >= mo - 1e-10;
}

/* keep (set order, bytes 0/1) -> bits (ceil(p / 64) words, column order) and back. */
static void pack_bits(const struct mf_prune_set *set, const uint8_t *const *keep, uint64_t *bits)
{
    memset(bits, 0, (size_t)((set->total + 63) / 64) * sizeof *bits);
    uint64_t c = 0;
    for (size_t i = 0; i < set->n; i++)
        for (int64_t j = 0; j < set->t[i].n; j++, c++)
            bits[c >> 6] |= (uint64_t)(keep[i][j] != 0) << (c & 63);
}

static void unpack_bits(const struct mf_prune_set *set, const uint64_t *bits, uint8_t *const *keep)
{
    uint64_t c = 0;
    for (size_t i = 0; i < set->n; i++)
        for (int64_t j = 0; j < set->t[i].n; j++, c++)
            keep[i][j] = (uint8_t)((bits[c >> 6] >> (c & 63)) & 1);
}

static enum mf_status global_select(struct mf_pool *pool, struct gsel *G, double L, int64_t k_prune,
                                    const int64_t *lens, const char *const *names, uint8_t *const *keep,
                                    struct mf_err *err)
{
    G->mode = 0;
    G->L = L;
    mf_pool_run(pool, gsel_kernel, G);
    return mf_select_lowest(pool, G->S->set->n, (const float *const *)G->score, lens, names, k_prune, keep, err);
}

void mf_chita_opts_default(struct mf_chita_opts *o)
{
    o->lambda = 1e-5;
    o->batch_size = 1;
    o->block = 10000;
    o->window_bytes = 0;
}

enum mf_status mf_chita_solve(struct mf_pool *pool, const struct mf_prune_set *set, const float *const *w,
                              const struct mf_chita_rows *rows, const uint8_t *const *prev, double sparsity,
                              const struct mf_chita_opts *o, uint8_t *const *masks, float *const *w_new,
                              struct mf_chita_info *info, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct solver S = {0};
    struct pass P = {0};
    struct gsel G = {0};
    float *score_block = NULL;
    float **score = NULL;
    uint8_t *cand_block = NULL;
    uint8_t **cand = NULL;
    int64_t *lens = NULL;
    const char **names = NULL;
    const float **wv = NULL;
    double *red = NULL;
    uint64_t *bits_block = NULL;  /* (CHITA_GROUP, ceil(p / 64)) line-search candidate supports */
    uint64_t *bits[CHITA_GROUP];
    int nth = pool ? mf_pool_size(pool) : 1;
    memset(info, 0, sizeof *info);

    for (int64_t i = 0; i < rows->n_rows; i++)
        if (!rows->done[i])
            return mf_err_set(err, MF_ERR_ARG, "chita: gradient row %lld of %lld was never written", (long long)i,
                              (long long)rows->n_rows);
    if (rows->n_cols != set->total)
        return mf_err_set(err, MF_ERR_SHAPE, "chita: %lld prunable weights, gradient rows of %lld",
                          (long long)set->total, (long long)rows->n_cols);
    if (!(o->lambda > 0) || !isfinite(o->lambda) || !(o->batch_size > 0) || o->block < 1)
        return mf_err_set(err, MF_ERR_ARG, "chita: lambda %g and batch size %g must be > 0, block %lld >= 1",
                          o->lambda, o->batch_size, (long long)o->block);
    if (!(sparsity >= 0 && sparsity < 1))
        return mf_err_set(err, MF_ERR_ARG, "chita: sparsity %g not in [0, 1)", sparsity);
    if (nth > 64)
        return mf_err_set(err, MF_ERR_ARG, "chita: %d threads (at most 64)", nth);

    S.set = set;
    S.rows = rows;
    S.n = rows->n_rows;
    S.p = rows->n_cols;
    S.prev = prev;
    S.masks = masks;
    S.w_new = w_new;
    S.lam2 = (double)S.n * o->lambda / 2;
    S.info = info;
    long pg = sysconf(_SC_PAGESIZE);
    S.page = pg > 0 ? (size_t)pg : 4096;
    wv = mf_calloc(set->n, sizeof *wv);
    lens = mf_calloc(set->n, sizeof *lens);
    names = mf_calloc(set->n, sizeof *names);
    score = mf_calloc(set->n, sizeof *score);
    cand = mf_calloc(set->n, sizeof *cand);
    S.alpha = mf_malloc((size_t)S.p * sizeof *S.alpha);
    score_block = mf_malloc((size_t)S.p * sizeof *score_block);
    cand_block = mf_malloc((size_t)S.p);
    red = mf_malloc((size_t)CHITA_GROUP * (size_t)(S.n + 2) * sizeof *red);
    bits_block = mf_malloc((size_t)CHITA_GROUP * (size_t)((S.p + 63) / 64) * sizeof *bits_block);
    S.win.map = mf_calloc((size_t)S.n, sizeof *S.win.map);
    S.win.len = mf_calloc((size_t)S.n, sizeof *S.win.len);
    S.win.row = mf_calloc((size_t)S.n, sizeof *S.win.row);
    P.sc = mf_calloc((size_t)nth, sizeof *P.sc);
    if (!wv || !lens || !names || !score || !cand || !S.alpha || !score_block || !cand_block || !red || !S.win.map ||
        !S.win.len || !S.win.row || !P.sc || !bits_block) {
        st = mf_err_set(err, MF_ERR_NOMEM, "chita: out of memory for the state of %lld weights", (long long)S.p);
        goto fail;
    }
    int64_t off = 0;
    for (size_t i = 0; i < set->n; i++) {
        wv[i] = w ? w[i] : set->t[i].w;
        lens[i] = set->t[i].n;
        names[i] = set->t[i].name;
        score[i] = score_block + off;
        cand[i] = cand_block + off;
        off += set->t[i].n;
    }
    S.w = wv;
    for (int q = 0; q < CHITA_GROUP; q++)
        bits[q] = bits_block + (size_t)q * (size_t)((S.p + 63) / 64);
    double anorm = 0;
    for (int64_t j = 0; j < S.p; j++) {
        S.alpha[j] = rows->colsum[j] / o->batch_size;
        anorm += S.alpha[j] * S.alpha[j];
    }
    if ((st = make_blocks(set, o->block, &S.blocks, &S.n_blocks, &S.max_len, err)))
        goto fail;
    info->blocks = S.n_blocks;
    size_t wb = o->window_bytes ? o->window_bytes : (size_t)256 << 20;
    S.win_cols = MF_MAX(S.max_len, (int64_t)(wb / ((size_t)S.n * sizeof(float))));
    /* per-block partials of the biggest window: win_cols / shortest block (>= 1) blocks */
    int64_t min_len = S.max_len;
    for (int64_t b = 0; b < S.n_blocks; b++)
        min_len = MF_MIN(min_len, S.blocks[b].c1 - S.blocks[b].c0);
    int64_t max_wb = MF_MIN(S.n_blocks, S.win_cols / MF_MAX(min_len, 1) + 1);
    P.part = mf_malloc((size_t)max_wb * CHITA_GROUP * (size_t)(S.n + 2) * sizeof *P.part);
    if (!P.part) {
        st = mf_err_set(err, MF_ERR_NOMEM, "chita: out of memory");
        goto fail;
    }
    for (int t = 0; t < nth; t++)
        if (!scratch_alloc(&P.sc[t], S.n, S.max_len)) {
            st = mf_err_set(err, MF_ERR_NOMEM, "chita: out of memory for a block of %lld weights x %lld rows",
                            (long long)S.max_len, (long long)S.n);
            goto fail;
        }
    P.S = &S;
    G.S = &S;
    G.score = score;

    /* 1. global step from b = w: S0 = top k of |w| into masks */
    const int64_t k_prune = (int64_t)floor(sparsity * (double)S.p);
    info->kept = S.p - k_prune;
    if ((st = global_select(pool, &G, 0, k_prune, lens, names, masks, err)))
        goto fail;
    double L = 0;
    if (sqrt(anorm) > 1e-8) {
        double ga = 0; /* sum over S0 of alpha^2 */
        for (size_t i = 0, c = 0; i < set->n; c += (size_t)set->t[i].n, i++)
            for (int64_t j = 0; j < set->t[i].n; j++)
                if (masks[i][j])
                    ga += S.alpha[c + (size_t)j] * S.alpha[c + (size_t)j];
        P.kind = PASS_XG;
        P.keep = (const uint8_t *const *)masks;
        if ((st = run_pass(pool, &P, red, err)))
            goto fail;
        double xx = 0;
        for (int64_t i = 0; i < S.n; i++)
            xx += red[i] * red[i];
        double den = xx + 2 * S.lam2 * ga;
        double t = den != 0 && isfinite(ga / den) ? ga / den : 0;
        if (global_cond(pool, &G, t, (const uint8_t *const *)masks)) {
            info->branch = 1;
            L = t;
        } else {
            L = t / 2;
            for (int it = 0; it < CHITA_HALVINGS && !global_cond(pool, &G, L, (const uint8_t *const *)masks); it++)
                L /= 2;
            /* the start (w on S0, L = 0), then the tries L, 2L, 4L, ... until f stops decreasing:
             * CHITA_GROUP candidate supports are selected ahead and evaluated in one pass over the
             * row file (the file read dominates); the decisions are then taken in order exactly
             * as one pass per candidate would take them. A selection error on a candidate the
             * sequential search would not have reached is reported only if it is reached. */
            double f_best = 0, best_L = 0, Lnext = L;
            int done = 0; /* candidates evaluated: the start, then the tries */
            bool stop = false;
            struct mf_err pend = {0};
            enum mf_status pend_st = MF_OK;
            info->branch = 3;
            while (!stop && done < 1 + CHITA_SEARCH_ITERS) {
                int Q = (int)MF_MIN(CHITA_GROUP, 1 + CHITA_SEARCH_ITERS - done);
                for (int q = 0; q < Q; q++) {
                    if (done + q == 0) {
                        P.obj_L[q] = 0;
                        pack_bits(set, (const uint8_t *const *)masks, bits[q]);
                    } else {
                        enum mf_status s2 = global_select(pool, &G, Lnext, k_prune, lens, names, cand, &pend);
                        if (s2 && q == 0) {
                            *err = pend;
                            st = s2;
                            goto fail;
                        }
                        if (s2) {
                            pend_st = s2;
                            Q = q;
                            break;
                        }
                        P.obj_L[q] = Lnext;
                        pack_bits(set, (const uint8_t *const *)cand, bits[q]);
                        Lnext *= 2;
                    }
                    P.obj_keep[q] = bits[q];
                }
                P.kind = PASS_OBJ;
                P.n_obj = Q;
                if ((st = run_pass(pool, &P, red, err)))
                    goto fail;
                int best_q = -1;
                for (int q = 0; q < Q; q++) {
                    const double *rq = red + q * (S.n + 2);
                    double rr = 0;
                    for (int64_t i = 0; i < S.n; i++)
                        rr += rq[i] * rq[i];
                    double f = 0.5 * rr + S.lam2 * rq[S.n] + rq[S.n + 1];
                    if (done + q > 0 && !(f < f_best)) {
                        stop = true;
                        break;
                    }
                    f_best = f;
                    if (done + q > 0) {
                        best_L = P.obj_L[q];
                        best_q = q;
                        info->branch = 2;
                    }
                }
                if (best_q >= 0)
                    unpack_bits(set, bits[best_q], masks);
                done += Q;
                if (!stop && pend_st) {
                    *err = pend;
                    st = pend_st;
                    goto fail;
                }
            }
            L = best_L;
        }
    }
    info->step = L;

    /* 2. blocks */
    P.kind = PASS_BLOCKS;
    P.L = L;
    st = run_pass(pool, &P, NULL, err);
fail:
    if (P.sc)
        for (int t = 0; t < nth; t++)
            scratch_free(&P.sc[t]);
    mf_free(P.sc);
    mf_free(P.part);
    mf_free(S.win.map);
    mf_free(S.win.len);
    mf_free(S.win.row);
    mf_free(S.blocks);
    mf_free(red);
    mf_free(bits_block);
    mf_free(cand_block);
    mf_free(score_block);
    mf_free(S.alpha);
    mf_free(cand);
    mf_free(score);
    mf_free(names);
    mf_free(lens);
    mf_free(wv);
    return st;
}

enum mf_status mf_chita_run(struct mf_pool *pool, const struct mf_prune_set *set, double sparsity, int64_t rounds,
                            int64_t round_batches, const char *tmp_dir, const struct mf_chita_opts *o,
                            const struct mf_grad_source *src, uint8_t *const *masks, float *const *w_new,
                            struct mf_chita_info *info, struct mf_err *err)
{
    enum mf_status st = MF_OK;
    struct mf_chita_rows *rows = NULL;
    uint8_t *prev_block = NULL;
    uint8_t **prev = NULL;
    const float **g = NULL;
    if (rounds < 1 || round_batches < 1 || !src || !src->mean_grad)
        return mf_err_set(err, MF_ERR_ARG, "chita: %lld rounds of %lld batches (both must be >= 1) or no gradients",
                          (long long)rounds, (long long)round_batches);
    g = mf_calloc(set->n, sizeof *g);
    prev = mf_calloc(set->n, sizeof *prev);
    prev_block = rounds > 1 ? mf_malloc((size_t)set->total) : NULL;
    if (!g || !prev || (rounds > 1 && !prev_block)) {
        st = mf_err_set(err, MF_ERR_NOMEM, "chita: out of memory");
        goto fail;
    }
    for (size_t i = 0, off = 0; i < set->n; off += (size_t)set->t[i].n, i++)
        prev[i] = prev_block ? prev_block + off : NULL;
    for (int64_t r = 1; r <= rounds && !st; r++) {
        const bool later = r > 1; /* weights: the set's, then the last round's updated ones (masked) */
        double s_r = rounds == 1 ? sparsity : mf_schedule_sparsity(MF_SCHEDULE_EXP, sparsity, r, rounds);
        if (later)
            for (size_t i = 0; i < set->n; i++)
                memcpy(prev[i], masks[i], (size_t)set->t[i].n);
        if ((st = mf_chita_rows_create(tmp_dir, round_batches, set->total, &rows, err)))
            break;
        for (int64_t b = 0; b < round_batches && !st; b++) {
            if ((st = src->mean_grad(src->ud, later ? (const float *const *)w_new : NULL, 1, g, err)))
                break;
            st = mf_chita_rows_put(rows, b, set, g, later ? (const uint8_t *const *)prev : NULL, err);
        }
        if (!st)
            st = mf_chita_solve(pool, set, later ? (const float *const *)w_new : NULL, rows,
                                later ? (const uint8_t *const *)prev : NULL, s_r, o, masks, w_new, info, err);
        mf_chita_rows_free(rows);
        rows = NULL;
    }
fail:
    mf_free(prev_block);
    mf_free(prev);
    mf_free(g);
    return st;
}
