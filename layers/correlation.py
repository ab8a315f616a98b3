"""The explicit cross-correlation behind ``CrossCorrelation2D.call``: one function, :func:`correlate`.

    Y[n, i, j, f] = Σ_a Σ_b Σ_c  Xp[n, i·s_h + a·d_h, j·s_w + b·d_w, c] · K[a, b, c, f]

``Xp`` is the padded channels_last input, ``s`` the strides, ``d`` the dilation. Each kernel offset
``(a, b)`` reads one strided slice of ``Xp`` (a *window* position per output pixel); the windows
side by side make the patch matrix, whose product with the reshaped kernel is ``Y``.
``kcnn.layers.dispatch`` picks how the windows are gathered (``plan.path``): ``"reference"``
(``kcnn.layers.corr2d.cross_correlate``, autodiff), ``"im2col"`` (every window of every example in
one patch matrix, one matmul), ``"kernel_rows"`` (one kernel row of windows per matmul),
``"bands"`` (a loop over bands of output rows, ``correlation_bands``), ``"toeplitz"`` (each kernel
row as a Toeplitz matrix, ``correlation_toeplitz``) or ``"torch"`` (eager PyTorch with autograd
off, ``correlation_torch``).

For training, every path but the reference runs inside ``keras.ops.custom_gradient`` with a
hand-written backward pass, so autodiff never keeps ``kh·kw`` input-sized slices alive:

* kernel gradient: ``dK = patchesᵀ · dY`` (the forward's patch matrix reused when it was built
  in one piece), accumulated in float32 for float16/bfloat16 inputs;
* input gradient: each window's gradient ``dY · K[a, b]ᵀ`` added back where the window was read;
  with strides > 1 once per stride phase (rows ``p ≡ r mod s`` only see kernel rows ``r, r+s, …``).
  In a TensorFlow graph the band loop's forward and each gradient are XLA-compiled (``plan.xla``).
"""

import keras
from keras import ops
from keras.backend import backend

from kcnn.layers import dispatch, validation
from kcnn.layers.corr2d import contract, cross_correlate, offset_slice


def correlate(xp, kernel, strides, dilation, groups=1, training=False, algorithm="auto"):
    """Valid cross-correlation (no bias) of padded channels_last ``xp`` with ``kernel`` (kh, kw, C/g, F).

    ``kernel`` may be float32 while ``xp`` is low precision: it is cast for the product, and its gradient
    stays float32. ``training`` selects the hand-written backward; ``algorithm``: ``dispatch.ALGORITHMS``.
    """
    out_hw = tuple(validation.output_length(n, k, s, d)
                   for n, k, s, d in zip(ops.shape(xp)[1:3], kernel.shape[:2], strides, dilation))
    plan = dispatch.choose(
        backend=backend(), training=bool(training), algorithm=algorithm, batch=ops.shape(xp)[0], out_hw=out_hw,
        kernel_shape=tuple(kernel.shape), groups=groups, strides=strides, dilation=dilation,
        torch_autograd_off=_torch_autograd_off(training),
        tf_graph=_tf_graph(),
    )
    dispatch.note(plan)
    if not plan.hand_written_backward:
        weights = ops.cast(kernel, xp.dtype)
        if plan.path == "reference":
            return cross_correlate(xp, weights, strides, dilation, groups)
        return _forward(plan, xp, weights, strides, dilation, groups, out_hw)[0]

    def forward(inputs, weights):  # (Y, the patch matrix if it was built in one piece else None)
        return _forward(plan, inputs, ops.cast(weights, inputs.dtype), strides, dilation, groups, out_hw)

    def input_gradient(inputs, weights, dy):
        return _input_gradient(plan, dy, ops.cast(weights, inputs.dtype), ops.shape(inputs)[1:3], strides, dilation,
                               groups)

    def kernel_gradient(inputs, weights, dy, patches):
        dk = _kernel_gradient(plan, inputs, dy, weights.shape, strides, dilation, groups, patches)
        return ops.cast(dk, weights.dtype)

    if plan.xla:
        forward, input_gradient, kernel_gradient = _xla(forward, input_gradient, kernel_gradient)

    @ops.custom_gradient
    def lean(inputs, weights):
        # PyTorch tensors say whether their gradient is wanted (not for a model's input images);
        # TensorFlow and JAX prune unused gradients themselves.
        input_gradient_needed = getattr(inputs, "requires_grad", True)
        outputs, patches = forward(inputs, weights)

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally.
                (upstream,) = args
            dx = input_gradient(inputs, weights, upstream) if input_gradient_needed else None
            return dx, kernel_gradient(inputs, weights, upstream, patches)

        return outputs, grad

    # A tensor copy, not the variable: TensorFlow's custom_gradient rejects functions that read
    # variables unless the gradient function handles them itself.
    return lean(xp, ops.copy(kernel))


def _torch_autograd_off(training):
    """Eager PyTorch, not tracing, autograd off (always when training: inside custom_gradient)."""
    if not torch_views_usable():
        return False
    import torch

    return bool(training) or not torch.is_grad_enabled()


