"""Move a network between the built-in and the explicit layers, keeping names and weights."""
from __future__ import annotations

import numbers

import keras

from kcnn.models import checks
from kcnn.models.assembly import layer_classes


def _chain(model):
    """The layers of a single-input, single-output, unbranched model, in order."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model; received {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("convert() supports single-input, single-output models only")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in layers:
        try:
            ok = layer.input is previous
        except (AttributeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"convert() supports unbranched (sequential) models only; layer {layer.name!r} "
                "is shared or not fed by the layer before it")
        previous = layer.output
    if previous is not model.outputs[0]:
        raise ValueError("convert() supports unbranched (sequential) models only")
    return layers


def pair_padding(padding):
    """ZeroPadding2D / explicit padding -> ((top, bottom), (left, right))."""
    if isinstance(padding, numbers.Integral):
        return ((int(padding),) * 2,) * 2
    a, b = padding
    if isinstance(a, numbers.Integral):
        return ((int(a), int(a)), (int(b), int(b)))
    return (tuple(int(v) for v in a), tuple(int(v) for v in b))


def _to_explicit(layers, classes):
    conv_cls, max_cls, avg_cls = classes
    out, i = [], 0
    while i < len(layers):
        layer = layers[i]
        cfg = layer.get_config()
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if (isinstance(layer, keras.layers.ZeroPadding2D) and type(nxt) is keras.layers.Conv2D
                and nxt.padding == "valid" and nxt.data_format == layer.data_format):
            conv_cfg = nxt.get_config()
            conv_cfg["padding"] = pair_padding(cfg["padding"])
            out.append((conv_cls.from_config(conv_cfg), nxt))
            i += 2
            continue
        if type(layer) is keras.layers.Conv2D:
            if cfg["padding"] == "same" and all(
                    s == 1 and k % 2 == 1 and d == 1 for s, k, d in
                    zip(cfg["strides"], cfg["kernel_size"], cfg["dilation_rate"])):
                cfg["padding"] = tuple((k - 1) // 2 for k in cfg["kernel_size"])
            new = conv_cls.from_config(cfg)
        elif type(layer) in (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D):
            cls = max_cls if isinstance(layer, keras.layers.MaxPooling2D) else avg_cls
            new = cls(cfg["pool_size"], strides=cfg["strides"], padding=cfg["padding"],
                      data_format=cfg["data_format"], name=cfg["name"])
        else:
            new = type(layer).from_config(cfg)
        out.append((new, layer))
        i += 1
    return out


def _to_builtin(layers, classes):
    conv_cls, max_cls, avg_cls = classes
    out = []
    for layer in layers:
        cfg = layer.get_config()
        if isinstance(layer, conv_cls):
            padding = cfg["padding"]
            if not isinstance(padding, str):
                (t, b), (l, r) = pair_padding(padding)
                kh, kw = cfg["kernel_size"]
                symmetric_same = (t == b and l == r and tuple(cfg["strides"]) == (1, 1)
                                  and tuple(cfg["dilation_rate"]) == (1, 1)
                                  and kh % 2 == 1 and kw % 2 == 1
                                  and (t, l) == ((kh - 1) // 2, (kw - 1) // 2))
                if (t, b, l, r) == (0, 0, 0, 0):
                    padding = "valid"
                elif symmetric_same:
                    padding = "same"
                else:
                    out.append((keras.layers.ZeroPadding2D(
                        ((t, b), (l, r)), data_format=cfg.get("data_format"),
                        name=f"{cfg['name']}_pad"), None))
                    padding = "valid"
            cfg["padding"] = padding
            cfg.pop("algorithm", None)  # the explicit layer's own option; Conv2D has one way
            new = keras.layers.Conv2D.from_config(cfg)
        elif isinstance(layer, (max_cls, avg_cls)):
            padding = cfg.get("padding", "valid")
            if not isinstance(padding, str):
                if pair_padding(padding) != ((0, 0), (0, 0)):
                    raise ValueError(
                        f"layer {layer.name!r}: explicit pooling padding={padding!r} has no "
                        "built-in Keras equivalent; only 'valid', 'same' and 0 convert")
                padding = "valid"
            cls = keras.layers.MaxPooling2D if isinstance(layer, max_cls) else \
                keras.layers.AveragePooling2D
            new = cls(cfg["pool_size"], strides=cfg.get("strides"), padding=padding,
                      data_format=cfg.get("data_format"), name=cfg["name"])
        else:
            new = type(layer).from_config(cfg)
        out.append((new, layer))
    return out


def convert(model, conv="explicit"):
    """The same network with the other convolution implementation and the same weights.

    Conv2D <-> ``CrossCorrelation2D`` (a ``ZeroPadding2D`` in front of a valid Conv2D becomes the
    explicit layer's integer padding and back), ``MaxPooling2D``/``AveragePooling2D`` <->
    ``kcnn.layers.MaxPool2D``/``AvgPool2D``; every other layer is cloned from its config. Layer
    names and the model name are kept and weights are copied layer by layer, so outputs agree to
    float rounding. Works on any unbranched single-input model, including ones loaded from disk.

    Args:
        model: a ``keras.Model`` whose layers form one chain (all kcnn builders do).
        conv: the target, ``"explicit"`` or ``"builtin"``.

    Returns:
        A new, uncompiled ``keras.Model``.
    """
    checks.check_conv(conv)
    layers = _chain(model)
    classes = layer_classes("explicit")
    pairs = _to_explicit(layers, classes) if conv == "explicit" else _to_builtin(layers, classes)
    inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype,
                         name=model.inputs[0].name)
    x = inputs
    for new, _ in pairs:
        x = new(x)
    result = keras.Model(inputs, x, name=model.name)
    for new, old in pairs:
        if old is not None and old.weights:
            new.set_weights(old.get_weights())
    return result
