#!/usr/bin/python3
"""bench/world_peer.py: the world's scenes drawn by Python, from docs/world.md and scenes.jsonl alone.

    /usr/bin/python3 bench/world_peer.py DIR [N]

Two peers of the C generator (bench/bench_world.c), each on the first N records of DIR/scenes.jsonl
(default 1000), single-threaded:

- exact: a numpy re-implementation of docs/world.md's drawing rules (integer arithmetic, 4x4
  samples, even-odd rule, blend). It must reproduce every pixel of the C generator's PNGs: that
  checks the document is complete. Timed with PNG files written by Pillow (compress_level 1).
- pillow: what a Python generator would usually do: Pillow ImageDraw at 4x the size (polygon,
  ellipse), a box-filter downscale, PNG files (compress_level 1). Not pixel-identical, no noise or
  gradient texture: a lower bound on a Python generator's cost.

Prints one line per peer: images per second, and for exact the number of images whose pixels
differ from the C output (0 expected). Exit status 1 when any differs.
"""
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

HSV = [(0, 220, 230), (125, 210, 180), (220, 220, 235), (54, 230, 240), (28, 240, 250), (282, 180, 200),
       (330, 110, 250), (0, 0, 245), (0, 0, 128), (0, 0, 30)]
COLORS = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "gray", "black"]
SHAPES = ["circle", "square", "triangle", "diamond", "star", "cross"]
POSITIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
OUTLINES = {
    "square": [(-820, -820), (820, -820), (820, 820), (-820, 820)],
    "triangle": [(0, -1024), (887, 512), (-887, 512)],
    "diamond": [(0, -1024), (640, 0), (0, 1024), (-640, 0)],
    "star": [(0, -1024), (253, -348), (974, -316), (409, 133), (602, 828), (0, 430), (-602, 828), (-409, 133),
             (-974, -316), (-253, -348)],
    "cross": [(-300, -1024), (300, -1024), (300, -300), (1024, -300), (1024, 300), (300, 300), (300, 1024),
              (-300, 1024), (-300, 300), (-1024, 300), (-1024, -300), (-300, -300)],
}
COS = [16384, 16382, 16374, 16362, 16344, 16322, 16294, 16262, 16225, 16182, 16135, 16083, 16026, 15964, 15897, 15826]
SIN = [0, 286, 572, 857, 1143, 1428, 1713, 1997, 2280, 2563, 2845, 3126, 3406, 3686, 3964, 4240]
CELL = [171, 512, 853]
M64 = (1 << 64) - 1


