"""Goldens for CHITA (tests/prune/test_chita.c).

What it does: re-implements in numpy float64, from a reading of the public MULTIFLOW reference
(pruners/chita.py Chita.run and utils/solvers.py Heuristic_LSBlock with split_type=1, prune_ls,
Heuristic_LS, compute_inverse, get_blocklist_custom; itself taken from mazumder-lab/CHITA), the
solver that src/prune/chita.c implements, on small synthetic problems:

  objective     f(b) = 0.5 ||A (w - b)||^2 + lam2 ||b - w||^2 + alpha . b
                with A (n, p) the per-batch gradient rows, w the current weights,
                alpha = sum of the rows / batch size, lam2 = n * lambda / 2.
  global step   one iterative-hard-thresholding step from b = w over all p weights with the
                reference's optimal step, or its line search when the optimal step would keep a
                weight off the support larger than one on it (prune_ls, 10 search iterations);
                the result's support gives the number of survivors of each block.
  blocks        tensors cut as get_blocklist_custom does (a tensor smaller than the block size
                is one block; else int(P / bs) blocks of int(P / int(P / bs)) weights, the last
                one taking the remainder); per block one more prune_ls (if ||alpha_b|| > 1e-8),
                then the ridge solve of the block's quadratic on its top-k_b support
                (Woodbury when k_b > n).

It deliberately differs from the reference where src/prune/chita.c does (pruning.md deviations):
float64 throughout (the reference runs float32); exact-k: k = p - floor(s p) survivors, ties in
every top-k broken by position (lower position pruned first) instead of an unstable argsort; the
global selection ranks float32 scores |w - L alpha| (rounded from float64 once, as the C code
hands them to its radix select) with previously pruned weights (chita++) forced out; a line search
that never improves keeps the magnitude-pruned start instead of failing; empty maxima count as
-inf; a zero step denominator gives step 0.

Output: tests/golden/chita/<case>.safetensors with
  w.<i> F32 (out, in), prev.<i> U8 (optional), A F32 (n, p) in tensor order,
  mask.<i> U8, wnew.<i> F32 (float64 result rounded once)
and metadata: n_tensors, bsz, lambda, sparsity, block, branch (1 optimal step, 2 line search
improved, 3 line search kept the start), step.

Run by hand: /usr/bin/python3 tests/golden/gen_chita.py (deterministic; output committed).
"""

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from blip_ref import st_write  # noqa: E402

OUT = os.path.join(HERE, "chita")


def keep_topk(score, k, forced=None):
    """Keep mask of the k largest scores; among equal scores the lower position is pruned first.
    forced (bool, True = must be pruned) ranks below everything."""
    p = len(score)
    s = score.copy()
    if forced is not None:
        s = np.where(forced, -1.0, s).astype(s.dtype)
    order = np.lexsort((np.arange(p), s))
    keep = np.ones(p, dtype=bool)
    keep[order[:p - k]] = False
    return keep


def objective(X, w, b, alpha, lam2):
    r = X @ (w - b)
    d = b - w
    return 0.5 * (r @ r) + lam2 * (d @ d) + alpha @ b


def maxabs(v, sel):
    return np.abs(v[sel]).max() if sel.any() else -np.inf


def prune_ls(X, w, beta, k, alpha, lam2, forced, score32):
    """One IHT step with line search (reference prune_ls, y = X w, beta_tilde2 = w)."""
    def sel(v):
        a = np.abs(v)
        if score32:
            a = a.astype(np.float32)
        return keep_topk(a, k, forced)

    r = X @ (w - beta)
    S = sel(beta)
    grad = -X.T @ r + alpha - 2 * lam2 * (w - beta)
    gs = np.where(S, grad, 0.0)
    Xg = X @ gs
    num = gs @ alpha - r @ Xg - 2 * lam2 * ((w - beta) @ gs)
    den = Xg @ Xg + 2 * lam2 * (gs @ gs)
    t = num / den if den != 0 and np.isfinite(num / den) else 0.0

    def cond(L):
        v = beta - L * grad
        return maxabs(v, S) >= maxabs(v, ~S) - 1e-10

    if cond(t):
        return np.where(S, beta - t * grad, 0.0), S, 1, t
    L = t / 2
    it = 0
    while it < 100 and not cond(L):
        L /= 2
        it += 1
    best = np.where(S, beta, 0.0)
    best_S = S
    f_best = objective(X, w, best, alpha, lam2)
    branch, step = 3, L
    for _ in range(10):
        bt = beta - L * grad
        S2 = sel(bt)
        bt = np.where(S2, bt, 0.0)
        f = objective(X, w, bt, alpha, lam2)
        if f < f_best:
            f_best, best, best_S, branch, step = f, bt, S2, 2, L
        else:
            break
        L *= 2
    return best, best_S, branch, step


def ridge(Xb, wb, act, alpha, lam2):
    """Survivors act of one block: argmin over b of 0.5 ||Xb wb - Xa b||^2 + lam2 ||b - wa||^2
    + alpha_a . b (reference compute_inverse with y = X_block w_block: the survivors absorb the
    pruned weights' contribution)."""
    X = Xb[:, act]
    w = wb[act]
    alpha = alpha[act]
    n, k = X.shape
    y = Xb @ wb
    rhs = X.T @ y + 2 * lam2 * w - alpha
    if n < k:
        M = np.eye(n) + X @ X.T / (2 * lam2)
        return rhs / (2 * lam2) - X.T @ np.linalg.solve(M, X @ rhs) / (4 * lam2 * lam2)
    return np.linalg.solve(2 * lam2 * np.eye(k) + X.T @ X, rhs)


