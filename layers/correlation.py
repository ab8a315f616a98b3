"""Explicit 2-D cross-correlation written with ``keras.ops`` (no convolution primitive).

    Y[n, i, j, f] = Σ_a Σ_b Σ_c  Xp[n, i·s_h + a·d_h, j·s_w + b·d_w, c] · K[a, b, c, f]

where ``Xp`` is the zero-padded input, ``s`` the strides and ``d`` the dilation. Each kernel offset
``(a, b)`` reads one strided slice of ``Xp``; the slices are multiplied by that offset's
``(in, out)`` weight matrix and summed. Slices are gathered all at once when that im2col buffer is
small; larger layers go one kernel row at a time or, when a model runs under TensorFlow/JAX with
a static batch, as a loop over bands of output rows (``correlation_bands``). Eager PyTorch has its
own arrangement of the same formula (``correlation_torch``).

The backward pass is written by hand (``keras.ops.custom_gradient``) so that automatic
differentiation does not keep ``kh·kw`` input-sized slices alive for the backward pass:

* the kernel gradient is, per offset, slice-transposed times the output gradient;
* the input gradient, for stride 1, scatters each window's gradient ``dY · K[a, b]ᵀ`` back to the
  input positions the window read; for strides > 1 it is the output gradient correlated with the
  spatially flipped, in/out-transposed kernel, per stride phase (the rows ``p ≡ r mod s`` of the
  input gradient only see the kernel rows ``r, r+s, r+2s, …``), so no zeros are ever inserted.

All tensors here are channels_last ``(N, H, W, C)``; the layer transposes channels_first inputs.
"""

from keras import ops
from keras.backend import backend



def _torch_views_usable():
    """Eager PyTorch gathers windows faster through strided views; exporters can't trace them."""
    if backend() != "torch":
        return False
    import torch

    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())

def _torch_fast_path(groups):
    """The eager PyTorch module (``correlation_torch``) when it applies here, else None."""
    if backend() != "torch":
        return None
    from kcnn.layers import correlation_torch

    return correlation_torch if correlation_torch.usable(groups) else None


# Gather all kh·kw slices at once (one matmul) only while that buffer stays below this many
# elements; above it, one kernel row at a time (kh matmuls) bounds the transient memory.
IM2COL_MAX_ELEMENTS = 1 << 23


def output_length(size, kernel, stride, dilation, pad_total):
    """Output length along one axis: floor((n + p_total − d·(k−1) − 1) / s) + 1."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size, kernel, stride, dilation):
    """(before, after) zero padding that Keras/TensorFlow use for ``padding="same"``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


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
            output_length(hp, self.kh, strides[0], dilation[0], 0),
            output_length(wp, self.kw, strides[1], dilation[1], 0),
        )

    def row_chunks(self):
        """All kernel rows at once while that im2col buffer is small, else one row at a time."""
        ho, wo = self.out_hw
        # Exporters trace with a symbolic batch size: judge by one example then.
        batch = self.n if isinstance(self.n, int) else 1
        size = batch * ho * wo * self.kh * self.kw * self.channels
        if size <= IM2COL_MAX_ELEMENTS:
            return [(0, self.kh)]
        return [(a, a + 1) for a in range(self.kh)]

    def rows(self, a0, a1):
        (sh, sw), (dh, dw), (ho, wo) = self.strides, self.dilation, self.out_hw
        if _torch_views_usable():
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
        return windows.reshape(windows.shape[0], *self.out_hw, -1)

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


