"""The ``"torch"`` arrangement: eager PyTorch, autograd off, one group (in-place and ``out=`` ops cannot be
differentiated or traced; a fresh large buffer costs page faults). The windows of a few examples at a time
are copied from a strided view into one reused buffer, each matmul at the full ``kh·kw·C`` depth (BLAS runs
1.7× slower on kernel-row slices); outputs and gradients are written in place."""

import torch

from kcnn.layers import dispatch


def window_view(xp, kernel_hw, strides, dilation):
    """(N, Ho, Wo, kh, kw, C) strided view of the windows of a padded channels_last input."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, strides, dilation
    windows = xp.unfold(1, (kh - 1) * dh + 1, sh).unfold(2, (kw - 1) * dw + 1, sw)
    return windows[..., ::dh, ::dw].permute(0, 1, 2, 4, 5, 3)  # unfold puts the window axes last


def _patch_chunks(xp, kernel_hw, strides, dilation):
    """Yield (n0, n1, patches): the im2col matrix of examples n0…n1−1, columns ordered (a, b, c),
    (rows, kh·kw·C) — or (examples, kh·kw, Ho·Wo) for one channel, whose copy reads whole image rows,
    not kw-pixel runs (4× faster on LeNet's first layer). One reused buffer: consume each in turn."""
    view = window_view(xp, kernel_hw, strides, dilation)  # (N, Ho, Wo, kh, kw, C)
    n, ho, wo, kh, kw, channels = view.shape
    depth = kh * kw * channels
    step = max(1, min(n, dispatch.MAX_PATCH_ELEMENTS // max(ho * wo * depth, 1)))
    one_channel = channels == 1
    if one_channel:
        view = view[..., 0].permute(0, 3, 4, 1, 2)  # (N, kh, kw, Ho, Wo)
    buffer = xp.new_empty((step, *view.shape[1:]))
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        chunk = buffer[: n1 - n0]
        chunk.copy_(view[n0:n1])
        yield n0, n1, chunk.view(n1 - n0, depth, -1) if one_channel else chunk.view(-1, depth)


def forward(job, xp, kernel):
    """(Y, patches): valid cross-correlation (no bias) of padded (N, Hp, Wp, C) with (kh, kw, C, F),
    and the patch matrix when one chunk held every example (else None), for ``kernel_gradient``."""
    (kh, kw, channels, filters), strides, dilation = kernel.shape, job.strides, job.dilation
    weights = kernel.reshape(kh * kw * channels, filters)
    out = xp.new_empty((xp.shape[0], *job.out_hw, filters))
    chunks = 0
    for n0, n1, patches in _patch_chunks(xp, (kh, kw), strides, dilation):
        if patches.dim() == 2:
            torch.matmul(patches, weights, out=out[n0:n1].view(-1, filters))
        else:  # one-channel layout
            torch.matmul(patches.transpose(1, 2), weights, out=out[n0:n1].view(n1 - n0, -1, filters))
        chunks += 1
    return out, (patches if chunks == 1 else None)


def kernel_gradient(job, xp, dy, kernel_shape, patches=None):
    """dK[a, b, c, f] = Σ_{n,i,j} Xp[n, i·s + a·d, j·s + b·d, c] · dY[n, i, j, f] (``patches``: the
    forward's patch matrix of all examples, if it kept one)."""
    kh, kw, channels, filters = kernel_shape
    grad = xp.new_zeros((kh * kw * channels, filters))
    chunks = (_patch_chunks(xp, (kh, kw), job.strides, job.dilation) if patches is None
              else [(0, len(dy), patches)])
    for n0, n1, chunk in chunks:
        if chunk.dim() == 2:
            grad.addmm_(chunk.t(), dy[n0:n1].reshape(-1, filters))
        else:  # one-channel layout
            grad.addbmm_(chunk, dy[n0:n1].reshape(n1 - n0, -1, filters))
    return grad.view(kernel_shape)


def input_gradient(job, dy, kernel):
    """dXp[n, i·s + a·d, j·s + b·d, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f], one offset at a time:
    a matmul into a reused (N, Ho, Wo, C) buffer, added in place to the strided slice of dXp it came
    from (whole rows at stride 1: 2.6× faster on LeNet than scattering all offsets of one matmul)."""
    kh, kw, channels, filters = kernel.shape
    (sh, sw), (dh, dw) = job.strides, job.dilation
    n, ho, wo, _ = dy.shape
    dxp = dy.new_zeros((n, *job.padded_hw, channels))
    dy2d = dy.reshape(-1, filters)
    term = dy.new_empty((n, ho, wo, channels))
    for a in range(kh):
        for b in range(kw):
            torch.matmul(dy2d, kernel[a, b].t(), out=term.view(-1, channels))
            rows = slice(a * dh, a * dh + (ho - 1) * sh + 1, sh)
            cols = slice(b * dw, b * dw + (wo - 1) * sw + 1, sw)
            dxp[:, rows, cols] += term
    return dxp
