"""Writes the gradient goldens of BLIP's pretraining losses. Run by hand from the repository root:
    /usr/bin/python3 tests/golden/gen_grads.py          (add --check for a finite-difference spot check;
                                                         --caption-only: just the captioning files)

What it does: for the fixtures tests/golden/blip/orig-f32 (queues, temp, tied decoder, momentum
copies), hf-itm-f32 (no decoder, no queues, no temp) and hf-cap-f32 (decoder only, sharded, LM
matrix tied to the word embeddings: lm only), takes the golden inputs of
tests/golden/blip/<fixture>.golden.safetensors (3 pairs) as ONE batch, computes each loss of
blip_losses.py in float64 with 'hardest' ITM negatives, and writes, per loss L in {itc, itm, lm}
the model has, tests/golden/grads/<fixture>.<L>.safetensors:
    loss                          F32 []   the loss value
    neg_img, neg_txt              I32 [B]  the ITM negatives (itm file only)
    <checkpoint tensor name>      F32      d loss / d tensor, for EVERY trainable tensor
The names are the checkpoint's own (original names for the original layout). A tensor shared by
several names (tied decoder copies, LM output matrix and bias alias) appears once, under the first
name in checkpoint order that is not an alias; metadata 'aliases' lists name=owner pairs. Momentum
copies and queues are not trainable and get no entry. Tensors a loss does not reach are written as
zeros. The gradient of the sum of the losses is the sum of these (linearity), so it is not stored
(one file with four sets would exceed 2 MB); metadata 'loss_sum' carries the summed value.

Momentum golden (gen_momentum): orig-f32 has momentum copies that differ from the online weights
(online + normal(0, 0.02) noise), queues [32, 8] and queue_ptr 5. Twelve generated pairs
(images normal(0, 1), captions of 2-10 random words) run as 4 batches of 3 in order with ONE
blip_losses.Momentum state (update, momentum columns, queues, enqueue: the pointer wraps in the
fourth batch), all three losses summed per batch, 'hardest' negatives, gradients summed over the
batches and divided by 4 (what `multiflow grad` writes). tests/golden/grads/orig-f32.momentum.safetensors:
    images F32 [12,3,64,64], ids, mask I32 [12,12]  the inputs (batch k = rows 3k..3k+2)
    losses F32 [4,3]                  itc, itm, lm of each batch
    neg_img, neg_txt I32 [4,3]        the ITM negatives of each batch
    state.image_queue, state.text_queue F32 [32,8], state.queue_ptr I64 [1]   after the 4 batches
    state.<momentum tensor> F32       a few momentum copies after the 4 batches
    <checkpoint tensor name> F32      mean over the batches of d(itc+itm+lm)/d tensor, every
                                      trainable tensor ('temp': the mean d/d temp)

What it deliberately does not do: no 'sample' mode goldens (random), no batches of other sizes.

Reference: docs/internals/losses.md; tests/golden/blip_losses.py.
"""

import os
import sys
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import blip_ref as R  # noqa: E402
import blip_losses as BL  # noqa: E402

torch.set_num_threads(1)
FIXTURES = ("orig-f32", "hf-itm-f32", "hf-cap-f32")
OUT = os.path.join(HERE, "grads")


