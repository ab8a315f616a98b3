"""kcnn.export: ONNX export, onnxruntime verification and inference for Keras image classifiers.

Works for any Keras classifier with one ``(batch, H, W, C)`` input and one ``(batch, classes)``
output; it never imports kcnn's model builders, data or training code.

* :func:`export_onnx` — Keras model -> ``.onnx`` (input ``images``, output ``logits``, labels
  and preprocessing in the metadata), written atomically.
* :func:`export_explain` — the explain file beside it (``model.explain.onnx``: conv/pool
  activations, logits, first kernel) that ``kcnn-serve``'s page shows; ``export_onnx(...,
  explain=True)`` writes both.
* :func:`verify` — Keras vs onnxruntime on the same samples.
* :class:`OnnxPredictor` — onnxruntime inference with the file's own preprocessing.
* :func:`write_triton_repo` — Triton Inference Server model repository.
* :mod:`kcnn.export.images` — the one image decoder (EXIF orientation, 16-bit, palette/CMYK/
  alpha, decompression-bomb limit) shared by the predictor, ``kcnn-predict`` and the server.
* :mod:`kcnn.export.serving` — the HTTP server (``kcnn-serve``): micro-batcher, request parsing,
  the Starlette app (``create_app``) and its runner.

The version stamped into files is the installed package's (``importlib.metadata``); the command
lines live in :mod:`kcnn.cli`.

Names are imported lazily so that inference (predictor, server) does not pay for importing
Keras and its backend.
"""

import importlib

# ``verify`` is both a submodule and its function: bind the function eagerly so that importing
# the submodule can never shadow it (verify.py imports Keras only when called).
from kcnn.export.verify import VerificationError, verify  # noqa: F401  (public names)

_EXPORTS = {
    "ExportError": "onnx_export",
    "ExportResult": "onnx_export",
    "export_onnx": "onnx_export",
    "export_explain": "explain",
    "explain_path": "explainer",
    "InvalidModelError": "predictor",
    "OnnxPredictor": "predictor",
    "Prediction": "predictor",
    "select_providers": "predictor",
    "write_triton_repo": "triton",
    "default_preprocessing": "metadata",
    "read_metadata": "metadata",
}

__all__ = sorted([*_EXPORTS, "VerificationError", "verify"])


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f"kcnn.export.{_EXPORTS[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kcnn.export' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
