"""``export_onnx``: Keras image classifier -> self-describing ONNX file, written atomically.

The graph comes from Keras's own exporter (``model.export(format="onnx")``), which uses tf2onnx
on TensorFlow, jax2onnx on JAX and ``torch.onnx`` (TorchScript, because the batch axis is
dynamic) on PyTorch. kcnn's explicit layers reach the exporter lowered to Keras's built-in ones
(:mod:`kcnn.export.lowering`), so they are written as ONNX ``Conv`` / ``MaxPool`` /
``AveragePool``; ``explicit_graph=True`` keeps the formula spelled out instead. The result is
then standardised with the ``onnx`` API: I/O names and shapes, kcnn metadata, producer, backend
quirk fixes (``graph.fix_high_rank_pooling``, ``pad_folding.fold_pads``), and
``onnx.checker.check_model(full_check=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import warnings

import keras
import numpy as np
import onnx

from kcnn.export import graph as graph_ops
from kcnn.export import lowering
from kcnn.export import metadata as meta
from kcnn.export import quantize as quant
from kcnn.export.pad_folding import fold_pads
from kcnn.export.staging import staging_dir

#: Opset used when ``opset=None`` (the same on every backend, accepted by current runtimes).
DEFAULT_OPSET = 17
MIN_OPSET = 13
#: Highest opset each backend's converter writes (tf2onnx 1.17: 18; torch.onnx TorchScript: 23).
MAX_OPSET = {"tensorflow": 18, "jax": 23, "torch": 23}
CONV_KINDS = ("builtin", "explicit", "mixed", "none")


class ExportError(RuntimeError):
    """The backend's converter or the ONNX post-processing failed; no file was written."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote. ``os.fspath(result)`` is the file path.

    Attributes:
        path: the ``.onnx`` file.
        opset: default-domain opset of the file.
        input_shape: ``(H, W, C)`` of the ``images`` input (batch is dynamic).
        num_classes: width of the ``logits`` output.
        metadata: the decoded kcnn metadata written into the file.
        quantization: ``None``, or the report of :func:`kcnn.export.quantize.accuracy_change`
            plus ``mode`` (the report has only ``mode`` when no samples were given).
        explain: the explain file written beside ``path`` (``explain=True``), else ``None``.
    """

    path: pathlib.Path
    opset: int
    input_shape: tuple
    num_classes: int
    metadata: dict
    quantization: dict | None = None
    explain: pathlib.Path | None = None

    def __fspath__(self):
        return os.fspath(self.path)


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; received {type(path).__name__}.")
    path = pathlib.Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"path must end in '.onnx'; received {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; expected a file name ending in '.onnx'.")
    return path


def _check_opset(opset, backend):
    high = MAX_OPSET.get(backend, DEFAULT_OPSET)
    if opset is None:
        return min(DEFAULT_OPSET, high)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= high:
        raise ValueError(
            f"opset must be an integer in [{MIN_OPSET}, {high}] on the {backend} backend; "
            f"received {opset!r}."
        )
    return int(opset)


def model_signature(model):
    """Return ``((H, W, C), num_classes)`` of a single-input NHWC image classifier.

    Raises ``TypeError`` for non-models and ``ValueError`` for other input/output layouts.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model; received {type(model).__name__}.")
    try:
        in_shape = model.input_shape
    except (AttributeError, ValueError):
        raise ValueError(
            f"model {model.name!r} has no defined input shape; build it with keras.Input "
            "(Sequential or functional) before exporting."
        ) from None
    if isinstance(in_shape, list) or isinstance(in_shape, dict) or (
            isinstance(in_shape, tuple) and in_shape and isinstance(in_shape[0], tuple)):
        raise ValueError(
            f"model must have exactly one input; {model.name!r} has input shapes {in_shape}."
        )
    if len(in_shape) != 4 or any(d is None for d in in_shape[1:]):
        raise ValueError(
            f"model input must be (batch, height, width, channels) with known height, width "
            f"and channels; {model.name!r} has input shape {tuple(in_shape)}."
        )
    try:
        out_shape = model.output_shape
    except (AttributeError, ValueError):
        out_shape = model.compute_output_spec(keras.KerasTensor((1, *in_shape[1:]))).shape
    if isinstance(out_shape, list) or len(out_shape) != 2 or out_shape[-1] is None:
        raise ValueError(
            f"model must have one output of shape (batch, classes); {model.name!r} has "
            f"output shape {out_shape}."
        )
    return tuple(int(d) for d in in_shape[1:]), int(out_shape[-1])


