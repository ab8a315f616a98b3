"""The kcnn metadata carried in an ONNX file's ``metadata_props``.

A server needs nothing but the ``.onnx`` file: the class names and the preprocessing that
turns a uint8 image into the model's float input travel with the graph as JSON strings.

Keys (all strings):

* ``kcnn.labels`` — JSON list of class names, one per output unit.
* ``kcnn.preprocessing`` — JSON object, see :func:`default_preprocessing`.
* ``kcnn.model`` — model name; ``kcnn.conv`` — ``"builtin"``, ``"explicit"`` or ``"none"``.
* ``kcnn.backend`` — Keras backend that traced the graph; ``kcnn.version`` — kcnn version
  (:func:`kcnn_version`).
* ``kcnn.output`` — ``"logits"`` or ``"probabilities"`` (the model already ends in softmax).
* ``kcnn.exporter`` — the converter that produced the raw graph (e.g. ``"tf2onnx 1.17.0"``).
* ``kcnn.quantization`` — ``"int8"`` / ``"fp16"``, present only for quantized files.
* ``kcnn.graph`` — how kcnn's explicit layers are written: ``"operators"`` (as the standard ONNX
  ``Conv`` / ``MaxPool`` / ``AveragePool``, the default, see :mod:`kcnn.export.lowering`) or
  ``"explicit"`` (the formula spelled out node by node: ``export_onnx(..., explicit_graph=True)``).
* ``kcnn.explain`` — JSON, only in explain files (``model.explain.onnx``): the outputs for the
  conv/pool activations and the first kernel, see :mod:`kcnn.export.explain`.
"""

from __future__ import annotations

import json
import numbers

LABELS = "kcnn.labels"
PREPROCESSING = "kcnn.preprocessing"
MODEL = "kcnn.model"
CONV = "kcnn.conv"
BACKEND = "kcnn.backend"
VERSION = "kcnn.version"
OUTPUT = "kcnn.output"
EXPORTER = "kcnn.exporter"
QUANTIZATION = "kcnn.quantization"
EXPLAIN = "kcnn.explain"
GRAPH = "kcnn.graph"
#: Values of ``kcnn.graph``.
GRAPH_FORMS = ("operators", "explicit")

KEYS = (LABELS, PREPROCESSING, MODEL, CONV, BACKEND, VERSION, OUTPUT, EXPORTER, QUANTIZATION,
        EXPLAIN, GRAPH)
JSON_KEYS = (LABELS, PREPROCESSING, EXPLAIN)

