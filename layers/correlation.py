"""The fast arrangements of the explicit 2-D cross-correlation (keras.ops, no convolution primitive).

    Y[n, i, j, f] = Σ_a Σ_b Σ_c  Xp[n, i·s_h + a·d_h, j·s_w + b·d_w, c] · K[a, b, c, f]

where ``Xp`` is the zero-padded input, ``s`` the strides and ``d`` the dilation. Each kernel offset
``(a, b)`` reads one strided slice of ``Xp``; the slices are multiplied by that offset's
``(in, out)`` weight matrix and summed. ``path`` (chosen by ``kcnn.layers.dispatch``) says how
the slices are gathered: all at once (``"im2col"``), one kernel row at a time (``"kernel_rows"``),
or by the eager PyTorch module (``"torch"``, ``correlation_torch``); ``correlation_bands`` loops
over bands of output rows.

The hand-written backward pass (wired up in ``kcnn.layers.engine``):

* the kernel gradient is, per offset, slice-transposed times the output gradient;
* the input gradient, for stride 1, scatters each window's gradient ``dY · K[a, b]ᵀ`` back to the
  input positions the window read; for strides > 1 it is the output gradient correlated with the
  spatially flipped, in/out-transposed kernel, per stride phase (the rows ``p ≡ r mod s`` of the
  input gradient only see the kernel rows ``r, r+s, r+2s, …``), so no zeros are ever inserted.

All tensors here are channels_last ``(N, H, W, C)``; the layer transposes channels_first inputs.
"""

from keras import ops
from keras.backend import backend

from kcnn.layers import dispatch, validation


def torch_views_usable():
    """Eager PyTorch gathers windows faster through strided views; exporters can't trace them."""
    if backend() != "torch":
        return False
    import torch

    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _row_chunks(path, kh):
    """Kernel rows gathered per matmul: all at once (im2col) or one at a time (kernel_rows)."""
    return [(0, kh)] if path == "im2col" else [(a, a + 1) for a in range(kh)]