def hsv_rgb(h, s, v):
    h %= 360
    s = max(0, min(255, s))
    v = max(0, min(255, v))
    if s == 0:
        return (v, v, v)
    region, rem = divmod(h, 60)
    p = v * (255 - s) // 255
    q = v * (255 - s * rem // 60) // 255
    t = v * (255 - s * (60 - rem) // 60) // 255
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][region]


def mix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def background(rec, S):
    bg = rec["background"]
    c1 = np.array(hsv_rgb(*HSV[COLORS.index(bg["colors"][0])]), dtype=np.int64)
    c2 = np.array(hsv_rgb(*HSV[COLORS.index(bg["colors"][-1])]), dtype=np.int64)
    y, x = np.mgrid[0:S, 0:S].astype(np.int64)
    kind = bg["kind"]
    if kind == "plain":
        return np.broadcast_to(c1, (S, S, 3)).copy()
    if kind == "gradient":
        t = (x if bg["dir"] == 0 else y)[..., None]
        return (c1 * (S - 1 - t) + c2 * t + (S - 1) // 2) // (S - 1)
    if kind == "noise":
        cells = (y * 32 // S) * 32 + x * 32 // S
        table = np.array([mix64((bg["noise_seed"] << 32) ^ c) % 49 - 24 for c in range(32 * 32)], dtype=np.int64)
        return np.clip(c1 + table[cells][..., None], 0, 255)
    X, Y = 1024 * x + 512, 1024 * y + 512
    t = [Y, X, (X + Y) * 181 // 256][bg["dir"]]
    half = bg["period"] * S // 2
    return np.where(((t // half) % 2 == 0)[..., None], c1, c2)


def draw_object(img, o, S):
    pos = POSITIONS.index(o["position"])
    cx = (CELL[pos % 3] + o["dx"]) * S
    cy = (CELL[pos // 3] + o["dy"]) * S
    r = (128 if o["size"] == "large" else 80) * (100 + o["scale"]) * S // 100
    h, s, v = HSV[COLORS.index(o["color"])]
    col = np.array(hsv_rgb(h + o["hue"], s + o["saturation"] if s else 0, v + o["value"]), dtype=np.int64)
    reach = r * 5 // 4 + 1024
    x0, x1 = max(0, (cx - reach) // 1024), min(S - 1, (cx + reach) // 1024)
    y0, y1 = max(0, (cy - reach) // 1024), min(S - 1, (cy + reach) // 1024)
    if x0 > x1 or y0 > y1:
        return
    ys, xs = np.arange(y0, y1 + 1, dtype=np.int64), np.arange(x0, x1 + 1, dtype=np.int64)
    sub = 128 + 256 * np.arange(4, dtype=np.int64)
    py = (ys[:, None, None, None] * 1024 + sub[None, :, None, None])  # (h, 4, 1, 1)
    px = (xs[None, None, :, None] * 1024 + sub[None, None, None, :])  # (1, 1, w, 4)
    py, px = np.broadcast_arrays(py, px)
    if o["shape"] == "circle":
        R = r * 920 // 1024
        inside = (px - cx) ** 2 + (py - cy) ** 2 <= R * R
    else:
        d = o["rotation"]
        C, Sn = COS[abs(d)], (SIN[abs(d)] if d >= 0 else -SIN[abs(d)])
        vs = [(cx + (r * (a * C - b * Sn)) // (1024 * 16384), cy + (r * (a * Sn + b * C)) // (1024 * 16384))
              for a, b in OUTLINES[o["shape"]]]
        inside = np.zeros(px.shape, dtype=bool)
        for i in range(len(vs)):
            (xi, yi), (xj, yj) = vs[i], vs[i - 1]
            crosses = (yi > py) != (yj > py)
            lhs, rhs = (px - xi) * (yj - yi), (xj - xi) * (py - yi)
            inside ^= crosses & ((lhs < rhs) if yj > yi else (lhs > rhs))
    k = inside.sum(axis=(1, 3))  # (h, w)
    region = img[y0:y1 + 1, x0:x1 + 1]
    img[y0:y1 + 1, x0:x1 + 1] = (region * (16 - k[..., None]) + col * k[..., None] + 8) // 16


def render_exact(rec, S):
    img = background(rec, S).astype(np.int64)
    for o in rec["objects"]:
        draw_object(img, o, S)
    return img.astype(np.uint8)


def render_pillow(rec, S):
    """The usual Python way: ImageDraw at 4x, box downscale. Not pixel-identical to the C output."""
    k = 4
    bg = rec["background"]
    im = Image.new("RGB", (S * k, S * k), hsv_rgb(*HSV[COLORS.index(bg["colors"][0])]))
    d = ImageDraw.Draw(im)
    if bg["kind"] == "stripes":
        c2 = hsv_rgb(*HSV[COLORS.index(bg["colors"][1])])
        w = bg["period"] * S * k // 2048
        for i in range(1, 2 * S * k // max(w, 1), 2):
            if bg["dir"] == 1:
                d.rectangle([i * w, 0, i * w + w - 1, S * k], fill=c2)
            else:
                d.rectangle([0, i * w, S * k, i * w + w - 1], fill=c2)
    for o in rec["objects"]:
        pos = POSITIONS.index(o["position"])
        cx = (CELL[pos % 3] + o["dx"]) * S * k / 1024
        cy = (CELL[pos // 3] + o["dy"]) * S * k / 1024
        r = (128 if o["size"] == "large" else 80) * (100 + o["scale"]) / 100 * S * k / 1024
        h, s, v = HSV[COLORS.index(o["color"])]
        col = hsv_rgb(h + o["hue"], s + o["saturation"] if s else 0, v + o["value"])
        if o["shape"] == "circle":
            d.ellipse([cx - 0.9 * r, cy - 0.9 * r, cx + 0.9 * r, cy + 0.9 * r], fill=col)
        else:
            d.polygon([(cx + a * r / 1024, cy + b * r / 1024) for a, b in OUTLINES[o["shape"]]], fill=col)
    return im.resize((S, S), Image.BOX)


def main():
    root = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with open(os.path.join(root, "world.json")) as f:
        S = json.load(f)["size"]
    recs = []
    with open(os.path.join(root, "scenes.jsonl")) as f:
        for line in f:
            recs.append(json.loads(line))
            if len(recs) == n:
                break
    # exact: pixels against the C generator's PNGs (untimed), then timed with PNG encoding
    bad = 0
    for rec in recs:
        want = np.asarray(Image.open(os.path.join(root, rec["image"])).convert("RGB"))
        if not np.array_equal(render_exact(rec, S), want):
            bad += 1
            if bad <= 3:
                print("world_peer: %s differs from the C output" % rec["image"], file=sys.stderr)
    out = tempfile.mkdtemp(prefix="mf-world-peer-")
    n = len(recs)
    t0, c0 = time.perf_counter(), time.process_time()
    for i, rec in enumerate(recs):  # files, as the generator writes them
        Image.fromarray(render_exact(rec, S)).save(os.path.join(out, "e%06d.png" % i), compress_level=1)
    t1, c1 = time.perf_counter(), time.process_time()
    print("peer exact (numpy + Pillow PNG, 1 thread): %.0f images/s wall, %.0f images/s per CPU-second; "
          "%d of %d images differ from the C output" % (n / (t1 - t0), n / (c1 - c0), bad, n))
    t0, c0 = time.perf_counter(), time.process_time()
    for i, rec in enumerate(recs):
        render_pillow(rec, S).save(os.path.join(out, "p%06d.png" % i), compress_level=1)
    t1, c1 = time.perf_counter(), time.process_time()
    print("peer pillow (ImageDraw 4x + box resize + PNG, 1 thread): %.0f images/s wall, %.0f images/s per CPU-second"
          % (n / (t1 - t0), n / (c1 - c0)))
    shutil.rmtree(out)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
