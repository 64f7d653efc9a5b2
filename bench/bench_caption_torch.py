#!/usr/bin/python3
"""bench/bench_caption_torch.py: the PyTorch side of the caption-generation benchmark
(bench/run_caption.sh, bench/README.md).

What it does:
  --make-model DIR   writes a BLIP-mini-shaped captioning checkpoint (original BLIP_Decoder layout:
                     visual_encoder.* + text_decoder.*; vision 256 wide, 4 layers, 64 px, patch 8;
                     text 256 wide, 4 layers, FFN 1024, 40 positions; the tiny test vocabulary) with
                     tests/golden/gen_blip.py's random init (unit-gain linears, so LM logits are of
                     order 1 and captions rarely hinge on near-ties), seed 5;
  --dump FILE        reads bench_caption's images and ids, generates the same captions in float32
                     PyTorch with a key/value cache (self-attention K/V appended per step and
                     reordered by beam, cross-attention K/V of the image computed once), driving the
                     search code of tests/golden/blip_ref.py (transformers 4.15 greedy/beam rules),
                     checks the ids against the C engine's (CHECK line), then times --reps runs of
                     all images for each --threads value (TORCH lines). Images run one at a time
                     (num_beams rows each), as a per-image loop over BLIP's generate would.

Deliberately not: TorchScript or torch.compile (not in torch 1.13), batching several images per
generate call (compare with bench_caption --batch 1 for the like-for-like number).
Run with /usr/bin/python3 (Debian python3-torch 1.13).
"""

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
import blip_ref as R  # noqa: E402


