"""``Explainer``: runs the explain file (see :mod:`kcnn.export.explain`) beside a served model.

Only numpy and onnxruntime are imported (no Keras). The explain file is found next to the served
file by name (``model.onnx`` -> ``model.explain.onnx``) and used only when it belongs to it: same
input, labels and preprocessing, and, for a float model, the same logits on a probe batch. When it
is missing or does not belong, :func:`load_explainer` returns an :class:`Unavailable` that says why.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from kcnn.export import metadata as meta

FORMAT_VERSION = 2
#: Versions this module reads: version 1 files have no window data (no per-layer inputs/weights).
READABLE_VERSIONS = (1, 2)
KERNEL_OUTPUT = "kernel"
SUFFIX = ".explain.onnx"


def feature_output(index):
    """Name of the explain file's output for the ``index``-th conv/pool layer."""
    return f"features.{index}"


def explain_path(onnx_path):
    """The explain file that accompanies ``onnx_path``: ``model.onnx`` -> ``model.explain.onnx``."""
    path = pathlib.Path(onnx_path)
    name = path.name
    stem = name[:-len(".onnx")] if name.lower().endswith(".onnx") else name
    return path.with_name(stem + SUFFIX)


@dataclasses.dataclass(frozen=True)
class Unavailable:
    """No usable explain data; ``reason`` says why (shown by the page)."""

    reason: str
    available: bool = False


@dataclasses.dataclass(frozen=True)
class Activations:
    """What :meth:`Explainer.run` computed for one preprocessed image.

    Attributes:
        logits: ``(classes,)`` output of the explain graph (the server answers with the served
            model's own logits; these are kept for checks).
        layers: one ``(entry, array)`` per conv/pool layer in network order; ``entry`` is the
            layer's metadata (name, kind, class, shape, data_format, window), ``array`` its
            output for the image, channels first ``(C, H, W)``.
        inputs: each layer's window source (its input before its own padding) by the layer's
            output name (``"features.<i>"``), channels first ``(C, H, W)``.
    """

    logits: np.ndarray
    layers: list
    inputs: dict = dataclasses.field(default_factory=dict)

    def layer(self, name):
        """``(entry, array)`` of the layer called ``name``, or None."""
        for entry, array in self.layers:
            if entry["name"] == name:
                return entry, array
        return None


