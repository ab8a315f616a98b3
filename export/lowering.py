"""Lowering: the same network with kcnn's explicit layers swapped for Keras's built-in ones.

ONNX's ``Conv`` *is* a cross-correlation (no kernel flip) with ``pads``, ``strides``,
``dilations`` and ``group``, and ``MaxPool`` / ``AveragePool`` take explicit ``pads`` and
``count_include_pad``. So an explicit model loses nothing of its maths when it is exported as
those operators, and onnxruntime then runs it at built-in speed; spelled out slice by slice, the
same weights ran 5.6–8.1× slower.

The swap happens in Keras, before the backend's exporter (tf2onnx, jax2onnx, ``torch.onnx``), so
each exporter sees only layers it already converts well:

* ``CrossCorrelation2D`` → zero ``pad`` (kcnn's own padding arithmetic: ints, pairs,
  ``((top, bottom), (left, right))``, ``"same"`` with any stride) + a valid ``Conv2D`` holding the
  layer's effective kernel (LoRA merged), bias, strides, dilation, groups and activation;
* ``MaxPool2D`` → ``pad`` with the lowest float (acts as −inf) + a valid ``MaxPooling2D``;
* ``AvgPool2D`` → zero ``pad`` + a valid ``AveragePooling2D`` (the padded zeros counted, as
  ``count_include_pad=True``); for ``"same"``, which divides by the real pixels of each window,
  times a constant ``window size / real pixels`` map (Keras's own ``"same"`` average differs
  between backends at the borders).

On TensorFlow a grouped convolution becomes one ``Conv2D`` per group between a split and a
concatenation: Keras compiles grouped ``Conv2D`` with XLA on TensorFlow's CPU, which tf2onnx
cannot convert.

:func:`kcnn.export.pad_folding.fold_pads` then folds each ``Pad`` into the ``Conv`` / ``MaxPool`` /
``AveragePool`` it feeds. The explicit Keras model stays the reference: the exporter checks the
written file against *it* (:func:`kcnn.export.onnx_export.export_onnx` smoke test and
:func:`kcnn.export.verify`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = ["LoweringError", "explicit_layers", "lower"]


class LoweringError(ValueError):
    """The model cannot be cloned with built-in layers (e.g. a subclassed model)."""


def explicit_layers():
    """The kcnn layer classes that :func:`lower` replaces: ``(conv, max pool, avg pool)``."""
    from kcnn.layers.cross_correlation import CrossCorrelation2D
    from kcnn.layers.pooling import AvgPool2D, MaxPool2D

    return CrossCorrelation2D, MaxPool2D, AvgPool2D


def _spatial(shape, data_format):
    return tuple(shape[1:3]) if data_format == "channels_last" else tuple(shape[2:4])


def _static_pads(layer, input_shape):
    """``((top, bottom), (left, right))`` that ``layer`` applies to an input of ``input_shape``."""
    from kcnn.layers import validation

    spatial = _spatial(input_shape, layer.data_format)
    if any(d is None for d in spatial):
        raise LoweringError(f"layer {layer.name!r}: the input's height and width must be known "
                            f"to export it as a built-in operator; received {tuple(input_shape)}.")
    if isinstance(layer, keras.layers.Conv2D):  # CrossCorrelation2D, or a grouped Conv2D
        return validation.resolve_padding(layer.padding, spatial, layer.kernel_size,
                                          layer.strides, layer.dilation_rate)
    if layer.padding == "valid":
        return ((0, 0), (0, 0))
    if layer.padding == "same":
        return tuple(validation.same_padding(int(n), k, s)
                     for n, k, s in zip(spatial, layer.pool_size, layer.strides))
    return tuple(tuple(int(v) for v in pair) for pair in layer.padding)


class PaddedBuiltin(keras.layers.Layer):
    """``pad(x, pads, value)`` then a built-in Keras layer: one explicit layer, lowered.

    Export-only (it is never saved): ``pads`` come from the explicit layer's own padding rule,
    evaluated on the static input shape when the layer is built.
    """

    def __init__(self, source, builtin, pad_value, real_mean=False, **kwargs):
        super().__init__(name=source.name, **kwargs)
        self.source = source
        self.builtin = builtin
        self.pad_value = pad_value
        self.real_mean = real_mean
        self.pads = ((0, 0), (0, 0))
        self.scale = None

    def _widths(self):
        widths = [(0, 0)] * 4
        axes = (1, 2) if self.source.data_format == "channels_last" else (2, 3)
        widths[axes[0]], widths[axes[1]] = self.pads
        return widths

    def build(self, input_shape):
        self.pads = _static_pads(self.source, input_shape)
        padded = [d if d is None else d + a + b for d, (a, b) in zip(input_shape, self._widths())]
        self.builtin.build(tuple(padded))
        source_weights = _effective_weights(self.source)
        if source_weights:
            self.builtin.set_weights(source_weights)
        if self.real_mean:
            self.scale = _real_mean_scale(self.source, _spatial(input_shape, self.source.data_format),
                                          self.pads)

    def call(self, inputs):
        if any(v for pair in self.pads for v in pair):
            inputs = ops.pad(inputs, self._widths(), constant_values=self.pad_value)
        outputs = self.builtin(inputs)
        if self.scale is not None:
            outputs = ops.multiply(outputs, ops.convert_to_tensor(self.scale))
        return outputs

    def compute_output_shape(self, input_shape):
        return self.source.compute_output_shape(input_shape)


def _real_mean_scale(layer, spatial, pads):
    """``window size / real pixels`` of every output position of a padded average pool, shaped to
    broadcast over the layer's output; ``None`` when every window is all real pixels."""
    counts = []
    for n, (before, after), k, s in zip(spatial, pads, layer.pool_size, layer.strides):
        real = np.pad(np.ones(int(n)), (before, after))
        windows = np.lib.stride_tricks.sliding_window_view(real, k)[::s]
        counts.append(windows.sum(axis=1))
    scale = (layer.pool_size[0] * layer.pool_size[1]) / np.outer(counts[0], counts[1])
    if np.all(scale == 1.0):
        return None
    shape = (1, *scale.shape, 1) if layer.data_format == "channels_last" else (1, 1, *scale.shape)
    return scale.astype(np.float32).reshape(shape)


