#!/usr/bin/env python3
"""Goldens for the gradient-based pruners SNIP, IterSNIP and TAMT (src/prune/snip.c, tamt.c).

Run by hand with the system python (torch 1.13):  /usr/bin/python3 tests/golden/gen_gradient_pruners.py
Writes tests/golden/gradient_pruners/gradient_pruners.safetensors, read by
tests/prune/test_gradient_pruners.c.

Design (why the comparison is exact). The pruners only see gradients through a gradient source
(struct mf_grad_source): "the mean gradient over the next n batches at these effective weights".
The BLIP-loss gradients themselves are checked elsewhere (gen_grads.py / test_losses.c). Here both
sides use the same SYNTHETIC source, with its own batch stream (position p runs batch p mod P):
    g_b(w_eff) = C[b] + D * w_eff             (float32, elementwise, C[b] and D stored below)
    mean over n batches = (sum in stream order, float32) / float32(n)
It depends on the effective (masked) weights, so IterSNIP's re-scoring on the masked model and
TAMT's straight-through training are exercised for real. Everything below is float32 elementwise
arithmetic in the same operation order as the C (no fused multiply-add on either side: numpy
evaluates one rounding per op, the C is built with -std=c11, i.e. -ffp-contract=off), so masks
must match bit for bit, including TAMT's many near-ties after its sign-like first Adam steps.
Selection is exact-k with ties by position (pruning.md); the reference's `<= kth` rule is
reported for information only.

The algorithms follow FarinaMatteo/multiflow pruners/{snip,itersnip,tamt}.py: SNIP |g w| / sum;
IterSNIP generate_schedule (exp / const; linear with pruning.md's deviation s t / T), pruned
weights zero in the forward and in the score; TAMT init alpha * tau on the layer-wise magnitude
keep set, per step: binarise |score| at the global threshold, forward with w * mask, gradient of
the score (dL/dW_eff * w) * sign(score) (checked here against autograd through a GetTopSubnet-style
straight-through function), AdamW in torch 1.13's _single_tensor_adamw op order (checked here
against torch.optim.AdamW), lr linearly decayed to 0 (get_linear_schedule_with_warmup, 0 warm-up).
"""
import math
import os
from fractions import Fraction
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from blip_ref import st_write  # noqa: E402

OUT = os.path.join(HERE, "gradient_pruners")
f32 = np.float32

# prunable set in selection order (names byte-wise ascending)
SHAPES = [("a.weight", (6, 5)), ("b.weight", (4, 7)), ("c.weight", (3, 3))]
P = 3  # batches in one pass of the synthetic stream


class Source:
    def __init__(self, C, D):
        self.C, self.D, self.pos = C, D, 0

    def mean_grad(self, weff, n):
        if n <= 0:
            n = P
        acc = [np.zeros_like(d) for d in self.D]
        for _ in range(n):
            b = self.pos % P
            for i in range(len(acc)):
                acc[i] = acc[i] + (self.C[b][i] + self.D[i] * weff[i])
            self.pos += 1
        return [a / f32(n) for a in acc]


def exact_k(scores, k):
    """masks (1 keep) with the k lowest scores pruned, ties by (tensor, index) position."""
    flat = np.concatenate([s.ravel() for s in scores])
    order = np.lexsort((np.arange(flat.size), flat))  # by score, then position
    keep = np.ones(flat.size, np.uint8)
    keep[order[:k]] = 0
    out, o = [], 0
    for s in scores:
        out.append(keep[o:o + s.size].reshape(s.shape))
        o += s.size
    return out


def count_at(s, n):
    """floor of the exact product of the double s and n, as select.c counts (0.6 * 30 -> 17)."""
    return math.floor(Fraction(s) * n)


def snip_scores(g, w):
    sc = [np.abs(gi * wi) for gi, wi in zip(g, w)]
    total = f32(sum(float(x) for s in sc for x in s.ravel()))
    return [s / total for s in sc] if total > 0 else sc


def schedule(kind, s, t, T):
    if t >= T:
        return s
    if kind == "exp":
        return 1.0 - (1.0 - s) ** (t / T)
    if kind == "linear":
        return s * t / T  # Deviation: the reference's s + (1 - s) t / T ends at 100 %
    return s


