"""Runs one call of the explicit cross-correlation: padding, the planned arrangement, the backward.

:func:`cross_correlate` asks ``kcnn.layers.dispatch.choose`` for a plan and runs it:

* ``"reference"`` — ``kcnn.layers.reference`` (autodiff);
* otherwise, for inference, the planned forward arrangement (autodiff-able keras.ops, or the
  eager PyTorch module under ``no_grad``);
* for training, the same forward inside ``keras.ops.custom_gradient`` with a hand-written
  backward pass, so that autodiff never keeps ``kh·kw`` input-sized slices alive; in a
  TensorFlow graph (``plan.xla``) the forward, the input gradient and the kernel gradient are
  three XLA-compiled functions under ``tf.custom_gradient``.

Low precision (``float16`` / ``bfloat16`` inputs, e.g. under ``mixed_bfloat16``): the forward and
the input gradient run in the input dtype; the kernel gradient is accumulated in float32 from
float32 copies of the padded input and the output gradient, and returned in the kernel's dtype.
"""

import keras
from keras import ops
from keras.backend import backend

from kcnn.layers import correlation, correlation_bands, dispatch, reference, validation

_LOW_PRECISION = ("float16", "bfloat16")


def _torch_autograd_off(training):
    """PyTorch eager, not tracing, and autograd off for the forward pass (always when training:
    the hand-written backward's forward function runs under ``torch.autograd.Function``)."""
    if backend() != "torch" or not correlation.torch_views_usable():
        return False
    import torch

    return bool(training) or not torch.is_grad_enabled()


def _tf_graph():
    """TensorFlow tracing a graph (``tf.function``, as ``model.fit`` does), not running eagerly."""
    if backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def plan_for(x_shape, kernel_shape, strides, dilation, pads, groups, training, algorithm):
    """The dispatch plan of a call on a channels_last input of shape ``x_shape``."""
    (top, bottom), (left, right) = pads
    out_hw = (
        validation.output_length(x_shape[1], kernel_shape[0], strides[0], dilation[0], top + bottom),
        validation.output_length(x_shape[2], kernel_shape[1], strides[1], dilation[1], left + right),
    )
    plan = dispatch.choose(
        backend=backend(), training=bool(training), algorithm=algorithm, batch=x_shape[0],
        out_hw=out_hw, kernel_shape=tuple(kernel_shape), groups=groups,
        torch_autograd_off=_torch_autograd_off(training), tf_graph=_tf_graph(),
    )
    return plan, out_hw


def _forward(plan, xp, kernel, strides, dilation, groups, out_hw, keep_patches=False):
    if plan.path == "bands":
        out = correlation_bands.correlate(xp, kernel, strides, dilation, groups, out_hw, plan.band_rows)
        return (out, None) if keep_patches else out
    return correlation.correlate_padded(xp, kernel, strides, dilation, groups, plan.path, keep_patches)


