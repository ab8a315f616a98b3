"""kcnn.export.images: the one decoder (EXIF orientation, 16-bit, palette/CMYK/alpha, bomb limit)."""
import io

import numpy as np
import pytest
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
