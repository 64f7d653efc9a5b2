"""Writes the VQA goldens (BLIP_VQA on the tiny original-layout fixture). Run by hand from the
repository root:  /usr/bin/python3 tests/golden/gen_vqa.py

What it does: on tests/golden/blip/orig-f32 (whose pretrained decoder is the answer decoder, as
BLIP_VQA is initialised) and the 3 images of orig-f32.golden.safetensors, computes in float64
  - question cleaning (blip_ref.pre_question, MULTIFLOW's and BLIP's) of a few strings;
  - rank_answer (blip_ref.rank_answer) of 4 questions, batched with padding as the reference,
    over a 10-answer list, for k = 4 (top-k by the first token's probability; the generator
    checks no probability tie straddles the cut, so the tie rule does not matter) and k = 10;
  - BLIP_VQA's training loss (blip_losses.vqa_loss: answers weighted by annotator share, summed
    label-smoothed LM loss, divided by the questions) of 3 questions and its gradient (autograd,
    tied decoder as the checkpoint stores it);
and writes tests/golden/vqa/orig-f32.vqa.safetensors:
    images F32 [3,3,64,64]; q_ids I32 [Q,Lq] ([ENC] first, [PAD] after q_len), q_len, q_image I32 [Q]
    ans_ids, ans_mask I32 [A,La] ([DEC] first); rank.k4.best I32 [Q], rank.k4.order I32 [Q,4],
    rank.k4.loss F32 [Q,4]; rank.k10.* likewise
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


def main():
    d = os.path.join(HERE, "blip", "orig-f32")
    P, cfg = R.load_dir(d)
    vocab = R.read_vocab(os.path.join(d, "vocab.txt"))
    pad = vocab.index("[PAD]")
    g, _ = R.st_read(os.path.join(HERE, "blip", "orig-f32.golden.safetensors"))
    images = g["images"].to(torch.float64)
    q_rows = [tok(vocab, R.pre_question(q), cfg.enc_id) for q, _ in QUESTIONS]
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
        for k in (4, len(ANSWERS)):
            best, order, loss, prob = R.rank_answer(P, cfg, states, q_mask, a_ids, a_mask, k, pad)
            if k < len(ANSWERS):
                for qi in range(len(QUESTIONS)):
                    s = torch.sort(prob[qi], descending=True)[0]
                    assert s[k - 1] != s[k], "question %d: a probability tie at the top-%d cut" % (qi, k)
            T["rank.k%d.best" % k] = best.to(torch.int32)
            T["rank.k%d.order" % k] = order.to(torch.int32)
            T["rank.k%d.loss" % k] = loss.to(torch.float32)
            print("k=%d best %s" % (k, [ANSWERS[i] for i in best]))
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
        ("fixture", "orig-f32"), ("questions", json.dumps([q for q, _ in QUESTIONS])),
        ("answers", json.dumps(ANSWERS)),
        ("pre_question", json.dumps([[s, R.pre_question(s, "multiflow"), R.pre_question(s, "blip")] for s in PRE])),
        ("label_smoothing", repr(BL.LABEL_SMOOTHING)),
        ("computed_in", "float64 (blip_ref.py, blip_losses.py autograd), stored as float32")])
    os.makedirs(os.path.join(HERE, "vqa"), exist_ok=True)
    R.st_write(os.path.join(HERE, "vqa", "orig-f32.vqa.safetensors"), T, meta)


if __name__ == "__main__":
    main()
