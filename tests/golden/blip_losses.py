"""BLIP pretraining losses (ITC, ITM with hard negatives, LM with label smoothing) on top of
blip_ref.py, with PyTorch autograd for the gradient goldens.

What it does: given the float64 parameter dict from blip_ref.load_dir, re-ties the parameters the
original BLIP_Pretrain shares (decoder copies of the encoder's non-self-attention modules, the LM
output matrix and bias aliases) so each shared tensor is one autograd leaf, and computes for one
batch of image-caption pairs exactly the losses of docs/internals/losses.md:
  itc: contrastive with the learned temperature (clamped to [0.001, 0.5]), alpha = 0 (as
       MULTIFLOW calls the pretraining forward): columns = the momentum encoders' features of the
       batch after one momentum update, then the queues, which receive those features after the
       batch (class Momentum, as BLIP_Pretrain.forward); without a Momentum state (--momentum off,
       or no momentum copies) the online features with gradients stopped and the queues as stored;
  itm: 3B pairs (B positives, B texts with a negative image, B images with a negative text),
       negatives drawn from softmax(sim[:, :B]) + 1e-4 with the diagonal zeroed, either 'hardest'
       (argmax, lowest index on ties) or sampled from a caller-supplied index list;
  lm:  causal decoder with [DEC] first, targets = the real caption tokens after the first,
       cross-entropy with label smoothing 0.1, mean over all target tokens of the batch.

What it deliberately does not do: no distillation (alpha = 0), no random sampling of its own
(torch.multinomial is not reproduced in C; the 'sample' mode of the C engine is checked by
properties, not goldens), no idx_queue (BLIP_Retrieval's). The enqueue wraps around the queue end
(column (ptr + b) mod Q), which is BLIP's slice assignment whenever Q % B == 0, the case BLIP
asserts; the momentum state is kept in float64 (the C engine keeps float32).

Reference: salesforce/BLIP models/blip_pretrain.py (BLIP_Pretrain.forward) and models/med.py
(BertLMHeadModel, CrossEntropyLoss(label_smoothing=0.1)); FarinaMatteo/multiflow
pruners/accumulators.py (blip_general_forward: alpha = 0, loss = ita + itm + lm). Written from
those descriptions; no code copied. Run with /usr/bin/python3 (torch 1.13).
"""

import torch
import torch.nn.functional as F

import blip_ref as R

TEMP_DEFAULT = 0.07     # BLIP's initial temperature; used when the checkpoint has no 'temp'
TEMP_MIN, TEMP_MAX = 0.001, 0.5
LABEL_SMOOTHING = 0.1
ITM_WEIGHT_EPS = 1e-4   # added to the softmax weights before the diagonal is zeroed (reference)


def tie_params(P, cfg):
    """Returns (params: canonical name -> leaf tensor with requires_grad, aliases: canonical name ->
    the canonical name of the leaf it shares). Original layout: every text_decoder.bert.* tensor
    outside '.attention.' is the text encoder's (the file stores equal copies; checked), and the LM
    output matrix is the decoder word embedding (hence the encoder's). Both layouts: the output bias
    alias 'decoder.bias' is 'predictions.bias'."""
    aliases = {}
    cp = "text_decoder.cls.predictions."
    for k in list(P):
        if cfg.layout == "orig" and k.startswith("text_decoder.bert.") and ".attention." not in k:
            ek = "text_encoder." + k[len("text_decoder.bert."):]
            if ek in P:
                assert torch.equal(P[k], P[ek]), "%s differs from the tied %s" % (k, ek)
                aliases[k] = ek
    if cp + "decoder.weight" in P:
        wk = "text_decoder.bert.embeddings.word_embeddings.weight"
        assert torch.equal(P[cp + "decoder.weight"], P[wk]), "LM decoder.weight is not the word embedding"
        aliases[cp + "decoder.weight"] = aliases.get(wk, wk)
    if cp + "decoder.bias" in P:
        aliases[cp + "decoder.bias"] = cp + "bias"
    params = {}
    for k, t in P.items():
        if k not in aliases:
            params[k] = t.detach().clone().requires_grad_(is_parameter(k))
    for k, a in aliases.items():
        params[k] = params[a]
    return params, aliases


def is_parameter(name):
    """Trainable in BLIP_Pretrain: everything but the momentum copies, the queues (buffers) and
    integer position ids (not floating point, never loaded)."""
    return "_m." not in name and name not in ("image_queue", "text_queue")


MOMENTUM = 0.995
MOMENTUM_PREFIXES = (("visual_encoder_m.", "visual_encoder."), ("text_encoder_m.", "text_encoder."),
                     ("vision_proj_m.", "vision_proj."), ("text_proj_m.", "text_proj."))


