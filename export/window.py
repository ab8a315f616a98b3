"""One output number of a conv or pooling layer, taken apart: the window, the kernel, the sums.

:func:`window_answer` computes, with NumPy only, what ``POST /v1/explain/window`` answers for one
layer, channel and position, from the layer's ``window`` description (written by
:mod:`kcnn.export.explain`), its input and its weights. For a convolution

    ``Y[i, j] = act(Σa Σb Σc X[i·sh + a·dh − top, j·sw + b·dw − left, c] · K[a, b, c] + bias)``

where ``c`` runs over the output channel's group and ``X`` is 0 outside the input (padding);
for pooling the max or the mean of the window (padded cells are skipped by max, and counted by
the mean only with ``count_include_pad``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ACTIVATIONS", "window_answer"]


def _gelu(x):
    return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

#: Activations applied by name, as Keras defines them (element-wise ones only).
ACTIVATIONS = {
    "relu": lambda x: max(x, 0.0),
    "relu6": lambda x: min(max(x, 0.0), 6.0),
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "elu": lambda x: x if x > 0 else math.expm1(x),
    "selu": lambda x: _SELU_SCALE * (x if x > 0 else _SELU_ALPHA * math.expm1(x)),
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + abs(x)),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "gelu": _gelu,
    "leaky_relu": lambda x: x if x >= 0 else 0.2 * x,
    "hard_sigmoid": lambda x: min(max(x + 3.0, 0.0), 6.0) / 6.0,
    "hard_silu": lambda x: x * min(max(x + 3.0, 0.0), 6.0) / 6.0,
    "hard_swish": lambda x: x * min(max(x + 3.0, 0.0), 6.0) / 6.0,
    "mish": lambda x: x * math.tanh(_softplus(x)),
    "exponential": math.exp,
    "log_sigmoid": lambda x: -_softplus(-x),
}


def _check_index(name, value, size):
    if not 0 <= value < size:
        raise ValueError(f"{name} must be in 0..{size - 1}; received {name}={value}")


def _gather(plane_stack, window, row, col):
    """``(values (kh, kw, C), padded (kh, kw) bool, origin)`` of one window of ``(C, H, W)``."""
    kh, kw = window["size"]
    sh, sw = window["strides"]
    dh, dw = window["dilation"]
    top, _, left, _ = window["pads"]
    _, height, width = plane_stack.shape
    rows = row * sh - top + dh * np.arange(kh)
    cols = col * sw - left + dw * np.arange(kw)
    inside_r = (rows >= 0) & (rows < height)
    inside_c = (cols >= 0) & (cols < width)
    inside = inside_r[:, None] & inside_c[None, :]
    values = plane_stack[:, np.clip(rows, 0, height - 1)][:, :, np.clip(cols, 0, width - 1)]
    values = np.where(inside[None], values, 0.0).transpose(1, 2, 0)
    return values.astype(np.float32), ~inside, [int(rows[0]), int(cols[0])]


def window_answer(entry, source, output, weights, channel, row, col):
    """The JSON-ready window view of one output number (see ``POST /v1/explain/window``).

    Args:
        entry: the layer's metadata from the explain file (with its ``window`` description).
        source: the layer's window source ``(C, H, W)`` (its input, before its own padding).
        output: the layer's output ``(C, H, W)`` as the explain file computed it.
        weights: kernels and biases by output name (conv layers).
        channel, row, col: the output position (ints).

    Raises:
        ValueError: ``channel``/``row``/``col`` out of range (the message names it).
    """
    channels, height, width = output.shape
    _check_index("channel", channel, channels)
    _check_index("row", row, height)
    _check_index("col", col, width)
    window = entry["window"]
    feature = float(output[channel, row, col])
    answer = {"layer": entry["name"], "kind": entry["kind"], "class": entry["class"],
              "channel": channel, "row": row, "col": col, "outline": window.get("outline"),
              "size": window["size"], "strides": window["strides"],
              "dilation": window["dilation"], "pads": window["pads"], "feature": feature}
    if entry["kind"] == "pool":
        values, padded, origin = _gather(source[channel:channel + 1], window, row, col)
        plane = values[:, :, 0].astype(np.float64)
        real = plane[~padded]
        if window["op"] == "max":
            total, count = None, int(real.size)
            value = float(real.max()) if real.size else 0.0
        else:
            total = float(plane.sum())
            count = int(plane.size if window.get("count_include_pad", True) else real.size)
            value = total / count if count else 0.0
        answer.update({"window": plane.tolist(), "padding": padded.tolist(), "origin": origin,
                       "in_channels": [channel], "op": window["op"], "count": count,
                       "kernel": None, "bias": None, "sum": total, "pre_activation": None,
                       "activation": None, "value": value})
        return answer
    kernel = weights[window["kernel"]]
    per_group = kernel.shape[2]
    group = channel // (channels // window.get("groups", 1))
    first = group * per_group
    values, padded, origin = _gather(source[first:first + per_group], window, row, col)
    taps = kernel[:, :, :, channel]
    products = values.astype(np.float64) * taps.astype(np.float64)
    channel_sums = products.sum(axis=(0, 1))
    total = float(channel_sums.sum())
    bias = float(weights[window["bias"]][channel]) if window.get("bias") else 0.0
    pre = total + bias
    name = window.get("activation")
    function = ACTIVATIONS.get(name) if name else (lambda x: x)
    value = function(pre) if function is not None else feature
    answer.update({"window": values.tolist(), "padding": padded.tolist(), "origin": origin,
                   "in_channels": list(range(first, first + per_group)), "op": None,
                   "count": None, "kernel": taps.tolist(), "bias": bias,
                   "channel_sums": channel_sums.tolist(), "sum": total, "pre_activation": pre,
                   "activation": name, "activation_applied": function is not None,
                   "value": float(value)})
    return answer