def _tf_graph():
    """TensorFlow tracing a graph (``tf.function``, as ``model.fit`` does), not running eagerly."""
    if backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def torch_views_usable():
    """Eager PyTorch gathers windows faster through strided views; exporters can't trace them."""
    if backend() != "torch":
        return False
    import torch

    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _forward(plan, xp, kernel, strides, dilation, groups, out_hw):
    """(Y, the patch matrix if it was built in one piece else None); ``out_hw``: (Ho, Wo)."""
    if plan.path == "torch":
        from kcnn.layers import correlation_torch

        return correlation_torch.correlate(xp, kernel, strides, dilation)
    if plan.path == "bands":
        from kcnn.layers import correlation_bands

        return correlation_bands.correlate(xp, kernel, strides, dilation, groups, out_hw, plan.band_rows), None
    if plan.path == "toeplitz":
        from kcnn.layers import correlation_toeplitz

        return correlation_toeplitz.correlate(xp, kernel, strides, dilation, out_hw), None
    chunks = _row_chunks(plan.path, kernel.shape[0])
    out = None
    for a0, a1 in chunks:
        patches = windows(xp, kernel.shape[:2], strides, dilation, (a0, a1))
        term = contract(patches, kernel[a0:a1], groups)
        out = term if out is None else ops.add(out, term)
    return out, (patches if len(chunks) == 1 else None)


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


def _kernel_gradient(plan, xp, dy, kernel_shape, strides, dilation, groups, patches):
    """dK[a, b, c, f] = Σ_{n,i,j} Xp[n, i·s + a·d, j·s + b·d, c] · dY[n, i, j, f], float32 for low precision."""
    if keras.backend.standardize_dtype(xp.dtype) in ("float16", "bfloat16"):
        xp, dy, patches = ops.cast(xp, "float32"), ops.cast(dy, "float32"), None
    if plan.path == "torch":
        from kcnn.layers import correlation_torch

        return correlation_torch.kernel_gradient(xp, dy, kernel_shape, strides, dilation, patches)
    if plan.path == "bands":
        from kcnn.layers import correlation_bands

        return correlation_bands.kernel_gradient(xp, dy, kernel_shape, strides, dilation, groups, plan.band_rows)
    if plan.path == "toeplitz":
        from kcnn.layers import correlation_toeplitz

        return correlation_toeplitz.kernel_gradient(xp, dy, kernel_shape, strides, dilation)
    if patches is not None:
        return patches_times_gradient(patches, dy, kernel_shape, groups)
    kh, kw, cg, filters = kernel_shape
    chunks = [
        patches_times_gradient(windows(xp, (kh, kw), strides, dilation, (a0, a1)), dy, (a1 - a0, kw, cg, filters),
                               groups)
        for a0, a1 in _row_chunks(plan.path, kh)
    ]
    return chunks[0] if len(chunks) == 1 else ops.concatenate(chunks, axis=0)


def _input_gradient(plan, dy, kernel, padded_hw, strides, dilation, groups):
    """dXp[n, i·s + a·d, j·s + b·d, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f]."""
    if plan.path == "torch":
        from kcnn.layers import correlation_torch

        return correlation_torch.input_gradient(dy, kernel, padded_hw, strides, dilation)
    if plan.path == "toeplitz":
        from kcnn.layers import correlation_toeplitz

        return correlation_toeplitz.input_gradient(dy, kernel, padded_hw, strides, dilation)
    (sh, sw), (hp, wp) = strides, padded_hw
    if (sh, sw) == (1, 1) and plan.path == "bands":
        from kcnn.layers import correlation_bands

        return correlation_bands.input_gradient(dy, kernel, padded_hw, dilation, groups, plan.band_rows)
    if (sh, sw) == (1, 1):
        return scatter_input_gradient(dy, kernel, padded_hw, dilation, groups)
    # Strides > 1 (dilation is then 1): rows r, r + s, … of dXp (phase r) only receive kernel rows
    # r, r + s, …, a stride-1 scatter on the phase's grid; the phases are interleaved back.
    kh, kw, cg, _ = kernel.shape
    n = ops.shape(dy)[0]
    qh, qw = -(-hp // sh), -(-wp // sw)
    phase_rows = []
    for rh in range(sh):
        phases = [
            scatter_input_gradient(dy, kernel[rh::sh, rw::sw], (qh, qw), (1, 1), groups)
            if rh < kh and rw < kw else ops.zeros((n, qh, qw, groups * cg), dtype=dy.dtype)
            for rw in range(sw)
        ]
        phase_rows.append(ops.stack(phases, axis=3))  # (N, Qh, Qw, sw, C)
    interleaved = ops.reshape(ops.stack(phase_rows, axis=2), (n, qh * sh, qw * sw, groups * cg))
    return interleaved[:, :hp, :wp, :]


def scatter_input_gradient(dy, kernel, padded_hw, dilation, groups):
    """dXp for stride 1: dXp[n, i + a·d_h, j + b·d_w, c] += Σ_f dY[n, i, j, f] · K[a, b, c, f].

    One matmul gives every window's gradient; each offset's block is zero-padded into place and
    summed, which XLA fuses into one pass (3–9× faster under XLA than correlating the padded dY
    with the flipped kernel). Kernel rows go one at a time when all would make a large buffer.
    """
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


def _xla(forward, input_gradient, kernel_gradient):
    """TensorFlow graph mode: the band loop's forward and each gradient compiled by XLA, which reuses
    one band's buffers across iterations (a plain ``tf.while_loop`` peaked 35 % higher on a VGG block).
    Two gradient functions, so that graph pruning drops the input gradient where nothing needs it."""
    import tensorflow as tf

    def compiled(function):
        return tf.function(function, jit_compile=True, autograph=False)

    return compiled(forward), compiled(input_gradient), compiled(kernel_gradient)
