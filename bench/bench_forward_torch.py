#!/usr/bin/python3
"""bench/bench_forward_torch.py: the PyTorch side of the forward benchmark (see bench/README.md).

What it does: loads the checkpoint that bench_forward wrote (safetensors parsed by hand: 8-byte
header length, JSON header, raw data viewed with numpy.frombuffer; no copy, float32), builds the
same BLIP-base forward from the project's own reference tests/golden/blip_ref.py (run in float32
here, not float64), and runs the same workload on the same inputs as the C bench:
  itm    vision + unimodal text encoder (ITC cosine) + image-grounded encoder (ITM probability),
  calib  vision + [ENC] image-grounded encoder (ITM) + [DEC] decoder, LM head and NLL.
First it checks that its outputs equal the C engine's (from bench_forward --dump) within 1e-3;
only then it times --reps batches under torch.inference_mode() for each torch.set_num_threads
value and prints one machine-readable TORCH line per thread count.

The one change to blip_ref for speed: its hand-written erf GELU (four elementwise ops) is replaced
by torch.nn.functional.gelu, the same function computed by one fused kernel, which is what the
Hugging Face BLIP modules call. Everything else (separate q/k/v linears in BERT, matmul attention
with an additive mask, F.conv2d patch embedding) is the eager PyTorch computation HF BLIP does.

What it deliberately does not do: no TorchScript, no torch.compile (not in torch 1.13), no MKL
tuning; no tokenizer or image decoding (inputs come from the dump).

Run with /usr/bin/python3 (Debian python3-torch 1.13; the python3 first on PATH has no torch).
OPENBLAS_NUM_THREADS and OMP_WAIT_POLICY must be set by the caller (run_forward.sh) before start.
"""

import argparse
import json
import math
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import blip_ref as ref  # noqa: E402

_NP = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "F16": np.float16, "U8": np.uint8}


def st_load(path):
    """safetensors -> (dict name -> torch tensor viewing one bytearray, metadata dict)."""
    size = os.path.getsize(path)
    raw = bytearray(size)
    with open(path, "rb") as f:
        if f.readinto(raw) != size:
            raise IOError("%s: short read" % path)
    n = struct.unpack("<Q", raw[:8])[0]
    if n > size - 8:
        raise ValueError("%s: header length %d past the file size %d" % (path, n, size))
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        dt = np.dtype(_NP[e["dtype"]])
        count = (en - b) // dt.itemsize
        if count != math.prod(e["shape"]) or base + en > size:
            raise ValueError("%s: tensor %s has bad offsets" % (path, name))
        arr = np.frombuffer(raw, dtype=dt, count=count, offset=base + b)
        out[name] = torch.from_numpy(arr).reshape(e["shape"])
    return out, meta


def count_layers(P, prefix):
    n = 0
    while (prefix + "%d." % n) in {k[:len(prefix) + len(str(n)) + 1] for k in P}:
        n += 1
    return n