class Momentum:
    """BLIP_Pretrain's state that evolves without gradients: momentum copies W (keyed by the
    canonical name of the online tensor they mirror), queues [P, Q] and the queue pointer."""

    def __init__(self, P, ptr):
        self.W = {}
        for k, t in P.items():
            for mp, op in MOMENTUM_PREFIXES:
                if k.startswith(mp):
                    self.W[R.orig_to_hf_name(op + k[len(mp):])] = t.detach().clone()
        assert self.W, "no momentum copies"
        self.image_queue = P["image_queue"].detach().clone()
        self.text_queue = P["text_queue"].detach().clone()
        self.ptr = int(ptr)

    def update(self, params):
        """_momentum_update: m = m * 0.995 + θ * (1 - 0.995), θ the online parameters now."""
        for k in self.W:
            self.W[k] = self.W[k] * MOMENTUM + params[k].detach() * (1.0 - MOMENTUM)

    def features(self, cfg, images, ids, mask):
        """Momentum towers (no gradient): normalised image and text features [B, proj]."""
        with torch.no_grad():
            emb = R.vision(self.W, cfg, images)
            txt_h = R.text_stack(self.W, cfg, "text_encoder.", ids, mask)
            return features(self.W, emb, txt_h)

    def enqueue(self, img_m, txt_m):
        """_dequeue_and_enqueue, wrapping at the end of the queue."""
        Q = self.image_queue.shape[1]
        for b in range(img_m.shape[0]):
            self.image_queue[:, (self.ptr + b) % Q] = img_m[b]
            self.text_queue[:, (self.ptr + b) % Q] = txt_m[b]
        self.ptr = (self.ptr + img_m.shape[0]) % Q


def temperature(P):
    """-> (value used, leaf or None). The reference clamps temp's data in place before the forward;
    the gradient is then taken at the clamped value."""
    if "temp" not in P:
        return TEMP_DEFAULT, None
    t = P["temp"].detach().clone().clamp_(TEMP_MIN, TEMP_MAX).requires_grad_(True)
    return t, t


def features(P, image_embeds, text_hidden):
    img = F.normalize(R.linear(image_embeds[:, 0], P, "vision_proj"), dim=-1, eps=1e-12)
    txt = F.normalize(R.linear(text_hidden[:, 0], P, "text_proj"), dim=-1, eps=1e-12)
    return img, txt


def itc_loss(img, txt, temp, image_queue=None, text_queue=None, cols=None):
    """img, txt [B, proj] (unit rows). Columns: the batch's features with gradients stopped (or
    cols = (img_cols, txt_cols) [B, proj] given, for finite differences), then the queue [proj, Q]
    if given. -> (loss, sim_i2t [B, B+Q], sim_t2i [B, B+Q])."""
    B = img.shape[0]
    img_all = (img if cols is None else cols[0]).detach().T
    txt_all = (txt if cols is None else cols[1]).detach().T
    if image_queue is not None:
        img_all = torch.cat([img_all, image_queue], dim=1)
        txt_all = torch.cat([txt_all, text_queue], dim=1)
    sim_i2t = img @ txt_all / temp
    sim_t2i = txt @ img_all / temp
    ar = torch.arange(B)
    loss_i2t = -F.log_softmax(sim_i2t, dim=1)[ar, ar].mean()
    loss_t2i = -F.log_softmax(sim_t2i, dim=1)[ar, ar].mean()
    return (loss_i2t + loss_t2i) / 2, sim_i2t, sim_t2i


def itm_weights(sim):
    """sim [B, >=B] -> sampling weights [B, B]: softmax over the in-batch columns + 1e-4, diagonal 0."""
    B = sim.shape[0]
    w = torch.softmax(sim[:, :B].detach(), dim=1) + ITM_WEIGHT_EPS
    w.fill_diagonal_(0)
    return w


def hardest(w):
    """Row argmax, lowest index on ties."""
    out = []
    for b in range(w.shape[0]):
        row = w[b].tolist()
        out.append(max(range(len(row)), key=lambda j: (row[j], -j)))
    return out


def itm_loss(P, cfg, image_embeds, ids, mask, neg_img, neg_txt, first=None):
    """3B pairs: (text b, image b) label 1, (text b, image neg_img[b]) label 0, (text neg_txt[b],
    image b) label 0; cross-entropy mean over 3B. -> (loss, logits [3B, 2])."""
    first = cfg.itm_first if first is None else first
    ids_e = R.with_first(ids, first)
    ni, nt = torch.tensor(neg_img), torch.tensor(neg_txt)
    ids_all = torch.cat([ids_e, ids_e, ids_e[nt]], dim=0)
    mask_all = torch.cat([mask, mask, mask[nt]], dim=0)
    img_all = torch.cat([image_embeds, image_embeds[ni], image_embeds], dim=0)
    h = R.text_stack(P, cfg, "text_encoder.", ids_all, mask_all, img_all)
    logits = R.linear(h[:, 0], P, "itm_head")
    B = ids.shape[0]
    labels = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)])
    return F.cross_entropy(logits, labels), logits