def run_snip(w, src, s):
    sc = snip_scores(src.mean_grad(w, 0), w)
    return sc, exact_k(sc, count_at(s, sum(x.size for x in w)))


def run_itersnip(w, src, s, T, kind, rb):
    n = sum(x.size for x in w)
    masks = [np.ones(x.shape, np.uint8) for x in w]
    weff = [x.copy() for x in w]
    for t in range(1, T + 1):
        g = src.mean_grad(weff, rb)
        sc = snip_scores(g, weff)
        key = [np.where(m == 0, f32(-1), x) for m, x in zip(masks, sc)]
        masks = exact_k(key, count_at(schedule(kind, s, t, T), n))
        sc = [np.where(x < 0, f32(0), x) for x in key]
        weff = [np.where(m == 1, x, f32(0)) for m, x in zip(masks, w)]
    return sc, masks


def adamw(p, m, v, g, t, lr, o):
    decay = f32(1.0 - lr * o["wd"])
    b1, a1 = f32(o["b1"]), f32(1.0 - o["b1"])
    b2, a2 = f32(o["b2"]), f32(1.0 - o["b2"])
    step_size = f32(-(lr / (1.0 - o["b1"] ** t)))
    bc2s = f32(math.sqrt(1.0 - o["b2"] ** t))
    eps = f32(o["eps"])
    p = p * decay
    m = m * b1 + a1 * g
    v = v * b2 + (a2 * g) * g
    denom = np.sqrt(v) / bc2s + eps
    p = p + step_size * (m / denom)
    return p, m, v


def run_tamt(w, src, s, steps, o):
    n = sum(x.size for x in w)
    k = count_at(s, n)
    absw = [np.abs(x) for x in w]
    omp = exact_k(absw, k)
    tau = max(float(a[m == 0].max()) for a, m in zip(absw, omp) if (m == 0).any())
    lmp = [exact_k([a], count_at(s, a.size))[0] for a in absw]
    sc = [np.where(m == 1, f32(o["alpha"] * tau), f32(0)) for m in lmp]
    m1 = [np.zeros_like(x) for x in w]
    m2 = [np.zeros_like(x) for x in w]
    first_mask = None
    for step in range(steps):
        mask = exact_k([np.abs(x) for x in sc], k)
        if first_mask is None:
            first_mask = mask
        weff = [np.where(mm == 1, x, f32(0)) for mm, x in zip(mask, w)]
        g = src.mean_grad(weff, 1)
        grad = []
        for gi, wi, si in zip(g, w, sc):
            gm = gi * wi
            grad.append(np.where(si > 0, gm, np.where(si < 0, -gm, f32(0))).astype(f32))
        lr = o["lr"] * ((steps - step) / steps)
        for i in range(len(sc)):
            sc[i], m1[i], m2[i] = adamw(sc[i], m1[i], m2[i], grad[i], step + 1, lr, o)
    final = [np.abs(x) for x in sc]
    return final, exact_k(final, k), lmp, first_mask


def check_adamw_against_torch(rng, o):
    """Our op order vs torch.optim.AdamW + LambdaLR on random gradients: equal within 2 ulp."""
    p0 = rng.standard_normal(50).astype(f32)
    grads = [rng.standard_normal(50).astype(f32) for _ in range(6)]
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.AdamW([tp], lr=o["lr"], betas=(o["b1"], o["b2"]), eps=o["eps"], weight_decay=o["wd"])
    N = len(grads)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: max(0.0, (N - st) / max(1, N)))
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads):
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
        sch.step()
        p, m, v = adamw(p, m, v, g, t + 1, o["lr"] * ((N - t) / N), o)
    diff = np.abs(tp.detach().numpy() - p).max()
    assert np.allclose(tp.detach().numpy(), p, rtol=0, atol=4 * np.spacing(np.abs(p).max())), diff
    print(f"AdamW: max |torch - ours| = {diff:.3g} after {N} steps")


