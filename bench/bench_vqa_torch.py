"""PyTorch peer of `multiflow finetune --task vqa` for bench/run_vqa.sh: the same BLIP_VQA training
step (blip_losses.vqa_loss: vision, question encoder over the image, answer decoder over the
question states, weighted label-smoothed answer loss; tied decoder as the checkpoint stores it) in
float32 with autograd and torch.optim.AdamW (lr 2e-5, weight decay 0.05), on the same checkpoint and
the same questions (the first steps x batch of the annotation file, in order), timed per step after
one untimed warm-up step. Images are decoded once before timing (the C run decodes per step).

Run with Debian's /usr/bin/python3 (torch 1.13). Prints one line per thread count:
    torch threads T: S steps of B questions, X questions/s (best step Y s), first loss L
"""

import argparse
import json
import os
import sys
import time
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
import blip_ref as R  # noqa: E402
import blip_losses as BL  # noqa: E402


def tokens(lut, text, first):
    return [first] + [lut.get(w, lut["[UNK]"]) for w in text.split()] + [lut["[SEP]"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()
    P64, cfg = R.load_dir(a.model)
    vocab = R.read_vocab(os.path.join(a.model, "vocab.txt"))
    lut = {w: i for i, w in enumerate(vocab)}
    pad = lut["[PAD]"]
    with open(a.data) as f:
        ann = json.load(f)[: (a.steps + 1) * a.batch]
    cache = {}
    batches = []
    for s in range(a.steps + 1):
        qs = ann[s * a.batch:(s + 1) * a.batch]
        imgs = []
        for q in qs:
            if q["image"] not in cache:
                cache[q["image"]] = R.load_image(os.path.join(a.images, q["image"]), cfg.vision.image_size).float()
            imgs.append(cache[q["image"]])
        q_ids, q_mask = R.pad_rows([tokens(lut, R.pre_question(q["question"]), cfg.itm_first) for q in qs], pad)
        rows, n, w = [], [], []
        for q in qs:
            wt = OrderedDict()
            for ans in q["answer"]:
                wt[ans] = wt.get(ans, 0.0) + 1.0 / len(q["answer"])
            rows += [tokens(lut, ans, cfg.dec_id) for ans in wt]
            n.append(len(wt))
            w += list(wt.values())
        a_ids, a_mask = R.pad_rows(rows, pad)
        batches.append((torch.stack(imgs), q_ids, q_mask, a_ids, a_mask, n, torch.tensor(w, dtype=torch.float32)))
    for th in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(th)
        P = {k: v.float() for k, v in P64.items()}
        params, _ = BL.tie_params(P, cfg)
        leaves = list({id(t): t for t in params.values() if t.requires_grad}.values())
        opt = torch.optim.AdamW(leaves, lr=2e-5, weight_decay=0.05)
        times, first = [], None
        for s, (img, q_ids, q_mask, a_ids, a_mask, n, w) in enumerate(batches):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = BL.vqa_loss(params, cfg, img, q_ids, q_mask, torch.arange(img.shape[0]), a_ids, a_mask, n, w, pad)
            loss.backward()
            opt.step()
            dt = time.perf_counter() - t0
            if s == 0:
                first = float(loss)
            else:
                times.append(dt)
        qps = a.batch * len(times) / sum(times)
        print("torch threads %d: %d steps of %d questions, %.2f questions/s (best step %.3f s), first loss %.6f"
              % (th, len(times), a.batch, qps, min(times), first))


if __name__ == "__main__":
    main()
