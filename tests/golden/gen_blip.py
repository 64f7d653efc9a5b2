"""Generates the BLIP golden fixtures, the bundled tiny default models and the shapes end-to-end
scores. Run by hand from the repository root:  /usr/bin/python3 tests/golden/gen_blip.py
(optional: --check prints how strongly the fixtures react to typical engine bugs).

What it does: builds tiny random-weight BLIP checkpoints with fixed seeds in both layouts (HF
ITM/captioning, original Salesforce with tied decoder, momentum copies and queues) and dtypes
(F32/F16/BF16), writes them as safetensors, reads each directory back with blip_ref.load_dir
(so the goldens come from exactly what was written, rounding included), and writes the reference
inputs and outputs to tests/golden/blip/<fixture>.golden.safetensors. Deterministic: re-running
rewrites identical bytes.

What it deliberately does not do: no real checkpoints, no tokenizer beyond whole-word lookup, no
.pth output (original-layout fixtures are safetensors with the original names).

Reference: spec/models.md §4 (BLIP), §7 (safetensors), §11 Q2/Q3; tests/golden/blip_ref.py.
"""

import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # keep tests/golden free of __pycache__
sys.path.insert(0, HERE)
import blip_ref as R  # noqa: E402

torch.set_num_threads(1)

# Tiny architecture (task E): keep in sync with data/models/README.md.
IMG, PATCH = 64, 16
N_TOK = (IMG // PATCH) ** 2 + 1
VD, VL, VMLP = 64, 2, 128
TD, TL, TFFN, MAXPOS, ENC = 64, 2, 128, 64, 64
PROJ = 32
HF_HEADS = 2  # orig layout: hidden / 64 = 1 head

# Weight scales. The brief suggested normal(0, 0.02) everywhere; with d = 64 that leaves every
# sub-layer a ~2 % perturbation of its residual, near-uniform attention and ITC/ITM/LM outputs that
# hardly depend on the input (measured: ITM probabilities 0.198-0.202, LM nll = log V), so engine
# bugs would hide below the 1e-4 tolerance. Linears therefore use std 1/sqrt(fan_in) (unit gain,
# attention scores of order 1), text embeddings std 0.1 (LM logits of order 1 through the tied
# decoder). Vision class token / position embedding stay at 0.02: the CLS row then reaches the first
# LayerNorm with variance ~1e-3, which makes the vision eps (1e-5 vs 1e-6) visible in the outputs.
STD = 0.02       # biases, vision class token and position embedding, LN bias
STD_TEXT_EMB = 0.1

SPECIALS = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("a the in on at of and with left right top bottom center middle corner red green blue "
         "yellow purple orange white black gray circle square triangle small large big image "
         "picture shape background there is").split()


def make_vocab():
    v = SPECIALS + WORDS + [".", ","]
    for c in "abcdefghijklmnopqrstuvwxyz":
        if c not in v:
            v.append(c)
    v += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    v += [str(i) for i in range(10)]
    assert len(set(v)) == len(v)
    return v


VOCAB = make_vocab()
V = len(VOCAB) + 2  # + [DEC], [ENC] (spec §3.2)


# ----------------------------------------------------------------------------------------------
# Random weights with canonical (HF) names; original-only extras under their own names.

class Init:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, shape, std):
        return torch.randn(shape, generator=self.g, dtype=torch.float32) * std

    def linear(self, P, name, out_f, in_f):
        P[name + ".weight"] = self.normal((out_f, in_f), in_f ** -0.5)
        P[name + ".bias"] = self.normal((out_f,), STD)

    def ln(self, P, name, d):
        P[name + ".weight"] = 1.0 + self.normal((d,), 0.1)
        P[name + ".bias"] = self.normal((d,), STD)