def detect_conv(model):
    """``"explicit"``, ``"builtin"``, ``"mixed"`` or ``"none"``: :func:`kcnn.export.introspection.conv_kind`
    (from layer classes, so any Keras model is classified the way ``kcnn.models`` does)."""
    from kcnn.export.introspection import conv_kind

    return conv_kind(model)


def output_kind(model):
    """``"probabilities"`` when the model's last layer applies softmax, else ``"logits"``."""
    from kcnn.export.introspection import iter_layers

    layers = list(iter_layers(model))
    if not layers:
        return "logits"
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "probabilities"
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", "")
    return "probabilities" if name == "softmax" else "logits"


@contextlib.contextmanager
def _quiet_converters():
    """Silence converter chatter (tf2onnx INFO logs, torch tracer warnings)."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "jax2onnx", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _load_core_jax2onnx_plugins():
    """Register only jax2onnx's ``jax.*`` primitive plugins; True if this skipped the rest.

    On its first conversion jax2onnx imports every plugin it ships, and its Equinox plugins
    compile examples at import time: ~45 s of a ~50 s first export on a 2-core machine.
    Keras models only ever produce plain JAX primitives, so the ``jax`` plugin tree suffices;
    if a conversion still fails, :func:`_keras_export` retries with every plugin loaded.
    """
    try:
        from jax2onnx.plugins import plugin_system
    except ImportError:
        return False
    if getattr(plugin_system, "_already_imported_plugins", True) or not hasattr(
            plugin_system, "_import_tree"):
        return False
    root = pathlib.Path(plugin_system.__file__).parent
    plugin_system._import_tree(root / "jax", "jax2onnx.plugins.jax")
    plugin_system._already_imported_plugins = True
    return True


def exported_model(model, explicit_graph=False):
    """``(the model handed to the backend's exporter, its kcnn.graph form)``.

    By default kcnn's explicit layers are lowered to built-in ones (:func:`kcnn.export.lowering.lower`);
    a model that cannot be cloned (subclassed) is exported as it is, with a warning.
    """
    if not isinstance(explicit_graph, bool):
        raise TypeError(f"explicit_graph must be True or False; received {explicit_graph!r}.")
    if explicit_graph:
        return model, "explicit"
    try:
        return lowering.lower(model), "operators"
    except lowering.LoweringError as err:
        warnings.warn(f"{err} Its explicit layers are exported as the spelled-out formula "
                      "(slower in onnxruntime).", stacklevel=3)
        return model, "explicit"


def _keras_export(model, raw_path, input_shape, opset, explicit_graph=False):
    """Run Keras's exporter on ``model`` (lowered unless ``explicit_graph``); returns the
    ``kcnn.graph`` form written."""
    model, form = exported_model(model, explicit_graph)
    spec = keras.InputSpec(shape=(None, *input_shape), dtype="float32", name=graph_ops.INPUT_NAME)
    with _quiet_converters():
        partial_plugins = keras.backend.backend() == "jax" and _load_core_jax2onnx_plugins()
        try:
            model.export(str(raw_path), format="onnx", verbose=False, input_signature=[spec],
                         opset_version=opset)
        except Exception:
            if not partial_plugins:
                raise
            from jax2onnx.plugins import plugin_system

            plugin_system._already_imported_plugins = False
            model.export(str(raw_path), format="onnx", verbose=False, input_signature=[spec],
                         opset_version=opset)
    return form


def _smoke_test(path, input_shape, num_classes):
    """Run the written file once in onnxruntime at batch 2 (catches graphs that load but fail)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    (y,) = session.run([graph_ops.OUTPUT_NAME], {graph_ops.INPUT_NAME: x})
    if y.shape != (2, num_classes) or not np.all(np.isfinite(y)):
        raise ExportError(
            f"onnxruntime smoke test failed: output shape {y.shape} (expected (2, {num_classes})) "
            f"or non-finite values."
        )


def _check_name_and_conv(model, model_name, conv):
    """Validated ``(model_name, conv)``, defaults filled in; also checks the dtype policy."""
    if model_name is None:
        model_name = model.name
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be a non-empty string; received {model_name!r}.")
    if conv is None:
        conv = detect_conv(model)
    if conv not in CONV_KINDS:
        raise ValueError(f"conv must be one of {list(CONV_KINDS)} or None; received {conv!r}.")
    policy = getattr(getattr(model, "dtype_policy", None), "name", "float32")
    if policy != "float32":
        raise ValueError(
            f"model dtype policy must be 'float32' for ONNX export; received {policy!r}."
        )
    return model_name, conv


def _check_samples(samples, quantize, input_shape):
    x_samples, _ = quant.split_samples(samples)
    if x_samples is not None and x_samples.shape[1:] != input_shape:
        raise ValueError(
            f"samples must have shape (n, {', '.join(map(str, input_shape))}); "
            f"received {x_samples.shape}."
        )
    if x_samples is not None and quantize is None:
        raise ValueError("samples are only used with quantize='int8' or 'fp16'; received quantize=None.")


def _convert(model, tmp, input_shape, opset, explicit_graph):
    """``(the backend converter's raw graph as a ModelProto, its kcnn.graph form)``."""
    try:
        form = _keras_export(model, tmp / "raw.onnx", input_shape, opset, explicit_graph)
        return onnx.load(str(tmp / "raw.onnx")), form
    except Exception as err:  # converters raise anything; report it as one error type
        raise ExportError(f"Keras ONNX export failed on the {keras.backend.backend()} backend: "
                          f"{type(err).__name__}: {err}") from err


def _write(model, path, opset, values, input_shape, num_classes, quantize, samples,
           explicit_graph=False):
    """Convert, standardise, stamp, check, (quantize), smoke-test in a temporary folder beside
    ``path``, then rename into place. Returns ``(proto, metadata values, quantization report)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(path, "tmp") as tmp:
        tmp = pathlib.Path(tmp)
        proto, form = _convert(model, tmp, input_shape, opset, explicit_graph)
        exporter = " ".join(
            part for part in (proto.producer_name, *proto.producer_version.split()[:1]) if part)
        values = {**values, meta.EXPORTER: exporter, meta.GRAPH: form}
        final, report = tmp / "model.onnx", None
        try:
            graph_ops.standardize_io(proto, input_shape, num_classes)
            graph_ops.fix_high_rank_pooling(proto)
            fold_pads(proto)
            graph_ops.check_domains(proto)
            graph_ops.finalize(proto, values)
            onnx.save(proto, str(final))
            _check_against_keras(model, final, input_shape)
            if quantize is not None:
                compressed = tmp / f"model.{quantize}.onnx"
                report = quant.quantize_onnx(final, compressed, quantize, samples=samples)
                final, values = compressed, {**values, meta.QUANTIZATION: quantize}
        except (graph_ops.GraphError, graph_ops.CheckError) as err:
            raise ExportError(str(err)) from err
        _smoke_test(final, input_shape, num_classes)
        os.replace(final, path)
    return proto, values, report


def _check_against_keras(model, path, input_shape, atol=1e-5):
    """The float file reproduces the Keras model itself (the explicit layers, not their lowered
    twins) on a random probe batch, within ``atol`` × (1 + max |output|)."""
    import onnxruntime as ort

    probe = np.random.default_rng(1).random((2, *input_shape), dtype=np.float32)
    want = np.asarray(keras.ops.convert_to_numpy(model(probe, training=False)), np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([graph_ops.OUTPUT_NAME], {graph_ops.INPUT_NAME: probe})
    diff = float(np.max(np.abs(got - want)))
    scale = 1.0 + float(np.max(np.abs(want)))
    if not diff <= atol * scale:
        raise ExportError(f"the exported graph does not reproduce the Keras model: max |diff| "
                          f"{diff:.3g} > {atol * scale:.3g} on a probe batch.")


def export_onnx(model, path, *, opset=None, labels=None, preprocessing=None, model_name=None,
                conv=None, quantize=None, samples=None, explain=False, explicit_graph=False):
    """Export a Keras image classifier to an ONNX file that onnxruntime can serve alone.

    The file has one float32 input ``images`` of shape ``[batch, H, W, C]`` (``batch`` is a
    named dynamic dimension) and one output ``logits`` of shape ``[batch, classes]``; its
    ``metadata_props`` carry labels, preprocessing and provenance (see
    :mod:`kcnn.export.metadata`). The file is built in a temporary folder next to ``path``
    and renamed into place only when complete and checked, so a failed or interrupted export
    leaves ``path`` untouched.

    Args:
        model: a built ``keras.Model`` with one ``(batch, H, W, C)`` input and one
            ``(batch, classes)`` output, dtype policy float32.
        path: target file, must end in ``.onnx``; missing parent folders are created.
        opset: ONNX opset, ``None`` for 17; at most 18 on TensorFlow (tf2onnx), 23 otherwise.
        labels: class names, one per output unit (default ``"0"``, ``"1"``, …).
        preprocessing: overrides of :func:`kcnn.export.metadata.default_preprocessing`
            (``scale``, ``mean``, ``std``, ``resize``); default: uint8 / 255.
        model_name: stored as ``kcnn.model`` (default ``model.name``).
        conv: ``"builtin"``, ``"explicit"`` or ``"none"``; default detected from the layers.
        quantize: ``None``, ``"int8"`` (static QDQ, calibrated on half of ``samples``),
            ``"int8-dynamic"`` or ``"fp16"`` (see :mod:`kcnn.export.quantize`).
        samples: for ``quantize`` only: preprocessed float32 images ``x`` or a pair
            ``(x, y)``; the float and compressed graphs are compared on them and the report is
            returned in ``ExportResult.quantization``.
        explain: also write :func:`kcnn.export.explain_path` of ``path`` (``model.explain.onnx``)
            with :func:`kcnn.export.export_explain`: the conv/pool activations and first kernel
            that ``kcnn-serve``'s page shows. ``path`` itself is the same either way.
        explicit_graph: ``False`` (default): kcnn's explicit layers are written as the standard
            ``Conv`` / ``MaxPool`` / ``AveragePool`` operators (same numbers, built-in speed);
            ``True``: the cross-correlation formula spelled out node by node (slices, matmuls),
            to read it in a graph viewer. The metadata's ``kcnn.graph`` says which.

    Returns:
        :class:`ExportResult`.

    Raises:
        TypeError / ValueError: invalid arguments (the message names the argument).
        ExportError: the converter, post-processing or checker failed.
    """
    input_shape, num_classes = model_signature(model)
    backend = keras.backend.backend()
    path = _check_path(path)
    opset = _check_opset(opset, backend)
    labels = meta.normalize_labels(labels, num_classes)
    preprocessing = meta.normalize_preprocessing(preprocessing, *input_shape)
    quant.check_mode(quantize)
    model_name, conv = _check_name_and_conv(model, model_name, conv)
    _check_samples(samples, quantize, input_shape)
    if not isinstance(explain, bool):
        raise TypeError(f"explain must be True or False; received {explain!r}.")
    if not isinstance(explicit_graph, bool):
        raise TypeError(f"explicit_graph must be True or False; received {explicit_graph!r}.")
    if explain:
        from kcnn.export.explain import explain_layers

        explain_layers(model)  # fail on a model without conv/pool layers before writing anything

    values = {
        meta.LABELS: labels,
        meta.PREPROCESSING: preprocessing,
        meta.MODEL: model_name,
        meta.CONV: conv,
        meta.BACKEND: backend,
        meta.VERSION: meta.kcnn_version(),
        meta.OUTPUT: output_kind(model),
    }
    proto, values, report = _write(model, path, opset, values, input_shape, num_classes,
                                   quantize, samples, explicit_graph)
    explained = None
    if explain:
        from kcnn.export.explain import export_explain

        explained = export_explain(model, onnx_path=path, opset=opset, labels=labels,
                                   preprocessing=preprocessing, model_name=model_name)
    return ExportResult(path=path, opset=graph_ops.opset_version(proto), input_shape=input_shape,
                        num_classes=num_classes, metadata=values, quantization=report,
                        explain=explained)
