#!/usr/bin/python3
"""Writes the seed corpus tests/fuzz/corpus/safetensors/ (run by hand:
/usr/bin/python3 tests/golden/gen_fuzz_safetensors.py). A few small valid files covering every
dtype, metadata, scalars, zero-size tensors and gaps, plus invalid ones near the validation edges."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fuzz", "corpus", "safetensors")
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def st(header, data_len, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + bytes(i % 251 for i in range(data_len))


def packed(tensors, meta=None):
    hdr, off = {}, 0
    if meta:
        hdr["__metadata__"] = meta
    for name, dt, shape in tensors:
        n = SIZES[dt]
        for d in shape:
            n *= d
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    return st(hdr, off)


seeds = {
    "valid_all_dtypes": packed([(f"t.{dt.lower()}", dt, [2, 3]) for dt in SIZES], {"format": "pt"}),
    "valid_scalar_empty": packed([("s", "F32", []), ("z", "F16", [0, 7]), ("w", "BF16", [4])]),
    "valid_empty_header": st({}, 0),
    "valid_gap": st({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                     "b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}}, 8),
    "valid_padded": st(None, 4, b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}      '),
    "bad_overlap": st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                       "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, 24),
    "bad_mismatch": st({"a.b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, 16),
    "bad_dtype": st({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, 2),
    "bad_overflow": st({"a": {"dtype": "F32", "shape": [4611686018427387904, 16], "data_offsets": [0, 16]}}, 16),
    "bad_meta": st({"__metadata__": {"k": 1}}, 0),
    "bad_hlen": struct.pack("<Q", 1 << 40) + b"{}",
}
os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(len(seeds), "seeds in", OUT)