def blocks_of(P, bs):
    if P < bs:
        return [(0, P)]
    step = P // (P // bs)
    nb = P // step
    return [(j * step, P if j == nb - 1 else (j + 1) * step) for j in range(nb)]


def chita(ws, A, prev, bsz, lam, s, bs):
    p = sum(w.size for w in ws)
    n = A.shape[0]
    w = np.concatenate([x.reshape(-1).astype(np.float64) for x in ws])
    X = A.astype(np.float64)
    colsum = np.zeros(p)
    for i in range(n):
        colsum += X[i]
    alpha = colsum / bsz
    lam2 = n * lam / 2
    k = p - int(np.floor(s * p))
    forced = None if prev is None else ~np.concatenate([m.reshape(-1).astype(bool) for m in prev])
    branch, step = 0, 0.0
    if np.linalg.norm(alpha) > 1e-8:
        beta, S, branch, step = prune_ls(X, w, w.copy(), k, alpha, lam2, forced, True)
    else:
        beta = w.copy()
        S = keep_topk(np.abs(w).astype(np.float32), k, forced)
    wnew = np.zeros(p)
    keep = np.zeros(p, dtype=bool)
    off = 0
    for x in ws:
        for b0, b1 in blocks_of(x.size, bs):
            idx = np.arange(off + b0, off + b1)
            kc = int(S[idx].sum())
            if kc == 0:
                continue
            Xb, wb, bb, ab = X[:, idx], w[idx], beta[idx], alpha[idx]
            fb = None if forced is None else forced[idx]
            if np.linalg.norm(ab) > 1e-8:
                bb, _, _, _ = prune_ls(Xb, wb, bb, kc, ab, lam2, fb, False)
            act = keep_topk(np.abs(bb), kc, fb)
            sol = ridge(Xb, wb, act, ab, lam2)
            wnew[idx[act]] = sol
            keep[idx[act]] = True
        off += x.size
    assert keep.sum() == k
    return keep, wnew, branch, step


def make_case(name, seed, shapes, n, bsz, lam, s, bs, gscale, with_prev=False, want_branch=None, spikes=0.0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal(sh).astype(np.float32) * 0.05 for sh in shapes]
    p = sum(a * b for a, b in shapes)
    A = (rng.standard_normal((n, p)) * gscale).astype(np.float32)
    if spikes:
        # a few columns with much larger gradients: the optimal step would push those weights
        # above the kept ones, which sends prune_ls into its line search
        A[:, rng.choice(p, 20, replace=False)] *= spikes
    prev = None
    if with_prev:
        prev = [(rng.random(sh) > 0.3).astype(np.uint8) for sh in shapes]
        off = 0
        for w, m in zip(ws, prev):
            w *= m
            A[:, off:off + w.size] *= m.reshape(-1)
            off += w.size
    keep, wnew, branch, step = chita(ws, A, prev, bsz, lam, s, bs)
    if want_branch is not None:
        assert branch == want_branch, (name, branch)
    tensors = {}
    off = 0
    for i, (w, sh) in enumerate(zip(ws, shapes)):
        tensors[f"w.{i}"] = torch.from_numpy(w)
        if prev is not None:
            tensors[f"prev.{i}"] = torch.from_numpy(prev[i])
        tensors[f"mask.{i}"] = torch.from_numpy(keep[off:off + w.size].reshape(sh).astype(np.uint8))
        tensors[f"wnew.{i}"] = torch.from_numpy(wnew[off:off + w.size].reshape(sh).astype(np.float32))
        off += w.size
    tensors["A"] = torch.from_numpy(A)
    meta = {"n_tensors": len(shapes), "bsz": bsz, "lambda": repr(lam), "sparsity": repr(s), "block": bs,
            "branch": branch, "step": repr(step)}
    st_write(os.path.join(OUT, name + ".safetensors"), tensors, meta)
    print(f"{name}: p={off} n={n} kept={int(keep.sum())} branch={branch} step={step:.6g} "
          f"|wnew-w| on kept: {np.abs(wnew[keep] - np.concatenate([w.reshape(-1) for w in ws])[keep]).max():.3g}")


def main():
    os.makedirs(OUT, exist_ok=True)
    shapes = [(40, 50), (30, 70), (12, 9), (50, 60)]
    # small gradients: the optimal step keeps the magnitude support (branch 1)
    make_case("opt_step", 1, shapes, n=6, bsz=4, lam=1e-2, s=0.6, bs=500, gscale=0.01, want_branch=1)
    # large gradients: the optimal step would keep pruned weights larger than kept ones; line search
    make_case("line_search", 2, shapes, n=6, bsz=4, lam=1e-3, s=0.6, bs=500, gscale=0.01, spikes=10.0,
              want_branch=2)
    # chita++-like later round: previously pruned weights are zero with zero gradient columns
    make_case("prev_mask", 3, shapes, n=5, bsz=2, lam=1e-3, s=0.75, bs=700, gscale=0.3, with_prev=True)
    # more rows than some blocks' survivors (the direct (k x k) solve), 90 %
    make_case("many_rows", 4, [(20, 30), (16, 40)], n=40, bsz=8, lam=1e-1, s=0.9, bs=200, gscale=0.1)


if __name__ == "__main__":
    main()