def make_model(d):
    import gen_blip as G
    import gen_generate as GG
    G.IMG, G.PATCH = 64, 8
    G.N_TOK = (G.IMG // G.PATCH) ** 2 + 1
    G.VD, G.VL, G.VMLP = 256, 4, 1024
    G.TD, G.TL, G.TFFN, G.MAXPOS, G.ENC = 256, 4, 1024, 40, 256
    G.PROJ = 256
    P, _ = G.init_params(5)
    GG.write_orig_cap(d, P, torch.float32)


class Cached:
    """R.next_logits with a key/value cache: the first call of a generation runs the prompt, later
    calls find each row's parent among the previous call's sequences and run one token."""

    def __init__(self, P, cfg):
        self.P, self.cfg, self.prev = P, cfg, None
        self.pre = "text_decoder.bert."

    def lin(self, x, name):
        return F.linear(x, self.P[name + ".weight"], self.P[name + ".bias"])

    def attn(self, q, k, v, mask):
        tc = self.cfg.text
        B, Lq, d = q.shape
        H, dh = tc.heads, d // tc.heads
        qh = q.view(B, Lq, H, dh).transpose(1, 2)
        kh = k.view(k.shape[0], -1, H, dh).transpose(1, 2)
        vh = v.view(v.shape[0], -1, H, dh).transpose(1, 2)
        s = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
        if mask is not None:
            s = s + mask
        return (torch.softmax(s, -1) @ vh).transpose(1, 2).reshape(B, Lq, d)

    def run(self, ids, pos0):
        P, tc, pre = self.P, self.cfg.text, self.pre
        B, L = ids.shape
        x = P[pre + "embeddings.word_embeddings.weight"][ids] + P[pre + "embeddings.position_embeddings.weight"][pos0:pos0 + L]
        x = F.layer_norm(x, (tc.hidden,), P[pre + "embeddings.LayerNorm.weight"], P[pre + "embeddings.LayerNorm.bias"], tc.eps)
        mask = None
        if L > 1:
            mask = torch.triu(torch.full((L, L), -10000.0), 1)
        for i in range(tc.layers):
            lp = pre + "encoder.layer.%d." % i
            k, v = self.lin(x, lp + "attention.self.key"), self.lin(x, lp + "attention.self.value")
            if pos0:
                k, v = torch.cat([self.k[i], k], 1), torch.cat([self.v[i], v], 1)
            self.k[i], self.v[i] = k, v
            a = self.attn(self.lin(x, lp + "attention.self.query"), k, v, mask)
            x = F.layer_norm(x + self.lin(a, lp + "attention.output.dense"), (tc.hidden,),
                             P[lp + "attention.output.LayerNorm.weight"], P[lp + "attention.output.LayerNorm.bias"], tc.eps)
            c = self.attn(self.lin(x, lp + "crossattention.self.query"), self.ck[i].expand(B, -1, -1),
                          self.cv[i].expand(B, -1, -1), None)
            x = F.layer_norm(x + self.lin(c, lp + "crossattention.output.dense"), (tc.hidden,),
                             P[lp + "crossattention.output.LayerNorm.weight"],
                             P[lp + "crossattention.output.LayerNorm.bias"], tc.eps)
            f = self.lin(F.gelu(self.lin(x, lp + "intermediate.dense")), lp + "output.dense")
            x = F.layer_norm(x + f, (tc.hidden,), P[lp + "output.LayerNorm.weight"], P[lp + "output.LayerNorm.bias"], tc.eps)
        cp = "text_decoder.cls.predictions."
        z = F.layer_norm(F.gelu(self.lin(x[:, -1], cp + "transform.dense")), (tc.hidden,),
                         P[cp + "transform.LayerNorm.weight"], P[cp + "transform.LayerNorm.bias"], tc.eps)
        return z @ P[cp + "decoder.weight"].T + P[cp + "bias"]

    def __call__(self, P, cfg, seqs, image_embeds):
        n = len(seqs[0])
        if self.prev is None or n != len(self.prev[0]) + 1:
            tc = self.cfg.text
            self.k, self.v = [None] * tc.layers, [None] * tc.layers
            img = image_embeds[:1]
            self.ck = [self.lin(img, "text_decoder.bert.encoder.layer.%d.crossattention.self.key" % i) for i in range(tc.layers)]
            self.cv = [self.lin(img, "text_decoder.bert.encoder.layer.%d.crossattention.self.value" % i) for i in range(tc.layers)]
            out = self.run(torch.tensor(seqs), 0)
        else:
            parents = torch.tensor([self.prev.index(s[:-1]) for s in seqs])
            self.k = [k[parents] for k in self.k]
            self.v = [v[parents] for v in self.v]
            out = self.run(torch.tensor([[s[-1]] for s in seqs]), n - 1)
        self.prev = [list(s) for s in seqs]
        return out


def generate_all(P, cfg, vocab, images, a):
    sep = vocab.index("[SEP]")
    text = a.prompt if a.prompt is not None else ("a picture of " if cfg.layout == "orig" else "")
    prompt = R.prompt_ids(cfg, vocab, text)
    emb = R.vision(P, cfg, images)
    out = []
    for i in range(images.shape[0]):
        e = emb[i:i + 1]
        if a.beams == 1:
            ids, _ = R.generate_greedy(P, cfg, e, prompt, a.max_len, a.min_len, sep)
        else:
            ids, _ = R.generate_beam(P, cfg, e, prompt, a.beams, a.max_len, a.min_len, sep)
        out.append(ids)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-model")
    ap.add_argument("--model")
    ap.add_argument("--dump")
    ap.add_argument("--beams", type=int, default=3)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--min-len", type=int, default=5)
    ap.add_argument("--prompt")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    if a.make_model:
        make_model(a.make_model)
        return
    P64, cfg = R.load_dir(a.model)
    P = {k: v.to(torch.float32) for k, v in P64.items()}
    R.gelu = F.gelu  # the same erf GELU, one fused kernel (as HF BLIP calls it)
    vocab = R.read_vocab(os.path.join(a.model, "vocab.txt"))
    cache = Cached(P, cfg)
    R.next_logits = cache
    dump, _ = R.st_read(a.dump)
    images, want = dump["images"], dump["ids"]
    with torch.inference_mode():
        got = generate_all(P, cfg, vocab, images, a)
        ref = [[int(t) for t in row if t >= 0] for row in want]
        same = sum(g == r for g, r in zip(got, ref))
        print("CHECK torch %s (%d of %d captions equal the C engine's)" %
              ("ok" if same == len(ref) else "FAIL", same, len(ref)))
        tokens = sum(len(r) for r in ref)
        for nt in [int(t) for t in a.threads.split(",")]:
            torch.set_num_threads(nt)
            generate_all(P, cfg, vocab, images, a)  # warm-up
            ts = []
            for _ in range(a.reps):
                t0 = time.perf_counter()
                generate_all(P, cfg, vocab, images, a)
                ts.append(time.perf_counter() - t0)
            best = min(ts)
            print("TORCH torch_threads=%d beams=%d images=%d captions_per_s=%.2f tokens_per_s=%.1f best_s=%.3f "
                  "median_s=%.3f" % (nt, a.beams, len(ref), len(ref) / best, tokens / best, best, statistics.median(ts)))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