def checkpoint_names(d, layout):
    """Ordered (checkpoint name, canonical name) of every floating tensor in the file."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):  # sharded: shards in name order, as load_dir reads them
        import json
        with open(idx) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        raw = OrderedDict()
        for sh in shards:
            raw.update(R.st_read(os.path.join(d, sh))[0])
    else:
        raw, _ = R.st_read(os.path.join(d, "model.safetensors"))
    out = []
    for k, t in raw.items():
        if t.is_floating_point():
            out.append((k, R.orig_to_hf_name(k) if layout == "orig" else k))
    return out


def setup(fixture):
    d = os.path.join(HERE, "blip", fixture)
    P, cfg = R.load_dir(d)
    params, aliases = BL.tie_params(P, cfg)
    g, _ = R.st_read(os.path.join(HERE, "blip", fixture + ".golden.safetensors"))
    images = g["images"].to(torch.float64)
    return d, params, aliases, cfg, images, g["ids"], g["mask"]


def supported(P):
    """Losses the checkpoint has the towers for (ITM needs the ITC projections for its negatives)."""
    return (["itc", "itm"] if R.has_itm(P) and "vision_proj.weight" in P else []) + \
        (["lm"] if R.has_decoder(P) else [])


def run(params, cfg, images, ids, mask, loss, lm_prompt_len=0):
    for t in params.values():
        t.grad = None
    out = BL.batch_losses(params, cfg, images, ids, mask, losses=(loss,), lm_prompt_len=lm_prompt_len)
    out[loss].backward()
    return out


def add_gradients(T, names, aliases, params, out):
    """T[raw name] = the float32 gradient of every trainable tensor (zeros where the loss does not
    reach it), under the first non-alias checkpoint name."""
    for raw, canon in names:
        if canon in aliases or not BL.is_parameter(canon):
            continue
        leaf = out["temp_leaf"] if canon == "temp" else params[canon]
        gr = leaf.grad
        T[raw] = (torch.zeros(list(leaf.shape), dtype=torch.float64) if gr is None else gr).to(torch.float32)


def gen(fixture):
    d, params, aliases, cfg, images, ids, mask = setup(fixture)
    names = checkpoint_names(d, cfg.layout)
    losses = supported(params)
    values = OrderedDict()
    results = OrderedDict()
    for loss in losses:
        out = run(params, cfg, images, ids, mask, loss)
        values[loss] = float(out[loss])
        T = OrderedDict()
        T["loss"] = torch.tensor(values[loss], dtype=torch.float32)
        if loss == "itm":
            T["neg_img"] = torch.tensor(out["neg_img"], dtype=torch.int32)
            T["neg_txt"] = torch.tensor(out["neg_txt"], dtype=torch.int32)
        add_gradients(T, names, aliases, params, out)
        results[loss] = (T, out)
    to_raw = {c: r for r, c in names}
    alias_meta = ",".join("%s=%s" % (to_raw.get(a, a), to_raw.get(o, o)) for a, o in aliases.items())
    os.makedirs(OUT, exist_ok=True)
    for loss, (T, out) in results.items():
        meta = OrderedDict([
            ("fixture", fixture), ("loss", loss), ("batch", "the 3 golden pairs as one batch"),
            ("layout", cfg.layout), ("itm_negatives", "hardest"),
            ("itm_first_token", "[ENC]" if cfg.itm_first == cfg.enc_id else "[CLS]"),
            ("temp", repr(float(BL.temperature(params)[0]))), ("queues", str("image_queue" in params)),
            ("label_smoothing", repr(BL.LABEL_SMOOTHING)),
            ("loss_values", ",".join("%s=%.17g" % kv for kv in values.items())),
            ("loss_sum", "%.17g" % sum(values.values())),
            ("aliases", alias_meta),
            ("computed_in", "float64 autograd (blip_losses.py), stored as float32"),
            ("compare_hint", "per tensor max|a-b| <= 1e-3 * max|b| (tensors that are all zero: "
             "|a| <= 1e-6 * the largest gradient entry of the loss)")])
        path = os.path.join(OUT, "%s.%s.safetensors" % (fixture, loss))
        R.st_write(path, T, meta)
        print("%s: %s = %.6f, %d tensors, %d bytes%s" % (
            fixture, loss, values[loss], len(T) - 1, os.path.getsize(path),
            "" if loss != "itm" else ", negatives img %s txt %s" % (out["neg_img"], out["neg_txt"])))


MOM_BATCHES, MOM_B, MOM_T = 4, 3, 12
MOM_STATE = ("visual_encoder_m.blocks.1.mlp.fc1.weight", "visual_encoder_m.cls_token",
             "text_encoder_m.encoder.layer.1.attention.self.query.weight",
             "text_encoder_m.embeddings.word_embeddings.weight", "vision_proj_m.weight", "text_proj_m.bias")


def momentum_inputs(cfg, vocab_size):
    """Deterministic images and captions for the momentum golden."""
    g = torch.Generator().manual_seed(20240808)
    n = MOM_BATCHES * MOM_B
    images = torch.randn((n, 3, cfg.vision.image_size, cfg.vision.image_size), generator=g)
    ids = torch.zeros((n, MOM_T), dtype=torch.int32)
    mask = torch.zeros((n, MOM_T), dtype=torch.int32)
    first_word = 6  # after [PAD] [unused0] [UNK] [CLS] [SEP] [MASK]
    for i in range(n):
        words = int(torch.randint(2, MOM_T - 1, (1,), generator=g))
        row = [cfg.cls_id] + [int(x) for x in torch.randint(first_word, vocab_size, (words,), generator=g)] + [4]
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.int32)
        mask[i, :len(row)] = 1
    return images, ids, mask


def gen_momentum(fixture="orig-f32"):
    d, params, aliases, cfg, _, _, _ = setup(fixture)
    raw, _ = R.st_read(os.path.join(d, "model.safetensors"))
    names = checkpoint_names(d, cfg.layout)
    vocab = R.read_vocab(os.path.join(d, "vocab.txt"))
    assert vocab[4] == "[SEP]" and vocab[cfg.cls_id] == "[CLS]"
    images, ids, mask = momentum_inputs(cfg, len(vocab))
    mom = BL.Momentum(params, int(raw["queue_ptr"][0]))
    for t in params.values():
        t.grad = None
    losses = torch.zeros((MOM_BATCHES, 3), dtype=torch.float64)
    negs = torch.zeros((2, MOM_BATCHES, MOM_B), dtype=torch.int32)
    d_temp = 0.0
    for k in range(MOM_BATCHES):
        sl = slice(k * MOM_B, (k + 1) * MOM_B)
        out = BL.batch_losses(params, cfg, images[sl].to(torch.float64), ids[sl], mask[sl], mom=mom)
        (out["itc"] + out["itm"] + out["lm"]).backward()
        losses[k] = torch.tensor([float(out["itc"]), float(out["itm"]), float(out["lm"])])
        negs[0, k], negs[1, k] = torch.tensor(out["neg_img"]), torch.tensor(out["neg_txt"])
        d_temp += float(out["temp_leaf"].grad)
        print("%s momentum batch %d: itc %.6f itm %.6f lm %.6f, negatives img %s txt %s, queue_ptr -> %d" % (
            fixture, k, *losses[k].tolist(), out["neg_img"], out["neg_txt"], mom.ptr))
    T = OrderedDict()
    T["images"], T["ids"], T["mask"] = images.to(torch.float32), ids, mask
    T["losses"] = losses.to(torch.float32)
    T["neg_img"], T["neg_txt"] = negs[0].clone(), negs[1].clone()
    T["state.image_queue"] = mom.image_queue.to(torch.float32)
    T["state.text_queue"] = mom.text_queue.to(torch.float32)
    T["state.queue_ptr"] = torch.tensor([mom.ptr], dtype=torch.int64)
    for name in MOM_STATE:
        canon = None
        for mp, op in BL.MOMENTUM_PREFIXES:
            if name.startswith(mp):
                canon = R.orig_to_hf_name(op + name[len(mp):])
        T["state." + name] = mom.W[canon].to(torch.float32)
    for rawname, canon in names:
        if canon in aliases or not BL.is_parameter(canon):
            continue
        if canon == "temp":
            T[rawname] = torch.tensor(d_temp / MOM_BATCHES, dtype=torch.float32)
            continue
        gr = params[canon].grad
        T[rawname] = (torch.zeros(params[canon].shape, dtype=torch.float64) if gr is None
                      else gr / MOM_BATCHES).to(torch.float32)
    meta = OrderedDict([
        ("fixture", fixture), ("batches", "%d batches of %d consecutive pairs, one momentum state" % (
            MOM_BATCHES, MOM_B)), ("losses", "itc+itm+lm per batch"), ("itm_negatives", "hardest"),
        ("momentum", repr(BL.MOMENTUM)), ("queue_ptr_in", str(int(raw["queue_ptr"][0]))),
        ("content", "mean over batches of d(sum of losses)/d tensor"),
        ("computed_in", "float64 autograd (blip_losses.py), stored as float32"),
        ("compare_hint", "per tensor max|a-b| <= 1e-4 * max|b| (zero tensors: an absolute floor)")])
    path = os.path.join(OUT, "%s.momentum.safetensors" % fixture)
    R.st_write(path, T, meta)
    print("%s: momentum golden, %d entries, %d bytes" % (fixture, len(T), os.path.getsize(path)))


def check(fixture, n=4):
    """Central differences on a few entries of a few tensors against autograd, per loss (ITC with
    its stop-gradient columns held at their unperturbed values, as autograd sees them)."""
    d, params, aliases, cfg, images, ids, mask = setup(fixture)
    losses = supported(params)
    g = torch.Generator().manual_seed(1)
    for loss in losses:
        base = run(params, cfg, images, ids, mask, loss)
        cols = base.get("itc_cols")  # stop-gradient columns stay fixed under perturbation
        worst = 0.0
        for name in ("text_encoder.encoder.layer.0.attention.self.query.weight",
                     "vision_model.encoder.layers.1.mlp.fc1.weight",
                     "text_encoder.encoder.layer.1.crossattention.self.key.weight",
                     "text_encoder.encoder.layer.0.intermediate.dense.weight",
                     "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
                     "text_decoder.bert.embeddings.word_embeddings.weight"):
            if name not in params:
                continue
            p = params[name]
            ga = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for _ in range(n):
                i = int(torch.randint(p.numel(), (1,), generator=g))
                h = 1e-6
                with torch.no_grad():
                    old = p.view(-1)[i].item()
                    p.view(-1)[i] = old + h
                    lp = float(BL.batch_losses(params, cfg, images, ids, mask, (loss,), itc_cols=cols)[loss])
                    p.view(-1)[i] = old - h
                    lm = float(BL.batch_losses(params, cfg, images, ids, mask, (loss,), itc_cols=cols)[loss])
                    p.view(-1)[i] = old
                fd = (lp - lm) / (2 * h)
                worst = max(worst, abs(fd - float(ga.view(-1)[i])) / max(abs(fd), 1e-6))
        print("%s %s: worst finite-difference rel err %.2e" % (fixture, loss, worst))


CAPTION_PROMPT_LEN = 3  # the golden captions' first 3 tokens ([DEC] + 2 pieces) act as the prompt


def gen_caption(fixture):
    """grads/<fixture>.caplm.safetensors: BLIP_Decoder's captioning loss (the LM loss with the
    first CAPTION_PROMPT_LEN positions not targets, label smoothing 0.1, mean over the remaining
    targets) on the 3 golden pairs as one batch: 'loss' and every trainable tensor's gradient."""
    d, params, aliases, cfg, images, ids, mask = setup(fixture)
    names = checkpoint_names(d, cfg.layout)
    out = run(params, cfg, images, ids, mask, "lm", CAPTION_PROMPT_LEN)
    T = OrderedDict()
    T["loss"] = torch.tensor(float(out["lm"]), dtype=torch.float32)
    add_gradients(T, names, aliases, params, out)
    meta = OrderedDict([
        ("fixture", fixture), ("loss", "lm, captioning: positions < prompt_len are not targets"),
        ("prompt_len", str(CAPTION_PROMPT_LEN)), ("batch", "the 3 golden pairs as one batch"),
        ("label_smoothing", repr(BL.LABEL_SMOOTHING)), ("loss_value", "%.17g" % float(out["lm"])),
        ("computed_in", "float64 autograd (blip_losses.py), stored as float32")])
    R.st_write(os.path.join(OUT, "%s.caplm.safetensors" % fixture), T, meta)
    print("%s caplm: loss %.9f" % (fixture, float(out["lm"])))


if __name__ == "__main__":
    for fx in FIXTURES:
        if "--check" in sys.argv:
            check(fx)
        elif "--caption-only" in sys.argv:
            pass
        elif "--momentum-only" not in sys.argv:
            gen(fx)
    if "--check" not in sys.argv:
        for fx in ("orig-f32", "hf-cap-f32"):
            gen_caption(fx)
    if "--check" not in sys.argv and "--caption-only" not in sys.argv:
        gen_momentum()