def kcnn_version() -> str:
    """The installed kcnn version, read from the package metadata (pyproject's ``version``)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("kcnn")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "lanczos", "box")
#: How an image of another aspect ratio is fitted to ``input_size`` (kcnn.data.resize's modes).
FIT_MODES = ("stretch", "crop", "pad")
_PREPROCESSING_FIELDS = ("input_size", "channels", "color", "scale", "mean", "std", "resize",
                         "fit", "layout", "dtype")


def default_preprocessing(height, width, channels):
    """Preprocessing for a model fed with images in [0, 1] (the kcnn convention).

    ``x = (uint8_image · scale − mean) / std`` per channel, after fitting the image to
    ``input_size`` (``[height, width]``) by ``fit`` — ``"stretch"`` (aspect ratio ignored),
    ``"crop"`` (the largest centred box of the input's aspect ratio) or ``"pad"`` (fit inside,
    black bars) — resampling with ``resize``, and converting to ``channels`` (1 = grayscale "L",
    3 = "RGB"). ``fit`` is how the model saw its training images (``kcnn-train --resize``).
    """
    return {
        "input_size": [int(height), int(width)],
        "channels": int(channels),
        "color": "grayscale" if channels == 1 else "rgb" if channels == 3 else "none",
        "scale": 1.0 / 255.0,
        "mean": [0.0] * int(channels),
        "std": [1.0] * int(channels),
        "resize": "bilinear",
        "fit": "stretch",
        "layout": "NHWC",
        "dtype": "float32",
    }


def _per_channel(name, value, channels):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(
            f"preprocessing[{name!r}] must be a number or a list of numbers; received {value!r}."
        )
    if len(value) == 1:
        value = list(value) * channels
    if len(value) != channels:
        raise ValueError(
            f"preprocessing[{name!r}] must have {'1 value' if channels == 1 else f'1 or {channels} values'} "
            f"(one per channel); "
            f"received {len(value)}: {list(value)!r}."
        )
    return [float(v) for v in value]


def normalize_preprocessing(preprocessing, height, width, channels):
    """Merge ``preprocessing`` over :func:`default_preprocessing` and validate it.

    ``input_size`` and ``channels`` must match the model's input when given. Raises
    ``ValueError`` naming the offending field.
    """
    result = default_preprocessing(height, width, channels)
    if preprocessing is None:
        return result
    if not isinstance(preprocessing, dict):
        raise TypeError(
            f"preprocessing must be a dict or None; received {type(preprocessing).__name__}."
        )
    unknown = sorted(set(preprocessing) - set(_PREPROCESSING_FIELDS))
    if unknown:
        raise ValueError(
            f"preprocessing has unknown field(s) {unknown}; accepted: {list(_PREPROCESSING_FIELDS)}."
        )
    if "input_size" in preprocessing:
        size = preprocessing["input_size"]
        if not isinstance(size, (list, tuple)) or [int(s) for s in size] != [height, width]:
            raise ValueError(
                f"preprocessing['input_size'] must equal the model's input size "
                f"[{height}, {width}]; received {size!r}."
            )
    if "channels" in preprocessing and preprocessing["channels"] != channels:
        raise ValueError(
            f"preprocessing['channels'] must equal the model's input channels {channels}; "
            f"received {preprocessing['channels']!r}."
        )
    if "scale" in preprocessing:
        scale = preprocessing["scale"]
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not scale > 0:
            raise ValueError(
                f"preprocessing['scale'] must be a positive number; received {scale!r}."
            )
        result["scale"] = float(scale)
    for name in ("mean", "std"):
        if name in preprocessing:
            result[name] = _per_channel(name, preprocessing[name], channels)
    if any(s <= 0 for s in result["std"]):
        raise ValueError(f"preprocessing['std'] values must be > 0; received {result['std']}.")
    if "resize" in preprocessing:
        if preprocessing["resize"] not in RESIZE_METHODS:
            raise ValueError(
                f"preprocessing['resize'] must be one of {list(RESIZE_METHODS)}; "
                f"received {preprocessing['resize']!r}."
            )
        result["resize"] = preprocessing["resize"]
    if "fit" in preprocessing:
        if preprocessing["fit"] not in FIT_MODES:
            raise ValueError(f"preprocessing['fit'] must be one of {list(FIT_MODES)}; "
                             f"received {preprocessing['fit']!r}.")
        result["fit"] = preprocessing["fit"]
    for name, fixed in (("layout", "NHWC"), ("dtype", "float32")):
        if name in preprocessing and preprocessing[name] != fixed:
            raise ValueError(
                f"preprocessing[{name!r}] must be {fixed!r}; received {preprocessing[name]!r}."
            )
    if "color" in preprocessing and preprocessing["color"] != result["color"]:
        raise ValueError(
            f"preprocessing['color'] must be {result['color']!r} for {channels} channel(s); "
            f"received {preprocessing['color']!r}."
        )
    return result


def normalize_labels(labels, num_classes):
    """Return ``labels`` as a list of ``num_classes`` strings (default ``"0"``, ``"1"``, …)."""
    if labels is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise TypeError(f"labels must be a sequence of strings; received {labels!r}.")
    labels = list(labels)
    bad = [label for label in labels if not isinstance(label, str)]
    if bad:
        raise TypeError(f"labels must all be strings; received non-strings {bad[:5]!r}.")
    if num_classes is not None and len(labels) != num_classes:
        raise ValueError(
            f"labels must have one name per output unit ({num_classes}); "
            f"received {len(labels)} labels."
        )
    if len(set(labels)) != len(labels):
        raise ValueError("labels must be unique; received duplicates.")
    return labels


def encode(values):
    """Encode a ``{key: value}`` dict as ``metadata_props`` strings (JSON for labels/preprocessing)."""
    props = {}
    for key, value in values.items():
        if key not in KEYS:
            raise ValueError(f"unknown kcnn metadata key {key!r}; accepted: {list(KEYS)}.")
        if value is None:
            continue
        props[key] = json.dumps(value) if key in JSON_KEYS else str(value)
    return props


def decode(props):
    """Decode ``metadata_props`` strings into Python values; unknown keys are kept as strings.

    Raises ``ValueError`` when a JSON field is malformed.
    """
    values = dict(props)
    for key in JSON_KEYS:
        if key in values:
            try:
                values[key] = json.loads(values[key])
            except json.JSONDecodeError as err:
                raise ValueError(f"metadata {key!r} is not valid JSON: {err}") from None
    return values


def set_props(model_proto, values):
    """Write ``values`` (decoded) into ``model_proto.metadata_props``, replacing same keys."""
    props = encode(values)
    kept = [(p.key, p.value) for p in model_proto.metadata_props if p.key not in props]
    del model_proto.metadata_props[:]
    for key, value in kept + sorted(props.items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def get_props(model_proto):
    """Read and decode ``model_proto.metadata_props``."""
    return decode({p.key: p.value for p in model_proto.metadata_props})


def read_metadata(path):
    """Decoded ``metadata_props`` of the ONNX file at ``path`` (weights are not kept)."""
    import onnx

    return get_props(onnx.load(str(path), load_external_data=False))
