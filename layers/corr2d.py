"""`corr2d`: the 2-D valid cross-correlation of one array with one kernel, written explicitly."""
import keras
from keras import ops

__all__ = ["corr2d"]


def _as_tensor(value):
    # Symbolic KerasTensors go straight to keras.ops; everything else becomes a backend tensor.
    if isinstance(value, keras.KerasTensor):
        return value
    return ops.convert_to_tensor(value)


def _check_2d(value, name):
    if len(value.shape) != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (height, width). "
            f"Received {name} with shape {tuple(value.shape)}."
        )


def corr2d(x, kernel):
    """2-D valid cross-correlation of `x` with `kernel`.

    For `x` of shape `(n_h, n_w)` and `kernel` of shape `(k_h, k_w)` the result `Y` has shape
    `(n_h - k_h + 1, n_w - k_w + 1)` and

        Y[i, j] = Σ_a Σ_b X[i + a, j + b] · K[a, b],   a < k_h, b < k_w.

    No kernel flip (that would be a convolution) and no padding. It is computed as the sum over the
    `k_h · k_w` kernel offsets of a shifted slice of `x` times that offset's weight, with
    `keras.ops` only (no convolution primitive), so it differentiates on every backend.

    Args:
        x: 2-D array-like (NumPy array, nested list or backend tensor) of shape `(n_h, n_w)`.
        kernel: 2-D array-like of shape `(k_h, k_w)` with `k_h <= n_h` and `k_w <= n_w`.

    Returns:
        A backend tensor of shape `(n_h - k_h + 1, n_w - k_w + 1)`. Its dtype is the promoted
        floating dtype of the inputs (`keras.config.floatx()` for integer inputs).

    Raises:
        ValueError: if `x` or `kernel` is not 2-D, or the kernel is larger than the input.

    Example:
        >>> corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
        # [[19., 25.], [37., 43.]]
    """
    x = _as_tensor(x)
    kernel = _as_tensor(kernel)
    _check_2d(x, "x")
    _check_2d(kernel, "kernel")
    (n_h, n_w), (k_h, k_w) = x.shape, kernel.shape
    too_big = [
        (n, k) for n, k in ((n_h, k_h), (n_w, k_w)) if n is not None and k is not None and k > n
    ]
    if too_big or 0 in (k_h, k_w):
        raise ValueError(
            "`kernel` must be non-empty and no larger than `x` in either dimension. "
            f"Received x with shape {tuple(x.shape)} and kernel with shape {tuple(kernel.shape)}."
        )
    dtype = keras.backend.result_type(x.dtype, kernel.dtype)
    if "float" not in dtype:
        dtype = keras.config.floatx()
    x = ops.cast(x, dtype)
    kernel = ops.cast(kernel, dtype)

    y = None
    for a in range(k_h):
        for b in range(k_w):
            # X[a : a + out_h, b : b + out_w]; negative stops need no static size.
            window = x[a : (a - k_h + 1) or None, b : (b - k_w + 1) or None]
            term = window * kernel[a, b]
            y = term if y is None else y + term
    return y
