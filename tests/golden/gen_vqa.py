"""Writes the VQA goldens (BLIP_VQA on the tiny original-layout fixture). Run by hand from the
repository root:  /usr/bin/python3 tests/golden/gen_vqa.py

What it does: first writes the fixture tests/golden/blip/hf-vqa-f32, an HF BlipForQuestionAnswering
layout (vision_model.* and text_encoder.* of hf-itm-f32, text_decoder.* of hf-cap-f32: an untied
answer decoder, as HF stores it). Then for each of orig-f32 (BLIP_Pretrain layout: the pretrained
decoder is the answer decoder, as BLIP_VQA is initialised; tied as the file stores it) and
hf-vqa-f32, with the 3 images of <fixture>.golden.safetensors (hf-itm-f32's for hf-vqa-f32), computes
in float64
  - question cleaning (blip_ref.pre_question, MULTIFLOW's and BLIP's) of a few strings;
  - rank_answer (blip_ref.rank_answer) of 4 questions, batched with padding as the reference,
    over a 10-answer list, for a small k (top-k by the first token's probability; chosen so that
    no probability tie straddles the cut, so the tie rule does not matter) and k = 10;
  - BLIP_VQA's training loss (blip_losses.vqa_loss: answers weighted by annotator share, summed
    label-smoothed LM loss, divided by the questions) of 3 questions and its gradient (autograd,
    tied decoder as the checkpoint stores it);
and writes tests/golden/vqa/<fixture>.vqa.safetensors:
    images F32 [3,3,64,64]; q_ids I32 [Q,Lq] ([ENC] first for orig, [CLS] for HF; [PAD] after q_len),
    q_len, q_image I32 [Q]
    ans_ids, ans_mask I32 [A,La] ([DEC] first); rank.small.k I32 [1] (the first of 4, 5, 3, 6, 2, 7
    with no probability tie at the cut), rank.small.best I32 [Q], rank.small.order I32 [Q,k],
    rank.small.loss F32 [Q,k]; rank.all.* likewise for k = 10
    train.q I32 [B] (question index), train.n I32 [B], train.ans I32 [sum n] (answer index),
    train.w F32 [sum n], train.loss F32 []; <checkpoint tensor> F32: d train.loss / d tensor
metadata: questions, answers (JSON lists of the raw strings), pre_question (JSON [in, multiflow, blip]).

Reference: salesforce/BLIP models/blip_vqa.py, data/vqa_dataset.py, data/utils.py; MULTIFLOW's
pre_question (ALBEF/X-VLM form); spec/models.md §4.8, Q15.
"""

import json
import os
import sys
from collections import OrderedDict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import blip_ref as R  # noqa: E402
import blip_losses as BL  # noqa: E402
import gen_grads as GG  # noqa: E402

torch.set_num_threads(1)
QUESTIONS = [("Is there a red circle in the image?", 0),
             ("The large/small triangle, at the top-left corner?", 1),
             ("Is there a blue square on the right (bottom)?", 2),
             ("Green shape: in the middle?", 0)]
ANSWERS = ["red", "red circle", "blue", "green", "yellow", "left", "right", "top left", "2", "3"]
TRAIN = [(0, ["red", "red", "red circle", "red", "blue", "red", "red", "red circle", "red", "red"]),
         (1, ["top left", "left", "top left", "top left", "top left", "top left", "left", "top left",
              "top left", "top left"]),
         (2, ["2", "2", "2", "2", "2", "2", "2", "2", "2", "2"])]
PRE = ["What's on the LEFT of the black-square?", "a/b  c (d)! e?  ", "x, y. z; w~ #1 \"q\" 'r'"]


def tok(vocab, words, first):
    lut = {w: i for i, w in enumerate(vocab)}
    return [first] + [lut[w] for w in words.split()] + [lut["[SEP]"]]


def make_hf_vqa():
    """tests/golden/blip/hf-vqa-f32 from the two HF fixtures (config: BlipForQuestionAnswering)."""
    src_itm, src_cap = os.path.join(HERE, "blip", "hf-itm-f32"), os.path.join(HERE, "blip", "hf-cap-f32")
    out = os.path.join(HERE, "blip", "hf-vqa-f32")
    a, _ = R.st_read(os.path.join(src_itm, "model.safetensors"))
    T = OrderedDict((k, v) for k, v in a.items() if k.startswith(("vision_model.", "text_encoder.")))
    for f in sorted(os.listdir(src_cap)):
        if f.endswith(".safetensors"):
            T.update((k, v) for k, v in R.st_read(os.path.join(src_cap, f))[0].items() if k.startswith("text_decoder."))
    os.makedirs(out, exist_ok=True)
    R.st_write(os.path.join(out, "model.safetensors"), T)
    with open(os.path.join(src_itm, "config.json")) as f:
        cfg = json.load(f)
    cfg["architectures"] = ["BlipForQuestionAnswering"]
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(src_itm, "vocab.txt"), "rb") as f, open(os.path.join(out, "vocab.txt"), "wb") as g:
        g.write(f.read())


