"""kcnn.layers.corr2d: seed examples, a NumPy-loop reference, input types and errors."""
import keras
import numpy as np
import pytest
from keras import ops

from kcnn.layers import corr2d


def corr2d_loop(x, k):
    """Reference: Y[i, j] = Σa Σb X[i + a, j + b] · K[a, b], one output element at a time."""
    (n_h, n_w), (k_h, k_w) = x.shape, k.shape
    y = np.zeros((n_h - k_h + 1, n_w - k_w + 1))
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = np.sum(x[i : i + k_h, j : j + k_w] * k)
    return y


SEED_X = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
SEED_K = [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    "to_input",
    [
        lambda v: np.array(v),  # integer NumPy array
        lambda v: np.array(v, dtype="float32"),
        lambda v: v,  # nested lists
        lambda v: ops.convert_to_tensor(np.array(v, dtype="float32")),  # backend tensor
    ],
    ids=["numpy-int", "numpy-float32", "list", "backend-tensor"],
)
def test_seed_example(to_input):
    y = corr2d(to_input(SEED_X), to_input(SEED_K))
    assert ops.is_tensor(y)
    assert keras.backend.is_float_dtype(y.dtype)
    np.testing.assert_array_equal(ops.convert_to_numpy(y), [[19.0, 25.0], [37.0, 43.0]])


def test_seed_edge_detection():
    # The seeds' edge detector: 1 at a white→black edge, -1 at a black→white edge, 0 elsewhere.
    x = np.ones((6, 8), "float32")
    x[:, 2:6] = 0
    y = ops.convert_to_numpy(corr2d(x, np.array([[1.0, -1.0]])))
    expected = np.zeros((6, 7))
    expected[:, 1], expected[:, 5] = 1, -1
    np.testing.assert_array_equal(y, expected)
    # The transposed image has horizontal edges only, which a 1×2 kernel cannot see.
    np.testing.assert_array_equal(ops.convert_to_numpy(corr2d(x.T, np.array([[1.0, -1.0]]))), 0)


@pytest.mark.parametrize(
    "x_shape, k_shape",
    [((5, 7), (3, 3)), ((6, 4), (2, 3)), ((4, 4), (4, 4)), ((3, 8), (1, 1)), ((1, 9), (1, 4)),
     ((9, 2), (5, 1))],
)
def test_matches_numpy_loop(rng, x_shape, k_shape):
    x = rng.normal(size=x_shape).astype("float32")
    k = rng.normal(size=k_shape).astype("float32")
    y = ops.convert_to_numpy(corr2d(x, k))
    assert y.shape == (x_shape[0] - k_shape[0] + 1, x_shape[1] - k_shape[1] + 1)
    np.testing.assert_allclose(y, corr2d_loop(x, k), rtol=1e-5, atol=1e-5)


def test_is_not_a_convolution(rng):
    # Cross-correlation does not flip the kernel: with an asymmetric kernel it is not a convolution.
    x = rng.normal(size=(4, 5)).astype("float32")
    k = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    y = ops.convert_to_numpy(corr2d(x, k))
    np.testing.assert_allclose(ops.convert_to_numpy(corr2d(x, k[::-1, ::-1])),
                               corr2d_loop(x, k[::-1, ::-1]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, corr2d_loop(x, k[::-1, ::-1]))


def test_symbolic_input():
    x = keras.KerasTensor((6, 5))
    y = corr2d(x, np.ones((2, 3), "float32"))
    assert tuple(y.shape) == (5, 3)


@pytest.mark.parametrize(
    "x, kernel, argument",
    [
        (np.zeros(5), np.ones((1, 1)), "`x`"),
        (np.zeros((1, 4, 4)), np.ones((2, 2)), "`x`"),
        (np.float32(3.0), np.ones((1, 1)), "`x`"),
        (np.zeros((4, 4)), np.ones(2), "`kernel`"),
        (np.zeros((4, 4)), np.ones((2, 2, 1)), "`kernel`"),
    ],
)
def test_non_2d_arguments_raise(x, kernel, argument):
    with pytest.raises(ValueError, match=f"{argument} must be a 2-D array") as info:
        corr2d(x, kernel)
    assert "shape" in str(info.value)


@pytest.mark.parametrize(
    "x_shape, k_shape", [((3, 3), (4, 2)), ((3, 3), (2, 4)), ((2, 5), (3, 6))]
)
def test_kernel_larger_than_input_raises(x_shape, k_shape):
    with pytest.raises(ValueError, match="no larger than `x`") as info:
        corr2d(np.zeros(x_shape), np.ones(k_shape))
    assert str(x_shape) in str(info.value) and str(k_shape) in str(info.value)


def test_empty_kernel_raises():
    with pytest.raises(ValueError, match="non-empty"):
        corr2d(np.zeros((3, 3)), np.ones((0, 2)))
