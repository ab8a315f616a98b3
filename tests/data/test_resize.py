"""kcnn.data.resize: stretch, crop and pad checked pixel by pixel on a three-stripe image."""
import numpy as np
import pytest

from kcnn import data
from kcnn.data.resize import check_resize, resize_images


def _stripes():
    """30 x 60 (H x W): red, green and blue vertical stripes, 20 columns each."""
    x = np.zeros((30, 60, 3), np.float32)
    for channel in range(3):
        x[:, 20 * channel:20 * (channel + 1), channel] = 1.0
    return x


def _resized(mode, size=(10, 10)):
    return np.asarray(resize_images(_stripes(), size, mode))


def test_stretch_squeezes_the_width():
    y = _resized("stretch")
    assert y.shape == (10, 10, 3)
    # 6 input columns per output column: red 0-3, green 4-6 (pure), blue 7-9 (rows all alike).
    np.testing.assert_allclose(y[:, :3, 0], 1.0)
    np.testing.assert_allclose(y[:, 4:6, 1], 1.0)
    np.testing.assert_allclose(y[:, 7:, 2], 1.0)
    np.testing.assert_allclose(y, np.broadcast_to(y[:1], y.shape))


def test_crop_keeps_the_centred_square():
    y = _resized("crop")
    # The centred 30 x 30 box holds columns 15..44: red 15-19, green 20-39, blue 40-44;
    # at 3 input columns per output column, green fills output columns 2..7 alone.
    np.testing.assert_allclose(y[:, 2:8, 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(y[:, 2:8, 0], 0.0, atol=1e-6)
    assert y[:, 0, 0].min() > 0.9 and y[:, 9, 2].min() > 0.9  # the stripes' inner edges
    assert np.allclose(y[..., 0][:, 0], 1.0)


def test_pad_fits_inside_with_black_bars():
    y = _resized("pad")
    # The 30 x 60 image shrinks to 5 x 10 and sits in rows 2..6; rows 0-1 and 7-9 are zeros.
    np.testing.assert_array_equal(y[:2], 0.0)
    np.testing.assert_array_equal(y[7:], 0.0)
    np.testing.assert_allclose(y[2:7, :3, 0], 1.0)
    np.testing.assert_allclose(y[2:7, 7:, 2], 1.0)


def test_batches_and_same_aspect_agree():
    x = np.stack([_stripes(), _stripes()[:, ::-1]])
    for mode in data.RESIZE_MODES:
        y = np.asarray(resize_images(x, (10, 20), mode))  # same 1:2 aspect: all three agree
        np.testing.assert_allclose(y, np.asarray(resize_images(x, (10, 20), "stretch")), atol=1e-6)
        assert y.shape == (2, 10, 20, 3)


def test_make_dataset_takes_the_mode():
    x = (_stripes() * 255).astype(np.uint8)[None]
    (xb, _), = list(data.make_dataset(x, [0], batch_size=1, image_size=10, resize="crop"))
    np.testing.assert_allclose(np.asarray(xb)[0], _resized("crop"), atol=1e-6)


def test_bad_mode_names_the_argument():
    with pytest.raises(ValueError, match="resize must be one of stretch, crop, pad; received 'fit'"):
        check_resize("fit")
    with pytest.raises(ValueError, match="resize must be one of"):
        data.make_dataset(np.zeros((1, 4, 4, 1), np.uint8), [0], batch_size=1, resize="zoom")