def cross_correlate(x, kernel, strides, dilation, pads, groups, training, algorithm="auto"):
    """Cross-correlation of a channels_last input with explicit zero padding ``pads`` (no bias).

    Args:
        x: (N, H, W, C) tensor in the compute dtype.
        kernel: (kh, kw, C // groups, F) tensor; may be float32 while ``x`` is low precision
            (its gradient then keeps float32).
        strides, dilation: (h, w) int pairs.
        pads: ((top, bottom), (left, right)) zero padding.
        groups: number of channel groups.
        training: True for the hand-written backward pass (``plan.hand_written_backward``).
        algorithm: one of ``kcnn.layers.dispatch.ALGORITHMS``.
    """
    plan, out_hw = plan_for(tuple(ops.shape(x)), kernel.shape, strides, dilation, pads, groups, training, algorithm)
    dispatch.note(plan)
    (top, bottom), (left, right) = pads
    spec = ((0, 0), (top, bottom), (left, right), (0, 0))

    def pad(inputs):
        return ops.pad(inputs, spec) if any(v for pair in pads for v in pair) else inputs

    if not plan.hand_written_backward:
        weights = ops.cast(kernel, x.dtype)
        if plan.path == "reference":
            return reference.cross_correlate(pad(x), weights, strides, dilation, groups, out_hw)
        return _forward(plan, pad(x), weights, strides, dilation, groups, out_hw)

    if plan.xla:
        return _xla_lean(plan, x, ops.copy(kernel), pad, pads, strides, dilation, groups, out_hw)

    @ops.custom_gradient
    def lean(inputs, weights):
        # PyTorch tensors say whether their gradient is wanted (not for a model's input images);
        # TensorFlow and JAX prune unused gradients themselves.
        input_gradient_needed = getattr(inputs, "requires_grad", True)
        compute_weights = ops.cast(weights, inputs.dtype)
        padded = pad(inputs)
        padded_hw = tuple(ops.shape(padded)[1:3])
        outputs, patches = _forward(plan, padded, compute_weights, strides, dilation, groups, out_hw, keep_patches=True)

        def grad(*args, upstream=None):
            if upstream is None:  # TensorFlow and JAX pass the upstream gradient positionally.
                (upstream,) = args
            dx = None
            if input_gradient_needed:
                dx = _input_gradient(plan, upstream, compute_weights, padded_hw, strides, dilation, groups)
                dx = dx[:, top : top + ops.shape(inputs)[1], left : left + ops.shape(inputs)[2], :]
            dk = _kernel_gradient(plan, pad(inputs), upstream, weights.shape, strides, dilation, groups, patches)
            return dx, ops.cast(dk, weights.dtype)

        return outputs, grad

    # A tensor copy, not the variable: TensorFlow's custom_gradient rejects functions that
    # read variables unless the gradient function handles them itself.
    return lean(x, ops.copy(kernel))


def _input_gradient(plan, dy, weights, padded_hw, strides, dilation, groups):
    if plan.path == "bands" and tuple(strides) == (1, 1):
        return correlation_bands.input_gradient(dy, weights, padded_hw, dilation, groups, plan.band_rows)
    path = "torch" if plan.path == "torch" else "im2col"
    return correlation.input_gradient(dy, weights, padded_hw, strides, dilation, groups, path)


def _kernel_gradient(plan, xp, dy, kernel_shape, strides, dilation, groups, patches):
    """The kernel gradient, accumulated in float32 when the compute dtype is low precision."""
    if keras.backend.standardize_dtype(xp.dtype) in _LOW_PRECISION:
        xp, dy, patches = ops.cast(xp, "float32"), ops.cast(dy, "float32"), None
    if plan.path == "bands":
        return correlation_bands.kernel_gradient(xp, dy, kernel_shape, strides, dilation, groups, plan.band_rows)
    return correlation.kernel_gradient(xp, dy, kernel_shape, strides, dilation, groups, plan.path, patches)


def _xla_lean(plan, x, kernel, pad, pads, strides, dilation, groups, out_hw):
    """TensorFlow graph mode: the forward and the hand-written backward each compiled by XLA.

    Without XLA every slice, pad and matmul of the arrangement is its own TensorFlow op (and
    each slice's gradient a full-size copy); compiled, XLA fuses the gathers into the matmuls.
    """
    import tensorflow as tf

    (top, _), (left, _) = pads

    @tf.function(jit_compile=True, autograph=False)
    def forward(inputs, weights):
        return _forward(plan, pad(inputs), ops.cast(weights, inputs.dtype), strides, dilation, groups, out_hw)

    # Two compiled functions, so that graph pruning drops the input gradient where nothing needs it
    # (a model's first layer).
    @tf.function(jit_compile=True, autograph=False)
    def input_gradient(inputs, weights, upstream):
        padded_hw = (inputs.shape[1] + pads[0][0] + pads[0][1], inputs.shape[2] + pads[1][0] + pads[1][1])
        dxp = _input_gradient(plan, upstream, ops.cast(weights, inputs.dtype), padded_hw, strides, dilation, groups)
        return dxp[:, top : top + inputs.shape[1], left : left + inputs.shape[2], :]

    @tf.function(jit_compile=True, autograph=False)
    def kernel_gradient(inputs, weights, upstream):
        dk = _kernel_gradient(plan, pad(inputs), upstream, weights.shape, strides, dilation, groups, None)
        return ops.cast(dk, weights.dtype)

    @tf.custom_gradient
    def lean(inputs, weights):
        def grad(upstream):
            return input_gradient(inputs, weights, upstream), kernel_gradient(inputs, weights, upstream)

        return forward(inputs, weights), grad

    return lean(x, kernel)
