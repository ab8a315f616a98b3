"""Specs -> Keras layers -> an uncompiled functional ``keras.Model``, for either conv kind.

``conv="builtin"`` uses ``keras.layers.Conv2D`` / ``MaxPooling2D`` / ``AveragePooling2D``;
``conv="explicit"`` uses ``kcnn.layers.CrossCorrelation2D`` / ``MaxPool2D`` / ``AvgPool2D``.
Both variants have the same layer names, parameter counts and weight shapes. Explicit zero padding
is given to ``CrossCorrelation2D`` directly; on the built-in side it becomes ``padding="same"``
where that is the same thing (stride 1, odd kernel) and otherwise a ``ZeroPadding2D`` layer named
``<conv>_pad``.
"""
from __future__ import annotations

import keras

from kcnn import layers as kl
from kcnn.models import checks
from kcnn.models.specs import Conv, Dense, Dropout, Flatten, Pool, min_size

DATA_FORMAT = "channels_last"


def layer_classes(conv):
    """(conv, max-pool, avg-pool) layer classes of ``conv="builtin"`` or ``"explicit"``."""
    if conv == "explicit":
        return kl.CrossCorrelation2D, kl.MaxPool2D, kl.AvgPool2D
    return keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D


def builtin_padding(kernel, stride, padding):
    """Conv2D padding string equal to symmetric zero padding ``padding``, or None."""
    if padding == 0:
        return "valid"
    if stride == 1 and kernel % 2 == 1 and padding == (kernel - 1) // 2:
        return "same"
    return None


def _conv_layers(spec, conv_cls, conv):
    padding, out = spec.padding, []
    if conv == "builtin":
        padding = builtin_padding(spec.kernel, spec.stride, spec.padding)
        if padding is None:
            out.append(keras.layers.ZeroPadding2D(
                spec.padding, data_format=DATA_FORMAT, name=f"{spec.name}_pad"))
            padding = "valid"
    out.append(conv_cls(spec.filters, spec.kernel, strides=spec.stride, padding=padding,
                        activation=spec.activation, data_format=DATA_FORMAT, name=spec.name))
    return out


def make_layers(specs, conv):
    """The Keras layers for ``specs`` (a ``ZeroPadding2D`` may precede a built-in conv)."""
    conv_cls, max_cls, avg_cls = layer_classes(conv)
    out = []
    for spec in specs:
        if isinstance(spec, Conv):
            out.extend(_conv_layers(spec, conv_cls, conv))
        elif isinstance(spec, Pool):
            cls = max_cls if spec.kind == "max" else avg_cls
            out.append(cls(spec.size, strides=spec.stride, padding="valid",
                           data_format=DATA_FORMAT, name=spec.name))
        elif isinstance(spec, Flatten):
            out.append(keras.layers.Flatten(data_format=DATA_FORMAT, name=spec.name))
        elif isinstance(spec, Dense):
            out.append(keras.layers.Dense(spec.units, activation=spec.activation, name=spec.name))
        elif isinstance(spec, Dropout):
            out.append(keras.layers.Dropout(spec.rate, name=spec.name))
    return out


def check_fits(model_name, specs, input_shape):
    """ValueError saying how to resize when ``input_shape`` is too small for ``specs``."""
    minimum = min_size(specs)
    h, w, _ = input_shape
    if h < minimum or w < minimum:
        raise ValueError(
            f"{model_name} needs inputs of at least {minimum}x{minimum} pixels; received "
            f"input_shape={input_shape}. Resize the images first, e.g. with "
            f"keras.layers.Resizing({max(h, minimum)}, {max(w, minimum)}) or the data pipeline's "
            "image_size option.")


def assemble(model_name, specs, conv, input_shape):
    """A functional ``keras.Model`` named ``model_name`` with input ``images`` and ``specs``' layers."""
    checks.check_conv(conv)
    input_shape = checks.check_input_shape(input_shape)
    check_fits(model_name, specs, input_shape)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for layer in make_layers(specs, conv):
        x = layer(x)
    return keras.Model(inputs, x, name=model_name)