class _Windows:
    """The sliding windows of a padded input, gathered a few kernel rows at a time.

    ``rows(a0, a1)`` returns the windows of kernel rows ``a0 … a1−1`` as a channels_last patch
    matrix (N, Ho, Wo, R·kw·C), ordered (a, b, c): the strided slices of the formula, side by
    side. ``contract`` and ``kernel_gradient`` apply the matching kernel layout, block-diagonal
    over ``groups``.
    """

    def __init__(self, xp, kernel_hw, strides, dilation, groups):
        self.xp = xp
        self.kh, self.kw = kernel_hw
        self.strides, self.dilation, self.groups = strides, dilation, groups
        n, hp, wp, channels = ops.shape(xp)
        self.n, self.channels = n, channels
        self.out_hw = (
            validation.output_length(hp, self.kh, strides[0], dilation[0]),
            validation.output_length(wp, self.kw, strides[1], dilation[1]),
        )

    def rows(self, a0, a1):
        (sh, sw), (dh, dw), (ho, wo) = self.strides, self.dilation, self.out_hw
        if torch_views_usable():
            return self._rows_torch(a0, a1)
        slices = [
            self.xp[:, a * dh : a * dh + (ho - 1) * sh + 1 : sh, b * dw : b * dw + (wo - 1) * sw + 1 : sw, :]
            for a in range(a0, a1)
            for b in range(self.kw)
        ]
        return slices[0] if len(slices) == 1 else ops.concatenate(slices, axis=-1)

    def _rows_torch(self, a0, a1):
        """Same patches from strided window views (``Tensor.unfold``) and one reshape copy.

        Eager PyTorch copies each small channels-last slice element by element in ``cat``;
        the view-and-reshape gathers the same numbers 5–10× faster (see bench notes).
        """
        from kcnn.layers import correlation_torch

        band = self.xp[:, a0 * self.dilation[0] :]
        windows = correlation_torch._window_view(band, (a1 - a0, self.kw), self.strides, self.dilation, self.out_hw)
        n, ho, wo, r, kw, c = windows.shape  # no -1: torch cannot infer it when N is 0
        return windows.reshape(n, ho, wo, r * kw * c)

    def contract(self, patches, kernel_rows):
        """patches of R kernel rows · kernel_rows (R, kw, C/g, F) → (N, Ho, Wo, F)."""
        r, kw, cg, filters = kernel_rows.shape
        (ho, wo), groups = self.out_hw, self.groups
        if groups == 1:
            return ops.matmul(patches, ops.reshape(kernel_rows, (r * kw * cg, filters)))
        view = ops.reshape(patches, (-1, ho * wo, r * kw, groups, cg))
        kernel = ops.reshape(kernel_rows, (r * kw, cg, groups, filters // groups))
        out = ops.einsum("nlpgc,pcgf->nlgf", view, kernel)
        return ops.reshape(out, (-1, ho, wo, filters))

    def kernel_gradient(self, patches, dy, kernel_rows_shape):
        """Σ over batch and positions of patchesᵀ · dY → (R, kw, C/g, F)."""
        r, kw, cg, filters = kernel_rows_shape
        (ho, wo), groups = self.out_hw, self.groups
        if groups == 1:
            patches = ops.reshape(patches, (-1, r * kw * cg))
            grad = ops.matmul(ops.transpose(patches), ops.reshape(dy, (-1, filters)))
            return ops.reshape(grad, kernel_rows_shape)
        view = ops.reshape(patches, (-1, ho * wo, r * kw, groups, cg))
        dy = ops.reshape(dy, (-1, ho * wo, groups, filters // groups))
        grad = ops.einsum("nlpgc,nlgf->pcgf", view, dy)
        return ops.reshape(grad, kernel_rows_shape)


def correlate_padded(xp, kernel, strides, dilation, groups, path, keep_patches=False):
    """Valid cross-correlation of an already padded channels_last input (no bias).

    Args:
        xp: (N, Hp, Wp, C) tensor.
        kernel: (kh, kw, C // groups, F) tensor.
        strides, dilation: (h, w) int pairs.
        groups: number of channel groups.
        path: ``"torch"``, ``"im2col"`` or ``"kernel_rows"`` (see ``kcnn.layers.dispatch``).
        keep_patches: also return the im2col patch matrix when it was built in one piece,
            else None — the kernel gradient reuses it instead of gathering again.
    """
    windows = _Windows(xp, kernel.shape[:2], strides, dilation, groups)
    if path == "torch":
        from kcnn.layers import correlation_torch

        return correlation_torch.correlate(xp, kernel, strides, dilation, windows.out_hw, keep_patches)
    chunks = _row_chunks(path, windows.kh)
    out = None
    for a0, a1 in chunks:
        patches = windows.rows(a0, a1)
        term = windows.contract(patches, kernel[a0:a1])
        out = term if out is None else ops.add(out, term)
    if keep_patches:
        return out, patches if len(chunks) == 1 else None
    return out


def kernel_gradient(xp, dy, kernel_shape, strides, dilation, groups, path, patches=None):
    """dK[a, b, c, f] = Σ_{n,i,j} Xp[n, i·s + a·d, j·s + b·d, c] · dY[n, i, j, f]."""
    kh, kw, cg, filters = kernel_shape
    if path == "torch":
        from kcnn.layers import correlation_torch

        return correlation_torch.kernel_gradient(xp, dy, kernel_shape, strides, dilation, patches)
    windows = _Windows(xp, (kh, kw), strides, dilation, groups)
    if patches is not None:
        return windows.kernel_gradient(patches, dy, kernel_shape)
    chunks = [
        windows.kernel_gradient(windows.rows(a0, a1), dy, (a1 - a0, kw, cg, filters))
        for a0, a1 in _row_chunks(path, kh)
    ]
    return chunks[0] if len(chunks) == 1 else ops.concatenate(chunks, axis=0)


def _backward_kernel(kernel, groups):
    """Flip (kh, kw, C/g, F) spatially and swap in/out per group → (kh, kw, F/g, C)."""
    kh, kw, cg, filters = kernel.shape
    fg = filters // groups
    flipped = ops.flip(kernel, axis=(0, 1))
    flipped = ops.reshape(flipped, (kh, kw, cg, groups, fg))
    flipped = ops.transpose(flipped, (0, 1, 4, 3, 2))
    return ops.reshape(flipped, (kh, kw, fg, groups * cg))


def _window_gradients(dy, kernel_rows, groups):
    """dY · K[a, b]ᵀ for the R given kernel rows → (N, Ho, Wo, R·kw, C): each window's gradient."""
    r, kw, cg, filters = kernel_rows.shape
    ho, wo = ops.shape(dy)[1:3]
    if groups == 1:
        weights = ops.reshape(kernel_rows, (r * kw * cg, filters))
        windows = ops.matmul(ops.reshape(dy, (-1, filters)), ops.transpose(weights))
    else:
        dy = ops.reshape(dy, (-1, groups, filters // groups))
        weights = ops.reshape(kernel_rows, (r * kw, cg, groups, filters // groups))
        windows = ops.einsum("mgf,pcgf->mpgc", dy, weights)
    return ops.reshape(windows, (-1, ho, wo, r * kw, groups * cg))


def _scatter_input_gradient(dy, kernel, padded_hw, dilation, groups):
    """dXp for stride 1: every window's gradient added back where the window was read.

    dXp[n, i + a·d_h, j + b·d_w, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f]: one matmul gives the
    windows' gradients and each offset's block is zero-padded into place and summed, which
    XLA fuses into one pass. Kernel rows go one at a time when all would make a large buffer.
    3–9× faster under XLA than correlating the padded dY with the flipped kernel.
    """
    kh, kw, cg, _ = kernel.shape
    (dh, dw), (hp, wp) = dilation, padded_hw
    ho, wo = ops.shape(dy)[1:3]
    elements = dispatch.patch_elements(ops.shape(dy)[0], (ho, wo), (kh, kw), cg * groups)
    chunks = _row_chunks("im2col" if elements <= dispatch.MAX_PATCH_ELEMENTS else "kernel_rows", kh)
    dxp = None
    for a0, a1 in chunks:
        windows = _window_gradients(dy, kernel[a0:a1], groups)
        for a in range(a0, a1):
            for b in range(kw):
                top, left = a * dh, b * dw
                term = ops.pad(
                    windows[:, :, :, (a - a0) * kw + b],
                    ((0, 0), (top, hp - top - ho), (left, wp - left - wo), (0, 0)),
                )
                dxp = term if dxp is None else ops.add(dxp, term)
    return dxp


def input_gradient(dy, kernel, padded_hw, strides, dilation, groups, path):
    """dXp: scattered back per window (stride 1), or correlated per stride phase."""
    if path == "torch":
        from kcnn.layers import correlation_torch

        return correlation_torch.input_gradient(dy, kernel, padded_hw, strides, dilation)
    kh, kw, cg, filters = kernel.shape
    sh, sw = strides
    hp, wp = padded_hw
    ho, wo = ops.shape(dy)[1:3]
    if sh == 1 and sw == 1:
        return _scatter_input_gradient(dy, kernel, padded_hw, dilation, groups)
    # strides > 1 implies dilation 1 (Keras forbids both).
    qh, qw = -(-hp // sh), -(-wp // sw)
    n = ops.shape(dy)[0]
    phase_rows = []
    for rh in range(sh):
        phases = []
        for rw in range(sw):
            sub = kernel[rh::sh, rw::sw]
            th, tw = sub.shape[0], sub.shape[1]
            if th == 0 or tw == 0:
                phases.append(ops.zeros((n, qh, qw, groups * cg), dtype=dy.dtype))
                continue
            dyp = ops.pad(dy, ((0, 0), (th - 1, qh - ho), (tw - 1, qw - wo), (0, 0)))
            elements = dispatch.patch_elements(n, (qh, qw), (th, tw), filters)
            phase_path = "im2col" if elements <= dispatch.MAX_PATCH_ELEMENTS else "kernel_rows"
            phases.append(correlate_padded(dyp, _backward_kernel(sub, groups), (1, 1), (1, 1), groups, phase_path))
        phase_rows.append(ops.stack(phases, axis=3))  # (N, Qh, Qw, sw, C)
    interleaved = ops.stack(phase_rows, axis=2)  # (N, Qh, sh, Qw, sw, C)
    interleaved = ops.reshape(interleaved, (n, qh * sh, qw * sw, groups * cg))
    return interleaved[:, :hp, :wp, :]
