"""Stride-1 cross-correlation as shifts of the flattened input (``groups == 1``).

Flatten a padded channels_last input (N, Hp, Wp, C) row-major to a (N·Hp·Wp, C) matrix. The
window element (a, b) of output position ``t = (n·Hp + i)·Wp + j`` then sits at row
``t + a·d_h·Wp + b·d_w``: every kernel offset is one contiguous shift of the same matrix, so

    Y[t] = Σ_a Σ_b  X[t + a·d_h·Wp + b·d_w] · K[a, b]

is computed at every position t ("wide" output) and the valid ``(Ho, Wo)`` corner of each
image is kept. Because a shift commutes with the per-row product, the product is taken first,
``Z = X · [K[a, 0] … K[a, kw−1]]`` (one matmul per kernel row, ``kw·F`` columns), and the shifted
column blocks of ``Z`` are summed; no im2col copy of the input is ever made. The input gradient
is the same operation on the output gradient with the flipped, in/out-transposed kernel; the
kernel gradient gathers one kernel row's ``kw`` shifts side by side (``(rows, kw·C)``) and
contracts it with the output gradient.

The extra work is ``Hp·Wp / (Ho·Wo) − 1`` (1–4 % on a padded 3×3 layer at 112×112), so the layer
uses this path only while that overhead stays under ``MAX_WIDE_OVERHEAD``, and only on the
backends in ``BACKENDS``: under XLA (TensorFlow jit, JAX) it beats the strided-window path
(VGG block training step 1.6× Conv2D instead of 2.3× on TensorFlow), while eager PyTorch, which
gathers windows from ``Tensor.unfold`` views, is faster with the window path (2.4× vs 3.1×).
"""

from keras import ops
from keras.backend import backend

MAX_WIDE_OVERHEAD = 0.5
BACKENDS = ("tensorflow", "jax")


def usable(batch, padded_hw, kernel_hw, strides, dilation, groups):
    """Whether the shift path applies and wastes little: stride 1, one group, small overhead."""
    if backend() not in BACKENDS or tuple(strides) != (1, 1) or groups != 1:
        return False
    if backend() == "jax" and not isinstance(batch, int):
        return False  # jax.export's symbolic batch can't size the shifted slices (ONNX export)
    hp, wp = padded_hw
    ho, wo = (n - d * (k - 1) for n, k, d in zip(padded_hw, kernel_hw, dilation))
    return ho > 0 and wo > 0 and hp * wp <= (1 + MAX_WIDE_OVERHEAD) * ho * wo


def _shifts(wp, kernel_hw, dilation):
    """Row offset of each kernel row, column step, and the largest offset."""
    (kh, kw), (dh, dw) = kernel_hw, dilation
    rows = [a * dh * wp for a in range(kh)]
    return rows, dw, rows[-1] + (kw - 1) * dw


def _shifted_sum(flat, kernel, wp, dilation):
    """Σ_ab flat[t + offset_ab] · K[a, b] for t over the first ``len(flat) − max offset`` rows.

    ``flat`` is (rows + max offset, C); returns (rows, F).
    """
    kh, kw, channels, filters = kernel.shape
    row_offsets, step, last = _shifts(wp, (kh, kw), dilation)
    out = None
    for a, row in enumerate(row_offsets):
        # (C, kw·F): the kw offsets of this kernel row side by side.
        weights = ops.reshape(ops.transpose(kernel[a], (1, 0, 2)), (channels, kw * filters))
        products = ops.matmul(flat, weights)
        for b in range(kw):
            start, stop = row + b * step, row + b * step - last
            term = products[start : stop if stop else None, b * filters : (b + 1) * filters]
            out = term if out is None else ops.add(out, term)
    return out


def _flatten(xp, before, after):
    """(N, Hp, Wp, C) → (before + N·Hp·Wp + after, C), zero rows added at both ends."""
    flat = ops.reshape(xp, (-1, ops.shape(xp)[-1]))
    return ops.pad(flat, ((before, after), (0, 0))) if before or after else flat


def correlate(xp, kernel, dilation):
    """Valid stride-1 cross-correlation of a padded (N, Hp, Wp, C) input → (N, Ho, Wo, F)."""
    kh, kw, _, filters = kernel.shape
    _, hp, wp, _ = ops.shape(xp)
    last = _shifts(wp, (kh, kw), dilation)[2]
    wide = _shifted_sum(_flatten(xp, 0, last), kernel, wp, dilation)
    ho, wo = hp - dilation[0] * (kh - 1), wp - dilation[1] * (kw - 1)
    return ops.reshape(wide, (-1, hp, wp, filters))[:, :ho, :wo, :]


def _flipped(kernel):
    """K'[a, b] = K[kh−1−a, kw−1−b]ᵀ: the kernel of the input gradient."""
    return ops.transpose(ops.flip(kernel, axis=(0, 1)), (0, 1, 3, 2))


def _wide_gradient(dy, padded_hw):
    """The output gradient on the wide grid (zeros where no valid output is), flattened."""
    hp, wp = padded_hw
    ho, wo = ops.shape(dy)[1:3]
    wide = ops.pad(dy, ((0, 0), (0, hp - ho), (0, wp - wo), (0, 0)))
    return ops.reshape(wide, (-1, ops.shape(dy)[-1]))


def input_gradient(dy, kernel, padded_hw, dilation):
    """dXp (N, Hp, Wp, C): the wide output gradient shifted back through the flipped kernel."""
    hp, wp = padded_hw
    kh, kw, channels, _ = kernel.shape
    last = _shifts(wp, (kh, kw), dilation)[2]
    flat_dy = ops.pad(_wide_gradient(dy, padded_hw), ((last, 0), (0, 0)))
    dx = _shifted_sum(flat_dy, _flipped(kernel), wp, dilation)
    return ops.reshape(dx, (-1, hp, wp, channels))


def kernel_gradient(xp, dy, kernel_shape, dilation):
    """dK[a, b] = Σ_t Xp[t + offset_ab]ᵀ · dY[t] over the wide grid → (kh, kw, C, F)."""
    kh, kw, channels, filters = kernel_shape
    _, hp, wp, _ = ops.shape(xp)
    row_offsets, step, last = _shifts(wp, (kh, kw), dilation)
    flat = _flatten(xp, 0, last)
    flat_dy = _wide_gradient(dy, (hp, wp))
    rows = []
    for row in row_offsets:
        shifted = [
            flat[row + b * step : (row + b * step - last) or None] for b in range(kw)
        ]
        band = shifted[0] if kw == 1 else ops.concatenate(shifted, axis=-1)
        rows.append(ops.matmul(ops.transpose(band), flat_dy))  # (kw·C, F)
    return ops.reshape(ops.stack(rows, axis=0), kernel_shape)
