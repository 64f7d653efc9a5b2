"""Adds BLIP_Pretrain's momentum copies and queues to an original-layout checkpoint, for measuring
what the momentum path of the pretraining losses costs (bench/run_momentum.sh).

    /usr/bin/python3 bench/add_momentum.py SRC_DIR DST_DIR [--queue 57600] [--noise 0.002]

What it does: reads SRC_DIR/model.safetensors (original Salesforce layout, e.g. the one
`bench_forward --mode calib` writes), writes DST_DIR/model.safetensors with every tensor of SRC
plus visual_encoder_m.*, text_encoder_m.*, vision_proj_m.*, text_proj_m.* (the online tensor plus
normal(0, noise) noise, so that using them by mistake shows), image_queue/text_queue [P, Q] of
unit columns (as BLIP_Pretrain initialises them), queue_ptr = 0 and temp = 0.07 when absent;
copies vocab.txt. Seeded: the same input gives the same bytes.

What it deliberately does not do: no decoder changes, no .pth, no checks beyond the names it needs.
Reference: salesforce/BLIP models/blip_pretrain.py (model_pairs, copy_params, the queue buffers).
"""

import os
import shutil
import sys
from collections import OrderedDict

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
import blip_ref as R  # noqa: E402

PAIRS = (("visual_encoder.", "visual_encoder_m."), ("text_encoder.", "text_encoder_m."),
         ("vision_proj.", "vision_proj_m."), ("text_proj.", "text_proj_m."))


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    if len(args) < 2:
        sys.exit(__doc__)
    src, dst = args[0], args[1]
    Q = int(opt.get("--queue", 57600))
    noise = float(opt.get("--noise", 0.002))
    g = torch.Generator().manual_seed(7)
    T, meta = R.st_read(os.path.join(src, "model.safetensors"))
    out = OrderedDict(T)
    for k, t in T.items():
        for a, b in PAIRS:
            if k.startswith(a) and t.is_floating_point():
                out[b + k[len(a):]] = t + noise * torch.randn(t.shape, generator=g, dtype=t.dtype)
    P = T["vision_proj.weight"].shape[0]
    for name in ("image_queue", "text_queue"):
        q = torch.randn((P, Q), generator=g)
        out[name] = q / q.norm(dim=0, keepdim=True)
    out["queue_ptr"] = torch.zeros(1, dtype=torch.int64)
    if "temp" not in out:
        out["temp"] = torch.tensor(0.07, dtype=torch.float32)
    os.makedirs(dst, exist_ok=True)
    R.st_write(os.path.join(dst, "model.safetensors"), out, meta)
    shutil.copy(os.path.join(src, "vocab.txt"), os.path.join(dst, "vocab.txt"))
    print("%s: %d tensors (%d momentum copies), queues [%d, %d]" % (
        dst, len(out), sum(1 for k in out if "_m." in k), P, Q))


if __name__ == "__main__":
    main(sys.argv[1:])
