"""The cross-correlation formula as written: d2l's `corr2d`, and its batched form, every fast path's oracle.

    Y[n, i, j, f] = Σ_a Σ_b  matmul(Xp[n, i·s_h + a·d_h, j·s_w + b·d_w, :], K[a, b])[f]

Kernel offset `(a, b)` reads one strided slice of the padded input (:func:`offset_slice`, pooling's
too); :func:`cross_correlate` sums each slice times the offset's `(in, out)` weight matrix.
"""
import functools

import keras
from keras import ops


def offset_slice(x, axes, offsets, kernel, strides=(1, 1), dilation=(1, 1)):
    """X[…, i·s + a·d, …] for every output position i along ``axes``: the slice kernel offset ``a`` reads.

    Negative stops give exactly the output length, ``floor((n − d·(k − 1) − 1) / s) + 1``, without
    knowing the input's size.
    """
    index = [slice(None)] * len(x.shape)
    for axis, a, k, s, d in zip(axes, offsets, kernel, strides, dilation):
        index[axis] = slice(a * d, (a - k + 1) * d or None, s)
    return x[tuple(index)]


def contract(patches, kernel_rows, groups):
    """patches (N, Ho, Wo, R·kw·C) · kernel_rows (R, kw, C/g, F) → (N, Ho, Wo, F), block-diagonal by group."""
    r, kw, cg, filters = kernel_rows.shape
    if groups == 1:
        return ops.matmul(patches, ops.reshape(kernel_rows, (r * kw * cg, filters)))
    ho, wo = ops.shape(patches)[1:3]
    view = ops.reshape(patches, (-1, ho * wo, r * kw, groups, cg))
    out = ops.einsum("nlpgc,pcgf->nlgf", view, ops.reshape(kernel_rows, (r * kw, cg, groups, filters // groups)))
    return ops.reshape(out, (-1, ho, wo, filters))


def cross_correlate(xp, kernel, strides, dilation, groups):
    """Valid cross-correlation of padded channels_last ``xp`` with ``kernel`` (kh, kw, C/g, F)."""
    kh, kw = kernel.shape[:2]
    windows = ((offset_slice(xp, (1, 2), (a, b), (kh, kw), strides, dilation), kernel[a : a + 1, b : b + 1])
               for a in range(kh) for b in range(kw))
    return functools.reduce(ops.add, (contract(window, weights, groups) for window, weights in windows))


def corr2d(x, kernel):
    """2-D valid cross-correlation of `x` with `kernel`.

    For `x` of shape `(n_h, n_w)` and `kernel` of shape `(k_h, k_w)` the result `Y` has shape
    `(n_h - k_h + 1, n_w - k_w + 1)` and

        Y[i, j] = Σ_a Σ_b X[i + a, j + b] · K[a, b],   a < k_h, b < k_w.

    No kernel flip (that would be a convolution) and no padding: the sum over the `k_h · k_w`
    kernel offsets of a shifted slice of `x` times that offset's weight, with `keras.ops` only,
    so it differentiates on every backend.

    Args:
        x: 2-D array-like (NumPy array, nested list or backend tensor), `(n_h, n_w)`.
        kernel: 2-D array-like, `(k_h, k_w)` with `k_h <= n_h` and `k_w <= n_w`.

    Returns a backend tensor in the promoted floating dtype (`keras.config.floatx()` for
    integers); raises `ValueError` if either is not 2-D or the kernel is larger than `x`.

    Example:
        >>> corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
        # [[19., 25.], [37., 43.]]
    """
    # Symbolic KerasTensors go straight to keras.ops; everything else becomes a backend tensor.
    x, kernel = (v if isinstance(v, keras.KerasTensor) else ops.convert_to_tensor(v) for v in (x, kernel))
    for name, value in (("x", x), ("kernel", kernel)):
        if len(value.shape) != 2:
            raise ValueError(f"`{name}` must be a 2-D array of shape (height, width). "
                             f"Received {name} with shape {tuple(value.shape)}.")
    (n_h, n_w), (k_h, k_w) = x.shape, kernel.shape
    too_big = any(n is not None and k is not None and k > n for n, k in ((n_h, k_h), (n_w, k_w)))
    if too_big or 0 in (k_h, k_w):
        raise ValueError("`kernel` must be non-empty and no larger than `x` in either dimension. "
                         f"Received x with shape {tuple(x.shape)} and kernel with shape {tuple(kernel.shape)}.")
    dtype = keras.backend.result_type(x.dtype, kernel.dtype)
    dtype = dtype if "float" in dtype else keras.config.floatx()  # integers: Keras's float type
    x, kernel = ops.cast(x, dtype), ops.cast(kernel, dtype)
    y = None
    for a in range(k_h):
        for b in range(k_w):
            term = offset_slice(x, (0, 1), (a, b), (k_h, k_w)) * kernel[a, b]
            y = term if y is None else y + term
    return y
