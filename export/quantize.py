"""Post-export weight compression: int8 (onnxruntime dynamic quantization) and fp16.

Both keep the float32 ``images`` input and ``logits`` output, so a predictor or server does
not change. :func:`accuracy_change` measures what compression costs on given samples.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

from kcnn.export import graph as graph_ops

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
