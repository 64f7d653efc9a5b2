#!/usr/bin/python3
"""Writes the image fixtures for tests/io/test_image.c into tests/data/images/.

Run by hand with Debian's /usr/bin/python3 (PIL 9.4, numpy); the output is committed so CI needs
no Python. Everything is deterministic (fixed seeds, fixed encoder settings).

Outputs:
  <name>.png / .jpg      inputs in many PNG modes and JPEG flavours
  <name>.rgb             Image.open(p).convert('RGB') as raw (h, w, 3) u8
  <src>_<W>x<H>.rgb      Image.open(p).convert('RGB').resize((W, H), Image.BICUBIC) raw u8
  norm.f32               numpy float32 ((u / 255) - mean) / std, shape (3, 256), little endian
  manifest.txt           one case per line: "decode <file> <w> <h> <expect>" or
                         "resize <file> <W> <H> <expect>"
  bad_*                  corrupt, truncated and unsupported inputs (expected errors are in the C test)

PNG variants Pillow cannot write (16-bit RGB/RGBA/LA, 2/4-bit grey, short palettes, Adam7
interlacing) are written by the small PNG encoder below; Pillow then decodes them for the
expected pixels, so the expectation is always Pillow's.
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "images")


def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def pack_rows(a, bit_depth):
    """a: (h, w*c) integer samples -> list of packed row bytes (big endian for 16 bit)."""
    rows = []
    for r in a:
        if bit_depth == 16:
            rows.append(r.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(r.astype(np.uint8).tobytes())
        else:
            per = 8 // bit_depth
            n = (len(r) + per - 1) // per
            out = bytearray(n)
            for i, v in enumerate(r):
                out[i // per] |= int(v) << (8 - bit_depth * (i % per + 1))
            rows.append(bytes(out))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(samples, bit_depth, color_type, extra=b"", interlace=False):
    """samples: (h, w, c) array; filter type 0 on every row."""
    h, w, c = samples.shape
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.size == 0:
                continue
            for r in pack_rows(sub.reshape(sub.shape[0], -1), bit_depth):
                raw += b"\x00" + r
    else:
        for r in pack_rows(samples.reshape(h, w * c), bit_depth):
            raw += b"\x00" + r
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def save(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.RandomState(1234)
    manifest = []

    def decode_case(name, data, expect=True):
        save(name, data)
        im = Image.open(os.path.join(OUT, name))
        rgb = np.asarray(im.convert("RGB"))
        if not expect:  # large source: only its resized versions are compared
            return im
        save(name + ".rgb", rgb.tobytes())
        manifest.append("decode %s %d %d %s.rgb" % (name, rgb.shape[1], rgb.shape[0], name))
        return im

    def resize_case(name, W, H):
        im = Image.open(os.path.join(OUT, name)).convert("RGB")
        out = np.asarray(im.resize((W, H), Image.BICUBIC))
        exp = "%s_%dx%d.rgb" % (name, W, H)
        save(exp, out.tobytes())
        manifest.append("resize %s %d %d %s" % (name, W, H, exp))

    # ---- PNG written by Pillow
    rgb = rng.randint(0, 256, (23, 37, 3)).astype(np.uint8)
    decode_case("rgb8.png", pil_bytes(Image.fromarray(rgb, "RGB"), "PNG"))
    decode_case("gray8.png", pil_bytes(Image.fromarray(rgb[:, :, 0], "L"), "PNG"))
    decode_case("rgba8.png", pil_bytes(Image.fromarray(rng.randint(0, 256, (23, 37, 4)).astype(np.uint8), "RGBA"), "PNG"))
    decode_case("la8.png", pil_bytes(Image.fromarray(rng.randint(0, 256, (23, 37, 2)).astype(np.uint8), "LA"), "PNG"))
    pal = Image.fromarray(rng.randint(0, 16, (23, 37)).astype(np.uint8), "P")
    pal.putpalette(list(rng.randint(0, 256, 48).astype(int)))
    decode_case("pal8.png", pil_bytes(pal, "PNG"))
    decode_case("pal4.png", pil_bytes(pal, "PNG", bits=4))
    decode_case("pal8_trns.png", pil_bytes(pal, "PNG", transparency=bytes([0, 128, 255] + [7] * 13)))
    decode_case("gray1.png", pil_bytes(Image.fromarray(rgb[:, :, 1] > 127), "PNG"))
    g16 = np.concatenate([rng.randint(0, 300, (23, 20)), rng.randint(0, 65536, (23, 17))], axis=1)
    decode_case("gray16.png", pil_bytes(Image.fromarray(g16.astype(np.uint16), "I;16"), "PNG"))

    # ---- PNG variants written by hand (Pillow decodes them for the expectation)
    decode_case("gray2.png", png_bytes(rng.randint(0, 4, (23, 37, 1)), 2, 0))
    decode_case("gray4.png", png_bytes(rng.randint(0, 16, (23, 37, 1)), 4, 0))
    decode_case("rgb16.png", png_bytes(rng.randint(0, 65536, (23, 37, 3)), 16, 2))
    decode_case("rgba16.png", png_bytes(rng.randint(0, 65536, (23, 37, 4)), 16, 6))
    decode_case("la16.png", png_bytes(rng.randint(0, 65536, (23, 37, 2)), 16, 4))
    decode_case("gray8_trns.png", png_bytes(rng.randint(0, 256, (23, 37, 1)), 8, 0, chunk(b"tRNS", b"\x00\x10")))
    decode_case("rgb8_trns.png", png_bytes(rgb, 8, 2, chunk(b"tRNS", b"\x00\x10\x00\x20\x00\x30")))
    # palette with 6 entries but indices up to 255: Pillow maps the missing ones to grey i,i,i
    decode_case("pal_short.png", png_bytes(rng.randint(0, 256, (23, 37, 1)), 8, 3,
                                           chunk(b"PLTE", bytes(range(10, 28)))))
    decode_case("pal2.png", png_bytes(rng.randint(0, 4, (23, 37, 1)), 2, 3,
                                      chunk(b"PLTE", bytes([200, 10, 10, 10, 200, 10, 10, 10, 200, 250, 250, 0]))))
    decode_case("interlaced.png", png_bytes(rng.randint(0, 256, (23, 37, 3)), 8, 2, interlace=True))
    decode_case("interlaced_gray16.png", png_bytes(rng.randint(0, 400, (11, 13, 1)), 16, 0, interlace=True))
    decode_case("tiny1x1.png", png_bytes(np.array([[[1, 2, 3]]]), 8, 2))

    # ---- JPEG (Pillow uses the same Debian libjpeg-turbo as the C code)
    smooth = np.zeros((48, 64, 3), np.uint8)
    yy, xx = np.mgrid[0:48, 0:64]
    smooth[:, :, 0] = (xx * 4) % 256
    smooth[:, :, 1] = (yy * 5) % 256
    smooth[:, :, 2] = ((xx + yy) * 3 + rng.randint(0, 20, (48, 64))) % 256
    sm = Image.fromarray(smooth, "RGB")
    decode_case("base444.jpg", pil_bytes(sm, "JPEG", quality=90, subsampling=0))
    decode_case("base422.jpg", pil_bytes(sm, "JPEG", quality=85, subsampling=1))
    decode_case("base420.jpg", pil_bytes(sm, "JPEG", quality=75, subsampling=2))
    decode_case("prog420.jpg", pil_bytes(sm, "JPEG", quality=80, subsampling=2, progressive=True))
    decode_case("gray.jpg", pil_bytes(sm.convert("L"), "JPEG", quality=90))
    decode_case("odd37x23.jpg", pil_bytes(Image.fromarray(rgb, "RGB"), "JPEG", quality=70))

    # ---- resize (inputs decoded above, expectations from Pillow)
    resize_case("rgb8.png", 16, 16)     # down both ways
    resize_case("rgb8.png", 20, 23)     # horizontal pass only
    resize_case("rgb8.png", 37, 50)     # vertical pass only
    resize_case("rgb8.png", 37, 23)     # identity
    resize_case("rgb8.png", 100, 7)     # up x, down y
    resize_case("tiny1x1.png", 5, 3)
    big = np.zeros((480, 640, 3), np.uint8)
    yy, xx = np.mgrid[0:480, 0:640]
    big[:, :, 0] = ((xx // 7) * 37 + (yy // 5) * 11) % 256
    big[:, :, 1] = (xx ^ yy) % 256
    big[:, :, 2] = np.where(((xx // 16) + (yy // 16)) % 2 == 0, 250, 5)
    decode_case("pattern640x480.png", pil_bytes(Image.fromarray(big, "RGB"), "PNG", optimize=True), expect=False)
    resize_case("pattern640x480.png", 64, 64)
    resize_case("pattern640x480.png", 100, 75)
    small = rng.randint(0, 256, (7, 10, 3)).astype(np.uint8)
    decode_case("rgb10x7.png", pil_bytes(Image.fromarray(small, "RGB"), "PNG"))
    resize_case("rgb10x7.png", 31, 29)
    resize_case("rgb10x7.png", 96, 96)
    resize_case("base420.jpg", 24, 24)

    # ---- worked examples of spec §2.2 (checked here, hardcoded in the C test)
    row = Image.fromarray(np.array([[0, 100, 200, 255]], np.uint8), "L")
    assert list(np.asarray(row.resize((2, 1), Image.BICUBIC))[0]) == [60, 221]
    assert list(np.asarray(row.resize((6, 1), Image.BICUBIC))[0]) == [0, 41, 117, 186, 235, 255]

    # ---- normalisation for every u8 value (spec §2.4)
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    u = np.arange(256, dtype=np.uint8)
    x = u.astype(np.float32) / np.float32(255.0)
    norm = np.stack([(x - mean[c]) / std[c] for c in range(3)]).astype("<f4")
    assert norm.dtype == np.float32
    save("norm.f32", norm.tobytes())

    # ---- bad inputs
    good_png = open(os.path.join(OUT, "rgb8.png"), "rb").read()
    good_jpg = open(os.path.join(OUT, "base420.jpg"), "rb").read()
    save("bad_truncated.png", good_png[: len(good_png) // 2])
    save("bad_truncated.jpg", good_jpg[: len(good_jpg) // 2])  # ends inside the headers
    save("bad_truncated_scan.jpg", good_jpg[: len(good_jpg) - 200])  # ends inside the scan
    save("bad_header.jpg", good_jpg[:2] + b"\xff\xc0\x00\x02" + b"\x00" * 40)
    save("bad_notimage.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    save("bad_empty.png", b"")
    corrupt = bytearray(good_png)
    corrupt[60] ^= 0xFF  # inside IDAT data: the chunk CRC no longer matches
    save("bad_crc.png", bytes(corrupt))
    save("bad_cmyk.jpg", pil_bytes(sm.convert("CMYK"), "JPEG", quality=90))
    save("bad_huge.png", png_bytes(np.zeros((1, 1, 1), np.uint8), 8, 0).replace(
        chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)),
        chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 1, 8, 0, 0, 0, 0))))
    for bad in ["bad_truncated.png", "bad_truncated.jpg", "bad_truncated_scan.jpg", "bad_header.jpg", "bad_crc.png"]:
        try:
            Image.open(os.path.join(OUT, bad)).convert("RGB")
            print("note: Pillow accepts", bad, file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - any failure is what we want to record
            print("Pillow rejects %s: %s" % (bad, e))

    save("manifest.txt", ("\n".join(manifest) + "\n").encode())
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %d cases, %d bytes in %s" % (len(manifest), total, OUT))


if __name__ == "__main__":
    main()
