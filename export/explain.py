"""``export_explain``: the ONNX file that lets a page show what a classifier sees.

Beside ``model.onnx`` (one input ``images``, one output ``logits``) :func:`export_explain` writes
``model.explain.onnx``: the same network with the output of every 2-D convolution and pooling
layer as an extra output (``features.0``, ``features.1``, … in network order), the input of each
such layer that is neither the image nor another listed output (``inputs.<i>``), the ``logits``,
every convolution's kernel and bias as constant outputs (``kernel.<i>``, ``bias.<i>``) and the
first convolution's kernel again as ``kernel``. Its ``kcnn.explain`` metadata (JSON) names each
output's layer, kind, class and shape, and how each layer slides over its input::

    {"version": 2,
     "layers": [{"output": "features.0", "name": "conv1", "kind": "conv", "class": "Conv2D",
                 "shape": [28, 28, 6], "data_format": "channels_last",
                 "window": {"input": "images", "outline": "images", "kernel": "kernel.0",
                            "bias": "bias.0", "size": [5, 5], "strides": [1, 1],
                            "dilation": [1, 1], "groups": 1, "pads": [2, 2, 2, 2],
                            "activation": "relu", ...}}, ...],
     "kernel": {"output": "kernel", "layer": "conv1", "shape": [5, 5, 1, 6], "layout": "HWIO"},
     "logits": "logits"}

The window geometry comes from the Keras layers (:mod:`kcnn.export.window_specs`). Kernels and
biases are constant outputs rather than metadata: float32 bytes, exact and compact (a VGG layer's
3×3×512×512 kernel would be megabytes of JSON text), read once by the server.

The graph comes from the same exporter as :func:`kcnn.export.export_onnx` (tf2onnx, jax2onnx or
``torch.onnx``) applied to ``keras.Model(model.inputs, [tensors..., model.output])``, so it works
for any functional or Sequential image classifier built from Keras or ``kcnn.layers`` convolution
and pooling layers. Converters order and name multi-output graphs their own way, so each raw
output is matched to its Keras tensor by value on a probe batch before it is renamed. The served
``model.onnx`` is left as it is: :mod:`kcnn.export.explainer` runs this second file.
"""

from __future__ import annotations

import os
import pathlib

import keras
import numpy as np
import onnx
from onnx import helper, numpy_helper

from kcnn.export import graph as graph_ops
from kcnn.export import metadata as meta
from kcnn.export import onnx_export as ox
from kcnn.export import window_specs
from kcnn.export.explainer import (FORMAT_VERSION, KERNEL_OUTPUT, explain_path,
                                     feature_output)
from kcnn.export.staging import staging_dir

__all__ = ["explain_layers", "explain_model", "export_explain", "explain_path"]

_POOL_CLASSES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_CONV_CLASSES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def _kind(layer):
    """``"conv"``, ``"pool"`` or ``None`` for a top-level layer (kcnn.layers pooling included)."""
    if isinstance(layer, _CONV_CLASSES) and not isinstance(layer, keras.layers.Conv2DTranspose):
        return "conv"
    if isinstance(layer, _POOL_CLASSES):
        return "pool"
    # kcnn.layers.MaxPool2D / AvgPool2D: recognised by module and name, so that kcnn.export
    # keeps working on Keras alone.
    cls = type(layer)
    if cls.__module__.startswith("kcnn.layers") and cls.__name__ in ("MaxPool2D", "AvgPool2D"):
        return "pool"
    return None


def explain_layers(model):
    """The ``(layer, kind)`` pairs whose outputs the page shows, in network order.

    Every top-level 2-D convolution (``keras.layers.Conv2D`` and subclasses such as
    ``kcnn.layers.CrossCorrelation2D``, depthwise, separable) and 2-D pooling layer (Keras's or
    ``kcnn.layers``') with a rank-4 output. Raises ``ValueError`` when there is none.
    """
    ox.model_signature(model)
    found = []
    for layer in model.layers:
        kind = _kind(layer)
        if kind is None:
            continue
        shape = layer.output.shape
        if len(shape) == 4:
            found.append((layer, kind))
    if not found:
        raise ValueError(
            f"model {model.name!r} has no top-level 2-D convolution or pooling layer "
            "(Conv2D, kcnn.layers.CrossCorrelation2D, MaxPooling2D, AveragePooling2D, "
            "kcnn.layers.MaxPool2D/AvgPool2D); there is nothing to explain.")
    return found