def load_model(d):
    """Checkpoint directory -> (P with canonical HF names, float32; blip_ref.BlipCfg). Mirrors
    blip_ref.load_dir for the files bench_forward writes, without its float64 conversion."""
    raw, _ = st_load(os.path.join(d, "model.safetensors"))
    vocab = ref.read_vocab(os.path.join(d, "vocab.txt"))
    cfg_path = os.path.join(d, "config.json")
    layout = "hf" if os.path.exists(cfg_path) else "orig"
    P = {(ref.orig_to_hf_name(k) if layout == "orig" else k): t for k, t in raw.items()}
    if layout == "orig":  # tied decoder tensors = the encoder's, except the self-attention (§4.5)
        for k in list(P):
            if k.startswith("text_encoder."):
                dk = "text_decoder.bert." + k[len("text_encoder."):]
                if dk not in P and ".attention." not in dk:
                    P[dk] = P[k]
    pre = "text_decoder.cls.predictions."
    if pre + "bias" in P and pre + "decoder.weight" not in P:
        P[pre + "decoder.weight"] = P["text_decoder.bert.embeddings.word_embeddings.weight"]
    V = "vision_model."
    pe = P[V + "embeddings.patch_embedding.weight"]
    d_v, patch = pe.shape[0], pe.shape[2]
    n_tok = P[V + "embeddings.position_embedding"].shape[1]
    grid = int(round(math.sqrt(n_tok - 1)))
    we = P["text_encoder.embeddings.word_embeddings.weight"]
    if layout == "hf":
        with open(cfg_path) as f:
            cj = json.load(f)
        vj, tj = cj["vision_config"], cj["text_config"]
        v_heads, t_heads, v_eps = vj["num_attention_heads"], tj["num_attention_heads"], vj["layer_norm_eps"]
        proj = cj["image_text_hidden_size"]
    else:
        v_heads, t_heads, v_eps = d_v // 64, we.shape[1] // 64, 1e-6
        proj = P["vision_proj.weight"].shape[0]
    vc = ref.VisionCfg(d_v, count_layers(P, V + "encoder.layers."), v_heads,
                       P[V + "encoder.layers.0.mlp.fc1.weight"].shape[0], grid * patch, patch, v_eps)
    tc = ref.TextCfg(we.shape[0], we.shape[1], count_layers(P, "text_encoder.encoder.layer."), t_heads,
                     P["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
                     P["text_encoder.embeddings.position_embeddings.weight"].shape[0],
                     P["text_encoder.encoder.layer.0.crossattention.self.key.weight"].shape[1])
    cfg = ref.BlipCfg(layout, vc, tc, proj, vocab.index("[CLS]"), len(vocab), len(vocab) + 1)
    return P, cfg


def run(P, cfg, mode, images, ids, mask):
    """One batch of the workload -> dict of per-pair outputs (float32 tensors [B])."""
    emb = ref.vision(P, cfg, images)
    out = {}
    if mode == "itm":
        txt = ref.text_unimodal(P, cfg, ids, mask)
        fi = F.normalize(ref.linear(emb[:, 0], P, "vision_proj"), dim=-1, eps=1e-12)
        ft = F.normalize(ref.linear(txt[:, 0], P, "text_proj"), dim=-1, eps=1e-12)
        out["itc"] = (fi * ft).sum(-1)
    mm = ref.text_multimodal(P, cfg, ids, mask, emb)
    out["itm"] = ref.itm(P, mm)[1]
    if mode == "calib":
        out["lm"] = ref.lm_nll(ref.decoder(P, cfg, ids, mask, emb), ids, mask)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dump", required=True, help="bench_forward --dump output (inputs + C outputs)")
    ap.add_argument("--threads", default="1,2", help="torch.set_num_threads values, e.g. 1,2")
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args()

    ref.gelu = F.gelu  # same erf GELU, fused kernel (see the module docstring)
    t0 = time.time()
    P, cfg = load_model(a.model_dir)
    D, meta = st_load(a.dump)
    mode = meta["mode"]
    images, ids, mask = D["images"], D["ids"], D["mask"]
    B, L = ids.shape
    res = cfg.vision.image_size
    print("# torch %s, %s layout, %d px, batch %d, L %d, OPENBLAS_NUM_THREADS=%s OMP_WAIT_POLICY=%s, loaded in %.1f s"
          % (torch.__version__, cfg.layout, res, B, L, os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
             os.environ.get("OMP_WAIT_POLICY", "unset"), time.time() - t0), flush=True)

    status = 0
    for T in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(T)
        with torch.inference_mode():
            tw = time.time()
            out = run(P, cfg, mode, images, ids, mask)
            tw = time.time() - tw
            # |torch - C| / max(1, |C|): absolute for itc/itm (in [-1, 1]), relative for the NLL
            diffs = {k: ((v.double() - D[k].double()).abs() / D[k].double().abs().clamp(min=1.0)).max().item()
                     for k, v in out.items()}
            ok = all(d <= 1e-3 for d in diffs.values())
            print("CHECK torch_threads=%d vs C: %s  %s" % (T, "  ".join("max|d %s| %.2e" % kv for kv in diffs.items()),
                                                          "ok" if ok else "FAIL (tolerance 1e-3)"), flush=True)
            if not ok:
                status = 1
                continue
            times = []
            for _ in range(a.reps):
                t1 = time.time()
                run(P, cfg, mode, images, ids, mask)
                times.append(time.time() - t1)
        best = min(times)
        print("TORCH mode=%s res=%d torch_threads=%d blas_threads=%s batch=%d warmup_s=%.3f best_s=%.3f median_s=%.3f "
              "pairs_per_s=%.3f" % (mode, res, T, os.environ.get("OPENBLAS_NUM_THREADS", "unset"), B, tw, best,
                                    statistics.median(times), B / best), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