def text_names(I, P, pre):
    P[pre + "embeddings.word_embeddings.weight"] = I.normal((V, TD), STD_TEXT_EMB)
    P[pre + "embeddings.position_embeddings.weight"] = I.normal((MAXPOS, TD), STD_TEXT_EMB)
    I.ln(P, pre + "embeddings.LayerNorm", TD)
    for i in range(TL):
        lp = pre + "encoder.layer.%d." % i
        for s in ("query", "key", "value"):
            I.linear(P, lp + "attention.self." + s, TD, TD)
        I.linear(P, lp + "attention.output.dense", TD, TD)
        I.ln(P, lp + "attention.output.LayerNorm", TD)
        I.linear(P, lp + "crossattention.self.query", TD, TD)
        I.linear(P, lp + "crossattention.self.key", TD, ENC)
        I.linear(P, lp + "crossattention.self.value", TD, ENC)
        I.linear(P, lp + "crossattention.output.dense", TD, TD)
        I.ln(P, lp + "crossattention.output.LayerNorm", TD)
        I.linear(P, lp + "intermediate.dense", TFFN, TD)
        I.linear(P, lp + "output.dense", TD, TFFN)
        I.ln(P, lp + "output.LayerNorm", TD)


def init_params(seed):
    """Full original-style parameter set: vision, text encoder, heads, decoder (tied parts equal
    to the encoder's, own self-attention), LM head, momentum copies, queues, temp."""
    I = Init(seed)
    P = OrderedDict()
    pre = "vision_model."
    P[pre + "embeddings.class_embedding"] = I.normal((1, 1, VD), STD)
    P[pre + "embeddings.patch_embedding.weight"] = I.normal((VD, 3, PATCH, PATCH), (3 * PATCH * PATCH) ** -0.5)
    P[pre + "embeddings.patch_embedding.bias"] = I.normal((VD,), STD)
    P[pre + "embeddings.position_embedding"] = I.normal((1, N_TOK, VD), STD)
    for i in range(VL):
        lp = pre + "encoder.layers.%d." % i
        I.ln(P, lp + "layer_norm1", VD)
        I.linear(P, lp + "self_attn.qkv", 3 * VD, VD)
        I.linear(P, lp + "self_attn.projection", VD, VD)
        I.ln(P, lp + "layer_norm2", VD)
        I.linear(P, lp + "mlp.fc1", VMLP, VD)
        I.linear(P, lp + "mlp.fc2", VD, VMLP)
    I.ln(P, pre + "post_layernorm", VD)
    text_names(I, P, "text_encoder.")
    I.linear(P, "vision_proj", PROJ, VD)
    I.linear(P, "text_proj", PROJ, TD)
    I.linear(P, "itm_head", 2, TD)
    # decoder: tied to the encoder except the causal self-attention block (spec §4.5)
    own = OrderedDict()
    text_names(I, own, "text_decoder.bert.")
    for k in own:
        ek = "text_encoder." + k[len("text_decoder.bert."):]
        P[k] = own[k] if ".attention." in k else P[ek].clone()
    cp = "text_decoder.cls.predictions."
    I.linear(P, cp + "transform.dense", TD, TD)
    I.ln(P, cp + "transform.LayerNorm", TD)
    P[cp + "bias"] = I.normal((V,), STD)
    P[cp + "decoder.weight"] = P["text_decoder.bert.embeddings.word_embeddings.weight"].clone()
    P[cp + "decoder.bias"] = P[cp + "bias"].clone()
    # momentum copies (different values, so using them by mistake shows), queues, temp
    X = OrderedDict()
    for k, t in P.items():
        if k.startswith("vision_model."):
            X[R_hf_to_orig(k).replace("visual_encoder.", "visual_encoder_m.", 1)] = t + I.normal(t.shape, STD)
    for k, t in P.items():
        if k.startswith("text_encoder."):
            X["text_encoder_m." + k[len("text_encoder."):]] = t + I.normal(t.shape, STD)
    for h in ("vision_proj", "text_proj"):
        for s in (".weight", ".bias"):
            X[h + "_m" + s] = P[h + s] + I.normal(P[h + s].shape, STD)
    X["image_queue"] = I.normal((PROJ, 8), 1.0)
    X["text_queue"] = I.normal((PROJ, 8), 1.0)
    X["queue_ptr"] = torch.tensor([5], dtype=torch.int64)
    X["temp"] = torch.tensor(0.07, dtype=torch.float32)
    return P, X


