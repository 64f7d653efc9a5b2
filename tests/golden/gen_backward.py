"""Generates the backward-pass goldens: torch autograd gradients (float64) of a scalar objective
that touches every path of the BLIP forward, for the tiny fixtures orig-f32, hf-itm-f32 and
hf-cap-f32. Run by hand from the repository root:  /usr/bin/python3 tests/golden/gen_backward.py

Objective (fixed random R's, stored rounded to float32 and used exactly in float64):
    J = sum(R_img * image_embeds) + sum(R_txt * text_hidden_unimodal) + sum(R_mm * mm_hidden)
      + sum(R_dec * dec_logits) + sum(R_fi * img_feat) + sum(R_ft * txt_feat) + sum(R_itm * itm_logits)
with the terms present in the fixture (no text encoder: no txt/mm/itc/itm terms; no decoder: no
dec term). img_feat/txt_feat are the L2-normalised ITC projections of the CLS rows.

Tied tensors accumulate into their owner, as a shared nn.Parameter does: in the original layout
every text_decoder.bert.* tensor except the self-attention (attention.*) is the text encoder's
tensor, and the LM decoder.weight is the (decoder) word embedding, even when the file stores the
copies. Gradients are written under the owner's checkpoint name only.

Output tests/golden/backward/<fixture>.safetensors: R_* (F32) and, per owner tensor, 'g:<name>'
= grad / max|grad| as F16 plus 's:<name>' = max|grad| as F32 [1] (halves the size; quantisation
error <= 2.4e-4 of max|grad|, inside the 1e-3 test tolerance). A finite-difference check in
float64 on a few parameters guards the goldens themselves (asserted here, not in C).

What it deliberately does not do: no losses (ITC/ITM/LM pretraining losses are tested separately),
no momentum copies (never touched by the forward).

Reference: spec/models.md §1, §4.4; tests/golden/blip_ref.py (forward), gen_blip.py (inputs).
"""

import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import blip_ref as R  # noqa: E402

torch.set_num_threads(1)

FIXTURES = ["orig-f32", "hf-itm-f32", "hf-cap-f32"]
# MF_BWD_F32=<dir>: write full-precision goldens there instead (to measure the C error without the
# F16 storage error; not committed: 3 MB).
OUT_DIR = os.environ.get("MF_BWD_F32") or os.path.join(HERE, "backward")
STORE = torch.float32 if os.environ.get("MF_BWD_F32") else torch.float16


def raw_names(d):
    """Checkpoint tensor names of a fixture directory (float tensors only)."""
    idx = os.path.join(d, "model.safetensors.index.json")
    names = []
    if os.path.exists(idx):
        import json
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        for shard in sorted(set(wm.values())):
            t, _ = R.st_read(os.path.join(d, shard))
            names += [k for k, v in t.items() if v.is_floating_point()]
    else:
        t, _ = R.st_read(os.path.join(d, "model.safetensors"))
        names = [k for k, v in t.items() if v.is_floating_point()]
    return names


def owner_of(canon, P, layout):
    """Canonical name of the tensor whose gradient a canonical parameter name accumulates into."""
    lmw = "text_decoder.cls.predictions.decoder.weight"
    if canon == lmw:
        return owner_of("text_decoder.bert.embeddings.word_embeddings.weight", P, layout)
    if layout == "orig" and canon.startswith("text_decoder.bert.") and ".attention." not in canon:
        enc = "text_encoder." + canon[len("text_decoder.bert."):]
        if enc in P:
            return enc
    return canon


def objective(P, cfg, images, ids, mask, Rs):
    J = torch.zeros((), dtype=torch.float64)
    emb = R.vision(P, cfg, images)
    J = J + (Rs["R_img"] * emb).sum()
    if "text_encoder.embeddings.word_embeddings.weight" in P:
        txt = R.text_unimodal(P, cfg, ids, mask)
        J = J + (Rs["R_txt"] * txt).sum()
        mm = R.text_multimodal(P, cfg, ids, mask, emb)
        J = J + (Rs["R_mm"] * mm).sum()
        if "vision_proj.weight" in P:
            fi = F.normalize(R.linear(emb[:, 0], P, "vision_proj"), dim=-1, eps=1e-12)
            ft = F.normalize(R.linear(txt[:, 0], P, "text_proj"), dim=-1, eps=1e-12)
            J = J + (Rs["R_fi"] * fi).sum() + (Rs["R_ft"] * ft).sum()
        if "itm_head.weight" in P:
            logits, _ = R.itm(P, mm)
            J = J + (Rs["R_itm"] * logits).sum()
    if R.has_decoder(P):
        J = J + (Rs["R_dec"] * R.decoder(P, cfg, ids, mask, emb)).sum()
    return J


