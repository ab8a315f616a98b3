"""What the window view needs of each explained layer, read from Keras layer configs and weights.

:func:`window_spec` describes how one conv or pooling layer slides over its input: kernel or pool
size, strides, dilation, groups, the zero padding as explicit ``[top, bottom, left, right]``
numbers (computed with :mod:`kcnn.layers.validation`, the helper the explicit layers use, so
``"same"`` on a strided layer gives the exact asymmetric numbers), the activation's name, the data
format and, for pooling, the op and whether padded zeros count in a mean. :func:`conv_weights` gives
the kernel as ``(kh, kw, in/groups, out)`` float32 and the bias. Everything comes from the Keras
model, never from the exported graph's nodes, so it stays right however the exporter lowers layers.

A ``ZeroPadding2D`` directly in front of a convolution (what ``kcnn.models`` builds for built-in
convs with PyTorch-style padding) is folded into the conv's padding: the window is then taken from
the padding layer's input and its zeros are shown as padding, as for the explicit layer.
"""

from __future__ import annotations

import keras
import numpy as np

from kcnn.layers import validation

__all__ = ["conv_source", "conv_weights", "window_spec"]


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    try:
        name = keras.activations.serialize(activation)
    except Exception:  # a custom callable Keras cannot name
        name = getattr(activation, "__name__", None)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
        name = name if isinstance(name, str) else None
    return None if name in (None, "linear") else str(name)


def _spatial(shape, data_format):
    """``[H, W]`` of a rank-4 ``(batch, ...)`` shape."""
    return list(int(d) for d in (shape[2:4] if data_format == "channels_first" else shape[1:3]))


def _zero_padding(layer):
    """``((top, bottom), (left, right))`` of a ``ZeroPadding2D``."""
    return tuple((int(a), int(b)) for a, b in layer.padding)


def conv_source(layer):
    """``(tensor, ((top, bottom), (left, right)))``: the tensor the window is taken from.

    The conv's own input, or, when that is the output of a ``ZeroPadding2D`` with the same data
    format, the padding layer's input and its padding (folded into the conv's).
    """
    tensor, extra = layer.input, ((0, 0), (0, 0))
    history = getattr(tensor, "_keras_history", None)
    producer = history[0] if history else None
    if (isinstance(producer, keras.layers.ZeroPadding2D)
            and producer.data_format == getattr(layer, "data_format", "channels_last")):
        tensor, extra = producer.input, _zero_padding(producer)
    return tensor, extra


def _pool_padding(layer, input_hw):
    """``(pads, count_include_pad)`` of a Keras or ``kcnn.layers`` pooling layer."""
    padding = layer.padding
    if isinstance(padding, str):
        padding = padding.lower()
    if padding == "valid":
        return ((0, 0), (0, 0)), True
    if padding == "same":
        pads = tuple(validation.same_padding(n, k, s)
                     for n, k, s in zip(input_hw, layer.pool_size, layer.strides))
        return pads, False  # Keras and kcnn.layers "same" average only the real elements
    return tuple((int(a), int(b)) for a, b in padding), True  # torch-style: padded zeros count


def window_spec(layer, kind):
    """JSON-ready geometry of ``layer`` (``kind`` ``"conv"`` or ``"pool"``), or None.

    None for a layer whose outputs are not one window ⋆ one kernel (``SeparableConv2D``).
    """
    data_format = getattr(layer, "data_format", None) or "channels_last"
    if kind == "pool":
        input_hw = _spatial(layer.input.shape, data_format)
        pads, include = _pool_padding(layer, input_hw)
        op = "max" if "max" in type(layer).__name__.lower() else "avg"
        return {"op": op, "size": [int(k) for k in layer.pool_size],
                "strides": [int(s) for s in layer.strides], "dilation": [1, 1],
                "pads": [pads[0][0], pads[0][1], pads[1][0], pads[1][1]],
                "count_include_pad": include, "data_format": data_format,
                "input_shape": input_hw}
    if isinstance(layer, keras.layers.SeparableConv2D):
        return None
    tensor, extra = conv_source(layer)
    own_hw = _spatial(layer.input.shape, data_format)
    padding = validation.standardize_padding(layer.padding)
    own = validation.resolve_padding(padding, own_hw, layer.kernel_size, layer.strides,
                                     layer.dilation_rate)
    pads = [extra[0][0] + own[0][0], extra[0][1] + own[0][1],
            extra[1][0] + own[1][0], extra[1][1] + own[1][1]]
    in_channels = int(tensor.shape[1 if data_format == "channels_first" else -1])
    depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
    groups = in_channels if depthwise else int(getattr(layer, "groups", 1))
    return {"size": [int(k) for k in layer.kernel_size],
            "strides": [int(s) for s in layer.strides],
            "dilation": [int(d) for d in layer.dilation_rate], "groups": groups, "pads": pads,
            "activation": _activation_name(layer), "use_bias": bool(layer.use_bias),
            "data_format": data_format, "input_shape": _spatial(tensor.shape, data_format)}


def conv_weights(layer):
    """``(kernel (kh, kw, in/groups, out) float32, bias (out,) float32 or None)`` of a conv layer.

    A ``DepthwiseConv2D`` kernel ``(kh, kw, in, multiplier)`` becomes the equivalent grouped
    kernel ``(kh, kw, 1, in·multiplier)`` (output ``c·multiplier + m`` reads input ``c``).
    """
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float32)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, cin, mult = kernel.shape
        kernel = kernel.reshape(kh, kw, 1, cin * mult)
    bias = None
    if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
        bias = np.asarray(keras.ops.convert_to_numpy(layer.bias), np.float32)
    return np.ascontiguousarray(kernel), bias