def explain_model(model):
    """``keras.Model(model.inputs, [conv/pool layer outputs..., model.output])``, sharing weights."""
    layers = explain_layers(model)
    # ``model.outputs``, not ``model.output``: a Sequential that was never called has only the former.
    return keras.Model(model.inputs, [layer.output for layer, _ in layers] + list(model.outputs),
                       name=f"{model.name}_explain")


def _spatial(tensor, data_format):
    shape = tensor.shape
    return tuple(shape[2:4] if data_format == "channels_first" else shape[1:3])


class _Plan:
    """The explain file's outputs and metadata for ``model`` (see the module docstring)."""

    def __init__(self, model):
        self.layers = explain_layers(model)
        image = model.inputs[0]
        produced = [(layer.output, feature_output(i), layer.name, getattr(
            layer, "data_format", None) or "channels_last") for i, (layer, _) in enumerate(self.layers)]
        self.extra = []       # (output name, Keras tensor): layer inputs that are not listed yet
        self.constants = []   # (output name, float32 array): kernels and biases
        self.entries = []
        self.first_kernel = None
        for index, (layer, kind) in enumerate(self.layers):
            entry = {"output": feature_output(index), "name": layer.name, "kind": kind,
                     "class": type(layer).__name__,
                     "shape": [int(d) for d in layer.output.shape[1:]],
                     "data_format": getattr(layer, "data_format", None) or "channels_last"}
            spec = window_spec_or_none(layer, kind)
            if spec is not None:
                source = (window_specs.conv_source(layer)[0] if kind == "conv" else layer.input)
                base, permutes = _through_permutes(source)
                spec["input"] = self._source_name(base, image, produced, index)
                spec["input_permutes"] = permutes
                spec["outline"] = self._outline(base, source, image, produced, index,
                                                entry["data_format"])
                if kind == "conv":
                    kernel, bias = window_specs.conv_weights(layer)
                    spec["kernel"] = f"{KERNEL_OUTPUT}.{index}"
                    self.constants.append((spec["kernel"], kernel))
                    spec["bias"] = None if bias is None else f"bias.{index}"
                    if bias is not None:
                        self.constants.append((spec["bias"], bias))
                    if self.first_kernel is None:
                        self.first_kernel = (layer, spec["kernel"], kernel)
            entry["window"] = spec
            self.entries.append(entry)

    def _source_name(self, source, image, produced, index):
        if source is image:
            return graph_ops.INPUT_NAME
        for tensor, name, _, _ in produced[:index]:
            if source is tensor:
                return name
        for name, tensor in self.extra:
            if source is tensor:
                return name
        name = f"inputs.{index}"
        self.extra.append((name, source))
        return name

    @staticmethod
    def _outline(base, source, image, produced, index, data_format):
        """The shown map (a layer's name or ``"images"``) to outline the window on, or None.

        The source itself when it is shown; else the nearest earlier shown map of the same height
        and width (e.g. a conv's output before a BatchNormalization), else the image if it fits.
        """
        if base is image:
            return "images"
        hw = _spatial(source, data_format)
        for tensor, _, name, fmt in reversed(produced[:index]):
            if base is tensor:
                return name
        for tensor, _, name, fmt in reversed(produced[:index]):
            if _spatial(tensor, fmt) == hw:
                return name
        return "images" if tuple(image.shape[1:3]) == hw else None

    def model(self, model):
        """The multi-output Keras model: features, extra inputs, logits."""
        outputs = ([layer.output for layer, _ in self.layers] + [t for _, t in self.extra]
                   + list(model.outputs))
        return keras.Model(model.inputs, outputs, name=f"{model.name}_explain")


def _through_permutes(tensor):
    """``(base tensor, [Permute dims applied to it, in order])``: layout-only layers skipped.

    A window source made by ``Permute`` (a channels_first block inside a channels_last model) is
    read from the permuted tensor's own output, so the explain graph needs no output for a
    transpose (converters may fold such a transpose away, output included).
    """
    permutes = []
    while True:
        history = getattr(tensor, "_keras_history", None)
        producer = history[0] if history else None
        if not isinstance(producer, keras.layers.Permute):
            return tensor, permutes[::-1]
        permutes.append([int(d) for d in producer.dims])
        tensor = producer.input


