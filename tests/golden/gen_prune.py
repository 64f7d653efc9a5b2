"""Goldens for the pruning criteria and exact-k selection (tests/prune/test_criteria.c).

What it does: re-implements, from shared/spec/pruning.md and a reading of the public MULTIFLOW
reference (pruners/base.py _global_mask/_local_mask, pruners/{mag,l2,lamp,multiflow}.py), the
REFERENCE mask computation: torch.kthvalue threshold, prune every score <= threshold, LAMP with the
reference's ascending sort and cumulative sum, MULTIFLOW's layer ratios passed through a float
(k = int((1 - kept / n) * n)). It writes random weights, statistics, expected scores and the
reference masks into tests/golden/prune/*.safetensors:

  prune_random.safetensors  8 non-square tensors in 3 modalities, registered in a non-sorted order;
                            scores (l2, lamp, multiflow) and masks (omp, lmp, l2, lamp, multiflow at
                            63/75/90 %). Random floats: no ties, so ours must equal the reference,
                            except MULTIFLOW tensors where the float ratio loses a weight (listed in
                            the metadata "ratio_dev.<pct>").
  prune_ties.safetensors    quantised weights (many exact zeros): the reference over-prunes (omp,
                            lmp), ours must prune exactly floor(s * n).

What it deliberately does not do: run the reference code (not installed, never copied). Scores are
computed in float64 and rounded to float32 once, as the C code does, where the reference computes in
float32: rounding differences of a few ulps could otherwise reorder near-equal scores. The script
prints how many masks the pure float32 computation would change (0 expected).

Metadata: "modality.<name>" = vision|text|fusion, "order" = registration order (comma-separated).
Tensors: "w.<name>" F32 (out, in), "sumsq.<name>" F64 (in), "count.<name>" F64 (1),
"score.<method>.<name>" F32, "mask.<method>.<pct>.<name>" U8 (1 keep, 0 pruned).

Run by hand: /usr/bin/python3 tests/golden/gen_prune.py (deterministic; output committed).
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from blip_ref import st_write  # noqa: E402

OUT = os.path.join(HERE, "prune")
PCTS = (63, 75, 90)
STRICT = [False]  # when set, a tie at a threshold is an error (the random golden must have none)

# registration order (deliberately not sorted by name), modality, shape (out, in)
TENSORS = [
    ("visual.blocks.1.mlp.fc1.weight", "vision", (45, 32)),
    ("visual.blocks.0.attn.qkv.weight", "vision", (96, 30)),
    ("text.layer.0.attn.query.weight", "text", (32, 28)),
    ("text.layer.1.ffn.weight", "text", (60, 32)),
    ("text.layer.0.ffn.output.weight", "text", (28, 60)),
    ("fusion.layer.0.cross.key.weight", "fusion", (33, 48)),
    ("fusion.layer.0.cross.value.weight", "fusion", (32, 46)),
    ("decoder.layer.0.self.query.weight", "text", (40, 30)),
]


def kth_mask(scores, k):
    """Reference: threshold = k-th smallest (torch.kthvalue), prune score <= threshold. 1 = keep."""
    if k < 1:
        return torch.ones_like(scores, dtype=torch.uint8)
    thr, _ = torch.kthvalue(scores.flatten(), k)
    assert not STRICT[0] or int((scores == thr).sum()) == 1, "tie at a local threshold"
    return (scores > thr).to(torch.uint8)


def global_masks(scores, s):
    """pruners/base.py _global_mask: one threshold over every tensor, k = int(s * total)."""
    flat = torch.cat([v.flatten() for v in scores.values()])
    k = int(s * flat.numel())
    if k < 1:
        return {n: torch.ones_like(v, dtype=torch.uint8) for n, v in scores.items()}
    thr, _ = torch.kthvalue(flat, k)
    assert not STRICT[0] or int((flat == thr).sum()) == 1, "tie at a global threshold"
    return {n: (v > thr).to(torch.uint8) for n, v in scores.items()}


def local_masks(scores, ratio):
    """pruners/base.py _local_mask: each tensor at its own ratio, k = int(ratio * n)."""
    return {n: kth_mask(v, int(ratio[n] * v.numel())) for n, v in scores.items()}


def lamp_scores(w, dtype):
    """pruners/lamp.py _normalize_scores: ascending sort, w_i^2 / sum_{j>=i} w_j^2."""
    sq = w.to(dtype).pow(2).flatten()
    srt, idx = sq.sort(descending=False)
    cum = srt.cumsum(0)
    before = torch.zeros_like(cum)
    before[1:] = cum[:-1]
    srt = srt / (sq.sum() - before)
    out = torch.zeros_like(sq)
    out[idx] = srt
    return out.view(w.shape).float()


def l2_scores(w, dtype):
    """pruners/l2.py: |w| / ||W||_2 (flattened)."""
    a = w.to(dtype).abs()
    return (a / torch.norm(a.flatten(), p=2)).float()


def multiflow_scores(w, sumsq, count, dtype):
    """pruners/multiflow.py score(): a = sqrt(S / N); outer(mean_j |W| a, mean_i |W| a) * |W|."""
    a = torch.sqrt(sumsq.to(dtype) / count)
    aw = w.to(dtype).abs() * a
    o = aw.mean(dim=1)
    p = aw.mean(dim=0)
    return (torch.outer(o, p) * w.to(dtype).abs()).float()


def multiflow_distribution(weights, modality, s):
    """pruners/multiflow.py multimodal_distribution: per-modality |w| kthvalue threshold (<=), then
    ratio = 1 - kept / n per tensor (a float). Returns (ratio, exact integer count pruned)."""
    ratio, pruned = {}, {}
    for m in sorted(set(modality.values())):
        names = [n for n in weights if modality[n] == m]  # registration order
        flat = torch.cat([weights[n].abs().flatten() for n in names])
        k = int(flat.numel() * s)
        thr, _ = torch.kthvalue(flat, k)
        for n in names:
            mask = torch.where(weights[n].abs() <= thr, 0, 1)
            ratio[n] = 1 - mask.sum().item() / mask.numel()
            pruned[n] = int((mask == 0).sum().item())
    return ratio, pruned


def make_weights(gen, quantised):
    weights, sumsq, count = {}, {}, {}
    for name, _, (o, i) in TENSORS:
        scale = 0.5 + 1.5 * torch.rand(1, generator=gen).item()
        w = torch.randn(o, i, generator=gen) * scale
        if quantised:
            w = torch.round(w * 2) / 2  # many exact zeros and repeated magnitudes
        weights[name] = w.float()
        count[name] = float(torch.randint(3, 50, (1,), generator=gen).item())
        sumsq[name] = (torch.rand(i, generator=gen, dtype=torch.float64) * 4 + 0.01) * count[name]
    if not quantised:
        # random float32 normals repeat a magnitude now and then (LAMP would then rightly differ from
        # the reference); nudge repeats until every |w| of the set is distinct
        seen = set()
        for name in weights:
            flat = weights[name].flatten()
            for j in range(flat.numel()):
                v = flat[j].item()
                while abs(v) in seen:
                    v = float(torch.tensor(v * (1 + 2.0 ** -20), dtype=torch.float32))
                flat[j] = v
                seen.add(abs(v))
            weights[name] = flat.view(weights[name].shape)
    return weights, sumsq, count


def common_tensors(weights, sumsq, count):
    out = {}
    for name, _, _ in TENSORS:
        out["w." + name] = weights[name]
        out["sumsq." + name] = sumsq[name]
        out["count." + name] = torch.tensor([count[name]], dtype=torch.float64)
    return out


def gen_random():
    STRICT[0] = True
    gen = torch.Generator().manual_seed(1234)
    weights, sumsq, count = make_weights(gen, quantised=False)
    modality = {n: m for n, m, _ in TENSORS}
    meta = {"modality." + n: m for n, m, _ in TENSORS}
    meta["order"] = ",".join(n for n, _, _ in TENSORS)
    out = common_tensors(weights, sumsq, count)

    scores, scores32 = {}, {}
    for dtype, dst in ((torch.float64, scores), (torch.float32, scores32)):
        dst["omp"] = {n: w.abs() for n, w in weights.items()}
        dst["l2"] = {n: l2_scores(w, dtype) for n, w in weights.items()}
        dst["lamp"] = {n: lamp_scores(w, dtype) for n, w in weights.items()}
        dst["multiflow"] = {n: multiflow_scores(w, sumsq[n], count[n], dtype) for n, w in weights.items()}
    for meth in ("l2", "lamp", "multiflow"):
        for n in weights:
            out["score.%s.%s" % (meth, n)] = scores[meth][n]

    changed = 0
    for pct in PCTS:
        s = pct / 100.0
        dev = []
        for src, sink in ((scores, out), (scores32, None)):
            masks = {
                "omp": global_masks(src["omp"], s),
                "lmp": local_masks(src["omp"], {n: s for n in weights}),
                "l2": global_masks(src["l2"], s),
                "lamp": global_masks(src["lamp"], s),
            }
            ratio, pruned = multiflow_distribution(weights, modality, s)
            masks["multiflow"] = local_masks(src["multiflow"], ratio)
            if sink is None:
                for meth, mm in masks.items():
                    for n in mm:
                        changed += int((mm[n] != out["mask.%s.%d.%s" % (meth, pct, n)]).sum().item())
                continue
            for meth, mm in masks.items():
                for n in weights:
                    sink["mask.%s.%d.%s" % (meth, pct, n)] = mm[n]
            for n in weights:
                nn = weights[n].numel()
                if int(ratio[n] * nn) != pruned[n]:
                    dev.append(n)
                    assert int(ratio[n] * nn) == pruned[n] - 1
        meta["ratio_dev.%d" % pct] = ",".join(dev)
        print("sparsity %d%%: multiflow float-ratio deviation in %d of %d tensors" % (pct, len(dev), len(weights)))
    print("masks the pure float32 reference would change: %d" % changed)
    st_write(os.path.join(OUT, "prune_random.safetensors"), out, meta)


def gen_ties():
    STRICT[0] = False
    gen = torch.Generator().manual_seed(99)
    weights, sumsq, count = make_weights(gen, quantised=True)
    meta = {"modality." + n: m for n, m, _ in TENSORS}
    meta["order"] = ",".join(n for n, _, _ in TENSORS)
    out = common_tensors(weights, sumsq, count)
    absw = {n: w.abs() for n, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum().item()) for w in weights.values())
    for pct in PCTS:
        s = pct / 100.0
        g = global_masks(absw, s)
        loc = local_masks(absw, {n: s for n in weights})
        for n in weights:
            out["mask.omp.%d.%s" % (pct, n)] = g[n]
            out["mask.lmp.%d.%s" % (pct, n)] = loc[n]
        ref = sum(int((m == 0).sum().item()) for m in g.values())
        print("ties %d%%: reference omp prunes %d, exact k = %d" % (pct, ref, int(s * total)))
        assert ref > int(s * total)
    print("ties: %d of %d weights are exactly zero" % (zeros, total))
    st_write(os.path.join(OUT, "prune_ties.safetensors"), out, meta)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gen_random()
    gen_ties()
