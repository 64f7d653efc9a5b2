#!/usr/bin/python3
"""Generates data/shapes/: a small deterministic synthetic image-caption set.

Each image is a plain background (white, black or gray) with one or two coloured shapes
(circle, square, triangle; small or large) placed in a 3x3 grid of positions. Each image gets two
different captions that describe it, using only the closed word list WORDS below (a tiny model's
vocabulary is built from exactly that list, so any other word is a bug caught by an assert).

Output (committed): data/shapes/images/NNNN.png and data/shapes/annotations.json, a JSON array of
{"image": "images/0001.png", "caption": ["...", "..."]} (the MULTIFLOW annotation format).

Run by hand with Debian's /usr/bin/python3 (PIL 9.4): /usr/bin/python3 tools/gen_shapes.py
The same seed gives the same files byte for byte.
"""
import json
import os
import random
import re

from PIL import Image, ImageDraw

SEED = 20240601
N_IMAGES = 64
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "shapes")

WORDS = set("""a the in on at of and with left right top bottom center middle corner red green blue
yellow purple orange white black gray circle square triangle small large big image picture shape
background there is""".split())

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 50, 170),
    "orange": (250, 140, 20),
}
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128)}
SHAPES = ["circle", "square", "triangle"]
SIZES = ["small", "large"]

# grid cell (row, col) -> (phrase used after the shape, phrase used with "of the image")
ROWS = ["top", "", "bottom"]
COLS = ["left", "", "right"]


def position_phrases(r, c):
    """Two ways to say where cell (r, c) is: a short one and one that ends before 'of ...'."""
    if r != 1 and c != 1:
        where = "%s %s" % (ROWS[r], COLS[c])
        return ["in the %s corner" % where, "at the %s" % where]
    if r == 1 and c == 1:
        return ["in the center", "in the middle"]
    if r == 1:
        return ["on the %s" % COLS[c], "on the %s" % COLS[c]]
    return ["at the %s" % ROWS[r], "at the %s" % ROWS[r]]


def draw_shape(d, kind, cx, cy, half, colour):
    if kind == "circle":
        d.ellipse([cx - half, cy - half, cx + half, cy + half], fill=colour)
    elif kind == "square":
        d.rectangle([cx - half, cy - half, cx + half, cy + half], fill=colour)
    else:
        d.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)


def check(caption):
    for w in re.findall(r"[a-z]+|[^a-z ]", caption):
        assert w in WORDS or w in (".", ","), "word %r not in the vocabulary: %s" % (w, caption)


def describe_one(rng, s, bg):
    size_word = s["size"] if s["size"] == "small" or rng.random() < 0.5 else "big"
    near, alt = position_phrases(*s["cell"])
    options = [
        "a %s %s %s %s." % (size_word, s["colour"], s["shape"], near),
        "there is a %s %s %s of the image." % (s["colour"], s["shape"], alt),
        "a %s %s on a %s background, %s." % (s["colour"], s["shape"], bg, near),
        "the picture of a %s %s %s." % (s["colour"], s["shape"], alt),
        "a %s shape %s of the picture." % (s["colour"], near),
    ]
    return rng.sample(options, 2)


def describe_two(rng, s1, s2, bg):
    n1, a1 = position_phrases(*s1["cell"])
    n2, a2 = position_phrases(*s2["cell"])
    options = [
        "a %s %s and a %s %s." % (s1["colour"], s1["shape"], s2["colour"], s2["shape"]),
        "a %s %s %s and a %s %s %s." % (s1["colour"], s1["shape"], n1, s2["colour"], s2["shape"], n2),
        "there is a %s %s and a %s %s in the image." % (s1["size"], s1["shape"], s2["size"], s2["shape"]),
        "a %s background with a %s %s and a %s %s." % (bg, s1["colour"], s1["shape"], s2["colour"], s2["shape"]),
        "a %s %s %s of the picture, and a %s %s." % (s1["colour"], s1["shape"], a1, s2["colour"], s2["shape"]),
    ]
    return rng.sample(options, 2)


def main():
    rng = random.Random(SEED)
    os.makedirs(os.path.join(ROOT, "images"), exist_ok=True)
    annotations = []
    for i in range(N_IMAGES):
        w, h = (96, 96) if i % 4 else rng.choice([(120, 90), (90, 120), (128, 96)])
        bg = rng.choice(sorted(BACKGROUNDS))
        n_shapes = 1 if i % 3 else 2
        cells = rng.sample([(r, c) for r in range(3) for c in range(3)], n_shapes)
        colours = rng.sample(sorted(COLOURS), n_shapes)
        shapes = []
        for k in range(n_shapes):
            shapes.append({"cell": cells[k], "colour": colours[k], "shape": rng.choice(SHAPES),
                           "size": rng.choice(SIZES)})
        im = Image.new("RGB", (w, h), BACKGROUNDS[bg])
        d = ImageDraw.Draw(im)
        cw, ch = w / 3.0, h / 3.0
        for s in shapes:
            r, c = s["cell"]
            full = min(cw, ch)
            half = int(full * (0.22 if s["size"] == "small" else 0.42))
            cx = int(cw * (c + 0.5)) + rng.randint(-2, 2)
            cy = int(ch * (r + 0.5)) + rng.randint(-2, 2)
            draw_shape(d, s["shape"], cx, cy, half, COLOURS[s["colour"]])
        name = "images/%04d.png" % (i + 1)
        im.save(os.path.join(ROOT, name), "PNG", optimize=True)
        if n_shapes == 1:
            caps = describe_one(rng, shapes[0], bg)
        else:
            caps = describe_two(rng, shapes[0], shapes[1], bg)
        assert caps[0] != caps[1]
        for cap in caps:
            check(cap)
        annotations.append({"image": name, "caption": caps})
    with open(os.path.join(ROOT, "annotations.json"), "w") as f:
        json.dump(annotations, f, indent=1)
        f.write("\n")
    total = 0
    for dirpath, _, files in os.walk(ROOT):
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in files)
    print("wrote %d images, %d bytes under %s" % (N_IMAGES, total, ROOT))


if __name__ == "__main__":
    main()
