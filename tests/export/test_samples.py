"""kcnn.export.samples.load_samples: digits and .npz verification samples."""

import numpy as np
import pytest

from kcnn.export.samples import load_samples


def test_digits_are_uint8_images_with_labels():
    x, y = load_samples("digits", limit=50)
    assert x.shape == (50, 8, 8) and x.dtype == np.uint8 and x.max() == 255
    assert y.shape == (50,) and set(np.unique(y)) <= set(range(10))
    again, _ = load_samples("digits", limit=50)
    np.testing.assert_array_equal(x, again)  # fixed subset


def test_npz_with_and_without_labels(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, x_test=np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4),
             y_test=np.arange(5))
    x, y = load_samples(path)
    assert x.shape == (5, 4, 4) and list(y) == [0, 1, 2, 3, 4]
    np.savez(path, x_test=np.zeros((3, 4, 4, 1), np.float32))
    x, y = load_samples(path, limit=2)
    assert x.shape == (2, 4, 4, 1) and y is None


@pytest.mark.parametrize("content, match", [
    ({"images": np.zeros((2, 3, 3))}, "no 'x_test'"),
    ({"x_test": np.zeros((2, 3, 3)), "y_test": np.zeros(3)}, "3 labels for 2 images"),
    ({"x_test": np.zeros((0, 3, 3))}, "empty"),
    ({"x_test": np.array([{"a": 1}], dtype=object)}, "pickle"),
])
def test_bad_npz(tmp_path, content, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **content)
    with pytest.raises(ValueError, match=match):
        load_samples(path)


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="'digits' or a path ending in '.npz'"):
        load_samples("mnist")
    with pytest.raises(FileNotFoundError, match="gone.npz"):
        load_samples(tmp_path / "gone.npz")
    (tmp_path / "zip.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="zip.npz"):
        load_samples(tmp_path / "zip.npz")
    with pytest.raises(ValueError, match="limit"):
        load_samples("digits", limit=0)