class Explainer:
    """onnxruntime session of an explain file, checked against the served predictor.

    Args:
        path: the ``.explain.onnx`` file.
        predictor: the :class:`~kcnn.export.OnnxPredictor` of the served file.

    Raises:
        ValueError: the file is not an explain file of this model (the message says why).
    """

    available = True

    def __init__(self, path, predictor):
        from kcnn.export.predictor import _open_session

        self.path = pathlib.Path(path)
        try:
            self._session = _open_session(self.path, [predictor.provider])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"cannot load {self.path.name}: {str(err).splitlines()[0]}") from None
        values = meta.decode(self._session.get_modelmeta().custom_metadata_map)
        description = values.get(meta.EXPLAIN)
        if not isinstance(description, dict) or description.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"{self.path.name} has no kcnn.explain metadata of version "
                             f"{FORMAT_VERSION}; re-export with kcnn-export --explain")
        self.layers = list(description["layers"])
        self.kernel_info = description.get("kernel")
        self._check_belongs(values, predictor)
        outputs = {o.name for o in self._session.get_outputs()}
        windows = [e.get("window") for e in self.layers if e.get("window")]
        self._sources = sorted({w["input"] for w in windows} - {"images"}
                               - {e["output"] for e in self.layers})
        self._names = ([entry["output"] for entry in self.layers] + self._sources
                       + [description["logits"]])
        constants = [w[k] for w in windows for k in ("kernel", "bias") if w.get(k)]
        constants += [KERNEL_OUTPUT] if self.kernel_info is not None else []
        missing = sorted(set(self._names + constants) - outputs)
        if missing:
            raise ValueError(f"{self.path.name} lacks the outputs {missing}")
        self.kernel = None
        #: kernels ``(kh, kw, in/groups, out)`` and biases by output name (read once).
        self.weights = {}
        if constants:
            probe = np.zeros((1, *predictor.input_shape), np.float32)
            self.weights = dict(zip(constants, self._session.run(constants, {"images": probe})))
            self.kernel = self.weights.get(KERNEL_OUTPUT)
        self._check_logits(predictor)

    def _check_belongs(self, values, predictor):
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != tuple(predictor.input_shape):
            raise ValueError(f"{self.path.name} takes input {inputs[0].shape if inputs else None}, "
                             f"the served model {list(predictor.input_shape)}")
        for key, mine in ((meta.LABELS, predictor.labels),
                          (meta.PREPROCESSING, predictor.preprocessing)):
            theirs = values.get(key)
            if key == meta.PREPROCESSING and theirs is not None:
                theirs = meta.normalize_preprocessing(theirs, *predictor.input_shape)
            if theirs != mine:
                raise ValueError(f"{self.path.name} has other {key} than the served model "
                                 "(exported from another model?)")

    def _check_logits(self, predictor):
        """A float served model and its explain file agree on a probe batch (else: stale file)."""
        if predictor.metadata.get(meta.QUANTIZATION):
            return  # a quantized served model differs from the float graph by design
        probe = np.random.default_rng(0).random((2, *predictor.input_shape), dtype=np.float32)
        served = predictor.run(probe)
        (mine,) = self._session.run([self._names[-1]], {"images": probe})
        tol = 1e-3 * (1.0 + float(np.max(np.abs(served))))
        if mine.shape != served.shape or not float(np.max(np.abs(mine - served))) <= tol:
            raise ValueError(f"{self.path.name} computes other logits than the served model "
                             "(a stale file from another export?); re-export with --explain")

    def info(self):
        """JSON-ready description: layers (name, kind, class, shape) and the kernel's shape."""
        layers = []
        for e in self.layers:
            item = {k: e[k] for k in ("name", "kind", "class", "shape")}
            window = e.get("window")
            item["window"] = None if not window else {
                k: v for k, v in window.items()
                if k not in ("input", "input_permutes", "kernel", "bias")}
            layers.append(item)
        kernel = None
        if self.kernel_info is not None:
            kernel = {"layer": self.kernel_info["layer"], "shape": self.kernel_info["shape"]}
        return {"available": True, "file": self.path.name, "layers": layers, "kernel": kernel,
                "windows": any(e.get("window") for e in self.layers)}

    def run(self, batch):
        """:class:`Activations` for a preprocessed float32 batch of ONE image."""
        if batch.ndim != 4 or batch.shape[0] != 1:
            raise ValueError(f"explain takes one preprocessed image (1, H, W, C); received "
                             f"shape {batch.shape}")
        arrays = self._session.run(self._names, {"images": batch})
        named = {name: array[0] for name, array in zip(self._names, arrays)}
        named["images"] = batch[0]
        layers, inputs = [], {}
        for entry in self.layers:
            fmt = entry.get("data_format", "channels_last")
            layers.append((entry, _chw(named[entry["output"]], fmt)))
            window = entry.get("window")
            if window:  # the source as the layer sees it: after any Permute, in its format
                source = named[window["input"]]
                for dims in window.get("input_permutes", []):
                    source = np.transpose(source, [d - 1 for d in dims])
                inputs[entry["output"]] = _chw(source, fmt)
        return Activations(logits=arrays[-1][0], layers=layers, inputs=inputs)


def _chw(array, data_format):
    if data_format == "channels_last":
        array = np.moveaxis(array, -1, 0)
    return np.ascontiguousarray(array, dtype=np.float32)


def load_explainer(onnx_path, predictor, explain_file=None):
    """An :class:`Explainer` for the served ``onnx_path``, or :class:`Unavailable` saying why.

    ``explain_file`` overrides the default :func:`explain_path` of ``onnx_path``.
    """
    path = pathlib.Path(explain_file) if explain_file is not None else explain_path(onnx_path)
    if not path.is_file():
        return Unavailable(f"no explain data: {path.name} not found beside the model; export "
                           "it with kcnn-export --explain (kcnn.export.export_explain)")
    try:
        return Explainer(path, predictor)
    except ValueError as err:
        return Unavailable(f"explain data unusable: {err}")