def window_spec_or_none(layer, kind):
    """:func:`kcnn.export.window_specs.window_spec`, or None where a layer has no window view."""
    try:
        return window_specs.window_spec(layer, kind)
    except (AttributeError, TypeError, ValueError):  # a layer class with other attributes
        return None


def _match_outputs(proto, expected, probe):
    """Raw output name for each expected Keras output (matched by value on ``probe``)."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if len(names) != len(expected):
        raise ox.ExportError(
            f"the exporter wrote {len(names)} outputs for {len(expected)} explain tensors.")
    values = dict(zip(names, session.run(names, {session.get_inputs()[0].name: probe})))
    matched = []
    for want in expected:
        best, best_diff = None, np.inf
        for name, got in values.items():
            if name in matched or got.shape != want.shape:
                continue
            diff = float(np.max(np.abs(got - want))) if want.size else 0.0
            if diff < best_diff:
                best, best_diff = name, diff
        scale = 1.0 + float(np.max(np.abs(want))) if want.size else 1.0
        if best is None or not best_diff <= 1e-3 * scale:
            raise ox.ExportError(
                f"no exported output matches a Keras explain tensor of shape {want.shape} "
                f"(closest differs by {best_diff:.3g}).")
        matched.append(best)
    return matched


def _add_constant(graph, name, value, node_name):
    graph_ops._free_name(graph, name)
    const = f"{name}__value"
    graph_ops._free_name(graph, const)
    graph.initializer.append(numpy_helper.from_array(value, const))
    graph.node.append(helper.make_node("Identity", [const], [name], name=node_name))
    graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                      list(value.shape)))
    return const


def _standardize(proto, raw_names, wanted, shapes, input_shape, plan):
    """Rename input/outputs, stamp shapes, order outputs, add the constant kernel/bias outputs."""
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ox.ExportError(f"the explain graph has inputs {[v.name for v in inputs]}; "
                             "expected exactly one.")
    renames = [(inputs[0].name, graph_ops.INPUT_NAME)] + list(zip(raw_names, wanted))
    for i, (old, _) in enumerate(renames):  # two passes: a raw name may be a wanted name
        graph_ops._rename_everywhere(graph, old, f"__kcnn_explain_{i}")
    for i, (_, new) in enumerate(renames):
        graph_ops._free_name(graph, new)
        graph_ops._rename_everywhere(graph, f"__kcnn_explain_{i}", new)
    by_name = {o.name: o for o in graph.output}
    ordered = [onnx.ValueInfoProto.FromString(by_name[n].SerializeToString()) for n in wanted]
    for value, shape in zip(ordered, shapes):
        graph_ops._set_shape(value, [graph_ops.BATCH_DIM, *shape])
    graph_ops._set_shape(graph.input[[v.name for v in graph.input].index(graph_ops.INPUT_NAME)],
                         [graph_ops.BATCH_DIM, *input_shape])
    del graph.output[:]
    graph.output.extend(ordered)
    sources = {}
    for name, value in plan.constants:
        sources[name] = _add_constant(graph, name, value, f"kcnn_explain_{name}")
    if plan.first_kernel is not None:  # the first kernel again, from the same initializer
        _, output, kernel = plan.first_kernel
        graph_ops._free_name(graph, KERNEL_OUTPUT)
        graph.node.append(helper.make_node("Identity", [sources[output]], [KERNEL_OUTPUT],
                                           name="kcnn_explain_kernel"))
        graph.output.append(helper.make_tensor_value_info(KERNEL_OUTPUT, onnx.TensorProto.FLOAT,
                                                          list(kernel.shape)))


def export_explain(model, path=None, *, onnx_path=None, opset=None, labels=None,
                   preprocessing=None, model_name=None):
    """Write the explain file of ``model``: its conv/pool activations, logits and first kernel.

    Args:
        model: the Keras image classifier (as for :func:`kcnn.export.export_onnx`) with at
            least one top-level 2-D convolution or pooling layer.
        path: target ``.onnx`` file; default :func:`explain_path` of ``onnx_path``.
        onnx_path: the served ``model.onnx`` this file accompanies (only to derive ``path``).
        opset, labels, preprocessing, model_name: as for :func:`kcnn.export.export_onnx`; give
            the same values so that the server can check the two files belong together.

    Returns:
        The :class:`pathlib.Path` written (atomically: temp file + rename, after an
        onnxruntime run that reproduces the Keras activations).

    Raises:
        TypeError / ValueError: invalid arguments or a model without conv/pool layers.
        ExportError: the converter or the ONNX post-processing failed.
    """
    if path is None:
        if onnx_path is None:
            raise ValueError("export_explain needs path or onnx_path; received neither.")
        path = explain_path(ox._check_path(onnx_path))
    path = ox._check_path(path)
    input_shape, num_classes = ox.model_signature(model)
    backend = keras.backend.backend()
    opset = ox._check_opset(opset, backend)
    labels = meta.normalize_labels(labels, num_classes)
    preprocessing = meta.normalize_preprocessing(preprocessing, *input_shape)
    model_name = model.name if model_name is None else model_name
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be a non-empty string; received {model_name!r}.")
    plan = _Plan(model)
    multi = plan.model(model)
    wanted = ([e["output"] for e in plan.entries] + [name for name, _ in plan.extra]
              + [graph_ops.OUTPUT_NAME])
    probe = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    with ox._quiet_converters():  # Keras warns that the input is not passed by its name
        expected = [np.asarray(keras.ops.convert_to_numpy(t), np.float32)
                    for t in multi(probe, training=False)]

    path.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(path, "tmp") as tmp:
        raw = pathlib.Path(tmp) / "raw.onnx"
        try:
            ox._keras_export(multi, raw, input_shape, opset)
            proto = onnx.load(str(raw))
        except Exception as err:  # converters raise anything; report it as one error type
            raise ox.ExportError(f"Keras ONNX export of the explain model failed on the "
                                 f"{backend} backend: {type(err).__name__}: {err}") from err
        exporter = " ".join(
            part for part in (proto.producer_name, *proto.producer_version.split()[:1]) if part)
        try:
            graph_ops.fix_high_rank_pooling(proto)
            raw_names = _match_outputs(proto, expected, probe)
            _standardize(proto, raw_names, wanted, [e.shape[1:] for e in expected],
                         input_shape, plan)
            graph_ops.check_domains(proto)
            description = {"version": FORMAT_VERSION, "layers": plan.entries,
                           "logits": graph_ops.OUTPUT_NAME, "kernel": None}
            if plan.first_kernel is not None:
                layer, _, kernel = plan.first_kernel
                description["kernel"] = {"output": KERNEL_OUTPUT, "layer": layer.name,
                                         "shape": list(kernel.shape), "layout": "HWIO"}
            graph_ops.finalize(proto, {
                meta.LABELS: labels, meta.PREPROCESSING: preprocessing, meta.MODEL: model_name,
                meta.CONV: ox.detect_conv(model), meta.BACKEND: backend,
                meta.VERSION: meta.kcnn_version(), meta.OUTPUT: ox.output_kind(model),
                meta.EXPORTER: exporter, meta.EXPLAIN: description})
        except (graph_ops.GraphError, graph_ops.CheckError) as err:
            raise ox.ExportError(str(err)) from err
        final = pathlib.Path(tmp) / "explain.onnx"
        onnx.save(proto, str(final))
        _check_written(final, dict(zip(wanted, expected)) | dict(plan.constants), probe)
        os.replace(final, path)
    return path


def _check_written(path, expected, probe):
    """The final file, run in onnxruntime, reproduces every Keras tensor and weight by name."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(expected)
    for name, got in zip(names, session.run(names, {graph_ops.INPUT_NAME: probe})):
        want = expected[name]
        scale = 1.0 + float(np.max(np.abs(want))) if want.size else 1.0
        if got.shape != want.shape or (
                want.size and not float(np.max(np.abs(got - want))) <= 1e-3 * scale):
            raise ox.ExportError(f"explain output {name!r} does not reproduce the Keras tensor.")