def gen(fixture):
    d = os.path.join(HERE, "blip", fixture)
    P0, cfg = R.load_dir(d)
    layout = cfg.layout
    g, _ = R.st_read(os.path.join(HERE, "blip", fixture + ".golden.safetensors"))
    images = g["images"].to(torch.float64)
    ids, mask = g["ids"], g["mask"]
    B, L = ids.shape
    N = P0["vision_model.embeddings.position_embedding"].shape[1]
    gen_ = torch.Generator().manual_seed(1234)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen_, dtype=torch.float64).to(torch.float32)

    tc = cfg.text
    Rs = OrderedDict()
    Rs["R_img"] = rnd(B, N, cfg.vision.hidden)
    Rs["R_txt"] = rnd(B, L, tc.hidden)
    Rs["R_mm"] = rnd(B, L, tc.hidden)
    Rs["R_fi"] = rnd(B, cfg.proj_dim)
    Rs["R_ft"] = rnd(B, cfg.proj_dim)
    Rs["R_itm"] = rnd(B, 2)
    Rs["R_dec"] = rnd(B, L, tc.vocab)
    R64 = {k: v.to(torch.float64) for k, v in Rs.items()}

    # canonical name -> checkpoint name
    ck_of = {}
    for k in raw_names(d):
        ck_of[R.orig_to_hf_name(k) if layout == "orig" else k] = k
    leaves = OrderedDict()
    P = {}
    for canon in P0:
        o = owner_of(canon, P0, layout)
        if o not in leaves:
            leaves[o] = P0[o].detach().clone().requires_grad_(True)
        P[canon] = leaves[o]
    J = objective(P, cfg, images, ids, mask, R64)
    J.backward()

    out = OrderedDict(Rs)
    n_grad = 0
    for o, t in leaves.items():
        if t.grad is None:
            continue
        name = ck_of[o]
        gr = t.grad
        mx = float(gr.abs().max())
        scale = mx if mx > 0 else 1.0
        out["g:" + name] = (gr / scale).to(STORE)
        out["s:" + name] = torch.tensor([mx], dtype=torch.float32)
        n_grad += 1

    # Finite differences in float64 on a few elements (sanity of the goldens).
    probes = [("vision_model.encoder.layers.0.self_attn.qkv.weight", (5, 7)),
              ("vision_model.embeddings.patch_embedding.weight", (3, 1, 2, 5)),
              ("vision_model.embeddings.class_embedding", (0, 0, 9)),
              ("text_encoder.encoder.layer.1.crossattention.self.key.weight", (2, 3)),
              ("text_encoder.encoder.layer.0.output.LayerNorm.weight", (4,)),
              ("text_decoder.bert.encoder.layer.1.attention.self.query.weight", (1, 6)),
              ("text_decoder.bert.embeddings.word_embeddings.weight", (int(ids[0, 1]), 3)),
              ("text_decoder.cls.predictions.transform.dense.bias", (11,))]
    worst = 0.0
    for name, ix in probes:
        o = owner_of(name, P0, layout)
        if o not in leaves or leaves[o].grad is None:
            continue
        t = leaves[o]
        h = 1e-6
        with torch.no_grad():
            v0 = t[ix].item()
            t[ix] = v0 + h
            jp = objective(P, cfg, images, ids, mask, R64).item()
            t[ix] = v0 - h
            jm = objective(P, cfg, images, ids, mask, R64).item()
            t[ix] = v0
        fd = (jp - jm) / (2 * h)
        ag = t.grad[ix].item()
        rel = abs(fd - ag) / max(abs(ag), 1e-3 * float(t.grad.abs().max()), 1e-12)
        worst = max(worst, rel)
        print("  fd %-62s %-14s autograd % .8e fd % .8e rel %.2e" % (o, ix, ag, fd, rel))
    assert worst < 1e-5, "finite differences disagree with autograd (%.3e)" % worst

    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, fixture + ".safetensors")
    R.st_write(path, out, {"fixture": fixture, "n_grad": n_grad, "J": repr(J.item())})
    print("%s: %d gradient tensors, J = %.10g, %d bytes" % (fixture, n_grad, J.item(), os.path.getsize(path)))


def main():
    for fx in FIXTURES:
        gen(fx)


if __name__ == "__main__":
    main()