def correlate_padded(xp, kernel, strides, dilation, groups, keep_patches=False):
    """Valid cross-correlation of an already padded channels_last input (no bias).

    Args:
        xp: (N, Hp, Wp, C) tensor.
        kernel: (kh, kw, C // groups, F) tensor.
        strides, dilation: (h, w) int pairs.
        groups: number of channel groups.
        keep_patches: also return the im2col patch matrix when it was built in one piece
            (small layers), else None — the kernel gradient reuses it instead of gathering again.
    """
    windows = _Windows(xp, kernel.shape[:2], strides, dilation, groups)
    fast = _torch_fast_path(groups)
    if fast:
        return fast.correlate(xp, ops.convert_to_tensor(kernel), strides, dilation, windows.out_hw, keep_patches)
    chunks = windows.row_chunks()
    out = None
    for a0, a1 in chunks:
        patches = windows.rows(a0, a1)
        term = windows.contract(patches, kernel[a0:a1])
        out = term if out is None else ops.add(out, term)
    if keep_patches:
        return out, patches if len(chunks) == 1 else None
    return out


def _kernel_gradient(xp, dy, kernel_shape, strides, dilation, groups, patches=None):
    """dK[a, b, c, f] = Σ_{n,i,j} Xp[n, i·s + a·d, j·s + b·d, c] · dY[n, i, j, f]."""
    kh, kw, cg, filters = kernel_shape
    fast = _torch_fast_path(groups)
    if fast:
        return fast.kernel_gradient(xp, dy, kernel_shape, strides, dilation, patches)
    windows = _Windows(xp, (kh, kw), strides, dilation, groups)
    if patches is not None:
        return windows.kernel_gradient(patches, dy, kernel_shape)
    chunks = [
        windows.kernel_gradient(windows.rows(a0, a1), dy, (a1 - a0, kw, cg, filters))
        for a0, a1 in windows.row_chunks()
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
    batch = ops.shape(dy)[0] if isinstance(ops.shape(dy)[0], int) else 1
    if batch * ho * wo * kh * kw * cg * groups <= IM2COL_MAX_ELEMENTS:
        chunks = [(0, kh)]
    else:
        chunks = [(a, a + 1) for a in range(kh)]
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


def _input_gradient(dy, kernel, padded_hw, strides, dilation, groups):
    """dXp: scattered back per window (stride 1), or correlated per stride phase."""
    fast = _torch_fast_path(groups)
    if fast:
        return fast.input_gradient(dy, kernel, padded_hw, strides, dilation)
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
            phases.append(
                correlate_padded(dyp, _backward_kernel(sub, groups), (1, 1), (1, 1), groups)
            )
        phase_rows.append(ops.stack(phases, axis=3))  # (N, Qh, Qw, sw, C)
    interleaved = ops.stack(phase_rows, axis=2)  # (N, Qh, sh, Qw, sw, C)
    interleaved = ops.reshape(interleaved, (n, qh * sh, qw * sw, groups * cg))
    return interleaved[:, :hp, :wp, :]


def _band_rows(xp, kernel, out_hw):
    """Output rows per loop iteration for a large layer under TensorFlow/JAX, else None."""
    if backend() == "torch":  # eager: chunks are freed as soon as they are used
        return None
    from kcnn.layers import correlation_bands

    return correlation_bands.band_rows(ops.shape(xp)[0], out_hw, kernel.shape[:2], ops.shape(xp)[-1])


def cross_correlate(x, kernel, strides, dilation, pads, groups, lean_backward):
    """Cross-correlation of a channels_last input with explicit zero padding ``pads``.

    Args:
        x: (N, H, W, C) tensor.
        kernel: (kh, kw, C // groups, F) tensor.
        strides, dilation: (h, w) int pairs.
        pads: ((top, bottom), (left, right)) zero padding.
        groups: number of channel groups.
        lean_backward: use the hand-written backward pass (keeps only ``x``, ``kernel`` and,
            for small layers, the im2col patches for the gradient). When False the plain
            formula is traced, which every exporter and higher-order autodiff understands
            (a static batch of a large layer runs as a loop over output bands: exports trace a
            dynamic batch and get the unrolled formula).
    """
    from kcnn.layers import correlation_bands

    (top, bottom), (left, right) = pads
    spec = ((0, 0), (top, bottom), (left, right), (0, 0))

    def pad(inputs):
        return ops.pad(inputs, spec) if any(v for pair in pads for v in pair) else inputs

    if not lean_backward:
        padded = pad(x)
        # A static batch: a model being run, not traced for export (exports have a dynamic batch).
        if isinstance(ops.shape(padded)[0], int):
            out_hw = _Windows(padded, kernel.shape[:2], strides, dilation, groups).out_hw
            rows = _band_rows(padded, kernel, out_hw)
            if rows:
                return correlation_bands.correlate(padded, kernel, strides, dilation, groups, out_hw, rows)
        return correlate_padded(padded, kernel, strides, dilation, groups)

    @ops.custom_gradient
    def lean(inputs, weights):
        # PyTorch tensors say whether their gradient is wanted (not for a model's input images);
        # TensorFlow and JAX prune unused gradients themselves.
        input_gradient_needed = getattr(inputs, "requires_grad", True)
        padded = pad(inputs)
        hp, wp = ops.shape(padded)[1:3]
        out_hw = _Windows(padded, weights.shape[:2], strides, dilation, groups).out_hw
        rows = _band_rows(padded, weights, out_hw)

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally.
                (upstream,) = args
            padded = pad(inputs)
            dx = None
            if input_gradient_needed:
                if rows and strides == (1, 1):
                    dxp = correlation_bands.input_gradient(upstream, weights, (hp, wp), dilation, groups, rows)
                else:
                    dxp = _input_gradient(upstream, weights, (hp, wp), strides, dilation, groups)
                dx = dxp[:, top : top + ops.shape(inputs)[1], left : left + ops.shape(inputs)[2], :]
            if rows:
                dk = correlation_bands.kernel_gradient(padded, upstream, weights.shape, strides, dilation, groups, rows)
            else:
                dk = _kernel_gradient(padded, upstream, weights.shape, strides, dilation, groups, patches)
            return dx, ops.cast(dk, weights.dtype)

        if rows:
            outputs, patches = correlation_bands.correlate(padded, weights, strides, dilation, groups, out_hw, rows), None
        else:
            outputs, patches = correlate_padded(padded, weights, strides, dilation, groups, keep_patches=True)
        return outputs, grad

    # A tensor copy, not the variable: TensorFlow's custom_gradient rejects functions that
    # read variables unless the gradient function handles them itself.
    return lean(x, ops.copy(kernel))


def resolve_padding(padding, input_hw, kernel_size, strides, dilation):
    """((top, bottom), (left, right)) for "valid", "same" or an explicit padding spec."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple(
            same_padding(n, k, s, d) for n, k, s, d in zip(input_hw, kernel_size, strides, dilation)
        )
    return padding


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def standardize_explicit_padding(padding):
    """Normalise an explicit padding spec to ((top, bottom), (left, right)), or return None.

    Accepts an int ``p``, a pair ``(ph, pw)`` or ``((top, bottom), (left, right))`` of
    non-negative ints (lists are accepted too, as they come back from a saved config).
    Strings are not explicit padding: returns None for them.
    """
    if isinstance(padding, str):
        return None
    error = ValueError(
        "Invalid value for argument `padding`. Expected 'valid', 'same', a non-negative int, "
        "a pair (pad_height, pad_width) or ((top, bottom), (left, right)). "
        f"Received: padding={padding!r}"
    )
    if _is_int(padding):
        pairs = ((padding, padding), (padding, padding))
    elif isinstance(padding, (list, tuple)) and len(padding) == 2:
        if all(_is_int(p) for p in padding):
            pairs = ((padding[0], padding[0]), (padding[1], padding[1]))
        elif all(isinstance(p, (list, tuple)) and len(p) == 2 and all(map(_is_int, p)) for p in padding):
            pairs = tuple(tuple(p) for p in padding)
        else:
            raise error
    else:
        raise error
    if any(v < 0 for pair in pairs for v in pair):
        raise error
    return pairs
