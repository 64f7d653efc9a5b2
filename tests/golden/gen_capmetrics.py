#!/usr/bin/python3
"""tests/golden/gen_capmetrics.py: golden BLEU-1..4, ROUGE-L and CIDEr-D for tests/eval/test_capmetrics.c.

An independent Python re-implementation of pycocoevalcap's scorers (tylin/coco-caption:
bleu/bleu_scorer.py with compute_score(option='closest'), rouge/rouge.py, cider/cider_scorer.py),
written from their definitions with numpy only, run on committed candidate/reference sets that are
already tokenised (what the scorers receive after the PTB tokenizer step). The sets cover repeated
n-grams, empty and one-word candidates, candidates longer than every reference, several and single
references, an empty reference, a one-image corpus (CIDEr's log(1) = 0), a short corpus (brevity
penalty) and seeded random corpora.

It also writes the inputs of tests/cli/metrics.sh: cli_pred.json (30 predictions as raw text:
capital letter, comma, final period, which the COCO tokenisation removes), cli_refs.json (their
references as lists, plus 5 images without a prediction), cli_refs_coco.jsonl (the same references
one record per caption, JSON Lines) and cli_expected.json (the scores of the 30 predicted images
only, their tokenised forms through the scorers above).

Usage: /usr/bin/python3 tests/golden/gen_capmetrics.py   (writes tests/golden/capmetrics/*)
"""
import json
import math
import os
from collections import Counter

import numpy as np

N = 4
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "capmetrics", "sets.json")


def counts(sentence):
    """n-gram counts for n = 1..4 of a whitespace-split sentence (str.split(): '' has no words)."""
    w = sentence.split()
    c = Counter()
    for n in range(1, N + 1):
        for i in range(len(w) - n + 1):
            c[tuple(w[i:i + n])] += 1
    return len(w), c


def bleu(images):
    """Corpus BLEU-1..4 with the 'closest' effective reference length, and the per-image lists."""
    tiny, small = 1e-15, 1e-9
    tot_guess, tot_correct = [0] * N, [0] * N
    tot_test, tot_ref = 0, 0
    per = []
    for cand, refs in images:
        testlen, cc = counts(cand)
        maxref = {}
        lens = []
        for r in refs:
            rl, rc = counts(r)
            lens.append(rl)
            for g, k in rc.items():
                maxref[g] = max(maxref.get(g, 0), k)
        reflen = min((abs(l - testlen), l) for l in lens)[1]
        guess = [max(0, testlen - k) for k in range(N)]
        correct = [0] * N
        for g, k in cc.items():
            correct[len(g) - 1] += min(maxref.get(g, 0), k)
        b, row = 1.0, []
        for k in range(N):
            b *= (correct[k] + tiny) / (guess[k] + small)
            row.append(b ** (1.0 / (k + 1)))
        ratio = (testlen + tiny) / (reflen + small)
        if ratio < 1:
            row = [x * math.exp(1 - 1 / ratio) for x in row]
        per.append(row)
        tot_test += testlen
        tot_ref += reflen
        for k in range(N):
            tot_guess[k] += guess[k]
            tot_correct[k] += correct[k]
    b, corpus = 1.0, []
    for k in range(N):
        b *= (tot_correct[k] + tiny) / (tot_guess[k] + small)
        corpus.append(b ** (1.0 / (k + 1)))
    ratio = (tot_test + tiny) / (tot_ref + small)
    if ratio < 1:
        corpus = [x * math.exp(1 - 1 / ratio) for x in corpus]
    return corpus, per


def lcs(a, b):
    t = np.zeros((len(a) + 1, len(b) + 1), dtype=np.int64)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            t[i, j] = t[i - 1, j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1, j], t[i, j - 1])
    return int(t[len(a), len(b)])


def rouge(images, beta=1.2):
    per = []
    for cand, refs in images:
        c = cand.split(" ")  # split(" "): an empty caption is one empty token, as the reference
        prec, rec = [], []
        for r in refs:
            t = r.split(" ")
            l = lcs(t, c)
            prec.append(l / float(len(c)))
            rec.append(l / float(len(t)))
        p, r = max(prec), max(rec)
        per.append(((1 + beta ** 2) * p * r) / float(r + beta ** 2 * p) if p != 0 and r != 0 else 0.0)
    return float(np.mean(np.array(per))), per


def cider(images, sigma=6.0):
    df = Counter()
    for _, refs in images:
        for g in set(g for r in refs for g in counts(r)[1]):
            df[g] += 1
    log_n = np.log(float(len(images)))

    def vec(sentence):
        _, c = counts(sentence)
        v = [dict() for _ in range(N)]
        norm = [0.0] * N
        length = 0
        for g, tf in c.items():
            n = len(g) - 1
            v[n][g] = float(tf) * (log_n - np.log(max(1.0, df[g])))
            norm[n] += v[n][g] ** 2
            if n == 1:  # the reference counts length at n-gram index 1: bigrams
                length += tf
        return v, [np.sqrt(x) for x in norm], length

    per = []
    for cand, refs in images:
        vc, nc, lc = vec(cand)
        score = np.zeros(N)
        for r in refs:
            vr, nr, lr = vec(r)
            delta = float(lc - lr)
            val = np.zeros(N)
            for n in range(N):
                for g, w in vc[n].items():
                    val[n] += min(w, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0)
                if nc[n] != 0 and nr[n] != 0:
                    val[n] /= nc[n] * nr[n]
                val[n] *= np.e ** (-(delta ** 2) / (2 * sigma ** 2))
            score += val
        per.append(float(np.mean(score) / len(refs) * 10.0))
    return float(np.mean(np.array(per))), per