def lm_targets(ids, mask, prompt_len=0):
    """Targets for logits at t = 0..L-2: ids[t+1] where mask[t+1] == 1, else -100. prompt_len:
    BLIP_Decoder's captioning rule decoder_targets[:, :prompt_length] = -100 (before the shift),
    so the prompt's tokens ([DEC] + its pieces) are never targets."""
    t = ids[:, 1:].long().clone()
    t[mask[:, 1:] == 0] = -100
    if prompt_len > 1:
        t[:, :prompt_len - 1] = -100
    return t


def lm_loss(P, cfg, image_embeds, ids, mask, prompt_len=0):
    """Label-smoothed (0.1) cross-entropy of the decoder's next-token logits, mean over all target
    tokens of the batch. Written out (smoothing spreads 0.1 uniformly over all V classes, the
    target included) and cross-checked against F.cross_entropy."""
    logits = R.decoder(P, cfg, ids, mask, image_embeds)[:, :-1]  # [B, L-1, V]
    tgt = lm_targets(ids, mask, prompt_len)
    lp = F.log_softmax(logits, dim=-1)
    keep = tgt != -100
    nll = -lp[keep].gather(1, tgt[keep].unsqueeze(1)).squeeze(1)
    smooth = -lp[keep].mean(dim=1)
    loss = ((1 - LABEL_SMOOTHING) * nll + LABEL_SMOOTHING * smooth).mean()
    ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                          label_smoothing=LABEL_SMOOTHING)
    tol = 1e-12 if loss.dtype == torch.float64 else 1e-5  # float32: bench/bench_train_torch.py
    assert abs(float(ref) - float(loss)) <= tol * max(1.0, abs(float(loss))), (float(ref), float(loss))
    return loss


def batch_losses(P, cfg, images, ids, mask, losses=("itc", "itm", "lm"), neg_mode="hardest",
                 neg_img=None, neg_txt=None, itc_cols=None, mom=None, lm_prompt_len=0):
    """One batch. P: parameter dict (leaves from tie_params plus non-parameters such as queues);
    images [B,3,R,R] float64, ids/mask [B,L]. neg_mode 'hardest', or 'given' with neg_img/neg_txt
    lists; itc_cols: fixed ITC columns (see itc_loss); mom: a Momentum state, advanced by this
    batch (update, its features as the columns, its queues, enqueue after); lm_prompt_len: the
    captioning prompt's length (lm_targets). -> dict with the
    selected loss tensors, 'neg_img', 'neg_txt', 'temp_leaf' and 'itc_cols' (the columns used)."""
    out = {}
    temp, temp_leaf = temperature(P)
    out["temp_leaf"] = temp_leaf
    image_embeds = R.vision(P, cfg, images)
    need_sim = "itc" in losses or "itm" in losses
    if need_sim:
        text_h = R.text_unimodal(P, cfg, ids, mask)
        img, txt = features(P, image_embeds, text_h)
        q = (P["image_queue"], P["text_queue"]) if "image_queue" in P else (None, None)
        feats_m = None
        if mom is not None:
            mom.update(P)
            feats_m = mom.features(cfg, images, ids, mask)
            q = (mom.image_queue.clone(), mom.text_queue.clone())
            itc_cols = feats_m if itc_cols is None else itc_cols
        l_itc, sim_i2t, sim_t2i = itc_loss(img, txt, temp, *q, cols=itc_cols)
        out["itc_cols"] = (img.detach(), txt.detach()) if itc_cols is None else itc_cols
        if mom is not None:
            mom.enqueue(*feats_m)
        if "itc" in losses:
            out["itc"] = l_itc
    if "itm" in losses:
        if neg_mode == "hardest":
            neg_img = hardest(itm_weights(sim_t2i))  # a negative image for each text
            neg_txt = hardest(itm_weights(sim_i2t))  # a negative text for each image
        out["itm"], _ = itm_loss(P, cfg, image_embeds, ids, mask, neg_img, neg_txt)
        out["neg_img"], out["neg_txt"] = neg_img, neg_txt
    if "lm" in losses:
        out["lm"] = lm_loss(P, cfg, image_embeds, ids, mask, lm_prompt_len)
    return out


def vqa_loss(P, cfg, images, q_ids, q_mask, q_image, a_ids, a_mask, n, weights, pad_id):
    """BLIP_VQA.forward(train=True): question b (image q_image[b]) has the n[b] consecutive answer
    rows of a_ids ([DEC] first, padded), weighted by weights; loss = sum(weights x summed
    label-smoothed LM loss of each answer) / number of questions (BLIP divides by image.size(0),
    one image per question)."""
    image_embeds = R.vision(P, cfg, images)[q_image]
    qs = R.vqa_question_states(P, cfg, q_ids, q_mask, image_embeds)
    rep = torch.tensor(n, dtype=torch.long)
    states = qs.repeat_interleave(rep, dim=0)
    smask = q_mask.repeat_interleave(rep, dim=0)
    logits = R.vqa_decoder_logits(P, cfg, a_ids, a_mask, states, smask)
    per = R.vqa_answer_loss(logits, a_ids, pad_id, LABEL_SMOOTHING)
    return (weights * per).sum() / q_ids.shape[0]

