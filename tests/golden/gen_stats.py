"""Generates the MULTIFLOW calibration-statistics goldens. Run by hand from the repository root:
    /usr/bin/python3 tests/golden/gen_stats.py

What it does: for the tiny fixtures tests/golden/blip/{orig-f32,hf-itm-f32,hf-cap-f32}, runs the
calibration forward passes of models.md §4.7 with tests/golden/blip_ref.py (float64) on the inputs
stored in tests/golden/blip/<fixture>.golden.safetensors (images, ids, mask: 3 pairs), in two
batches (pairs 0-1, then pair 2) to mirror the accumulation the C code does, and records, like a
forward hook on every prunable nn.Linear would, the per-input-feature sum of squares of the
layer's input rows and the number of sequences that passed through it. Output:
tests/golden/stats/<fixture>.stats.safetensors, written in the stats file format itself
(pruning.md step 2; include/multiflow/prune.h): NAME -> F64 [in], NAME:count -> F64 [1],
metadata format/version/pairs. Deterministic: re-running rewrites identical bytes.

Recording rules (models.md §4.7): vision tensors see every image token; text tensors see the rows
of real tokens only (mask == 1), except cross-attention key/value, which see every image token;
tied decoder copies (original layout: everything but the decoder's self-attention) record nothing,
so the decoder pass adds only to text_decoder.*.attention.*; the HF captioning decoder is untied
and records everything. Count: + batch size per linear call. Names follow the checkpoint (original
vision names for the original layout).

What it deliberately does not do: it does not change blip_ref's math (it wraps blip_ref.linear
for the duration of the passes and restores it); no ITC pass (not part of calibration); no LM-head
statistics (heads are not prunable).

Reference: spec/pruning.md (MULTIFLOW step 2), spec/models.md §4.7 and §11 Q2 (first token [ENC]
for the original layout, [CLS] for HF).
"""

import os
import sys
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import blip_ref as R  # noqa: E402

torch.set_num_threads(1)

FIXTURES = ("orig-f32", "hf-itm-f32", "hf-cap-f32")
BATCHES = ((0, 2), (2, 3))  # pair ranges [a, b)

VISION_ORIG = (("self_attn.qkv", "attn.qkv"), ("self_attn.projection", "attn.proj"),
               ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"))


def checkpoint_name(name, layout):
    """Canonical (HF) module name -> checkpoint weight name."""
    pre = "vision_model.encoder.layers."
    if layout == "orig" and name.startswith(pre):
        i, sub = name[len(pre):].split(".", 1)
        for a, b in VISION_ORIG:
            if sub == a:
                return "visual_encoder.blocks.%s.%s.weight" % (i, b)
        raise KeyError(name)
    return name + ".weight"


def records(name, layout):
    """Whether a linear call under this canonical module name feeds a prunable tensor's stats."""
    if name.startswith("vision_model.encoder.layers."):
        return any(name.endswith("." + a) for a, _ in VISION_ORIG)
    if name.startswith("text_encoder.encoder.layer."):
        return True
    if name.startswith("text_decoder.bert.encoder.layer."):
        # original layout: only the decoder's own self-attention is untied
        return layout == "hf" or ".attention." in name
    return False


class Recorder:
    def __init__(self, layout):
        self.layout = layout
        self.sumsq = OrderedDict()
        self.count = OrderedDict()
        self.text_mask = None  # [B, L] of the text pass in progress

    def linear(self, x, P, name):
        if records(name, self.layout):
            xin = x.to(torch.float64)
            B = xin.shape[0]
            is_image = name.startswith("vision_model.") or name.endswith(
                ("crossattention.self.key", "crossattention.self.value"))
            if is_image:
                rows = xin.reshape(-1, xin.shape[-1])
            else:
                assert self.text_mask is not None and xin.shape[:2] == self.text_mask.shape, name
                rows = xin[self.text_mask.bool()]
            k = checkpoint_name(name, self.layout)
            s = (rows * rows).sum(dim=0)
            self.sumsq[k] = self.sumsq[k] + s if k in self.sumsq else s
            self.count[k] = self.count.get(k, 0) + B
        return ORIG_LINEAR(x, P, name)


ORIG_LINEAR = R.linear


def calibrate(P, cfg, rec, images, ids, mask):
    """One batch of the calibration passes (models.md §4.7)."""
    R.linear = rec.linear
    try:
        rec.text_mask = None
        img = R.vision(P, cfg, images.to(torch.float64))
        rec.text_mask = mask
        if "text_encoder.embeddings.word_embeddings.weight" in P:
            R.text_multimodal(P, cfg, ids, mask, img)
        if R.has_decoder(P):
            R.decoder(P, cfg, ids, mask, img)
    finally:
        R.linear = ORIG_LINEAR
        rec.text_mask = None


def gen(fixture):
    d = os.path.join(HERE, "blip", fixture)
    P, cfg = R.load_dir(d)
    G, _ = R.st_read(os.path.join(HERE, "blip", fixture + ".golden.safetensors"))
    rec = Recorder(cfg.layout)
    for a, b in BATCHES:
        calibrate(P, cfg, rec, G["images"][a:b], G["ids"][a:b], G["mask"][a:b])
    T = OrderedDict()
    for k in sorted(rec.sumsq):
        T[k] = rec.sumsq[k].contiguous()
        T[k + ":count"] = torch.tensor([float(rec.count[k])], dtype=torch.float64)
    n_pairs = BATCHES[-1][1]
    meta = OrderedDict([("format", "multiflow-stats"), ("version", "1"), ("pairs", str(n_pairs)),
                        ("generator", "tests/golden/gen_stats.py (blip_ref float64, batches 2+1)"),
                        ("fixture", fixture)])
    os.makedirs(os.path.join(HERE, "stats"), exist_ok=True)
    out = os.path.join(HERE, "stats", fixture + ".stats.safetensors")
    R.st_write(out, T, meta)
    print("%s: %d prunable tensors, pairs %d -> %s" % (fixture, len(rec.sumsq), n_pairs,
                                                       os.path.relpath(out)))


if __name__ == "__main__":
    for fx in FIXTURES:
        gen(fx)
