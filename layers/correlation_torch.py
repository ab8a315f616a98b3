"""Eager PyTorch path of the explicit cross-correlation (``groups == 1``, no autograd recording).

Same formula as ``kcnn.layers.correlation``, arranged for eager execution, where every
intermediate is materialised and a fresh large buffer costs page faults:

* the windows of a few examples at a time are copied from a strided view (``Tensor.unfold``)
  into one reused buffer — the whole im2col matrix never exists, yet every matmul keeps the
  full ``kh·kw·C`` depth (BLAS runs 1.7× slower on kernel-row slices of it);
* forward: ``Y[rows] = patches · K`` written in place (``out=``);
* kernel gradient: ``dK += patchesᵀ · dY[rows]`` (``addmm_``);
* input gradient: ``dY[rows] · Kᵀ`` gives every window's gradient, added back into the padded
  input gradient with ``kh·kw`` strided in-place adds (strides and dilation need no special case).

Only used where autograd is off: inside the hand-written backward pass (``custom_gradient``) and
under ``torch.no_grad`` (``predict``). In-place and ``out=`` ops cannot be differentiated.
"""

import torch

# Examples per chunk are chosen so that one chunk's patch matrix holds at most this many elements.
CHUNK_ELEMENTS = 1 << 23


def usable(groups):
    """True when this path may run: PyTorch eager, autograd off, not tracing, one group."""
    return (
        groups == 1
        and not torch.is_grad_enabled()
        and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())
    )


def _window_view(xp, kernel_hw, strides, dilation, out_hw):
    """(N, Ho, Wo, kh, kw, C) strided view of the windows of a padded channels_last input."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_hw, strides, dilation, out_hw
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    windows = xp[:, : span_h + (ho - 1) * sh].unfold(1, span_h, sh).unfold(2, span_w, sw)
    if dh > 1 or dw > 1:
        windows = windows[..., ::dh, ::dw]
    return windows.permute(0, 1, 2, 4, 5, 3)  # unfold puts the window axes last


def _patch_chunks(xp, kernel_hw, strides, dilation, out_hw):
    """Yield (n0, n1, patches) with patches the (rows, kh·kw·C) im2col matrix of examples n0…n1−1.

    The patches live in one buffer reused by every chunk: consume each before the next.
    """
    n, channels = xp.shape[0], xp.shape[-1]
    depth = kernel_hw[0] * kernel_hw[1] * channels
    per_example = out_hw[0] * out_hw[1] * depth
    step = max(1, min(n, CHUNK_ELEMENTS // max(per_example, 1)))
    view = _window_view(xp, kernel_hw, strides, dilation, out_hw)
    buffer = xp.new_empty((step, *view.shape[1:]))
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        chunk = buffer[: n1 - n0]
        chunk.copy_(view[n0:n1])
        yield n0, n1, chunk.view(-1, depth)


def correlate(xp, kernel, strides, dilation, out_hw, keep_patches=False):
    """Valid cross-correlation (no bias) of padded (N, Hp, Wp, C) with (kh, kw, C, F).

    keep_patches: also return the patch matrix when one chunk held every example (else None),
    for ``kernel_gradient`` to reuse.
    """
    kh, kw, channels, filters = kernel.shape
    weights = kernel.reshape(kh * kw * channels, filters)
    out = xp.new_empty((xp.shape[0], *out_hw, filters))
    chunks = 0
    for n0, n1, patches in _patch_chunks(xp, (kh, kw), strides, dilation, out_hw):
        torch.matmul(patches, weights, out=out[n0:n1].view(-1, filters))
        chunks += 1
    if keep_patches:
        return out, patches if chunks == 1 else None
    return out


def kernel_gradient(xp, dy, kernel_shape, strides, dilation, patches=None):
    """dK[a, b, c, f] = Σ_{n,i,j} Xp[n, i·s + a·d, j·s + b·d, c] · dY[n, i, j, f].

    patches: the forward pass's patch matrix of all examples, if it kept one.
    """
    kh, kw, channels, filters = kernel_shape
    if patches is not None:
        return torch.matmul(patches.t(), dy.reshape(-1, filters)).view(kernel_shape)
    grad = xp.new_zeros((kh * kw * channels, filters))
    for n0, n1, patches in _patch_chunks(xp, (kh, kw), strides, dilation, tuple(dy.shape[1:3])):
        grad.addmm_(patches.t(), dy[n0:n1].reshape(-1, filters))
    return grad.view(kernel_shape)


def input_gradient(dy, kernel, padded_hw, strides, dilation):
    """dXp[n, i·s + a·d, j·s + b·d, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f]."""
    kh, kw, channels, filters = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    n, ho, wo, _ = dy.shape
    depth = kh * kw * channels
    weights_t = kernel.reshape(depth, filters).t()
    dxp = dy.new_zeros((n, *padded_hw, channels))
    step = max(1, min(n, CHUNK_ELEMENTS // max(ho * wo * depth, 1)))
    buffer = dy.new_empty((step * ho * wo, depth))
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        windows = buffer[: (n1 - n0) * ho * wo]
        torch.matmul(dy[n0:n1].reshape(-1, filters), weights_t, out=windows)
        windows = windows.view(n1 - n0, ho, wo, kh, kw, channels)
        for a in range(kh):
            for b in range(kw):
                rows = slice(a * dh, a * dh + (ho - 1) * sh + 1, sh)
                cols = slice(b * dw, b * dw + (wo - 1) * sw + 1, sw)
                dxp[n0:n1, rows, cols] += windows[:, :, :, a, b]
    return dxp
