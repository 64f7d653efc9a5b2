"""PyTorch peer of bench_train.c: one fine-tuning step (ITC+ITM forward, backward, AdamW) on the
same BLIP-base checkpoint and batch, after checking that the first step's loss equals the C engine's.

What it does: loads the checkpoint with bench_forward_torch.load_model (float32, canonical names),
makes every parameter an autograd leaf with tests/golden/blip_losses.tie_params, applies the masks
bench_train.c used (in its dump: 'mask.<tensor name>', U8), computes
blip_losses.batch_losses(..., ("itc", "itm"), "hardest") on the batch from bench_train --dump,
compares the first step's itc/itm/total with the C values (tolerance 1e-3 relative), then times
--steps steps of loss.backward() + torch.optim.AdamW(lr 1e-5, weight_decay 0.05) with the masks
re-applied to the gradients and weights (the fixed-mask rule), at each torch thread count.

--pretrain (the peer of bench_train --config): the dump's model is a random original-layout BLIP;
the step is BLIP's pretraining step, ITC with the momentum encoders and queues (blip_losses.Momentum:
update, momentum features, enqueue) + ITM + LM, dense, every parameter trained.

What it deliberately does not do: the C side (bench_train.c), assertions on time, torch.compile.
Run with /usr/bin/python3 (torch 1.13): see bench/README.md.
"""

import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))

import bench_forward_torch as bft  # noqa: E402
import blip_losses as BL  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dump", required=True, help="bench_train --dump output (batch + C first-step losses)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-masks", action="store_true", help="train dense (the C side always masks)")
    ap.add_argument("--pretrain", action="store_true",
                    help="pretraining step: itc+itm+lm with momentum encoders and queues, dense (bench_train --config)")
    a = ap.parse_args()

    t0 = time.time()
    P, cfg = bft.load_model(a.model_dir)
    D, _ = bft.st_load(a.dump)
    images, ids, mask = D["images"], D["ids"].long(), D["mask"].long()
    B, L = ids.shape
    masks = {} if a.no_masks or a.pretrain else {k[5:]: v.bool() for k, v in D.items() if k.startswith("mask.")}
    losses = ("itc", "itm", "lm") if a.pretrain else ("itc", "itm")
    ptr = P.pop("queue_ptr").reshape(-1)[0] if "queue_ptr" in P else 0  # an integer buffer, not a tensor to train
    print("# torch %s, %s layout, batch %d, L %d, %d masked tensors, loaded in %.1f s"
          % (torch.__version__, cfg.layout, B, L, len(masks), time.time() - t0), flush=True)
    status = 0
    for T in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(T)
        params, aliases = BL.tie_params({k: v.clone() for k, v in P.items()}, cfg)
        with torch.no_grad():
            for k, mk in masks.items():
                if k in params:
                    params[k].mul_(mk)
        # tied names share one leaf: hand each leaf to AdamW once
        leaves = list({id(t): t for k, t in params.items() if BL.is_parameter(k)}.values())
        opt = torch.optim.AdamW(leaves, lr=1e-5, weight_decay=0.05)
        Pfull = dict(params)
        for k, o in aliases.items():
            Pfull[k] = params[o]
        mom = BL.Momentum(P, int(ptr)) if a.pretrain else None
        times, first = [], None
        for st in range(a.steps):
            t1 = time.time()
            opt.zero_grad(set_to_none=False)
            out = BL.batch_losses(Pfull, cfg, images, ids, mask, losses=losses, neg_mode="hardest", mom=mom)
            loss = sum(out[k] for k in losses)
            loss.backward()
            with torch.no_grad():
                for k, mk in masks.items():
                    if k in params and params[k].grad is not None:
                        params[k].grad.mul_(mk)
            opt.step()
            with torch.no_grad():
                for k, mk in masks.items():
                    if k in params:
                        params[k].mul_(mk)
            times.append(time.time() - t1)
            if st == 0:
                first = (out["itc"].item(), out["itm"].item(), loss.item())
                first_lm = out["lm"].item() if a.pretrain else None
        want = (D["itc"].item(), D["itm"].item(), D["total"].item())
        if a.pretrain:
            first, want = first + (first_lm,), want + (D["lm"].item(),)
        diffs = [abs(g - w) / max(1.0, abs(w)) for g, w in zip(first, want)]
        ok = max(diffs) <= 1e-3
        print("CHECK torch_threads=%d first step (itc, itm, total%s) %s vs C %s: max rel %.2e %s"
              % (T, ", lm" if a.pretrain else "", " ".join("%.6f" % x for x in first),
                 " ".join("%.6f" % x for x in want), max(diffs), "ok" if ok else "FAIL (tolerance 1e-3)"), flush=True)
        if not ok:
            status = 1
        best = min(times[1:]) if len(times) > 1 else times[0]
        print("TORCH torch_threads=%d batch=%d steps=%d first_s=%.3f best_s=%.3f median_s=%.3f pairs_per_s=%.3f"
              % (T, B, a.steps, times[0], best, statistics.median(times), B / best), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
