#!/usr/bin/python3
"""Golden ids for tests/text/test_wordpiece.c.

An independent re-implementation of the HF BertTokenizer (slow, do_lower_case=True) rules of
spec/models.md §3.2 with Python's own str.lower/str.split and unicodedata (its Unicode version is
recorded in the output), applied to tests/data/vocab_tiny.txt (the project's own
vocabulary; the real bert vocab is not shipped). Run by hand with /usr/bin/python3; the output
tests/data/wordpiece_golden.json is committed so CI needs no Python.
"""
import json
import os
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def load_vocab(path):
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f.readlines()):
            vocab[line.rstrip("\n")] = i  # later duplicates win, as HF load_vocab
    return vocab


def is_ws(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def punc_split(tok):
    out, cur = [], []
    for ch in tok:
        if is_punct(ch):
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(ch)
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def basic(text):
    text = "".join(" " if is_ws(c) else c for c in text
                   if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c)))
    text = "".join(" %s " % c if is_cjk(ord(c)) else c for c in text)
    words = []
    for tok in text.strip().split():
        tok = tok.lower()
        tok = "".join(c for c in unicodedata.normalize("NFD", tok)
                      if unicodedata.category(c) != "Mn")
        words.extend(punc_split(tok))
    return " ".join(words).split()


def wordpiece(word, vocab):
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end, cur = len(word), None
        while start < end:
            sub = word[start:end]
            if start > 0:
                sub = "##" + sub
            if sub in vocab:
                cur = sub
                break
            end -= 1
        if cur is None:
            return ["[UNK]"]
        pieces.append(cur)
        start = end
    return pieces


CASES = [
    ("i like strawberries", 35),
    ("A picture of a woman with a dog sitting in a beach", 35),
    ("Café-au-lait, naïve résumé!", 35),
    ("un-affable 東京 x2.5", 35),
    ("a\x1fb\x07c\u200bd\ufffde", 16),           # US, BEL, ZWSP (Cf), U+FFFD dropped
    ("a\tdog\nin\r\na\u00a0beach\u3000i\u2028like", 16),  # TAB LF CR NBSP ideographic space, U+2028
    ("$5+3<4=7>2^x`y|z~", 24),                   # ASCII symbols Unicode does not call punctuation
    ("\u00abquoted\u00bb \u2014 \u00bfi?", 16),  # Pi Pf Pd Po
    ("\u00a92020 \u20ac5", 16),                  # So, Sc: not punctuation, stay in the word
    ("\u039f\u0394\u039f\u03a3 \u03a3\u0391\u03a3 \u03c3\u03b1\u03c3 \u0391\u03a3\u0391", 16),
    ("\u0130stanbul HELLO World", 16),           # U+0130 lower-cases to i + U+0307
    ("\u30ab\u30bf\u30ab\u30ca \ud55c\uad6d", 16),  # kana and Hangul are not "CJK": one word each
    ("\u0301 a \u0301\u0301 i", 16),             # a token of combining marks only vanishes
    ("[ENC] token [SEP]", 16),                   # special literals are not recognised
    ("xylophone a dogs", 16),                    # whole-word [UNK]; "dogs" -> dog ##s
    ("a" * 100, 128),                            # 100 code points: still WordPiece'd
    ("a" * 101 + " i", 8),                       # 101 code points: [UNK]
    ("\u00e1" * 100, 8),                         # 100 chars after NFD-strip (200 before)
    ("a man riding a horse on a beach with a dog", 8),  # truncation: first 6 pieces kept
    ("i", 2),                                    # no room for pieces: [CLS] [SEP]
    ("", 6),                                     # empty text: [CLS] [SEP] + padding
    ("  \t ", 6),
]


def main():
    vocab = load_vocab(os.path.join(DATA, "vocab_tiny.txt"))
    out = []
    for text, max_len in CASES:
        words = basic(text)
        pieces = [p for w in words for p in wordpiece(w, vocab)]
        ids = [vocab["[CLS]"]] + [vocab[p] for p in pieces][: max_len - 2] + [vocab["[SEP]"]]
        n_real = len(ids)
        ids += [vocab["[PAD]"]] * (max_len - n_real)
        nosep = ([vocab["[CLS]"]] + [vocab[p] for p in pieces][: max_len - 1])
        nosep += [vocab["[PAD]"]] * (max_len - len(nosep))
        out.append({"text": text, "max_len": max_len, "basic": " ".join(words),
                    "pieces": pieces, "ids": ids, "mask": [1] * n_real + [0] * (max_len - n_real),
                    "ids_nosep": nosep})
    doc = {"generator": "tests/golden/gen_wordpiece.py",
           "unicode": unicodedata.unidata_version, "vocab": "tests/data/vocab_tiny.txt",
           "cases": out}
    with open(os.path.join(DATA, "wordpiece_golden.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
