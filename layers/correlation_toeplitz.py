"""Narrow layers with few channels, on every backend: each kernel row as a Toeplitz matrix.

Output row ``i`` is ``Σ_a Xp[i·s_h + a·d_h] · T_a``: input row ``Xp[r]`` flattened to ``(Wp·C)``,
kernel row ``a`` as the banded ``(Wp·C, Wo·F)`` matrix ``T_a[(v, c), (j, f)] = K[a, b, c, f]`` wherever
``v = j·s_w + b·d_w`` (else 0): one matmul instead of gathering ``kh·kw`` slices of a few channels.
Output columns go in blocks of ``B`` (:func:`column_blocks`) through one smaller matrix, each block
reading ``Wb = (B − 1)·s_w + (kw − 1)·d_w + 1`` columns: ``Wb/kw`` times the minimal multiplies, not ``Wp/kw``.
"""

import functools
import itertools

import numpy as np
from keras import ops

from kcnn.layers.corr2d import offset_slice
from kcnn.layers.correlation_im2col import torch_views_usable, windows


@functools.cache
def column_pairs(kernel_w, padded_w, out_w, stride, dilation):
    """0/1 array (kw, Wp, Wo): 1 where kernel column ``b`` reads input column ``v`` for output column ``j``."""
    mask = np.zeros((kernel_w, padded_w, out_w), "float32")
    for b in range(kernel_w):
        mask[b, np.arange(out_w) * stride + b * dilation, np.arange(out_w)] = 1
    return mask


def column_blocks(out_w, kernel_w, stride=1, dilation=1):
    """(blocks, B, Wb): the most blocks of ``B ≥ kw`` output columns dividing ``Wo`` (else one), each reading ``Wb``
    input columns. LeNet b256 TF steps, blocks of 7 and 5 columns vs one: 15.5 vs 17.0 ms (AMD), 16.0 vs 17.6 Intel."""
    blocks = max([n for n in range(1, out_w + 1) if out_w % n == 0 and out_w // n >= kernel_w], default=1)
    width = out_w // blocks
    return blocks, width, (width - 1) * stride + (kernel_w - 1) * dilation + 1


def _toeplitz(kernel, job):
    """The kernel rows as one column block's Toeplitz matrices, stacked: (kh·Wb·C, B·F)."""
    kh, kw, channels, filters = kernel.shape
    _, width, read = column_blocks(job.out_hw[1], kw, job.strides[1], job.dilation[1])
    mask = ops.cast(column_pairs(kw, read, width, job.strides[1], job.dilation[1]), kernel.dtype)
    return ops.reshape(ops.einsum("abcf,bvj->avcjf", kernel, mask), (kh * read * channels, width * filters))


def _input_rows(job, xp, kernel_shape):
    """(N·Ho·blocks, kh·Wb·C): per output row and column block, the kh·Wb input pixels it reads."""
    kh, kw, channels, _ = kernel_shape
    blocks, width, read = column_blocks(job.out_hw[1], kw, job.strides[1], job.dilation[1])
    if torch_views_usable():  # the windows of a (kh, Wb) kernel at column stride B·s_w: one copy of a torch view
        rows = windows(xp, (kh, read), (job.strides[0], width * job.strides[1]), (job.dilation[0], 1))
        return ops.reshape(rows, (-1, kh * read * channels))
    step = width * job.strides[1]  # column blocks first, their stack kh times smaller (LeNet TF step −6 %)
    columns = ops.stack([xp[:, :, q * step : q * step + read] for q in range(blocks)], axis=2)  # N, Hp, blocks, Wb, C
    rows = ops.stack([offset_slice(columns, (1,), (a,), (kh,), job.strides, job.dilation) for a in range(kh)], axis=3)
    return ops.reshape(rows, (-1, kh * read * channels))  # from (N, Ho, blocks, kh, Wb, C)


def forward(job, xp, kernel, bias=None):
    """(Y, the input rows for ``kernel_gradient``): valid cross-correlation of padded channels_last ``xp``, plus
    ``bias`` at every output column of the block (an add TensorFlow fuses into the matmul: LeNet step −6 %)."""
    rows, toeplitz = _input_rows(job, xp, kernel.shape), _toeplitz(kernel, job)
    y = ops.matmul(rows, toeplitz)
    y = y if bias is None else ops.add(y, ops.tile(bias, (toeplitz.shape[1] // bias.shape[0],)))  # B copies
    return ops.reshape(y, (-1, *job.out_hw, kernel.shape[-1])), rows


def input_gradient(job, dy, kernel):
    """dXp, stride 1 along rows: each block's ``dY · Tᵀ`` added at its columns, kernel row a's at rows i + a·d_h."""
    kh, kw, channels, filters = kernel.shape
    blocks, width, read = column_blocks(job.out_hw[1], kw, job.strides[1], job.dilation[1])
    (hp, wp), ho, step, d = job.padded_hw, job.out_hw[0], width * job.strides[1], job.dilation[0]
    grads = ops.matmul(ops.reshape(dy, (-1, width * filters)), ops.transpose(_toeplitz(kernel, job)))
    grads = ops.reshape(grads, (-1, ho, blocks, kh, read, channels))
    if torch_views_usable():  # in place, a slice at a time: keras.ops.pad costs ~0.3 ms a call on torch
        dxp = grads.new_zeros((grads.shape[0], hp, wp, channels))
        for a, q in itertools.product(range(kh), range(blocks)):
            dxp[:, a * d : a * d + ho, q * step : q * step + read] += grads[:, :, q, a]
        return dxp
    rows = functools.reduce(ops.add, (ops.pad(grads[:, :, :, a], ((0, 0), (a * d, hp - a * d - ho)) + ((0, 0),) * 3)
                                      for a in range(kh)))  # rows first: (N, Hp, blocks, Wb, C), LeNet TF step −5 %
    return functools.reduce(ops.add, (ops.pad(rows[:, :, q], ((0, 0),) * 2 + ((q * step, wp - q * step - read), (0, 0)))
                                      for q in range(blocks)))


def kernel_gradient(job, xp, dy, kernel_shape, patches=None):
    """dK: ``G = rowsᵀ · dY`` pairs every input column of a block with every output column; ``dK[a, b]``
    sums the pairs kernel column ``b`` reads (the Toeplitz pattern); ``patches``: the forward's input rows."""
    kh, kw, channels, filters = kernel_shape
    _, width, read = column_blocks(job.out_hw[1], kw, job.strides[1], job.dilation[1])
    rows = _input_rows(job, xp, kernel_shape) if patches is None else patches
    pairs = ops.matmul(ops.transpose(rows), ops.reshape(dy, (-1, width * filters)))
    mask = ops.cast(column_pairs(kw, read, width, job.strides[1], job.dilation[1]), pairs.dtype)
    return ops.einsum("avcjf,bvj->abcf", ops.reshape(pairs, (kh, read, channels, width, filters)), mask)