class GroupedConv2D(keras.layers.Layer):
    """A valid grouped ``Conv2D`` as one ``Conv2D`` per group between a split and a concatenation.

    Export-only, for TensorFlow: Keras runs grouped ``Conv2D`` through XLA there, and tf2onnx
    cannot convert XLA-compiled functions. Weights are set as one ``(kernel, bias)`` pair of the
    whole layer, as ``Conv2D`` holds them.
    """

    def __init__(self, source, **kwargs):
        super().__init__(name=source.name, **kwargs)
        self.groups = source.groups
        self.axis = -1 if source.data_format == "channels_last" else 1
        self.activation = source.activation
        self.convs = [keras.layers.Conv2D(
            source.filters // source.groups, source.kernel_size, strides=source.strides,
            padding="valid", data_format=source.data_format, dilation_rate=source.dilation_rate,
            use_bias=source.use_bias, dtype="float32", name=f"{source.name}_group{g}")
            for g in range(source.groups)]

    def build(self, input_shape):
        part = list(input_shape)
        part[self.axis] //= self.groups
        for conv in self.convs:
            conv.build(tuple(part))

    def set_weights(self, weights):
        """``[kernel (kh, kw, in // groups, filters)(, bias (filters,))]`` of the whole layer."""
        pieces = [np.split(w, self.groups, axis=-1) for w in weights]
        for g, conv in enumerate(self.convs):
            conv.set_weights([p[g] for p in pieces])

    def call(self, inputs):
        parts = ops.split(inputs, self.groups, axis=self.axis)
        outputs = ops.concatenate([conv(x) for conv, x in zip(self.convs, parts)], axis=self.axis)
        return outputs if self.activation is None else self.activation(outputs)


