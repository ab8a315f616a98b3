"""Narrow layers with few channels, on every backend: each kernel row as a Toeplitz matrix.

Output row ``i`` of every example is ``Σ_a Xp[i·s_h + a·d_h] · T_a``: input row ``Xp[r]`` flattened
to ``(Wp·C)``, kernel row ``a`` as the banded ``(Wp·C, Wo·F)`` matrix ``T_a[(v, c), (j, f)] =
K[a, b, c, f]`` wherever ``v = j·s_w + b·d_w`` (else 0). One matmul over every (example, output row)
pair replaces gathering ``kh·kw`` slices of a few channels each, at ``Wp/kw`` times the multiplies:
``dispatch`` picks it for narrow inputs only (its figures are there).
"""

import functools

import numpy as np
from keras import ops

from kcnn.layers.corr2d import offset_slice


def column_pairs(kernel_w, padded_w, out_w, stride, dilation):
    """0/1 array (kw, Wp, Wo): 1 where kernel column ``b`` reads input column ``v`` for output column ``j``."""
    mask = np.zeros((kernel_w, padded_w, out_w), "float32")
    for b in range(kernel_w):
        mask[b, np.arange(out_w) * stride + b * dilation, np.arange(out_w)] = 1
    return mask


def _toeplitz(kernel, padded_w, out_w, strides, dilation):
    """The kernel rows as Toeplitz matrices, stacked: (kh·Wp·C, Wo·F)."""
    kh, kw, channels, filters = kernel.shape
    mask = ops.cast(column_pairs(kw, padded_w, out_w, strides[1], dilation[1]), kernel.dtype)
    return ops.reshape(ops.einsum("abcf,bvj->avcjf", kernel, mask), (kh * padded_w * channels, out_w * filters))


def _input_rows(xp, kernel_h, strides, dilation):
    """(N·Ho, kh·Wp·C): for each output row, the kh padded input rows the kernel reads."""
    _, _, wp, channels = ops.shape(xp)
    return ops.concatenate([ops.reshape(offset_slice(xp, (1,), (a,), (kernel_h,), strides, dilation),
                                        (-1, wp * channels)) for a in range(kernel_h)], axis=-1)


def forward(job, xp, kernel):
    """(Y, None): valid cross-correlation (no bias) of padded channels_last ``xp``."""
    y = ops.matmul(_input_rows(xp, kernel.shape[0], job.strides, job.dilation),
                   _toeplitz(kernel, job.padded_hw[1], job.out_hw[1], job.strides, job.dilation))
    return ops.reshape(y, (-1, *job.out_hw, kernel.shape[-1])), None


def input_gradient(job, dy, kernel):
    """dXp for stride 1 along rows: row ``i + a·d_h`` of every example receives ``dY[i] · T_aᵀ``."""
    kh, _, channels, _ = kernel.shape
    (hp, wp), (ho, wo) = job.padded_hw, job.out_hw
    rows = ops.matmul(ops.reshape(dy, (-1, wo * kernel.shape[-1])),
                      ops.transpose(_toeplitz(kernel, wp, wo, job.strides, job.dilation)))
    rows = ops.reshape(rows, (-1, ho, kh, wp, channels))
    d = job.dilation[0]
    return functools.reduce(ops.add, (ops.pad(rows[:, :, a], ((0, 0), (a * d, hp - a * d - ho), (0, 0), (0, 0)))
                                      for a in range(kh)))


def kernel_gradient(job, xp, dy, kernel_shape, patches=None):
    """dK: ``G = rowsᵀ · dY`` pairs every input column with every output column; ``dK[a, b]`` sums the
    pairs kernel column ``b`` reads (the Toeplitz pattern). Any strides (the forward keeps no patches)."""
    kh, kw, channels, filters = kernel_shape
    wp, wo = job.padded_hw[1], job.out_hw[1]
    pairs = ops.matmul(ops.transpose(_input_rows(xp, kh, job.strides, job.dilation)), ops.reshape(dy, (-1, wo * filters)))
    mask = ops.cast(column_pairs(kw, wp, wo, job.strides[1], job.dilation[1]), pairs.dtype)
    return ops.einsum("avcjf,bvj->abcf", ops.reshape(pairs, (kh, wp, channels, wo, filters)), mask)
