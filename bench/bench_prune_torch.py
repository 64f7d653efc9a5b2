"""bench/bench_prune_torch.py: the PyTorch peer of bench_prune.c (run both with bench/run_prune.sh).

What it does: the same BLIP-base tensor list (226,492,416 prunable weights), random weights scaled
per tensor the same way and random statistics, then for each method times the computation the
MULTIFLOW reference performs (pruners/base.py _global_mask/_local_mask with torch.kthvalue and a
`<=` threshold, pruners/{mag,l2,lamp,rand,multiflow}.py scores, in float32), and prints
"RESULT method threads score_s select_s total_s pruned=... k=..." lines: `pruned` is what the
reference zeroes, k = the exact count for the method's scope (sum over scopes of floor(s * n));
they differ when scores tie at a threshold, and for multiflow by the float-ratio loss.

What it deliberately does not do: share weights with the C bench (random weights of the same shapes
and distribution cost the same; masks are compared on the goldens by ctest), hold the C process's
memory (it runs after it), or call the reference code itself (not installed; re-implemented from
shared/spec/pruning.md). Run with /usr/bin/python3 (the python3 first on PATH has no torch).
"""

import argparse
import resource
import time

import torch

D, FF = 768, 3072


def shapes(layers):
    out = []
    for l in range(layers):
        out += [("visual_encoder.blocks.%d.attn.qkv.weight" % l, "vision", 3 * D, D),
                ("visual_encoder.blocks.%d.attn.proj.weight" % l, "vision", D, D),
                ("visual_encoder.blocks.%d.mlp.fc1.weight" % l, "vision", FF, D),
                ("visual_encoder.blocks.%d.mlp.fc2.weight" % l, "vision", D, FF)]
        for q in ("query", "key", "value", "output"):
            out += [("text_encoder.encoder.layer.%d.attention.%s.weight" % (l, q), "text", D, D),
                    ("text_encoder.encoder.layer.%d.crossattention.%s.weight" % (l, q), "text", D, D),
                    ("text_decoder.bert.encoder.layer.%d.attention.%s.weight" % (l, q), "text", D, D)]
        out += [("text_encoder.encoder.layer.%d.intermediate.dense.weight" % l, "text", FF, D),
                ("text_encoder.encoder.layer.%d.output.dense.weight" % l, "text", D, FF)]
    return out


def global_mask(scores, s):
    flat = torch.cat([v.flatten() for v in scores.values()])
    k = int(s * flat.numel())
    thr, _ = torch.kthvalue(flat, k)
    del flat
    return {n: torch.where(v <= thr, False, True) for n, v in scores.items()}


def local_mask(scores, ratio):
    masks = {}
    for n, v in scores.items():
        k = int(ratio[n] * v.numel())
        thr, _ = torch.kthvalue(v.flatten(), k)
        masks[n] = torch.where(v <= thr, False, True)
    return masks


def lamp_normalize(sc):
    srt, idx = sc.view(-1).sort(descending=False)
    cum = srt.cumsum(dim=0)
    before = torch.zeros(cum.shape)
    before[1:] = cum[:len(cum) - 1]
    srt /= (sc.sum() - before)
    out = torch.zeros(cum.shape)
    out[idx] = srt
    return out.view(sc.shape)


def multiflow_distribution(w, mod, s):
    ratio = {}
    for m in sorted(set(mod.values())):
        names = [n for n in w if mod[n] == m]
        flat = torch.cat([w[n].abs().flatten() for n in names])
        thr, _ = torch.kthvalue(flat, int(flat.numel() * s))
        del flat
        for n in names:
            mask = torch.where(w[n].abs() <= thr, False, True)
            ratio[n] = 1 - mask.sum().item() / mask.numel()
    return ratio


def run(method, w, mod, sumsq, count, s):
    t0 = time.time()
    ratio = None
    if method == "multiflow":
        ratio = multiflow_distribution(w, mod, s)  # step 1 belongs to the selection
    t1 = time.time()
    if method in ("omp", "lmp"):
        scores = {n: v.abs() for n, v in w.items()}
    elif method == "l2":
        scores = {n: v.abs() / torch.norm(v.view(-1), p=2, dim=0) for n, v in w.items()}
    elif method == "lamp":
        scores = {n: lamp_normalize(v.pow(2)) for n, v in w.items()}
    elif method == "rand":
        scores = {n: torch.randn_like(v) for n, v in w.items()}
    else:
        scores = {}
        for n, v in w.items():
            a = torch.sqrt(sumsq[n] / count)
            aw = v.abs() * a
            scores[n] = torch.outer(aw.mean(dim=1), aw.mean(dim=0)) * v.abs()
    t2 = time.time()
    if method == "lmp":
        masks = local_mask(scores, {n: s for n in w})
    elif method == "multiflow":
        masks = local_mask(scores, ratio)
    else:
        masks = global_mask(scores, s)
    t3 = time.time()
    pruned = sum(int((~m).sum().item()) for m in masks.values())
    return t2 - t1, (t1 - t0) + (t3 - t2), pruned


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="2")
    ap.add_argument("--sparsity", type=float, default=0.63)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--methods", default="omp,lmp,l2,lamp,rand,multiflow")
    args = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    w, mod, sumsq = {}, {}, {}
    for i, (n, m, o, inn) in enumerate(shapes(args.layers)):
        w[n] = torch.randn(o, inn) * (0.02 * (0.6 + 0.1 * (i % 9)))
        mod[n] = m
        sumsq[n] = (torch.rand(inn) + 0.5) * 1000.0
    total = sum(v.numel() for v in w.values())
    print("# bench_prune_torch: torch %s, %d tensors, %d prunable weights, sparsity %.2f, init %.1f s"
          % (torch.__version__, len(w), total, args.sparsity, time.time() - t0))
    for th in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(th)
        for meth in args.methods.split(","):
            sc, sel, pruned = run(meth, w, mod, sumsq, 1000.0, args.sparsity)
            if meth == "lmp":
                k = sum(int(args.sparsity * v.numel()) for v in w.values())
            elif meth == "multiflow":
                k = sum(int(args.sparsity * sum(w[n].numel() for n in w if mod[n] == m)) for m in set(mod.values()))
            else:
                k = int(args.sparsity * total)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            print("RESULT %-9s threads=%d score_s=%.3f select_s=%.3f total_s=%.3f pruned=%d k=%d rss_mb=%.0f"
                  % (meth, th, sc, sel, sc + sel, pruned, k, rss), flush=True)


if __name__ == "__main__":
    main()