def main():
    make_hf_vqa()
    for fixture, images_of in (("orig-f32", "orig-f32"), ("hf-vqa-f32", "hf-itm-f32")):
        gen(fixture, images_of)


def gen(fixture, images_of):
    d = os.path.join(HERE, "blip", fixture)
    P, cfg = R.load_dir(d)
    vocab = R.read_vocab(os.path.join(d, "vocab.txt"))
    pad = vocab.index("[PAD]")
    g, _ = R.st_read(os.path.join(HERE, "blip", images_of + ".golden.safetensors"))
    images = g["images"].to(torch.float64)
    q_rows = [tok(vocab, R.pre_question(q), cfg.itm_first) for q, _ in QUESTIONS]
    q_ids, q_mask = R.pad_rows(q_rows, pad)
    q_image = torch.tensor([i for _, i in QUESTIONS])
    a_ids, a_mask = R.pad_rows([tok(vocab, a, cfg.dec_id) for a in ANSWERS], pad)
    T = OrderedDict()
    T["images"] = images.to(torch.float32)
    T["q_ids"] = q_ids.to(torch.int32)
    T["q_len"] = q_mask.sum(1).to(torch.int32)
    T["q_image"] = q_image.to(torch.int32)
    T["ans_ids"] = a_ids.to(torch.int32)
    T["ans_mask"] = a_mask.to(torch.int32)
    with torch.no_grad():
        emb = R.vision(P, cfg, images)[q_image]
        states = R.vqa_question_states(P, cfg, q_ids, q_mask, emb)
        def ranked(k):
            return R.rank_answer(P, cfg, states, q_mask, a_ids, a_mask, k, pad)

        def tie_at_cut(prob, k):
            return any(bool(torch.sort(p, descending=True)[0][k - 1] == torch.sort(p, descending=True)[0][k])
                       for p in prob)
        prob = ranked(len(ANSWERS))[3]
        k_small = next(k for k in (4, 5, 3, 6, 2, 7) if not tie_at_cut(prob, k))
        for tag, k in (("small", k_small), ("all", len(ANSWERS))):
            best, order, loss, _ = ranked(k)
            T["rank.%s.k" % tag] = torch.tensor([k], dtype=torch.int32)
            T["rank.%s.best" % tag] = best.to(torch.int32)
            T["rank.%s.order" % tag] = order.to(torch.int32)
            T["rank.%s.loss" % tag] = loss.to(torch.float32)
            print("%s k=%d best %s" % (fixture, k, [ANSWERS[i] for i in best]))
    # training loss: distinct answers in first-appearance order, weight = share of annotators
    params, aliases = BL.tie_params(P, cfg)
    tq, tn, ta, tw = [], [], [], []
    for qi, ann in TRAIN:
        wts = OrderedDict()
        for a in ann:
            wts[a] = wts.get(a, 0.0) + 1.0 / len(ann)
        tq.append(qi)
        tn.append(len(wts))
        ta += [ANSWERS.index(a) for a in wts]
        tw += list(wts.values())
    sel = torch.tensor(tq)
    loss = BL.vqa_loss(params, cfg, images, q_ids[sel], q_mask[sel], q_image[sel], a_ids[torch.tensor(ta)],
                       a_mask[torch.tensor(ta)], tn, torch.tensor(tw, dtype=torch.float64), pad)
    loss.backward()
    print("train loss %.9g" % float(loss))
    T["train.q"] = torch.tensor(tq, dtype=torch.int32)
    T["train.n"] = torch.tensor(tn, dtype=torch.int32)
    T["train.ans"] = torch.tensor(ta, dtype=torch.int32)
    T["train.w"] = torch.tensor(tw, dtype=torch.float32)
    T["train.loss"] = torch.tensor(float(loss), dtype=torch.float32)
    GG.add_gradients(T, GG.checkpoint_names(d, cfg.layout), aliases, params, {"temp_leaf": torch.zeros(1)})
    meta = OrderedDict([
        ("fixture", fixture), ("questions", json.dumps([q for q, _ in QUESTIONS])),
        ("answers", json.dumps(ANSWERS)),
        ("pre_question", json.dumps([[s, R.pre_question(s, "multiflow"), R.pre_question(s, "blip")] for s in PRE])),
        ("label_smoothing", repr(BL.LABEL_SMOOTHING)),
        ("computed_in", "float64 (blip_ref.py, blip_losses.py autograd), stored as float32")])
    os.makedirs(os.path.join(HERE, "vqa"), exist_ok=True)
    R.st_write(os.path.join(HERE, "vqa", fixture + ".vqa.safetensors"), T, meta)


if __name__ == "__main__":
    main()