def check_straight_through(rng):
    """d L/d score through w * (|score| > thr) with a pass-through mask gradient = (dL/dW_eff * w) * sign."""
    class GetTopSubnet(torch.autograd.Function):
        @staticmethod
        def forward(ctx, scores, thr):
            return (scores > thr).float()

        @staticmethod
        def backward(ctx, g):
            return g, None

    w = torch.from_numpy(rng.standard_normal((4, 5)).astype(f32))
    sc = torch.from_numpy(rng.standard_normal((4, 5)).astype(f32))
    sc[0, 0] = 0
    sc.requires_grad_(True)
    c = torch.from_numpy(rng.standard_normal((4, 5)).astype(f32))
    weff = w * GetTopSubnet.apply(sc.abs(), 0.3)
    (c * weff).sum().backward()  # dL/dW_eff = c
    want = (c * w) * torch.sign(sc.detach())
    assert torch.equal(sc.grad, want), (sc.grad, want)
    assert sc.grad[0, 0] == 0
    print("straight-through score gradient = (dL/dW_eff * w) * sign(score); 0 at score 0")


def main():
    rng = np.random.default_rng(20240405)
    w = [rng.standard_normal(sh).astype(f32) for _, sh in SHAPES]
    C = [[rng.standard_normal(sh).astype(f32) for _, sh in SHAPES] for _ in range(P)]
    D = [rng.standard_normal(sh).astype(f32) for _, sh in SHAPES]
    out, meta = {}, {"batches_per_pass": P}
    for (name, _), x in zip(SHAPES, w):
        out[name] = torch.from_numpy(x)
        out[name + ":D"] = torch.from_numpy(D[SHAPES.index((name, x.shape))])
        for b in range(P):
            out[f"{name}:C{b}"] = torch.from_numpy(C[b][SHAPES.index((name, x.shape))])

    def put(case, sc, masks):
        for (name, _), s_, m_ in zip(SHAPES, sc, masks):
            out[f"{case}/{name}:score"] = torch.from_numpy(np.ascontiguousarray(s_, dtype=f32))
            out[f"{case}/{name}:mask"] = torch.from_numpy(np.ascontiguousarray(m_, dtype=np.uint8))

    sc, mk = run_snip(w, Source(C, D), 0.55)
    put("snip", sc, mk)
    for case, s, T, kind, rb in [("itersnip_exp", 0.6, 3, "exp", 2), ("itersnip_linear", 0.5, 4, "linear", 1),
                                 ("itersnip_const", 0.45, 2, "const", 0)]:
        src = Source(C, D)
        sc, mk = run_itersnip(w, src, s, T, kind, rb)
        put(case, sc, mk)
        print(f"{case}: {src.pos} batches drawn")
    o = {"lr": 5e-5, "wd": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "alpha": 2.0}
    check_adamw_against_torch(rng, o)
    check_straight_through(rng)
    for case, s, steps, lr in [("tamt_ref", 0.55, 4, 5e-5), ("tamt_fast", 0.6, 7, 3e-2)]:
        oo = dict(o, lr=lr)
        sc, mk, lmp, first = run_tamt(w, Source(C, D), s, steps, oo)
        put(case, sc, mk)
        kept = sum(int(m.sum()) for m in mk)
        outside = sum(int(((m == 1) & (l == 0)).sum()) for m, l in zip(mk, lmp))
        moved = sum(int((m != l).sum()) for m, l in zip(mk, lmp))
        print(f"{case}: kept {kept}, kept outside the layer-wise magnitude set {outside}, differs from it at {moved}")
        assert outside == 0
    meta.update({"snip": "0.55", "itersnip_exp": "0.6 3 exp 2", "itersnip_linear": "0.5 4 linear 1",
                 "itersnip_const": "0.45 2 const 0", "tamt_ref": "0.55 4 5e-5", "tamt_fast": "0.6 7 3e-2"})
    os.makedirs(OUT, exist_ok=True)
    st_write(os.path.join(OUT, "gradient_pruners.safetensors"), out, meta)
    print("wrote", os.path.join(OUT, "gradient_pruners.safetensors"))


if __name__ == "__main__":
    main()
