"""Post-export weight compression: int8 (onnxruntime dynamic quantization) and fp16.

Both keep the float32 ``images`` input and ``logits`` output, so a predictor or server does
not change. :func:`accuracy_change` measures what compression costs on given samples.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

from kcnn.export import graph as graph_ops
from kcnn.export import metadata as meta

MODES = ("int8", "fp16")


def check_mode(quantize):
    """Validate the ``quantize`` argument (``None``, ``"int8"`` or ``"fp16"``)."""
    if quantize is not None and quantize not in MODES:
        raise ValueError(
            f"quantize must be None, 'int8' or 'fp16'; received {quantize!r}."
        )
    return quantize


def quantize_file(src, dst, mode):
    """Write a compressed copy of the ONNX file ``src`` to ``dst``.

    ``"int8"``: ``onnxruntime.quantization.quantize_dynamic`` — int8 per-channel weights,
    activations quantized at run time (no calibration data needed). ``"fp16"``: weights and
    activations in float16 via ``onnxruntime.transformers.float16`` with float32 I/O kept.
    """
    check_mode(mode)
    if mode == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # silence the "consider pre-processing" advice
        try:
            quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
    else:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        graph_ops.sort_nodes(model)  # the converter appends its Cast nodes at the end
        onnx.save(model, str(dst))


def _run(path, x, batch_size=256):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    ).astype(np.float32)


def accuracy_change(float_path, quantized_path, x, y=None):
    """Compare a float ONNX file with its compressed copy on float32 samples ``x``.

    Returns ``top1_agreement``, ``max_abs_diff`` and ``n``; with integer labels ``y`` also
    ``float_accuracy``, ``quantized_accuracy`` and ``accuracy_change`` (quantized − float).
    """
    reference = _run(float_path, x)
    compressed = _run(quantized_path, x)
    report = {
        "n": int(len(x)),
        "max_abs_diff": float(np.max(np.abs(reference - compressed))),
        "top1_agreement": float(np.mean(reference.argmax(-1) == compressed.argmax(-1))),
    }
    if y is not None:
        y = np.asarray(y).reshape(-1)
        float_acc = float(np.mean(reference.argmax(-1) == y))
        quant_acc = float(np.mean(compressed.argmax(-1) == y))
        report.update(float_accuracy=float_acc, quantized_accuracy=quant_acc,
                      accuracy_change=quant_acc - float_acc)
    return report


def split_samples(samples):
    """``x`` or ``(x, y)`` -> ``(float32 x, y or None)``; ``(None, None)`` for ``None``."""
    if samples is None:
        return None, None
    if isinstance(samples, (tuple, list)) and len(samples) == 2:
        x, y = samples
    else:
        x, y = samples, None
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(
            f"samples must be preprocessed float images (n, H, W, C); received dtype {x.dtype}.")
    return x.astype(np.float32), (None if y is None else np.asarray(y))


def quantize_onnx(src, dst, mode, *, samples=None):
    """Compress the kcnn ONNX file ``src`` into ``dst`` (``mode`` ``"int8"`` or ``"fp16"``).

    The metadata is carried over with ``kcnn.quantization`` added, the graph is checked, and
    ``dst`` is written atomically (``src == dst`` replaces the file in place). With
    ``samples`` (preprocessed ``x`` or ``(x, y)``) the float and compressed graphs are
    compared (see :func:`accuracy_change`).

    Returns:
        dict with ``mode`` and, given samples, the :func:`accuracy_change` figures.
    """
    import os
    import pathlib
    import tempfile

    check_mode(mode)
    if mode is None:
        raise ValueError("mode must be 'int8' or 'fp16'; received None.")
    x, y = split_samples(samples)
    dst = pathlib.Path(dst)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.tmp-") as tmp:
        staged = pathlib.Path(tmp) / "model.onnx"
        quantize_file(src, staged, mode)
        proto = onnx.load(str(staged))
        graph_ops.sort_nodes(proto)
        graph_ops.check_domains(proto)
        values = {key: value for key, value in meta.read_metadata(src).items() if key in meta.KEYS}
        graph_ops.finalize(proto, {**values, meta.QUANTIZATION: mode})
        onnx.save(proto, str(staged))
        report = {"mode": mode}
        if x is not None:
            report.update(accuracy_change(src, staged, x, y))
        os.replace(staged, dst)
    return report
