"""The explicit cross-correlation behind ``CrossCorrelation2D.call``: one function, :func:`correlate`.

    Y[n, i, j, f] = Σ_a Σ_b Σ_c  Xp[n, i·s_h + a·d_h, j·s_w + b·d_w, c] · K[a, b, c, f]  + bias[f]

Kernel offset ``(a, b)`` reads one strided slice of the padded input ``Xp`` (a *window* per output pixel); the
windows side by side make the patch matrix, whose product with the kernel is ``Y``. ``dispatch`` picks how the
windows are gathered; one module per arrangement (``correlation_im2col``, ``_bands``, ``_toeplitz``, ``_torch``)
runs it through the same ``forward``, ``input_gradient`` and ``kernel_gradient``. Training runs them in
``keras.ops.custom_gradient``, so autodiff never keeps ``kh·kw`` input-sized slices alive: ``dK = patchesᵀ · dY``
(float32 for float16/bfloat16 inputs), ``dXp`` = each window's ``dY · K[a, b]ᵀ`` added back where it was read,
``dbias = Σ dY``.
"""

import functools
from typing import NamedTuple

import keras
from keras import ops
from keras.backend import backend

from kcnn.layers import correlation_bands, correlation_im2col, correlation_toeplitz, dispatch, validation
from kcnn.layers.corr2d import cross_correlate


class Job(NamedTuple):
    """One call's arrangement (``plan``) and geometry, handed to the arrangement's functions."""
    plan: dispatch.Plan
    strides: tuple
    dilation: tuple
    groups: int
    out_hw: tuple  # (Ho, Wo)
    padded_hw: tuple  # (Hp, Wp)


def correlate(xp, kernel, strides, dilation, groups=1, training=False, algorithm="auto", bias=None):
    """Valid cross-correlation of padded channels_last ``xp`` with ``kernel`` (kh, kw, C/g, F), plus ``bias`` (F,)
    if given; float32 weights are cast for the product and keep float32 gradients; ``training`` selects the
    hand-written backward; ``algorithm``: one of ``dispatch.ALGORITHMS``."""
    padded_hw = tuple(ops.shape(xp)[1:3])
    out_hw = tuple(validation.output_length(n, k, s, d)
                   for n, k, s, d in zip(padded_hw, kernel.shape[:2], strides, dilation))
    plan = dispatch.choose(
        backend=backend(), training=bool(training), algorithm=algorithm, batch=ops.shape(xp)[0], out_hw=out_hw,
        kernel_shape=tuple(kernel.shape), groups=groups, strides=strides, dilation=dilation, **_context(training, xp))
    dispatch.note(plan)
    fused = (bias,) if bias is not None and plan.path == "toeplitz" else ()  # in its matmul, as TensorFlow fuses
    if plan.path == "reference":
        y = cross_correlate(xp, ops.cast(kernel, xp.dtype), strides, dilation, groups)
    else:
        y = _product(Job(plan, tuple(strides), tuple(dilation), groups, out_hw, padded_hw), xp, kernel, fused)
    return y if bias is None or fused else ops.add(y, ops.cast(bias, y.dtype))


def _product(job, xp, kernel, fused):
    """The windows times ``kernel`` (+ the ``fused`` bias: () or (b,)), with the hand-written backward if training."""
    arrangement = _arrangement(job.plan.path)

    def forward(inputs, weights, *bias):  # (Y, the patch matrix if it was built in one piece else None)
        return arrangement.forward(job, inputs, *(ops.cast(w, inputs.dtype) for w in (weights, *bias)))

    if not job.plan.hand_written_backward:
        return forward(xp, kernel, *fused)[0]

    def input_gradient(inputs, weights, dy):
        return arrangement.input_gradient(job, dy, ops.cast(weights, inputs.dtype))

    def kernel_gradient(inputs, weights, dy, patches):
        if keras.backend.standardize_dtype(inputs.dtype) in ("float16", "bfloat16"):
            inputs, dy, patches = ops.cast(inputs, "float32"), ops.cast(dy, "float32"), None
        return ops.cast(arrangement.kernel_gradient(job, inputs, dy, weights.shape, patches), weights.dtype)

    if job.plan.xla:
        forward, input_gradient, kernel_gradient = _xla(forward, input_gradient, kernel_gradient)

    @ops.custom_gradient
    def lean(inputs, weights, *bias):
        # PyTorch tensors say whether their gradient is wanted (not for a model's input images);
        # TensorFlow and JAX prune unused gradients themselves.
        input_gradient_needed = getattr(inputs, "requires_grad", True)
        outputs, patches = forward(inputs, weights, *bias)

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally.
                (upstream,) = args
            dx = input_gradient(inputs, weights, upstream) if input_gradient_needed else None
            return dx, kernel_gradient(inputs, weights, upstream, patches), *(bias_gradient(upstream, b) for b in bias)

        return outputs, grad

    # Tensor copies, not the variables: TensorFlow's custom_gradient rejects reading variables.
    return lean(xp, ops.copy(kernel), *(ops.copy(b) for b in fused))


def bias_gradient(dy, bias):
    """dbias[f] = Σ dY[n, i, j, f] in float32, over N·Ho rows of Wo·F first (TF's BiasAddGrad: 1.7× slower)."""
    columns = ops.sum(ops.reshape(ops.cast(dy, "float32"), (-1, dy.shape[2] * dy.shape[3])), axis=0)
    return ops.cast(ops.sum(ops.reshape(columns, (dy.shape[2], dy.shape[3])), axis=0), bias.dtype)


def _arrangement(path):
    """The module that runs ``path`` ("im2col" and "kernel_rows" share one; torch's imports torch)."""
    if path == "torch":
        from kcnn.layers import correlation_torch
        return correlation_torch
    return {"bands": correlation_bands, "toeplitz": correlation_toeplitz}.get(path, correlation_im2col)


def _context(training, xp):
    """``choose``'s flags: ``torch_autograd_off`` (eager PyTorch, not tracing, autograd off: always when training,
    inside custom_gradient), ``tf_graph`` (TensorFlow tracing a graph) and ``accelerator`` (``xp`` on a CUDA device
    on PyTorch, where tensors carry theirs; else :func:`on_accelerator`)."""
    name = backend()
    on_gpu = xp.device.type == "cuda" if name == "torch" else on_accelerator(name)
    flags = {"torch_autograd_off": False, "tf_graph": False, "accelerator": on_gpu}
    if name == "tensorflow":
        import tensorflow as tf
        flags["tf_graph"] = not tf.executing_eagerly()
    elif correlation_im2col.torch_views_usable():
        import torch
        flags["torch_autograd_off"] = bool(training) or not torch.is_grad_enabled()
    return flags


@functools.cache
def on_accelerator(name):
    """Whether Keras backend ``name`` (TensorFlow or JAX) computes on a GPU or TPU: its default devices."""
    return not keras.distribution.list_devices()[0].startswith("cpu")


def _xla(forward, input_gradient, kernel_gradient):
    """The band loop's forward and gradients XLA-compiled (it reuses one band's buffers); the gradients
    apart, so that graph pruning drops the input gradient where nothing needs it."""
    import tensorflow as tf
    return tuple(tf.function(f, jit_compile=True, autograph=False) for f in (forward, input_gradient, kernel_gradient))
