#!/usr/bin/python3
"""Checks a pruned checkpoint the way a PyTorch user would see it (run by hand; CI runs the C
equivalent, tests/prune/test_prune_output.c).

    /usr/bin/python3 tests/golden/check_pruned.py ORIGINAL_MODEL PRUNED_RUN_DIR

Loads every shard of both with torch, and checks: every prunable tensor (a name in
masks.safetensors) equals W * mask; tensors tied to a prunable one (the original layout's
text_decoder copies of encoder weights, momentum copies *_m) equal W * (mask of the tensor they
copy); every other tensor is bit-identical; dtypes and shapes are unchanged. Exits 1 on failure.
"""
import glob
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blip_ref import st_read  # noqa: E402


def load_all(path):
    files = [path] if os.path.isfile(path) else sorted(
        f for f in glob.glob(os.path.join(path, "*.safetensors"))
        if os.path.basename(f) not in ("masks.safetensors", "scores.safetensors", "stats.safetensors"))
    out = {}
    for f in files:
        out.update(st_read(f)[0])
    return out


def tied_source(name, masks):
    """The prunable tensor whose mask `name` receives, or None."""
    cands = []
    if name.startswith("text_decoder.bert."):
        cands.append("text_encoder." + name[len("text_decoder.bert."):])
    for m, o in (("visual_encoder_m.", "visual_encoder."), ("text_encoder_m.", "text_encoder.")):
        if name.startswith(m):
            cands.append(o + name[len(m):])
    for c in cands:
        if c in masks:
            return c
    return None


def main():
    orig_path, run = sys.argv[1], sys.argv[2]
    orig, pruned = load_all(orig_path), load_all(run)
    masks = st_read(os.path.join(run, "masks.safetensors"))[0]
    bad = 0
    n_mask = n_tied = n_same = 0
    if set(orig) != set(pruned):
        print("tensor names differ:", sorted(set(orig) ^ set(pruned)))
        bad += 1
    for name, w in orig.items():
        p = pruned.get(name)
        if p is None:
            continue
        if p.dtype != w.dtype or p.shape != w.shape:
            print(f"{name}: dtype/shape changed {w.dtype}{list(w.shape)} -> {p.dtype}{list(p.shape)}")
            bad += 1
            continue
        src = name if name in masks else tied_source(name, masks)
        if src is None:
            ok = torch.equal(w.view(torch.uint8) if w.dtype == torch.bfloat16 else w, p.view(torch.uint8) if p.dtype == torch.bfloat16 else p) \
                if w.numel() else True
            n_same += 1
        else:
            keep = masks[src].to(torch.bool)
            want = torch.where(keep, w, torch.zeros((), dtype=w.dtype))
            ok = torch.equal(want, p) and bool((p[~keep] == 0).all())
            if src == name:
                n_mask += 1
            else:
                n_tied += 1
        if not ok:
            print(f"{name}: mismatch")
            bad += 1
    sp = sum(int((~m.to(torch.bool)).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    print(f"{run}: {n_mask} masked tensors (sparsity {sp:.4f}), {n_tied} tied/momentum copies masked, "
          f"{n_same} identical, {bad} problems")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
