"""The ``"im2col"`` and ``"kernel_rows"`` arrangements: the windows as one patch matrix, one matmul.

``"im2col"`` stacks every window of every example (``kh·kw·C`` columns) and multiplies once;
``"kernel_rows"`` (large layers) gathers one kernel row of windows at a time, ``kh`` matmuls. The
window helpers here serve the band loop (``correlation_bands``) too.
"""

from keras import ops
from keras.backend import backend

from kcnn.layers import dispatch
from kcnn.layers.corr2d import contract, offset_slice


def torch_views_usable():
    """Eager PyTorch gathers windows faster through strided views; exporters can't trace them."""
    if backend() != "torch":
        return False
    import torch
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _row_chunks(path, kh):
    """Kernel rows gathered per matmul: one at a time (kernel_rows) or all at once."""
    return [(a, a + 1) for a in range(kh)] if path == "kernel_rows" else [(0, kh)]


def windows(xp, kernel_hw, strides, dilation, kernel_rows=None):
    """The windows of kernel rows ``a0 … a1−1`` (default: all) as a patch matrix (N, Ho, Wo, R·kw·C),
    columns ordered (a, b, c): the strided slices of the formula side by side."""
    a0, a1 = kernel_rows or (0, kernel_hw[0])
    if torch_views_usable():
        from kcnn.layers import correlation_torch
        view = correlation_torch.window_view(xp, kernel_hw, strides, dilation)[:, :, :, a0:a1]
        n, ho, wo, r, kw, c = view.shape  # no -1: torch cannot infer it when N is 0
        return view.reshape(n, ho, wo, r * kw * c)  # 5–10× faster than cat of small slices
    slices = [offset_slice(xp, (1, 2), (a, b), kernel_hw, strides, dilation)
              for a in range(a0, a1) for b in range(kernel_hw[1])]
    return slices[0] if len(slices) == 1 else ops.concatenate(slices, axis=-1)


def forward(job, xp, kernel):
    """(Y, the patch matrix if it was built in one piece else None)."""
    chunks = _row_chunks(job.plan.path, kernel.shape[0])
    out = None
    for a0, a1 in chunks:
        patches = windows(xp, kernel.shape[:2], job.strides, job.dilation, (a0, a1))
        term = contract(patches, kernel[a0:a1], job.groups)
        out = term if out is None else ops.add(out, term)
    return out, (patches if len(chunks) == 1 else None)


def patches_times_gradient(patches, dy, kernel_rows_shape, groups):
    """Σ over batch and positions of patchesᵀ · dY → (R, kw, C/g, F)."""
    r, kw, cg, filters = kernel_rows_shape
    if groups == 1:
        grad = ops.matmul(ops.transpose(ops.reshape(patches, (-1, r * kw * cg))), ops.reshape(dy, (-1, filters)))
        return ops.reshape(grad, kernel_rows_shape)
    ho, wo = ops.shape(dy)[1:3]
    view = ops.reshape(patches, (-1, ho * wo, r * kw, groups, cg))
    grad = ops.einsum("nlpgc,nlgf->pcgf", view, ops.reshape(dy, (-1, ho * wo, groups, filters // groups)))
    return ops.reshape(grad, kernel_rows_shape)


def kernel_gradient(job, xp, dy, kernel_shape, patches):
    """dK[a, b, c, f] = Σ_{n,i,j} Xp[n, i·s + a·d, j·s + b·d, c] · dY[n, i, j, f]: the forward's
    patch matrix reused when it kept one, else gathered again, per kernel row for kernel_rows."""
    if patches is not None:
        return patches_times_gradient(patches, dy, kernel_shape, job.groups)
    kh, kw, cg, filters = kernel_shape
    chunks = [patches_times_gradient(windows(xp, (kh, kw), job.strides, job.dilation, (a0, a1)), dy,
                                     (a1 - a0, kw, cg, filters), job.groups)
              for a0, a1 in _row_chunks(job.plan.path, kh)]
    return chunks[0] if len(chunks) == 1 else ops.concatenate(chunks, axis=0)


def input_gradient(job, dy, kernel):
    """dXp[n, i·s + a·d, j·s + b·d, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f]. With strides > 1 (dilation
    is then 1), rows r, r + s, … of dXp (phase r) only receive kernel rows r, r + s, …: a stride-1
    scatter on the phase's grid, the phases interleaved back."""
    (sh, sw), (hp, wp), groups = job.strides, job.padded_hw, job.groups
    if (sh, sw) == (1, 1):
        return scatter_input_gradient(dy, kernel, (hp, wp), job.dilation, groups)
    (kh, kw, cg, _), n = kernel.shape, ops.shape(dy)[0]
    qh, qw = -(-hp // sh), -(-wp // sw)
    phase_rows = []
    for rh in range(sh):
        phases = [scatter_input_gradient(dy, kernel[rh::sh, rw::sw], (qh, qw), (1, 1), groups) if rh < kh and rw < kw
                  else ops.zeros((n, qh, qw, groups * cg), dtype=dy.dtype) for rw in range(sw)]
        phase_rows.append(ops.stack(phases, axis=3))  # (N, Qh, Qw, sw, C)
    interleaved = ops.reshape(ops.stack(phase_rows, axis=2), (n, qh * sh, qw * sw, groups * cg))
    return interleaved[:, :hp, :wp, :]


def scatter_input_gradient(dy, kernel, padded_hw, dilation, groups):
    """dXp for stride 1: dXp[n, i + a·d_h, j + b·d_w, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f].

    One matmul gives every window's gradient; each offset's block is zero-padded into place and
    summed, which XLA fuses into one pass (3–9× faster than correlating dY with the flipped kernel).
    Kernel rows go one at a time when all would make a large buffer."""
    kh, kw, cg, filters = kernel.shape
    (dh, dw), (hp, wp) = dilation, padded_hw
    n, ho, wo = ops.shape(dy)[:3]
    fits = dispatch.patch_elements(n, (ho, wo), (kh, kw), cg * groups) <= dispatch.MAX_PATCH_ELEMENTS
    dxp = None
    for a0, a1 in _row_chunks("im2col" if fits else "kernel_rows", kh):
        r = a1 - a0
        if groups == 1:
            weights = ops.reshape(kernel[a0:a1], (r * kw * cg, filters))
            grads = ops.matmul(ops.reshape(dy, (-1, filters)), ops.transpose(weights))
        else:
            weights = ops.reshape(kernel[a0:a1], (r * kw, cg, groups, filters // groups))
            grads = ops.einsum("mgf,pcgf->mpgc", ops.reshape(dy, (-1, groups, filters // groups)), weights)
        grads = ops.reshape(grads, (-1, ho, wo, r * kw, groups * cg))
        for a in range(a0, a1):
            for b in range(kw):
                top, left = a * dh, b * dw
                term = ops.pad(grads[:, :, :, (a - a0) * kw + b],
                               ((0, 0), (top, hp - top - ho), (left, wp - left - wo), (0, 0)))
                dxp = term if dxp is None else ops.add(dxp, term)
    return dxp
