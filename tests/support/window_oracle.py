"""The window view recomputed from a Keras model with NumPy: the tests' oracle for
``POST /v1/explain/window`` (independent of ``kcnn.export.window_specs`` / ``kcnn.export.window``).

Geometry comes from the Keras layer's own attributes with the padding rules written out here
(TensorFlow's "same", PyTorch-style explicit numbers, a ``ZeroPadding2D`` in front of a conv);
values come from ``keras.Model(model.inputs, tensor)`` on the same image.
"""
import math

import keras
import numpy as np


def _same(n, k, s, d=1):
    out = math.ceil(n / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _chw(array, data_format):
    return np.moveaxis(array, -1, 0) if data_format == "channels_last" else array


_VALUES = {}


def _value(model, tensor, x):
    """``tensor``'s value for image ``x``: every layer's output computed at once, then memoized."""
    key = (id(model), id(tensor), x.tobytes())
    if key not in _VALUES:
        tensors = [layer.output for layer in model.layers
                   if not isinstance(layer, keras.layers.InputLayer)]
        probe = keras.Model(model.inputs, tensors)
        values = probe(x[None], training=False)
        for t, value in zip(tensors, values):
            _VALUES[(id(model), id(t), x.tobytes())] = np.asarray(
                keras.ops.convert_to_numpy(value)[0], np.float64)
        _VALUES[(id(model), id(model.inputs[0]), x.tobytes())] = x.astype(np.float64)
    return _VALUES[key]


def expected_window(model, name, x, channel, row, col):
    """``{"window", "padding", "kernel", "bias", "output"}`` of one output number, in float64.

    ``window`` is ``(kh, kw, in)`` for a conv (the output channel's group), ``(kh, kw)`` for a
    pool, 0 where padding; ``output`` is the Keras layer's output at that position.
    """
    layer = model.get_layer(name)
    fmt = getattr(layer, "data_format", "channels_last")
    source, extra = layer.input, ((0, 0), (0, 0))
    producer = source._keras_history[0]
    is_conv = isinstance(layer, keras.layers.Conv2D) or isinstance(
        layer, keras.layers.DepthwiseConv2D)
    if is_conv and isinstance(producer, keras.layers.ZeroPadding2D):
        source, extra = producer.input, tuple(tuple(p) for p in producer.padding)
    if is_conv:
        size, strides, dilation = layer.kernel_size, layer.strides, layer.dilation_rate
    else:
        size, strides, dilation = layer.pool_size, layer.strides, (1, 1)
    plain_hw = _chw(_value(model, layer.input, x), fmt).shape[1:]
    padding = layer.padding
    if isinstance(padding, str) and padding.lower() == "valid":
        own = ((0, 0), (0, 0))
    elif isinstance(padding, str):
        own = tuple(_same(n, k, s, d) for n, k, s, d in zip(plain_hw, size, strides, dilation))
    else:
        own = tuple(tuple(p) for p in padding)
    top = extra[0][0] + own[0][0]
    left = extra[1][0] + own[1][0]
    planes = _chw(_value(model, source, x), fmt)
    output = _chw(_value(model, layer.output, x), fmt)[channel, row, col]
    kh, kw = size
    cells = np.zeros((kh, kw, planes.shape[0]))
    pad = np.zeros((kh, kw), bool)
    for a in range(kh):
        for b in range(kw):
            r = row * strides[0] + a * dilation[0] - top
            c = col * strides[1] + b * dilation[1] - left
            if 0 <= r < planes.shape[1] and 0 <= c < planes.shape[2]:
                cells[a, b] = planes[:, r, c]
            else:
                pad[a, b] = True
    if not is_conv:
        return {"window": cells[:, :, channel], "padding": pad, "output": float(output)}
    kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float64)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = kernel.reshape(kh, kw, 1, -1)
    per_group = kernel.shape[2]
    out_channels = kernel.shape[3]
    groups = planes.shape[0] // per_group
    group = channel // (out_channels // groups)
    bias = float(keras.ops.convert_to_numpy(layer.bias)[channel]) if layer.use_bias else 0.0
    return {"window": cells[:, :, group * per_group:(group + 1) * per_group], "padding": pad,
            "kernel": kernel[:, :, :, channel], "bias": bias, "output": float(output)}


def check_answer(answer, want, feature, tol=1e-4):
    """Assert a window answer adds up and equals the oracle ``want`` and the ``feature`` value."""
    np.testing.assert_allclose(np.array(answer["window"]), want["window"], atol=tol, rtol=0)
    assert np.array(answer["padding"]).tolist() == want["padding"].tolist()
    assert abs(answer["value"] - want["output"]) <= tol * (1 + abs(want["output"]))
    assert abs(answer["value"] - feature) <= tol * (1 + abs(feature))
    if answer["kind"] == "pool":
        window = np.array(answer["window"])
        real = window[~want["padding"]]
        if answer["op"] == "max":
            assert answer["value"] == float(real.max())
        else:
            assert abs(answer["sum"] - window.sum()) <= tol
            assert abs(answer["value"] - answer["sum"] / answer["count"]) <= tol
        return
    np.testing.assert_allclose(np.array(answer["kernel"]), want["kernel"], atol=1e-6, rtol=0)
    products = np.array(answer["window"]) * np.array(answer["kernel"])
    np.testing.assert_allclose(answer["channel_sums"], products.sum(axis=(0, 1)), atol=tol)
    assert abs(answer["sum"] - products.sum()) <= tol * (1 + abs(products.sum()))
    assert abs(answer["bias"] - want["bias"]) <= 1e-6
    assert abs(answer["pre_activation"] - (answer["sum"] + answer["bias"])) <= 1e-9
