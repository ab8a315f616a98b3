"""kcnn.export.images: the one decoder (EXIF orientation, 16-bit, palette/CMYK/alpha, bomb limit)."""
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kcnn.export import images
from odd_images import write_odd_images


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return write_odd_images(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("name", ["exif_rotated_jpeg", "gray_16bit_png", "rgb_16bit_png",
                                  "palette_transparent_png", "cmyk_jpeg", "rgba_png", "la_png"])
def test_every_source_decodes_alike(odd, name):
    path, expected = odd[name]
    from_file = images.read(path)
    assert from_file.dtype == np.uint8
    np.testing.assert_array_equal(from_file, expected)
    np.testing.assert_array_equal(images.decode(path.read_bytes()), expected)
    with Image.open(path) as image:
        np.testing.assert_array_equal(images.to_array(image), expected)


def test_sixteen_bit_scaling_keeps_the_high_byte():
    values = np.array([[0, 255, 256, 257 * 200, 65535]], np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    np.testing.assert_array_equal(images.decode(buffer.getvalue()), [[0, 0, 1, 200, 255]])


def test_gray_gif_stays_gray():
    gray = np.arange(0, 240, 20, dtype=np.uint8).reshape(3, 4)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="GIF")
    np.testing.assert_array_equal(images.decode(buffer.getvalue()), gray)


def test_pixel_limit(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((10, 11), np.uint8)).save(path)
    assert images.read(path, max_pixels=110).shape == (10, 11)
    with pytest.raises(images.ImageTooLargeError, match="11x10 pixels exceeds the limit of 109"):
        images.read(path, max_pixels=109)
    with pytest.raises(images.ImageTooLargeError):
        images.decode(path.read_bytes(), max_pixels=100)
    assert issubclass(images.ImageTooLargeError, ValueError)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found"):
        images.read(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(images.ImageError, match="cannot read"):
        images.read(junk)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format="PNG")
    for data in (b"", buffer.getvalue()[:40]):
        with pytest.raises(images.ImageError):
            images.decode(data)
    with pytest.raises(TypeError, match="bytes"):
        images.decode("a string")


def _seed_files():
    """One small file per format and sample layout the decoder handles."""
    gray = (np.arange(24 * 32) % 251).astype(np.uint8).reshape(24, 32)
    made = {
        "png-L": (Image.fromarray(gray), "PNG"), "png-RGBA": (Image.fromarray(gray).convert("RGBA"), "PNG"),
        "png-P": (Image.fromarray(gray).convert("P"), "PNG"), "gif": (Image.fromarray(gray), "GIF"),
        "png-I16": (Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
        "tiff-F": (Image.fromarray(gray.astype(np.float32) * 1.5), "TIFF"),
        "tiff-CMYK": (Image.fromarray(gray).convert("CMYK"), "TIFF"),
        "jpeg": (Image.fromarray(gray).convert("RGB"), "JPEG"), "bmp": (Image.fromarray(gray), "BMP"),
        "webp": (Image.fromarray(gray).convert("RGB"), "WEBP"),
    }
    seeds = []
    for image, fmt in made.values():
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seed_files()


@given(seed=st.sampled_from(SEEDS), cut=st.integers(0, 10_000), junk=st.binary(max_size=16),
       truncate=st.booleans())
@settings(max_examples=300, deadline=None)
def test_damaged_files_raise_only_image_errors(seed, cut, junk, truncate):
    """Any damaged file (bytes overwritten or cut off) decodes or raises ImageError, nothing else."""
    cut %= len(seed)
    data = seed[:cut] if truncate else seed[:cut] + junk + seed[cut + len(junk):]
    try:
        array = images.decode(data, max_pixels=1 << 20)
    except images.ImageError:
        return
    assert array.dtype == np.uint8 and array.ndim in (2, 3)