def _effective_weights(layer):
    """The weights a built-in twin of ``layer`` needs: the kernel as the layer uses it (LoRA
    merged, float32) and the bias; ``[]`` for pooling."""
    if not getattr(layer, "weights", None):
        return []
    kernel = np.asarray(ops.convert_to_numpy(layer.kernel), dtype=np.float32)
    if getattr(layer, "use_bias", False):
        return [kernel, np.asarray(ops.convert_to_numpy(layer.bias), dtype=np.float32)]
    return [kernel]


def _lowest_float32():
    return float(np.finfo(np.float32).min)


def _tf_grouped(layer):
    """A grouped ``Conv2D`` (built-in or explicit) on TensorFlow, which tf2onnx cannot convert."""
    kinds = (keras.layers.Conv2D, explicit_layers()[0])
    return (type(layer) in kinds and layer.groups > 1
            and keras.backend.backend() == "tensorflow")


def _builtin_twin(layer):
    """The lowered replacement of one explicit layer, or of a built-in grouped ``Conv2D`` on
    TensorFlow (``None`` for any other layer)."""
    conv_cls, max_cls, avg_cls = explicit_layers()
    if _tf_grouped(layer):
        return PaddedBuiltin(layer, GroupedConv2D(layer), 0.0)
    if isinstance(layer, conv_cls):
        conv = keras.layers.Conv2D(
            layer.filters, layer.kernel_size, strides=layer.strides, padding="valid",
            data_format=layer.data_format, dilation_rate=layer.dilation_rate,
            groups=layer.groups, activation=layer.activation, use_bias=layer.use_bias,
            dtype="float32", name=layer.name)
        return PaddedBuiltin(layer, conv, 0.0)
    if isinstance(layer, max_cls):
        pool = keras.layers.MaxPooling2D(layer.pool_size, strides=layer.strides, padding="valid",
                                         data_format=layer.data_format, name=layer.name)
        return PaddedBuiltin(layer, pool, _lowest_float32())
    if isinstance(layer, avg_cls):
        pool = keras.layers.AveragePooling2D(layer.pool_size, strides=layer.strides,
                                             padding="valid", data_format=layer.data_format,
                                             name=layer.name)
        return PaddedBuiltin(layer, pool, 0.0, real_mean=layer.padding == "same")
    return None


def _has_explicit(model):
    from kcnn.export.introspection import iter_layers

    return any(isinstance(layer, explicit_layers()) for layer in iter_layers(model))


def _needs_lowering(model):
    from kcnn.export.introspection import iter_layers

    return any(isinstance(layer, explicit_layers()) or _tf_grouped(layer)
               for layer in iter_layers(model))


def lower(model):
    """``model`` with every kcnn explicit layer replaced by its built-in twin, sharing weights
    (and, on TensorFlow, every grouped ``Conv2D`` by one ``Conv2D`` per group).

    Every other layer is reused as it is (same objects, same weights). Nested functional and
    Sequential models are lowered too. Returns ``model`` itself when it has no explicit layer.

    Raises:
        LoweringError: the model cannot be cloned (subclassed models, layers with unknown input
            height/width); the caller may export the spelled-out graph instead.
    """
    if not _needs_lowering(model):
        return model

    def swap(layer):
        twin = _builtin_twin(layer)
        return layer if twin is None else twin

    try:
        lowered = keras.models.clone_model(model, clone_function=swap, recursive=True)
    except LoweringError:
        raise
    except Exception as err:  # clone_model refuses subclassed models with various errors
        raise LoweringError(f"model {model.name!r} cannot be cloned with built-in layers "
                            f"({type(err).__name__}: {err}).") from err
    if _has_explicit(lowered):
        raise LoweringError(f"model {model.name!r} keeps explicit layers after cloning "
                            "(a subclassed layer or model holds them).")
    return lowered