_HF_TO_ORIG = [("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
               ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
               ("vision_model.embeddings.patch_embedding.", "visual_encoder.patch_embed.proj."),
               ("vision_model.post_layernorm.", "visual_encoder.norm.")]


def R_hf_to_orig(name):
    for a, b in _HF_TO_ORIG:
        if name.startswith(a):
            return b + name[len(a):]
    if name.startswith("vision_model.encoder.layers."):
        i, sub = name[len("vision_model.encoder.layers."):].split(".", 1)
        for o, h in R.ORIG_BLOCK:
            if sub.startswith(h):
                return "visual_encoder.blocks.%s.%s%s" % (i, o, sub[len(h):])
    return name


# ----------------------------------------------------------------------------------------------
# Layout writers

def pick(P, prefixes):
    return OrderedDict((k, t) for k, t in P.items() if any(k.startswith(p) for p in prefixes))


def cast(T, dtype):
    return OrderedDict((k, t.to(dtype) if t.is_floating_point() else t) for k, t in T.items())


def hf_config(arch, eps):
    vc = OrderedDict([("hidden_size", VD), ("intermediate_size", VMLP), ("num_hidden_layers", VL),
                      ("num_attention_heads", HF_HEADS), ("image_size", IMG), ("patch_size", PATCH),
                      ("hidden_act", "gelu")])
    if eps is not None:
        vc["layer_norm_eps"] = eps
    tc = OrderedDict([("vocab_size", V), ("hidden_size", TD), ("encoder_hidden_size", ENC),
                      ("intermediate_size", TFFN), ("num_hidden_layers", TL),
                      ("num_attention_heads", HF_HEADS), ("max_position_embeddings", MAXPOS),
                      ("hidden_act", "gelu"), ("layer_norm_eps", 1e-12), ("is_decoder", True),
                      ("bos_token_id", len(VOCAB)), ("sep_token_id", VOCAB.index("[SEP]")),
                      ("pad_token_id", VOCAB.index("[PAD]"))])
    return OrderedDict([("architectures", [arch]), ("model_type", "blip"),
                        ("image_text_hidden_size", PROJ), ("projection_dim", PROJ),
                        ("text_config", tc), ("vision_config", vc)])


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def write_vocab(path):
    with open(path, "w") as f:
        f.write("".join(w + "\n" for w in VOCAB))


def write_hf_itm(d, P, dtype, eps):
    os.makedirs(d, exist_ok=True)
    T = pick(P, ("vision_model.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head."))
    R.st_write(os.path.join(d, "model.safetensors"), cast(T, dtype), {"format": "pt"})
    write_json(os.path.join(d, "config.json"), hf_config("BlipForImageTextRetrieval", eps))
    write_vocab(os.path.join(d, "vocab.txt"))


def write_hf_cap(d, P, eps):
    """Sharded: vision in shard 1, decoder in shard 2; LM decoder.weight (tied) and the
    decoder.bias alias are omitted, as HF safetensors files do."""
    os.makedirs(d, exist_ok=True)
    cp = "text_decoder.cls.predictions."
    s1 = pick(P, ("vision_model.",))
    s2 = pick(P, ("text_decoder.bert.", cp + "transform.", cp + "bias"))
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    wm = OrderedDict()
    total = 0
    for shard, T in zip(names, (s1, s2)):
        R.st_write(os.path.join(d, shard), T, {"format": "pt"})
        for k, t in T.items():
            wm[k] = shard
            total += t.numel() * t.element_size()
    write_json(os.path.join(d, "model.safetensors.index.json"),
               OrderedDict([("metadata", {"total_size": total}), ("weight_map", wm)]))
    write_json(os.path.join(d, "config.json"), hf_config("BlipForConditionalGeneration", eps))
    write_vocab(os.path.join(d, "vocab.txt"))


def write_orig(d, P, X, dtype, tied_present, lm_weight, biases, position_ids):
    """Original Salesforce names. tied_present: also write text_decoder.bert.* copies of the
    encoder's tied tensors; lm_weight: write cls.predictions.decoder.weight; biases: which of
    'bias'/'decoder.bias' to write; position_ids: add the legacy int64 buffer."""
    os.makedirs(d, exist_ok=True)
    cp = "text_decoder.cls.predictions."
    T = OrderedDict()
    for k, t in pick(P, ("vision_model.",)).items():
        T[R_hf_to_orig(k)] = t
    for k, t in pick(P, ("text_encoder.",)).items():
        T[k] = t
        if position_ids and k == "text_encoder.embeddings.LayerNorm.bias":
            T["text_encoder.embeddings.position_ids"] = torch.arange(MAXPOS, dtype=torch.int64)[None]
    for k, t in pick(P, ("vision_proj.", "text_proj.", "itm_head.")).items():
        T[k] = t
    T["temp"] = X["temp"]
    for k, t in pick(P, ("text_decoder.bert.",)).items():
        if tied_present or ".attention." in k:
            T[k] = t
    for k in ("transform.dense.weight", "transform.dense.bias", "transform.LayerNorm.weight",
              "transform.LayerNorm.bias"):
        T[cp + k] = P[cp + k]
    for b in biases:
        T[cp + b] = P[cp + b]
    if lm_weight:
        T[cp + "decoder.weight"] = P[cp + "decoder.weight"]
    for k, t in X.items():
        if k != "temp":
            T[k] = t
    R.st_write(os.path.join(d, "model.safetensors"), cast(T, dtype), {"format": "pt"})
    write_vocab(os.path.join(d, "vocab.txt"))


# ----------------------------------------------------------------------------------------------
# Golden inputs and outputs

def golden_inputs():
    g = torch.Generator().manual_seed(7)
    images = torch.randn((3, 3, IMG, IMG), generator=g, dtype=torch.float32)
    L = 12
    ids = torch.zeros((3, L), dtype=torch.int32)
    mask = torch.zeros((3, L), dtype=torch.int32)
    first_word = len(SPECIALS)
    for b, n in enumerate((12, 7, 4)):
        w = torch.randint(first_word, len(VOCAB), (n - 2,), generator=g, dtype=torch.int64)
        ids[b, 0] = VOCAB.index("[CLS]")
        ids[b, 1:n - 1] = w.to(torch.int32)
        ids[b, n - 1] = VOCAB.index("[SEP]")
        mask[b, :n] = 1
    return images, ids, mask


def compute_outputs(P, cfg, images, ids, mask):
    out = OrderedDict()
    x = images.to(torch.float64)
    img = R.vision(P, cfg, x)
    out["image_embeds"] = img
    if R.has_itm(P):
        txt = R.text_unimodal(P, cfg, ids, mask)
        out["text_embeds"] = txt
        out["itc"] = R.itc(P, img, txt)
        mm = R.text_multimodal(P, cfg, ids, mask, img)
        out["mm_embeds"] = mm
        out["itm_logits"], out["itm_prob"] = R.itm(P, mm)
        other, tag = (cfg.enc_id, "enc") if cfg.layout == "hf" else (cfg.cls_id, "cls")
        mm2 = R.text_multimodal(P, cfg, ids, mask, img, first=other)
        out["mm_embeds_" + tag] = mm2
        out["itm_logits_" + tag], out["itm_prob_" + tag] = R.itm(P, mm2)
    if R.has_decoder(P):
        logits = R.decoder(P, cfg, ids, mask, img)
        out["dec_logits"] = logits
        out["lm_nll"] = R.lm_nll(logits, ids, mask)
    return out


def write_golden(fixture, d, extra_meta):
    P, cfg = R.load_dir(d)
    images, ids, mask = golden_inputs()
    out = compute_outputs(P, cfg, images, ids, mask)
    T = OrderedDict([("images", images), ("ids", ids), ("mask", mask)])
    for k, t in out.items():
        T[k] = t.to(torch.float32)
    meta = OrderedDict([("fixture", fixture), ("layout", cfg.layout),
                        ("itm_first_token", "[ENC]" if cfg.layout == "orig" else "[CLS]"),
                        ("vision_layer_norm_eps", repr(cfg.vision.eps)),
                        ("vision_heads", cfg.vision.heads), ("text_heads", cfg.text.heads),
                        ("vocab_size", cfg.text.vocab), ("dec_id", cfg.dec_id), ("enc_id", cfg.enc_id),
                        ("computed_in", "float64 (blip_ref.py), stored as float32"),
                        ("compare_hint", "max|a-b|/max(|b|,0.1) <= 1e-4; a plain float32 torch run of "
                         "the same weights reaches 4e-5 with floor 0.1 but 1.6e-4 with floor 0.01 "
                         "(hidden-state entries near zero)"),
                        ("padding_rows", "rows at padded positions are defined (queries attend to real "
                         "keys only) but need not be compared")])
    meta.update(extra_meta)
    R.st_write(os.path.join(HERE, "blip", fixture + ".golden.safetensors"), T, meta)
    return P, cfg, out


# ----------------------------------------------------------------------------------------------

def gen_fixtures():
    base = os.path.join(HERE, "blip")
    os.makedirs(base, exist_ok=True)
    write_vocab(os.path.join(HERE, "vocab.txt"))
    P1, _ = init_params(1)
    write_hf_itm(os.path.join(base, "hf-itm-f32"), P1, torch.float32, 1e-5)
    write_hf_itm(os.path.join(base, "hf-itm-f16"), P1, torch.float16, 1e-5)
    write_hf_itm(os.path.join(base, "hf-itm-bf16"), P1, torch.bfloat16, None)
    P2, _ = init_params(2)
    write_hf_cap(os.path.join(base, "hf-cap-f32"), P2, 1e-6)
    P3, X3 = init_params(3)
    write_orig(os.path.join(base, "orig-f32"), P3, X3, torch.float32, True, True,
               ("bias", "decoder.bias"), True)
    write_orig(os.path.join(base, "orig-bf16"), P3, X3, torch.bfloat16, False, False,
               ("decoder.bias",), False)
    for fx in ("hf-itm-f32", "hf-itm-f16", "hf-itm-bf16", "hf-cap-f32", "orig-f32", "orig-bf16"):
        write_golden(fx, os.path.join(base, fx), {})


def gen_bundled():
    d = os.path.join(ROOT, "data", "models")
    P, _ = init_params(101)
    write_hf_itm(os.path.join(d, "blip-tiny-hf"), P, torch.float32, 1e-5)
    P, X = init_params(102)
    write_orig(os.path.join(d, "blip-tiny"), P, X, torch.float32, True, True,
               ("bias", "decoder.bias"), False)


def gen_shapes_scores(n_pairs=6, max_len=35):
    ann = os.path.join(ROOT, "data", "shapes", "annotations.json")
    if not os.path.exists(ann):
        print("data/shapes/annotations.json not found: shapes scores skipped")
        return
    with open(ann) as f:
        anns = json.load(f)
    # MULTIFLOW format: [{"image": path, "caption": str or [str, ...]}]; pairs are flattened in
    # file order, one per (image, caption), as the reference's pretraining dataset does.
    pairs = []
    for a in anns:
        caps = a["caption"] if isinstance(a["caption"], list) else [a["caption"]]
        pairs += [{"image": a["image"], "caption": c} for c in caps]
    pairs = pairs[:n_pairs]
    img_dir = os.path.dirname(ann)
    for model in ("blip-tiny-hf", "blip-tiny"):
        P, cfg = R.load_dir(os.path.join(ROOT, "data", "models", model))
        vocab = R.read_vocab(os.path.join(ROOT, "data", "models", model, "vocab.txt"))
        rows = []
        for p in pairs:
            img_rel, cap = p["image"], p["caption"]
            img = R.load_image(os.path.join(img_dir, img_rel), cfg.vision.image_size)
            ids, mask = R.tokenize_words(cap, vocab, max_len)
            ids, mask = torch.tensor([ids]), torch.tensor([mask])
            ie = R.vision(P, cfg, img[None].to(torch.float64))
            te = R.text_unimodal(P, cfg, ids, mask)
            row = OrderedDict([("image", img_rel), ("caption", cap),
                               ("itc", float(R.itc(P, ie, te)[0, 0]))])
            _, prob = R.itm(P, R.text_multimodal(P, cfg, ids, mask, ie))
            row["itm"] = float(prob[0])
            if R.has_decoder(P):
                row["lm"] = float(R.lm_nll(R.decoder(P, cfg, ids, mask, ie), ids, mask)[0])
            rows.append(row)
        write_json(os.path.join(HERE, "shapes_score_%s.json" % model), rows)


def _diff(a, b):
    """Largest |a-b| over the tensor, relative to the tensor's largest |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def crosscheck():
    """Recomputes vision and text stacks of every fixture with torch.nn.TransformerEncoderLayer /
    TransformerDecoderLayer (independent attention, head layout and masking code) and prints the
    largest difference to blip_ref. Their packed in_proj is Q|K|V with contiguous heads, exactly
    BLIP's fused qkv (spec §1.2); a post-LN TransformerDecoderLayer is a BERT layer with
    cross-attention (§1.4)."""
    import torch.nn as nn
    images, ids, mask = golden_inputs()
    x64 = images.to(torch.float64)

    def mha(m, W, b, Wo, bo):
        m.in_proj_weight.data.copy_(W)
        m.in_proj_bias.data.copy_(b)
        m.out_proj.weight.data.copy_(Wo)
        m.out_proj.bias.data.copy_(bo)

    def ln(m, P, name):
        m.weight.data.copy_(P[name + ".weight"])
        m.bias.data.copy_(P[name + ".bias"])

    def lin(m, P, name):
        m.weight.data.copy_(P[name + ".weight"])
        m.bias.data.copy_(P[name + ".bias"])

    def nn_text(P, cfg, pre, ids_, mask_, img, causal):
        tc = cfg.text
        L = ids_.shape[1]
        h = P[pre + "embeddings.word_embeddings.weight"][ids_.long()] + \
            P[pre + "embeddings.position_embeddings.weight"][:L]
        h = F.layer_norm(h, (tc.hidden,), P[pre + "embeddings.LayerNorm.weight"],
                         P[pre + "embeddings.LayerNorm.bias"], tc.eps)
        cm = torch.triu(torch.full((L, L), float("-inf"), dtype=torch.float64), 1) if causal else None
        pad = mask_ == 0
        for i in range(tc.layers):
            lp = pre + "encoder.layer.%d." % i
            sa = lambda s: P[lp + "attention.self.%s" % s]  # noqa: E731
            if img is None:
                m = nn.TransformerEncoderLayer(tc.hidden, tc.heads, tc.ffn, 0.0, "gelu", tc.eps, True, False)
            else:
                m = nn.TransformerDecoderLayer(tc.hidden, tc.heads, tc.ffn, 0.0, "gelu", tc.eps, True, False)
            m = m.double().eval()
            mha(m.self_attn, torch.cat([sa("query.weight"), sa("key.weight"), sa("value.weight")]),
                torch.cat([sa("query.bias"), sa("key.bias"), sa("value.bias")]),
                P[lp + "attention.output.dense.weight"], P[lp + "attention.output.dense.bias"])
            ln(m.norm1, P, lp + "attention.output.LayerNorm")
            lin(m.linear1, P, lp + "intermediate.dense")
            lin(m.linear2, P, lp + "output.dense")
            if img is None:
                ln(m.norm2, P, lp + "output.LayerNorm")
                h = m(h, src_mask=cm, src_key_padding_mask=pad)
            else:
                ca = lambda s: P[lp + "crossattention.self.%s" % s]  # noqa: E731
                mha(m.multihead_attn, torch.cat([ca("query.weight"), ca("key.weight"), ca("value.weight")]),
                    torch.cat([ca("query.bias"), ca("key.bias"), ca("value.bias")]),
                    P[lp + "crossattention.output.dense.weight"], P[lp + "crossattention.output.dense.bias"])
                ln(m.norm2, P, lp + "crossattention.output.LayerNorm")
                ln(m.norm3, P, lp + "output.LayerNorm")
                h = m(h, img, tgt_mask=cm, tgt_key_padding_mask=pad)
        return h

    with torch.no_grad():
        for fx in ("hf-itm-f32", "hf-itm-f16", "hf-itm-bf16", "hf-cap-f32", "orig-f32", "orig-bf16"):
            P, cfg = R.load_dir(os.path.join(HERE, "blip", fx))
            vc = cfg.vision
            pre = "vision_model."
            pe = P[pre + "embeddings.patch_embedding.weight"].reshape(vc.hidden, -1)
            G = vc.image_size // vc.patch
            # patches as a matrix product (§1.3), independent of conv2d
            patches = x64.reshape(3, 3, G, vc.patch, G, vc.patch).permute(0, 2, 4, 1, 3, 5).reshape(3, G * G, -1)
            h = patches @ pe.T + P[pre + "embeddings.patch_embedding.bias"]
            h = torch.cat([P[pre + "embeddings.class_embedding"].reshape(1, 1, -1).expand(3, 1, -1), h], 1)
            h = h + P[pre + "embeddings.position_embedding"]
            for i in range(vc.layers):
                lp = pre + "encoder.layers.%d." % i
                m = nn.TransformerEncoderLayer(vc.hidden, vc.heads, vc.mlp, 0.0, "gelu", vc.eps, True, True)
                m = m.double().eval()
                mha(m.self_attn, P[lp + "self_attn.qkv.weight"], P[lp + "self_attn.qkv.bias"],
                    P[lp + "self_attn.projection.weight"], P[lp + "self_attn.projection.bias"])
                ln(m.norm1, P, lp + "layer_norm1")
                ln(m.norm2, P, lp + "layer_norm2")
                lin(m.linear1, P, lp + "mlp.fc1")
                lin(m.linear2, P, lp + "mlp.fc2")
                h = m(h)
            img = F.layer_norm(h, (vc.hidden,), P[pre + "post_layernorm.weight"], P[pre + "post_layernorm.bias"], vc.eps)
            got = {"image_embeds": img}
            ref = {"image_embeds": R.vision(P, cfg, x64)}
            if R.has_itm(P):
                got["text_embeds"] = nn_text(P, cfg, "text_encoder.", ids, mask, None, False)
                ref["text_embeds"] = R.text_unimodal(P, cfg, ids, mask)
                got["mm_embeds"] = nn_text(P, cfg, "text_encoder.", R.with_first(ids, cfg.itm_first), mask, img, False)
                ref["mm_embeds"] = R.text_multimodal(P, cfg, ids, mask, ref["image_embeds"])
            if R.has_decoder(P):
                got["dec_hidden"] = nn_text(P, cfg, "text_decoder.bert.", R.with_first(ids, cfg.dec_id), mask, img, True)
                ref["dec_hidden"] = R.text_stack(P, cfg, "text_decoder.bert.", R.with_first(ids, cfg.dec_id),
                                                 mask, ref["image_embeds"], causal=True)
            # padding rows: nn masks keys with -inf, blip_ref with -10000; real rows must agree
            keep = mask.bool()
            print("crosscheck %-12s " % fx + " ".join(
                "%s=%.2g" % (k, float((got[k] - ref[k])[keep if k != "image_embeds" else slice(None)].abs().max()))
                for k in ref))


def check():
    """Sensitivity of the golden outputs to typical engine bugs: each mutation of the reference
    must move some output by far more than the 1e-4 tolerance. Prints one line per mutation."""
    images, ids, mask = golden_inputs()
    orig_fns = {k: getattr(R, k) for k in ("gelu", "attention", "text_stack", "vision", "layer_norm")}

    def attention_interleaved(q, k, v, heads, add_mask):
        B, Lq, d = q.shape
        perm = torch.arange(d).reshape(d // heads, heads).T.reshape(-1)  # head h = columns h::H
        return orig_fns["attention"](q[..., perm], k[..., perm], v[..., perm], heads, add_mask)[..., perm.argsort()]

    def run(fx, mutate=None, restore=None):
        P, cfg = R.load_dir(os.path.join(HERE, "blip", fx))
        P = dict(P)
        if mutate:
            mutate(P, cfg)
        try:
            return compute_outputs(P, cfg, images, ids, mask)
        finally:
            for k, f in orig_fns.items():
                setattr(R, k, f)

    def setfn(name, fn):
        return lambda P, cfg: setattr(R, name, fn)

    muts = [
        ("vision eps 1e-6 <-> 1e-5", lambda P, c: setattr(c.vision, "eps", 1e-5 if c.vision.eps < 5e-6 else 1e-6)),
        ("vision eps 1e-12", lambda P, c: setattr(c.vision, "eps", 1e-12)),
        ("text heads 2 <-> 1", lambda P, c: setattr(c.text, "heads", 1 if c.text.heads == 2 else 2)),
        ("vision heads 2 <-> 1", lambda P, c: setattr(c.vision, "heads", 1 if c.vision.heads == 2 else 2)),
        ("interleaved head columns", setfn("attention", attention_interleaved)),
        ("tanh GELU", setfn("gelu", lambda x: F.gelu(x, approximate="tanh"))),
        ("text LN eps 1e-5", lambda P, c: setattr(c.text, "eps", 1e-5)),
        ("no padding mask", setfn("text_stack", lambda P, cfg, pre, i, m, ie=None, causal=False:
                                  orig_fns["text_stack"](P, cfg, pre, i, torch.ones_like(m), ie, causal))),
        ("decoder not causal", setfn("text_stack", lambda P, cfg, pre, i, m, ie=None, causal=False:
                                     orig_fns["text_stack"](P, cfg, pre, i, m, ie, False))),
        ("cross-attention skipped", setfn("text_stack", lambda P, cfg, pre, i, m, ie=None, causal=False:
                                          orig_fns["text_stack"](P, cfg, pre, i, m, None, causal))),
        ("first token swapped (ITM)", lambda P, c: setattr(c, "itm_first", c.enc_id if c.itm_first == c.cls_id else c.cls_id)),
        ("decoder first token [CLS]", lambda P, c: setattr(c, "dec_id", c.cls_id)),
        ("qkv split K|Q|V", lambda P, c: [P.__setitem__(k, torch.cat([P[k][64:128], P[k][:64], P[k][128:]]))
                                          for k in list(P) if k.endswith("qkv.weight") or k.endswith("qkv.bias")]),
        ("no final vision LN", lambda P, c: (P.__setitem__("vision_model.post_layernorm.weight", torch.ones(64, dtype=torch.float64)),
                                             P.__setitem__("vision_model.post_layernorm.bias", torch.zeros(64, dtype=torch.float64)))),
        ("decoder self-attn = encoder's", lambda P, c: [P.__setitem__(k, P["text_encoder." + k[len("text_decoder.bert."):]])
                                                         for k in list(P) if k.startswith("text_decoder.bert.") and ".attention." in k
                                                         and "text_encoder." + k[len("text_decoder.bert."):] in P]),
        ("LM bias missing", lambda P, c: P.__setitem__("text_decoder.cls.predictions.bias",
                                                       torch.zeros_like(P["text_decoder.cls.predictions.bias"]))
         if "text_decoder.cls.predictions.bias" in P else None),
    ]
    for fx in ("hf-itm-f32", "hf-cap-f32", "orig-f32"):
        base = run(fx)
        print("== %s: " % fx + ", ".join("%s %s" % (k, [round(x, 4) for x in v.flatten().tolist()])
                                         for k, v in base.items() if v.numel() <= 9))
        for name, mut in muts:
            out = run(fx, mut)
            d = {k: _diff(out[k], base[k]) for k in base}
            worst = max(d, key=d.get)
            print("  %-32s max %-10.3g (%s)   " % (name, d[worst], worst) +
                  " ".join("%s=%.2g" % (k, v) for k, v in d.items()))


if __name__ == "__main__":
    gen_fixtures()
    gen_bundled()
    gen_shapes_scores()
    if "--check" in sys.argv:
        crosscheck()
        check()
