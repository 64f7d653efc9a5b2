#!/usr/bin/python3
"""Golden outputs for tests/text/test_caption.c: the two pre_caption variants of
spec/models.md §3.1 written with Python's re and str.lower as the references do. Run by hand with
/usr/bin/python3; tests/data/caption_golden.json is committed."""
import json
import os
import re
import unicodedata

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def pre_caption_multiflow(caption, max_words):
    caption = re.sub(r"([,.'!?\"()*#:;~])", "", caption.lower())
    caption = caption.replace("-", " ").replace("/", " ").replace("<person>", "person")
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n")
    caption = caption.strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def pre_caption_blip(caption, max_words):
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n")
    caption = caption.strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


TEXTS = [
    "A man riding a horse!",
    "  A <person> in a red T-shirt, holding an umbrella/parasol...  ",
    "What's this? \"Quoted\" (parenthesised) *star* #tag: yes; ~tilde~",
    "Two  dogs\t\tplaying\n\nin the  snow\n\n",
    "one\ttab and a single\nnewline\n",
    "Caf\u00e9 \u00c0 LA CR\u00c8ME \u0130stanbul \u039f\u0394\u039f\u03a3 \u1e9e",
    "non\u00a0breaking\u3000spaces\u2028and\u2029separators",
    "one two three four five six seven eight nine ten eleven twelve",
    "word-word/word -- end",
    "<PERSON> and <person> and <person",
    "\u2019curly\u2019 \u201cquotes\u201d stay",
    "...",
    "!!! ???",
    " \t ",
]


def main():
    cases = []
    for t in TEXTS:
        for style, fn, mw in (("multiflow", pre_caption_multiflow, 40),
                              ("multiflow", pre_caption_multiflow, 5),
                              ("blip", pre_caption_blip, 50),
                              ("blip", pre_caption_blip, 5)):
            out = fn(t, mw)
            # the project rejects empty and whitespace-only results (caption.h)
            cases.append({"text": t, "style": style, "max_words": mw,
                          "want": None if out.strip() == "" or out.isspace() else out})
    doc = {"generator": "tests/golden/gen_caption.py", "unicode": unicodedata.unidata_version,
           "cases": cases}
    with open(os.path.join(DATA, "caption_golden.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
