"""Image files that decoders disagree on, with the uint8 array each must decode to.

Shared by tests/export/test_images.py (the decoder alone) and tests/export/serving/test_serve.py (the same files
through kcnn-predict, OnnxPredictor and the server). The expected arrays are computed here from
the pixels written, independently of kcnn.export.images.
"""
import struct
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def _png_16bit_rgb(path, values):
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    height, width, _ = values.shape
    rows = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_odd_images(folder, seed=0):
    """Write the odd images into ``folder``; returns ``{name: (path, expected uint8 array)}``."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (18, 12, 3), dtype=np.uint8)
    files = {}

    path = folder / "rotated.jpg"  # orientation 6: shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as stored:
        files["exif_rotated_jpeg"] = (path, np.rot90(np.asarray(stored.convert("RGB")), k=-1))

    gray16 = rng.integers(0, 65536, (14, 10), dtype=np.uint16)
    path = folder / "gray16.png"
    Image.fromarray(gray16).save(path)
    files["gray_16bit_png"] = (path, (gray16 >> 8).astype(np.uint8))

    rgb16 = rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    path = folder / "rgb16.png"
    _png_16bit_rgb(path, rgb16)
    files["rgb_16bit_png"] = (path, (rgb16 >> 8).astype(np.uint8))

    palette = Image.fromarray(rgb).quantize(8)
    path = folder / "palette.png"
    palette.save(path, transparency=0)
    files["palette_transparent_png"] = (path, np.asarray(palette.convert("RGB")))

    path = folder / "cmyk.jpg"
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(path, quality=95)
    with Image.open(path) as stored:
        files["cmyk_jpeg"] = (path, np.asarray(stored.convert("RGB")))

    alpha = rng.integers(0, 256, (18, 12, 1), dtype=np.uint8)
    path = folder / "rgba.png"
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(path)
    files["rgba_png"] = (path, rgb)

    path = folder / "la.png"
    Image.fromarray(np.concatenate([rgb[..., :1], alpha], axis=-1), "LA").save(path)
    files["la_png"] = (path, rgb[..., 0])
    return files
