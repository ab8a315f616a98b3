"""Model builders: LeNet, AlexNet and VGG with a built-in / explicit convolution switch.

Every builder describes its network as data (a list of small layer specs, like torchvision's VGG
``cfgs``) and turns it into an uncompiled functional ``keras.Model`` whose last layer, ``logits``,
outputs unnormalised class scores (compile with ``from_logits=True``).

``conv="builtin"`` uses ``keras.layers.Conv2D`` / ``MaxPooling2D`` / ``AveragePooling2D``;
``conv="explicit"`` uses ``kcnn.layers.CrossCorrelation2D`` / ``MaxPool2D`` / ``AvgPool2D``.
Both variants have the same layer names, parameter counts and weight shapes, so ``convert`` can
move weights between them. Explicit zero padding (LeNet's 2, AlexNet's and VGG's 1) is given to
``CrossCorrelation2D`` directly; on the built-in side it becomes ``padding="same"`` where that is the
same thing (stride 1, odd kernel) and otherwise a ``ZeroPadding2D`` layer named ``<conv>_pad``.

Example::

    import keras, kcnn.models
    model = kcnn.models.build("lenet", conv="explicit")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, NamedTuple

import keras

from kcnn.summary import summary  # noqa: F401  (re-exported: kcnn.models.summary)

__all__ = [
    "CONVS", "VGG_ARCHS", "lenet", "alexnet", "vgg", "build", "available", "convert",
    "conv_variant", "min_input_size", "summary",
]

CONVS = ("builtin", "explicit")
_DATA_FORMAT = "channels_last"


# --------------------------------------------------------------------------------------------
# Architecture as data
# --------------------------------------------------------------------------------------------
class Conv(NamedTuple):
    name: str
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    activation: str | None = "relu"


class Pool(NamedTuple):
    name: str
    kind: str  # "max" | "avg"
    size: int
    stride: int


class Flatten(NamedTuple):
    name: str = "flatten"


class Dense(NamedTuple):
    name: str
    units: int
    activation: str | None = "relu"


class Dropout(NamedTuple):
    name: str
    rate: float


# VGG configurations as (num_convs, channels) per block, as in d2l's ``conv_arch``.
VGG_ARCHS = {
    11: ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    13: ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    16: ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    19: ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}


def _lenet_specs(num_classes, modern):
    act, pool = ("relu", "max") if modern else ("sigmoid", "avg")
    return [
        Conv("conv1", 6, 5, padding=2, activation=act),
        Pool("pool1", pool, 2, 2),
        Conv("conv2", 16, 5, activation=act),
        Pool("pool2", pool, 2, 2),
        Flatten(),
        Dense("fc1", 120, act),
        Dense("fc2", 84, act),
        Dense("logits", num_classes, None),
    ]


def _classifier(hidden_units, dropout, num_classes):
    return [
        Flatten(),
        Dense("fc1", hidden_units), Dropout("dropout1", dropout),
        Dense("fc2", hidden_units), Dropout("dropout2", dropout),
        Dense("logits", num_classes, None),
    ]


def _alexnet_specs(num_classes, imagenet, hidden_units, dropout):
    return [
        Conv("conv1", 96, 11, stride=4, padding=0 if imagenet else 1),
        Pool("pool1", "max", 3, 2),
        Conv("conv2", 256, 5, padding=2),
        Pool("pool2", "max", 3, 2),
        Conv("conv3", 384, 3, padding=1),
        Conv("conv4", 384, 3, padding=1),
        Conv("conv5", 256, 3, padding=1),
        Pool("pool3", "max", 3, 2),
    ] + _classifier(hidden_units, dropout, num_classes)


def _vgg_specs(arch, width_ratio, num_classes, hidden_units, dropout):
    specs = []
    for b, (num_convs, channels) in enumerate(arch, start=1):
        for c in range(1, num_convs + 1):
            specs.append(Conv(f"block{b}_conv{c}", channels // width_ratio, 3, padding=1))
        specs.append(Pool(f"block{b}_pool", "max", 2, 2))
    return specs + _classifier(hidden_units, dropout, num_classes)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_conv(conv):
    if conv not in CONVS:
        raise ValueError(f"conv must be one of {', '.join(map(repr, CONVS))}; received conv={conv!r}")


def _check_num_classes(num_classes):
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2; received num_classes={num_classes!r}")


def _check_input_shape(input_shape):
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or len(shape) != 3 or not all(_is_int(d) and d > 0 for d in shape):
        raise ValueError(
            "input_shape must be 3 positive integers (height, width, channels); "
            f"received input_shape={input_shape!r}")
    return tuple(int(d) for d in shape)


def _check_positive(name, value, *, integer=False, upper=None):
    ok = (_is_int(value) if integer else isinstance(value, numbers.Real) and not isinstance(value, bool))
    if not ok or value <= 0 or (upper is not None and value > upper):
        kind = "an integer" if integer else "a number"
        limit = f" and <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be {kind} > 0{limit}; received {name}={value!r}")


def _check_dropout(dropout):
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1); received dropout={dropout!r}")


def _spatial_out(specs, size):
    """Spatial size after all conv/pool specs for an input of ``size``, or None if it vanishes."""
    for spec in specs:
        if isinstance(spec, Conv):
            size = (size + 2 * spec.padding - spec.kernel) // spec.stride + 1
        elif isinstance(spec, Pool):
            size = (size - spec.size) // spec.stride + 1
        else:
            continue
        if size < 1:
            return None
    return size


def _min_size(specs, limit=1 << 14):
    for size in range(1, limit):
        if _spatial_out(specs, size) is not None:
            return size
    raise ValueError("architecture has no valid input size")  # pragma: no cover


def _check_fits(model_name, specs, input_shape):
    minimum = _min_size(specs)
    h, w, _ = input_shape
    if h < minimum or w < minimum:
        raise ValueError(
            f"{model_name} needs inputs of at least {minimum}x{minimum} pixels; received "
            f"input_shape={input_shape}. Resize the images first, e.g. with "
            f"keras.layers.Resizing({max(h, minimum)}, {max(w, minimum)}) or the data pipeline's "
            "image_size option.")


# --------------------------------------------------------------------------------------------
# Specs -> Keras layers
# --------------------------------------------------------------------------------------------
def _explicit():
    try:
        from kcnn import layers as kl
        return kl.CrossCorrelation2D, kl.MaxPool2D, kl.AvgPool2D
    except (ImportError, AttributeError) as exc:  # pragma: no cover - only while layers are missing
        raise ImportError(f"conv='explicit' needs kcnn.layers ({exc})") from exc


def _builtin_padding(kernel, stride, padding):
    """Conv2D padding string equal to symmetric zero padding ``padding``, or None."""
    if padding == 0:
        return "valid"
    if stride == 1 and kernel % 2 == 1 and padding == (kernel - 1) // 2:
        return "same"
    return None


def _make_layers(specs, conv):
    if conv == "explicit":
        conv_cls, max_cls, avg_cls = _explicit()
    else:
        conv_cls, max_cls, avg_cls = (
            keras.layers.Conv2D, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    out = []
    for spec in specs:
        if isinstance(spec, Conv):
            padding = spec.padding
            if conv == "builtin":
                padding = _builtin_padding(spec.kernel, spec.stride, spec.padding)
                if padding is None:
                    out.append(keras.layers.ZeroPadding2D(
                        spec.padding, data_format=_DATA_FORMAT, name=f"{spec.name}_pad"))
                    padding = "valid"
            out.append(conv_cls(
                spec.filters, spec.kernel, strides=spec.stride, padding=padding,
                activation=spec.activation, data_format=_DATA_FORMAT, name=spec.name))
        elif isinstance(spec, Pool):
            cls = max_cls if spec.kind == "max" else avg_cls
            out.append(cls(spec.size, strides=spec.stride, padding="valid",
                           data_format=_DATA_FORMAT, name=spec.name))
        elif isinstance(spec, Flatten):
            out.append(keras.layers.Flatten(data_format=_DATA_FORMAT, name=spec.name))
        elif isinstance(spec, Dense):
            out.append(keras.layers.Dense(spec.units, activation=spec.activation, name=spec.name))
        elif isinstance(spec, Dropout):
            out.append(keras.layers.Dropout(spec.rate, name=spec.name))
    return out


def _assemble(model_name, specs, conv, input_shape):
    _check_conv(conv)
    input_shape = _check_input_shape(input_shape)
    _check_fits(model_name, specs, input_shape)
    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    for layer in _make_layers(specs, conv):
        x = layer(x)
    return keras.Model(inputs, x, name=model_name)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def lenet(conv="builtin", input_shape=(28, 28, 1), num_classes=10, *, modern=False):
    """LeNet-5 as in d2l: two sigmoid 5x5 convs with 2x2 average pooling, then 120-84-classes.

    Args:
        conv: ``"builtin"`` (Keras Conv2D) or ``"explicit"`` (``kcnn.layers.CrossCorrelation2D``).
        input_shape: ``(height, width, channels)``; at least 12x12 (28x28x1 gives 61,706 params).
        num_classes: number of output logits, >= 2.
        modern: ReLU and max-pooling instead of sigmoid and average pooling (``"lenet-modern"``).

    Returns:
        An uncompiled ``keras.Model`` named ``"lenet"`` or ``"lenet-modern"``.
    """
    _check_num_classes(num_classes)
    name = "lenet-modern" if modern else "lenet"
    return _assemble(name, _lenet_specs(num_classes, bool(modern)), conv, input_shape)


def alexnet(conv="builtin", input_shape=None, num_classes=None, *, imagenet=False,
            hidden_units=4096, dropout=0.5):
    """AlexNet: five convs (96, 256, 384, 384, 256), three 3/2 max-pools, two 4096 dense layers.

    The default is d2l's variant for 1-channel 224x224 input (conv1 11x11 stride 4 padding 1, a
    6,400-value flatten, 10 classes). ``imagenet=True`` (``"alexnet-imagenet"``) is the original
    227x227x3 layout without padding on conv1 (9,216-value flatten, 1000 classes), as a single
    tower: no grouped convolutions and no local response normalisation.

    Args:
        conv: ``"builtin"`` or ``"explicit"``.
        input_shape: ``(height, width, channels)``; default ``(224, 224, 1)`` or ``(227, 227, 3)``.
        num_classes: number of output logits; default 10, or 1000 with ``imagenet=True``.
        imagenet: build the original ImageNet layout.
        hidden_units: width of the two hidden dense layers (4096 in the paper).
        dropout: dropout rate after each hidden dense layer.
    """
    if input_shape is None:
        input_shape = (227, 227, 3) if imagenet else (224, 224, 1)
    if num_classes is None:
        num_classes = 1000 if imagenet else 10
    _check_num_classes(num_classes)
    _check_positive("hidden_units", hidden_units, integer=True)
    _check_dropout(dropout)
    specs = _alexnet_specs(num_classes, bool(imagenet), int(hidden_units), float(dropout))
    return _assemble("alexnet-imagenet" if imagenet else "alexnet", specs, conv, input_shape)


def vgg(conv="builtin", input_shape=(224, 224, 1), num_classes=10, *, depth=11, arch=None,
        width_ratio=1, hidden_units=4096, dropout=0.5):
    """VGG: blocks of 3x3 padding-1 ReLU convs, each followed by a 2/2 max-pool, then 4096-4096.

    Args:
        conv: ``"builtin"`` or ``"explicit"``.
        input_shape: ``(height, width, channels)``; at least 32x32 for five blocks. The first dense
            layer's input follows it (7x7xC at 224x224).
        num_classes: number of output logits, >= 2.
        depth: 11, 13, 16 or 19 — picks the configuration from ``VGG_ARCHS``.
        arch: explicit configuration, a sequence of ``(num_convs, channels)`` blocks (overrides
            ``depth``; the model is then named ``"vgg"``).
        width_ratio: integer that divides every conv channel count (d2l's small VGG uses 4).
        hidden_units: width of the two hidden dense layers.
        dropout: dropout rate after each hidden dense layer.
    """
    if arch is None:
        if depth not in VGG_ARCHS:
            raise ValueError(
                f"depth must be one of {sorted(VGG_ARCHS)}; received depth={depth!r}")
        arch, name = VGG_ARCHS[depth], f"vgg{depth}"
    else:
        arch, name = _check_arch(arch), "vgg"
    _check_num_classes(num_classes)
    narrowest = min(channels for _, channels in arch)
    _check_positive("width_ratio", width_ratio, integer=True, upper=narrowest)
    _check_positive("hidden_units", hidden_units, integer=True)
    _check_dropout(dropout)
    specs = _vgg_specs(arch, int(width_ratio), num_classes, int(hidden_units), float(dropout))
    return _assemble(name, specs, conv, input_shape)


def _check_arch(arch):
    try:
        blocks = tuple((int(n), int(c)) for n, c in arch)
        ok = len(blocks) > 0 and all(
            _is_int(n) and _is_int(c) and n > 0 and c > 0 for n, c in arch)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "arch must be a non-empty sequence of (num_convs, channels) pairs of positive "
            f"integers; received arch={arch!r}")
    return blocks


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., keras.Model]
    fixed: dict


_REGISTRY = {
    "lenet": _Entry(lenet, {}),
    "lenet-modern": _Entry(lenet, {"modern": True}),
    "alexnet": _Entry(alexnet, {}),
    "alexnet-imagenet": _Entry(alexnet, {"imagenet": True}),
    **{f"vgg{d}": _Entry(vgg, {"depth": d}) for d in VGG_ARCHS},
}


def available():
    """Sorted names accepted by ``build``."""
    return sorted(_REGISTRY)


def _entry(name):
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown model name {name!r}; available models: {', '.join(available())}")
    return _REGISTRY[name]


def build(name, **kwargs):
    """Build a registered model by name, e.g. ``build("vgg11", conv="explicit", width_ratio=4)``.

    Keyword arguments go to the builder (``conv``, ``input_shape``, ``num_classes``, and
    builder-specific ones such as ``width_ratio`` for VGG). Unknown names raise ``ValueError``
    listing ``available()``.
    """
    entry = _entry(name)
    clash = sorted(set(kwargs) & set(entry.fixed))
    if clash:
        raise ValueError(f"model {name!r} fixes {', '.join(clash)}; do not pass it to build()")
    return entry.builder(**entry.fixed, **kwargs)


def min_input_size(name, **kwargs):
    """Smallest square input side that model ``name`` accepts (walks its conv/pool layers)."""
    entry = _entry(name)
    kw = {**entry.fixed, **kwargs}
    if entry.builder is lenet:
        specs = _lenet_specs(2, kw.get("modern", False))
    elif entry.builder is alexnet:
        specs = _alexnet_specs(2, kw.get("imagenet", False), 1, 0.0)
    else:
        specs = _vgg_specs(VGG_ARCHS[kw["depth"]], 1, 2, 1, 0.0)
    return _min_size(specs)


# --------------------------------------------------------------------------------------------
# Switching between the built-in and the explicit layers
# --------------------------------------------------------------------------------------------
def conv_variant(model):
    """``"builtin"``, ``"explicit"``, ``"mixed"`` or ``None`` (no conv layers) for ``model``."""
    try:
        conv_cls, _, _ = _explicit()
    except ImportError:  # pragma: no cover
        conv_cls = ()
    kinds = {"explicit" if isinstance(layer, conv_cls) else "builtin"
             for layer in _flat_layers(model) if isinstance(layer, keras.layers.Conv2D)}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


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


def _pair_padding(padding):
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
            conv_cfg["padding"] = _pair_padding(cfg["padding"])
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
                (t, b), (l, r) = _pair_padding(padding)
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
            new = keras.layers.Conv2D.from_config(cfg)
        elif isinstance(layer, (max_cls, avg_cls)):
            padding = cfg.get("padding", "valid")
            if not isinstance(padding, str):
                if _pair_padding(padding) != ((0, 0), (0, 0)):
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
    _check_conv(conv)
    layers = _chain(model)
    classes = _explicit()
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