def hand_sets():
    edge = [
        ("a a a a a", ["a a b", "a c"]),                                   # repeated unigrams
        ("the dog the dog the dog", ["the dog runs", "a dog the dog"]),    # repeated bigrams
        ("", ["a dog runs on the grass", "dog"]),                          # empty candidate
        ("dog", ["a dog runs on the grass", "a brown dog"]),               # one word
        ("a man riding a wave on top of a surfboard in the ocean near the beach at sunset",
         ["a man surfing", "a surfer rides a wave"]),                      # longer than every reference
        ("two cats sleep on a red couch",
         ["two cats sleeping on a couch", "a pair of cats on a red sofa", "cats asleep on a couch",
          "two kittens lying on a red couch", "the cats are sleeping", "two cats on a couch"]),  # six refs
        ("a red bus", ["a red bus"]),                                      # exact, single reference
        ("a bird", ["", "a small bird"]),                                  # an empty reference
    ]
    one = [("a dog runs on the grass", ["a dog running on grass", "the dog runs"])]
    short = [("a dog", ["a dog runs on the grass", "a brown dog plays"]),
             ("cat", ["a cat sits on a mat", "the cat is sitting"]),
             ("a man on a horse", ["a man rides a brown horse in a field"])]
    empty_only = [("", ["a dog"]), ("a dog", [""]), ("", ["", "a cat"])]  # "" vs "": ROUGE-L 1
    return [("edge", edge), ("one_image", one), ("short_corpus", short), ("empty_pairs", empty_only)]


def random_set(seed, n_images, vocab, max_len):
    rng = np.random.default_rng(seed)
    words = ["w%d" % i for i in range(vocab)]
    p = 1.0 / np.arange(1, vocab + 1)  # Zipf-like, so n-grams repeat and match
    p /= p.sum()

    def sent(lo, hi):
        return " ".join(rng.choice(words, size=int(rng.integers(lo, hi + 1)), p=p))

    images = []
    for _ in range(n_images):
        refs = [sent(1, max_len) for _ in range(int(rng.integers(1, 7)))]
        cand = refs[0] if rng.random() < 0.1 else sent(0, max_len + 4)
        images.append((cand, refs))
    return images


def raw(sentence):
    """'w1 w2 w3' -> 'W1, w2 w3.': what the tokenisation must undo."""
    w = sentence.split(" ")
    w[0] = w[0][:1].upper() + w[0][1:]
    if len(w) > 1:
        w[0] += ","
    return " ".join(w) + "."


def write_cli_set(folder):
    images = [(c if c else "w1", refs) for c, refs in random_set(3, 35, 12, 12)]
    scored, extra = images[:30], images[30:]
    names = ["val/%03d.png" % i for i in range(len(images))]
    pred = [{"image": names[i], "caption": raw(c)} for i, (c, _) in enumerate(scored)]
    refs = [{"image": names[i], "caption": [raw(r) for r in rs]} for i, (_, rs) in enumerate(images)]
    b, _ = bleu(scored)
    r, _ = rouge(scored)
    c, _ = cider(scored)
    with open(os.path.join(folder, "cli_pred.json"), "w") as f:
        json.dump(pred, f, indent=1)
        f.write("\n")
    with open(os.path.join(folder, "cli_refs.json"), "w") as f:
        json.dump(refs, f, indent=1)
        f.write("\n")
    with open(os.path.join(folder, "cli_refs_coco.jsonl"), "w") as f:
        for rec in refs:
            for cap in rec["caption"]:
                f.write(json.dumps({"image": rec["image"], "caption": cap}) + "\n")
    with open(os.path.join(folder, "cli_expected.json"), "w") as f:
        json.dump({"images": len(scored), "bleu": b, "rouge_l": r, "cider": c}, f, indent=1)
        f.write("\n")
    print("cli set: %d predicted images (+%d reference-only)  BLEU-4 %.6f  ROUGE-L %.6f  CIDEr-D %.6f"
          % (len(scored), len(extra), b[3], r, c))
    assert len(extra) == 5


def main():
    sets = hand_sets()
    sets.append(("random_small_vocab", random_set(1, 40, 8, 10)))
    sets.append(("random_mid_vocab", random_set(2, 120, 40, 16)))
    out = []
    for name, images in sets:
        b, bp = bleu(images)
        r, rp = rouge(images)
        c, cp = cider(images)
        out.append({
            "name": name,
            "images": [{"candidate": cand, "refs": refs} for cand, refs in images],
            "bleu": b, "rouge_l": r, "cider": c,
            "per_image": [bp[i] + [rp[i], cp[i]] for i in range(len(images))],
        })
        print("%-20s %3d images  BLEU %s  ROUGE-L %.6f  CIDEr-D %.6f"
              % (name, len(images), " ".join("%.6f" % x for x in b), r, c))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"generator": "tests/golden/gen_capmetrics.py", "sets": out}, f, indent=1)
        f.write("\n")
    write_cli_set(os.path.dirname(OUT))


if __name__ == "__main__":
    main()
