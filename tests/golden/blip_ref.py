"""PyTorch reference of BLIP (vision ViT, BERT text encoder/decoder with cross-attention, ITC/ITM/LM
heads) plus a minimal safetensors reader/writer and a checkpoint-directory loader for both layouts.

What it does: computes, in float64 from float32/float16/bfloat16 weights, exactly the forward
passes of /work/shared/spec/models.md §1 and §4.4 (vision, unimodal text, image-grounded text,
ITC, ITM, causal decoder + LM head, LM negative log-likelihood), so the C engine can be checked
against committed golden values. load_dir() reads a checkpoint directory the way the C loader must
(HF config defaults, original-layout name mapping, tied-tensor fallbacks, sharded index files).

What it deliberately does not do: no training, no dropout, no generation, no tokenizer beyond a
whole-word lookup, no .pth reading, no transformers (not installed, and must not be copied).
Everything is written from the spec; tensors are plain dicts name -> torch.Tensor.

Reference: spec/models.md §1.1-1.4 (building blocks), §4.2-4.5 (BLIP config, names, forward),
§7 (safetensors), §11 Q2/Q3 (first-token and eps decisions). Run with /usr/bin/python3 (Debian
python3-torch 1.13); the first python3 on PATH has no torch.
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# safetensors (spec §7): 8-byte LE header length n, n bytes of JSON, then raw little-endian data.

_DT_TO_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
                "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16}
_TORCH_TO_DT = {v: k for k, v in _DT_TO_TORCH.items()}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def st_write(path, tensors, metadata=None):
    """Writes an ordered dict name -> tensor; header JSON padded with spaces to a multiple of 8
    so the data section starts 8-byte aligned. Deterministic: same input, same bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, t in tensors.items():
        b = _tensor_bytes(t)
        header[name] = {"dtype": _TORCH_TO_DT[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def st_read(path):
    """Returns (ordered dict name -> tensor in the stored dtype, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        dt = _DT_TO_TORCH[e["dtype"]]
        buf = bytearray(raw[base + b:base + en])
        if dt == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if buf else \
                torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


# ----------------------------------------------------------------------------------------------
# Configuration

class VisionCfg:
    def __init__(self, hidden, layers, heads, mlp, image_size, patch, eps):
        self.hidden, self.layers, self.heads, self.mlp = hidden, layers, heads, mlp
        self.image_size, self.patch, self.eps = image_size, patch, eps


class TextCfg:
    def __init__(self, vocab, hidden, layers, heads, ffn, max_pos, enc_width, eps=1e-12):
        self.vocab, self.hidden, self.layers, self.heads, self.ffn = vocab, hidden, layers, heads, ffn
        self.max_pos, self.enc_width, self.eps = max_pos, enc_width, eps


class BlipCfg:
    """layout: 'hf' or 'orig'. first_token_itm: id fed at position 0 of the image-grounded pass
    by default (§11 Q2: [ENC] for orig, [CLS] for HF). dec_id/enc_id/cls_id from the vocabulary."""

    def __init__(self, layout, vision, text, proj_dim, cls_id, dec_id, enc_id):
        self.layout, self.vision, self.text, self.proj_dim = layout, vision, text, proj_dim
        self.cls_id, self.dec_id, self.enc_id = cls_id, dec_id, enc_id
        self.itm_first = enc_id if layout == "orig" else cls_id


# ----------------------------------------------------------------------------------------------
# Building blocks (spec §1.1, §1.2). All math in float64.

def layer_norm(x, P, name, eps):
    return F.layer_norm(x, (x.shape[-1],), P[name + ".weight"], P[name + ".bias"], eps)


def linear(x, P, name):
    return F.linear(x, P[name + ".weight"], P[name + ".bias"])


def gelu(x):
    """Exact erf GELU (§1.1)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(q, k, v, heads, add_mask):
    """q [B,Lq,d], k/v [B,Lk,d]; heads are contiguous column blocks (§1.2); add_mask broadcast
    to [B,H,Lq,Lk] or None. Returns the concatenated context [B,Lq,d] (before output proj)."""
    B, Lq, d = q.shape
    Lk = k.shape[1]
    dh = d // heads
    qh = q.reshape(B, Lq, heads, dh).transpose(1, 2)
    kh = k.reshape(B, Lk, heads, dh).transpose(1, 2)
    vh = v.reshape(B, Lk, heads, dh).transpose(1, 2)
    s = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
    if add_mask is not None:
        s = s + add_mask
    p = torch.softmax(s, dim=-1)
    return (p @ vh).transpose(1, 2).reshape(B, Lq, d)


# ----------------------------------------------------------------------------------------------
# Vision encoder (§1.3, §1.4 pre-LN block, §4.4). Canonical names are HF's (vision_model.*).

def vision(P, cfg, images):
    """images [B,3,R,R] -> image_embeds [B,N,d], N = (R/P)^2 + 1; final LN over all tokens."""
    vc = cfg.vision
    pre = "vision_model."
    x = F.conv2d(images, P[pre + "embeddings.patch_embedding.weight"],
                 P[pre + "embeddings.patch_embedding.bias"], stride=vc.patch)  # [B,d,G,G]
    B = x.shape[0]
    x = x.flatten(2).transpose(1, 2)  # [B,G*G,d], row-major over the grid
    cls = P[pre + "embeddings.class_embedding"].reshape(1, 1, -1).expand(B, 1, -1)
    x = torch.cat([cls, x], dim=1) + P[pre + "embeddings.position_embedding"].reshape(1, -1, vc.hidden)
    for i in range(vc.layers):
        lp = pre + "encoder.layers.%d." % i
        h = layer_norm(x, P, lp + "layer_norm1", vc.eps)
        qkv = linear(h, P, lp + "self_attn.qkv")  # [B,N,3d]: Q | K | V blocks
        d = vc.hidden
        ctx = attention(qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:], vc.heads, None)
        x = x + linear(ctx, P, lp + "self_attn.projection")
        h = layer_norm(x, P, lp + "layer_norm2", vc.eps)
        x = x + linear(gelu(linear(h, P, lp + "mlp.fc1")), P, lp + "mlp.fc2")
    return layer_norm(x, P, pre + "post_layernorm", vc.eps)


# ----------------------------------------------------------------------------------------------
# BERT text stack (§1.4 post-LN layer, §4.4). prefix: 'text_encoder.' or 'text_decoder.bert.'.

def text_stack(P, cfg, prefix, ids, mask, image_embeds=None, causal=False, enc_mask=None):
    """ids [B,L] int, mask [B,L] {0,1}; image_embeds [B,N,enc] or None (cross-attn skipped);
    enc_mask [B,N] {0,1} or None (all keys; BLIP's VQA decoder masks padded question states
    with the same -10000 rule). Returns last hidden state [B,L,d]."""
    tc = cfg.text
    B, L = ids.shape
    x = P[prefix + "embeddings.word_embeddings.weight"][ids.long()] + \
        P[prefix + "embeddings.position_embeddings.weight"][:L].unsqueeze(0)
    x = layer_norm(x, P, prefix + "embeddings.LayerNorm", tc.eps)
    m = mask.to(x.dtype)  # [B,L]
    if causal:
        keep = torch.tril(torch.ones(L, L, dtype=x.dtype)).unsqueeze(0) * m[:, None, :]
    else:
        keep = m[:, None, :].expand(B, L, L)
    add_mask = ((1.0 - keep) * -10000.0).unsqueeze(1)  # [B,1,L,L]
    cross_mask = None
    if enc_mask is not None:
        cross_mask = ((1.0 - enc_mask.to(x.dtype)) * -10000.0)[:, None, None, :]  # [B,1,1,N]
    for i in range(tc.layers):
        lp = prefix + "encoder.layer.%d." % i
        a = attention(linear(x, P, lp + "attention.self.query"), linear(x, P, lp + "attention.self.key"),
                      linear(x, P, lp + "attention.self.value"), tc.heads, add_mask)
        x = layer_norm(x + linear(a, P, lp + "attention.output.dense"), P,
                       lp + "attention.output.LayerNorm", tc.eps)
        if image_embeds is not None:
            c = attention(linear(x, P, lp + "crossattention.self.query"),
                          linear(image_embeds, P, lp + "crossattention.self.key"),
                          linear(image_embeds, P, lp + "crossattention.self.value"), tc.heads, cross_mask)
            x = layer_norm(x + linear(c, P, lp + "crossattention.output.dense"), P,
                           lp + "crossattention.output.LayerNorm", tc.eps)
        f = linear(gelu(linear(x, P, lp + "intermediate.dense")), P, lp + "output.dense")
        x = layer_norm(x + f, P, lp + "output.LayerNorm", tc.eps)
    return x


def with_first(ids, tok):
    ids = ids.clone()
    ids[:, 0] = tok
    return ids


def text_unimodal(P, cfg, ids, mask):
    return text_stack(P, cfg, "text_encoder.", ids, mask)


def text_multimodal(P, cfg, ids, mask, image_embeds, first=None):
    first = cfg.itm_first if first is None else first
    return text_stack(P, cfg, "text_encoder.", with_first(ids, first), mask, image_embeds)


def itc(P, image_embeds, text_embeds):
    """[Bi,N,d], [Bt,L,d] -> cosine similarity matrix [Bi,Bt] (F.normalize eps 1e-12)."""
    img = F.normalize(linear(image_embeds[:, 0], P, "vision_proj"), dim=-1, eps=1e-12)
    txt = F.normalize(linear(text_embeds[:, 0], P, "text_proj"), dim=-1, eps=1e-12)
    return img @ txt.T


def itm(P, mm_embeds):
    """-> (logits [B,2], match probability softmax(logits)[:,1] [B])."""
    logits = linear(mm_embeds[:, 0], P, "itm_head")
    return logits, torch.softmax(logits, dim=-1)[:, 1]


def decoder(P, cfg, ids, mask, image_embeds):
    """Causal decoder with [DEC] at position 0 (§11 Q2), LM head (§4.4). -> logits [B,L,V]."""
    h = text_stack(P, cfg, "text_decoder.bert.", with_first(ids, cfg.dec_id), mask, image_embeds,
                   causal=True)
    pre = "text_decoder.cls.predictions."
    z = layer_norm(gelu(linear(h, P, pre + "transform.dense")), P, pre + "transform.LayerNorm",
                   cfg.text.eps)
    return z @ P[pre + "decoder.weight"].T + P[pre + "bias"]


def lm_nll(logits, ids, mask):
    """Mean over t = 1..n_real-1 of -log_softmax(logits[t-1])[ids[t]] per row -> [B]."""
    lp = torch.log_softmax(logits, dim=-1)
    out = []
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        tot = 0.0
        for t in range(1, n):
            tot = tot - lp[b, t - 1, int(ids[b, t])]
        out.append(tot / (n - 1))
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------
# Checkpoint directory loader (what the C loader must do, §4.3, §4.5, §7, §11 Q3)

ORIG_TO_HF_VISION = [
    ("visual_encoder.cls_token", "vision_model.embeddings.class_embedding"),
    ("visual_encoder.pos_embed", "vision_model.embeddings.position_embedding"),
    ("visual_encoder.patch_embed.proj.", "vision_model.embeddings.patch_embedding."),
    ("visual_encoder.norm.", "vision_model.post_layernorm."),
]
ORIG_BLOCK = [("norm1.", "layer_norm1."), ("attn.qkv.", "self_attn.qkv."),
              ("attn.proj.", "self_attn.projection."), ("norm2.", "layer_norm2."),
              ("mlp.fc1.", "mlp.fc1."), ("mlp.fc2.", "mlp.fc2.")]


def orig_to_hf_name(name):
    """Maps an original Salesforce vision name to its HF name; others unchanged (§4.5)."""
    for a, b in ORIG_TO_HF_VISION:
        if name.startswith(a) and not name.startswith("visual_encoder_m"):
            return b + name[len(a):]
    if name.startswith("visual_encoder.blocks."):
        rest = name[len("visual_encoder.blocks."):]
        i, sub = rest.split(".", 1)
        for a, b in ORIG_BLOCK:
            if sub.startswith(a):
                return "vision_model.encoder.layers.%s.%s%s" % (i, b, sub[len(a):])
    return name


def read_vocab(path):
    with open(path, "r", encoding="utf-8") as f:
        return [ln.rstrip("\n") for ln in f]


def _count_layers(names, prefix):
    n = 0
    while any(k.startswith(prefix + "%d." % n) for k in names):
        n += 1
    return n


def load_dir(path):
    """Loads a checkpoint directory -> (P: name -> float64 tensor with canonical HF names, cfg).
    Missing tied tensors are filled the way the C loader must: decoder names from the encoder's
    (orig), LM decoder.weight from the decoder word embeddings, output bias from either name."""
    raw = {}
    idx = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        for shard in sorted(set(wm.values())):
            t, _ = st_read(os.path.join(path, shard))
            raw.update(t)
    else:
        raw, _ = st_read(os.path.join(path, "model.safetensors"))
    vocab = read_vocab(os.path.join(path, "vocab.txt"))
    V = len(vocab) + 2
    ids = {"cls": vocab.index("[CLS]"), "dec": len(vocab), "enc": len(vocab) + 1}
    cfg_path = os.path.join(path, "config.json")
    layout = "hf" if os.path.exists(cfg_path) else "orig"
    P = {}
    for k, t in raw.items():
        if not t.is_floating_point():
            continue
        P[orig_to_hf_name(k) if layout == "orig" else k] = t.to(torch.float64)

    if layout == "orig":
        # tied decoder tensors fall back to the encoder's (everything but attention.*)
        for k in list(P):
            if k.startswith("text_encoder."):
                dk = "text_decoder.bert." + k[len("text_encoder."):]
                if dk not in P and ".attention." not in dk:
                    P[dk] = P[k]
    pre = "text_decoder.cls.predictions."
    if any(k.startswith(pre) for k in P):
        if pre + "decoder.weight" not in P:
            P[pre + "decoder.weight"] = P["text_decoder.bert.embeddings.word_embeddings.weight"]
        if pre + "bias" not in P:
            P[pre + "bias"] = P[pre + "decoder.bias"]
        elif pre + "decoder.bias" in P:
            assert torch.equal(P[pre + "bias"], P[pre + "decoder.bias"]), "bias aliases differ"

    tpre = "text_encoder." if "text_encoder.embeddings.word_embeddings.weight" in P else "text_decoder.bert."
    if layout == "hf":
        with open(cfg_path) as f:
            cj = json.load(f)
        vj, tj = cj.get("vision_config", {}), cj.get("text_config", {})
        vc = VisionCfg(vj.get("hidden_size", 768), vj.get("num_hidden_layers", 12),
                       vj.get("num_attention_heads", 12), vj.get("intermediate_size", 3072),
                       vj.get("image_size", 384), vj.get("patch_size", 16), vj.get("layer_norm_eps", 1e-5))
        tc = TextCfg(tj.get("vocab_size", 30524), tj.get("hidden_size", 768), tj.get("num_hidden_layers", 12),
                     tj.get("num_attention_heads", 8), tj.get("intermediate_size", 3072),
                     tj.get("max_position_embeddings", 512), tj.get("encoder_hidden_size", 768),
                     tj.get("layer_norm_eps", 1e-12))
        proj = cj.get("image_text_hidden_size", 256)
    else:
        pe = P["vision_model.embeddings.patch_embedding.weight"]
        d, patch = pe.shape[0], pe.shape[2]
        n_tok = P["vision_model.embeddings.position_embedding"].shape[1]
        grid = int(round(math.sqrt(n_tok - 1)))
        vc = VisionCfg(d, _count_layers(P, "vision_model.encoder.layers."), d // 64,
                       P["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0], grid * patch, patch, 1e-6)
        we = P[tpre + "embeddings.word_embeddings.weight"]
        dt = we.shape[1]
        tc = TextCfg(we.shape[0], dt, _count_layers(P, tpre + "encoder.layer."), dt // 64,
                     P[tpre + "encoder.layer.0.intermediate.dense.weight"].shape[0],
                     P[tpre + "embeddings.position_embeddings.weight"].shape[0],
                     P[tpre + "encoder.layer.0.crossattention.self.key.weight"].shape[1])
        proj = P["vision_proj.weight"].shape[0] if "vision_proj.weight" in P else 256
    assert tc.vocab == V, "vocab.txt has %d lines, embeddings %d rows (expected lines+2)" % (len(vocab), tc.vocab)
    cfg = BlipCfg(layout, vc, tc, proj, ids["cls"], ids["dec"], ids["enc"])
    return P, cfg


def has_itm(P):
    return "text_encoder.embeddings.word_embeddings.weight" in P and "itm_head.weight" in P


def has_decoder(P):
    return "text_decoder.cls.predictions.transform.dense.weight" in P


# ----------------------------------------------------------------------------------------------
# Tokenization and preprocessing for the end-to-end golden (whole-word vocabularies only)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tokenize_words(text, vocab, max_len):
    """Lower-case, split into words and punctuation, look each up as a whole vocab entry,
    [CLS] .. [SEP], pad with [PAD] to max_len. Raises KeyError on an unknown word."""
    import re
    lut = {w: i for i, w in enumerate(vocab)}
    words = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())
    ids = [lut["[CLS]"]] + [lut[w] for w in words][:max_len - 2] + [lut["[SEP]"]]
    mask = [1] * len(ids) + [0] * (max_len - len(ids))
    ids = ids + [lut["[PAD]"]] * (max_len - len(ids))
    return ids, mask


def load_image(path, size):
    """PIL open, RGB, bicubic squash resize, /255 and (x-mean)/std in float32 (§2.1-2.4)."""
    import numpy as np
    from PIL import Image
    im = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
    x = np.asarray(im).astype(np.float32) / np.float32(255.0)
    x = (x - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3,R,R] float32


# ----------------------------------------------------------------------------------------------
# Caption generation (spec §4.4, §11 Q14): transformers 4.15 greedy_search and beam_search with
# BeamSearchScorer/BeamHypotheses, as BLIP_Decoder.generate calls them (prompt = input_ids,
# max_length/min_length counting the prompt, eos = [SEP], MinLengthLogitsProcessor only). The
# decoder is recomputed over the whole sequence at every step (no cache), so the C engine's
# incremental decoding is checked against a plain full forward. Scores in float64.

def prompt_ids(cfg, vocab, prompt):
    """[DEC] + the prompt's whole-word tokens (BLIP: tokenizer(prompt), [0] := [DEC], drop [SEP])."""
    ids, mask = tokenize_words(prompt, vocab, 64)
    return [cfg.dec_id] + ids[1:sum(mask) - 1]


def next_logits(P, cfg, seqs, image_embeds):
    """seqs: list of R token lists of one length; image_embeds [R,N,d] -> last-position logits [R,V]."""
    ids = torch.tensor(seqs, dtype=torch.int64)
    return decoder(P, cfg, ids, torch.ones_like(ids), image_embeds)[:, -1]


class GenTrace:
    """Smallest gap seen between two scores whose order decided the output (tie risk)."""

    def __init__(self):
        self.margin = float("inf")

    def gap(self, a, b):
        if math.isfinite(a) and math.isfinite(b):
            self.margin = min(self.margin, abs(a - b))


def generate_greedy(P, cfg, image_embeds, prompt, max_length, min_length, sep_id, trace=None):
    """One image (image_embeds [1,N,d]) -> (ids after the prompt, [SEP] included when it ended
    the caption; summed log-probability of the chosen tokens)."""
    seq, total = list(prompt), 0.0
    while True:
        x = next_logits(P, cfg, [seq], image_embeds)[0].clone()
        if len(seq) < min_length:
            x[sep_id] = -float("inf")
        tok = int(torch.argmax(x))
        if trace:
            top2 = torch.topk(x, 2).values
            trace.gap(float(top2[0]), float(top2[1]))
        total += float(torch.log_softmax(x, -1)[tok])
        seq.append(tok)
        if tok == sep_id or len(seq) >= max_length:
            return seq[len(prompt):], total


def generate_beam(P, cfg, image_embeds, prompt, num_beams, max_length, min_length, sep_id, trace=None):
    """One image -> (ids after the prompt, [SEP] appended when the best hypothesis ended on it;
    the hypothesis score sum / length). Port of transformers 4.15 beam_search for batch 1."""
    nb = num_beams
    seqs = [list(prompt) for _ in range(nb)]
    beam_scores = torch.zeros(nb, dtype=torch.float64)
    beam_scores[1:] = -1e9
    hyps, worst = [], 1e9  # BeamHypotheses: (score, tokens), insertion order

    def add(tokens, sum_logprobs):
        nonlocal worst
        score = sum_logprobs / (len(tokens) ** 1.0)
        if len(hyps) < nb or score > worst:
            if trace and hyps:
                trace.gap(score, worst)
            hyps.append((score, list(tokens)))
            if len(hyps) > nb:
                srt = sorted([(s, i) for i, (s, _) in enumerate(hyps)])
                del hyps[srt[0][1]]
                worst = srt[1][0]
            else:
                worst = min(score, worst)
        elif trace:
            trace.gap(score, worst)

    done = False
    cur_len = len(prompt)
    while True:
        logits = next_logits(P, cfg, seqs, image_embeds.expand(nb, -1, -1))
        lp = torch.log_softmax(logits, -1)
        if cur_len < min_length:
            lp[:, sep_id] = -float("inf")
        V = lp.shape[-1]
        cand = (lp + beam_scores[:, None]).reshape(-1)
        top = torch.topk(cand, 2 * nb + 1)
        new = []
        for rank in range(2 * nb):
            if trace:  # the order of every candidate consumed, and of the next one, decides the output
                a, b = float(top.values[rank]), float(top.values[rank + 1])
                if a > -1e8 and b > -1e8:
                    trace.gap(a, b)
            score, flat = float(top.values[rank]), int(top.indices[rank])
            beam, tok = flat // V, flat % V
            if tok == sep_id:
                if rank >= nb:
                    continue
                add(seqs[beam], score)
            else:
                new.append((seqs[beam] + [tok], score))
            if len(new) == nb:
                break
        best = float(top.values[0])
        if len(hyps) >= nb:
            if trace and worst != best / cur_len:  # equal when the best candidate was [SEP]: no tie risk
                trace.gap(worst, best / cur_len)
            done = worst >= best / cur_len
        seqs = [s for s, _ in new]
        beam_scores = torch.tensor([sc for _, sc in new], dtype=torch.float64)
        cur_len += 1
        if done or cur_len >= max_length:
            break
    if not done:
        for b in range(nb):
            add(seqs[b], float(beam_scores[b]))
    srt = sorted(hyps, key=lambda h: h[0])
    if trace and len(srt) > 1:
        trace.gap(srt[-1][0], srt[-2][0])
    score, best = srt[-1]
    out = best[len(prompt):]
    if len(best) < max_length:
        out = out + [sep_id]
    return out, score


def decode_ids(vocab, ids, special):
    """transformers decode(skip_special_tokens=True) with clean_up_tokenization (and a leading
    '##' dropped, the project's rule); special: set of ids to skip."""
    s = " ".join(vocab[i] for i in ids if i not in special and i < len(vocab)).replace(" ##", "").strip()
    if s.startswith("##"):
        s = s[2:]
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        s = s.replace(a, b)
    return s


# ----------------------------------------------------------------------------------------------
# Zero-shot retrieval: BLIP train_retrieval.py `evaluation` (ITC ranking, ITM re-ranking of each
# query's top k by itm_logit[1] + cosine, -100 elsewhere) and `itm_eval` (recall@1/5/10). Written
# from that code's logic; single process (no rank split), no momentum or queues involved.

def topk_idx(row, k):
    """Indices of the k largest of row, largest first, ties by lower index (torch.topk leaves the
    order of equal values unspecified; the C engine breaks them this way)."""
    vals = row.tolist()
    return sorted(range(len(vals)), key=lambda j: (-vals[j], j))[:k]


def retrieval_scores(P, cfg, image_embeds, ids, mask, k):
    """image_embeds [Ni,N,d] (vision()), ids/mask [Nt,L] (unimodal [CLS] tokens) -> (sims [Ni,Nt],
    score_i2t [Ni,Nt], score_t2i [Nt,Ni]). k = 0: no re-ranking (the scores are the cosines).
    k is capped at the number of candidates (BLIP's topk needs k_test <= candidates)."""
    img = F.normalize(linear(image_embeds[:, 0], P, "vision_proj"), dim=-1, eps=1e-12)
    txt = F.normalize(linear(text_unimodal(P, cfg, ids, mask)[:, 0], P, "text_proj"), dim=-1, eps=1e-12)
    sims = img @ txt.T
    if k == 0:
        return sims, sims.clone(), sims.T.clone()
    ni, nt = sims.shape
    i2t = torch.full((ni, nt), -100.0, dtype=sims.dtype)
    for i in range(ni):
        top = topk_idx(sims[i], min(k, nt))
        enc = image_embeds[i:i + 1].expand(len(top), -1, -1)
        logits, _ = itm(P, text_multimodal(P, cfg, ids[top], mask[top], enc))
        i2t[i, top] = logits[:, 1] + sims[i, top]
    t2i = torch.full((nt, ni), -100.0, dtype=sims.dtype)
    for j in range(nt):
        top = topk_idx(sims[:, j], min(k, ni))
        logits, _ = itm(P, text_multimodal(P, cfg, ids[j:j + 1].expand(len(top), -1),
                                           mask[j:j + 1].expand(len(top), -1), image_embeds[top]))
        t2i[j, top] = logits[:, 1] + sims[top, j]
    return sims, i2t, t2i


def itm_eval(scores_i2t, scores_t2i, txt2img, img2txt, ties="negative_first"):
    """BLIP's itm_eval -> [i2t R@1, R@5, R@10, t2i R@1, R@5, R@10, mean] in percent. The rank of a
    query is the position of its best positive. ties="numpy": BLIP's np.argsort(score)[::-1]
    literally (order among equal scores as numpy leaves it); "negative_first": a negative with a
    score equal to the best positive ranks above it (the C engine's deterministic rule);
    "positive_first": below it (the most favourable order, a bound for "numpy")."""
    import numpy as np

    def rank(score, positives):
        if ties == "numpy":
            inds = np.argsort(score)[::-1]
            return min(int(np.where(inds == p)[0][0]) for p in positives)
        best = max(score[p] for p in positives)
        pos = set(positives)
        tie = ties == "negative_first"
        return sum(1 for j, s in enumerate(score) if s > best or (tie and s == best and j not in pos))

    def recalls(ranks):
        ranks = np.asarray(ranks)
        return [100.0 * np.count_nonzero(ranks < r) / len(ranks) for r in (1, 5, 10)]

    tr = recalls([rank(s, img2txt[i]) for i, s in enumerate(scores_i2t)])
    ir = recalls([rank(s, [txt2img[j]]) for j, s in enumerate(scores_t2i)])
    return tr + ir + [(sum(tr) / 3 + sum(ir) / 3) / 2]


# ----------------------------------------------------------------------------------------------
# VQA (salesforce/BLIP models/blip_vqa.py BLIP_VQA; spec/models.md §4.8, Q15). The decoder reads
# the question states; questions are batched with padding as the reference does.

def pre_question(q, style="multiflow", max_words=50):
    """MULTIFLOW's (ALBEF/X-VLM) pre_question: delete ,.'!?"()*#:;~ then '-' '/' -> ' ';
    BLIP's: delete .!"()*#:;~. Both: lower case first, rstrip(' '), first max_words of split(' ')."""
    import re
    if style == "multiflow":
        q = re.sub(r"([,.'!?\"()*#:;~])", "", q.lower()).replace("-", " ").replace("/", " ")
    else:
        q = re.sub(r"([.!\"()*#:;~])", "", q.lower())
    q = q.rstrip(" ")
    w = q.split(" ")
    if len(w) > max_words:
        q = " ".join(w[:max_words])
    return q


def pad_rows(rows, pad_id):
    """List of id lists -> (ids [n, longest], mask) as tokenizer(padding='longest')."""
    L = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (L - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (L - len(r)) for r in rows], dtype=torch.long)
    return ids, mask


def vqa_question_states(P, cfg, q_ids, q_mask, image_embeds):
    """Question encoder: the image-grounded first token ([ENC] original, [CLS] HF: §11 Q2),
    cross-attention to the image -> [B,Lq,d]."""
    return text_stack(P, cfg, "text_encoder.", with_first(q_ids, cfg.itm_first), q_mask, image_embeds)


def vqa_decoder_logits(P, cfg, a_ids, a_mask, states, states_mask):
    """Answer decoder (ids with [DEC] at 0), causal, cross-attention to the question states."""
    h = text_stack(P, cfg, "text_decoder.bert.", a_ids, a_mask, states, causal=True, enc_mask=states_mask)
    pre = "text_decoder.cls.predictions."
    z = layer_norm(gelu(linear(h, P, pre + "transform.dense")), P, pre + "transform.LayerNorm", cfg.text.eps)
    return z @ P[pre + "decoder.weight"].T + P[pre + "bias"]


def vqa_answer_loss(logits, a_ids, pad_id, smoothing=0.1):
    """BertLMHeadModel with reduction='none': shifted targets, pad -> -100, cross-entropy with label
    smoothing, summed per sequence -> [n]."""
    tgt = a_ids.masked_fill(a_ids == pad_id, -100)[:, 1:]
    lf = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none",
                         label_smoothing=smoothing, ignore_index=-100)
    return lf.view(logits.shape[0], -1).sum(1)


def rank_answer(P, cfg, states, states_mask, a_ids, a_mask, k, pad_id):
    """BLIP rank_answer for a batch of questions -> (best answer index [Q], top-k ids [Q,k],
    losses [Q,k]). Top k by the first token's probability (stable sort: ties keep answer order;
    torch.topk leaves tie order open)."""
    Q = states.shape[0]
    start = a_ids[0, 0].repeat(Q, 1)
    logits = vqa_decoder_logits(P, cfg, start, torch.ones_like(start), states, states_mask)[:, 0, :]
    prob = torch.softmax(logits, dim=1).index_select(1, a_ids[:, 1])
    order = torch.sort(-prob, dim=1, stable=True)[1][:, :k]
    ids = torch.cat([a_ids.index_select(0, o) for o in order])
    att = torch.cat([a_mask.index_select(0, o) for o in order])
    st = states.repeat_interleave(k, dim=0)
    sm = states_mask.repeat_interleave(k, dim=0)
    loss = vqa_answer_loss(vqa_decoder_logits(P, cfg, ids, att, st, sm), ids, pad_id).view(Q, k)
    best = order[torch.arange(Q), (-loss).argmax(dim=1)]
    return best, order, loss, prob

