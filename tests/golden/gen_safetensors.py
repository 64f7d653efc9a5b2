#!/usr/bin/python3
"""Writes tests/data/io/tiny.safetensors for tests/io/test_safetensors.c (run by hand:
/usr/bin/python3 tests/golden/gen_safetensors.py).

Its own small serialiser, independent of the C writer, following the layout of the Hugging Face
`safetensors` Python package: JSON with spaces after separators, "__metadata__" first, tensors sorted
by dtype alignment (largest first) then name, header padded with spaces to 8 bytes, little-endian data.
Expected values (checked in the C test):
  encoder.weight F32 [2,3] = 0.5*i - 1
  encoder.half   F16 [3]   = 1, -2.5, 0.1 (-> 0.0999755859375)
  encoder.bf16   BF16 [2]  = 3, -0.0078125
  mask           U8 [4]    = 0, 0, 1, 1
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "io", "tiny.safetensors")


def bf16_bytes(values):
    f = np.asarray(values, dtype="<f4").view("<u4")
    return (f >> 16).astype("<u2").tobytes()  # exact for these values


tensors = {
    "encoder.weight": ("F32", [2, 3], (0.5 * np.arange(6) - 1).astype("<f4").tobytes(), 4),
    "encoder.half": ("F16", [3], np.array([1, -2.5, 0.1], dtype="<f2").tobytes(), 2),
    "encoder.bf16": ("BF16", [2], bf16_bytes([3.0, -0.0078125]), 2),
    "mask": ("U8", [4], bytes([0, 0, 1, 1]), 1),
}
order = sorted(tensors, key=lambda k: (-tensors[k][3], k))
header = {"__metadata__": {"format": "pt"}}
data = b""
for name in order:
    dt, shape, raw, _ = tensors[name]
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
print(OUT, 8 + len(h) + len(data), "bytes")
