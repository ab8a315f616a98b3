"""Post-export compression: static int8 (QDQ), dynamic int8 and fp16.

``"int8"`` is onnxruntime's static quantization (``quantize_static``, QDQ format, per-channel
int8 weights, int8 activations with ranges calibrated on sample images). On CPU, onnxruntime
fuses the QDQ pairs into QLinearConv / QGemm kernels that use AVX512-VNNI / AMX-INT8; on GPU the
same QDQ file runs on the TensorRT execution provider (and QDQ nodes on CUDA).
``"int8-dynamic"`` (``quantize_dynamic``) needs no calibration but quantizes activations at run
time with ConvInteger / MatMulInteger, which have no CUDA kernel (CPU only). ``"fp16"`` halves
the weights (float32 I/O kept); it suits GPUs, not CPUs without fp16 arithmetic.

All keep the float32 ``images`` input and ``logits`` output, so a predictor or server does
not change. :func:`accuracy_change` measures what compression costs on given samples.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

from kcnn.export import graph as graph_ops
from kcnn.export import metadata as meta

MODES = ("int8", "int8-dynamic", "fp16")
#: Modes that need calibration images.
CALIBRATED = ("int8",)


def check_mode(quantize):
    """Validate the ``quantize`` argument (``None`` or one of :data:`MODES`)."""
    if quantize is not None and quantize not in MODES:
        raise ValueError(
            f"quantize must be None, 'int8' (static), 'int8-dynamic' or 'fp16'; "
            f"received {quantize!r}."
        )
    return quantize


class SampleReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over preprocessed float images."""

    def __init__(self, input_name, x, batch_size=16):
        self.input_name = input_name
        self._batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
        self._next = 0

    def get_next(self):
        """The next ``{input_name: batch}`` feed, or ``None`` when all were read."""
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {self.input_name: self._batches[self._next - 1]}

    def rewind(self):
        """Start over (onnxruntime may read the data more than once)."""
        self._next = 0


def _quiet_root_logger():
    import contextlib

    @contextlib.contextmanager
    def quiet():
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # silence the "consider pre-processing" advice
        try:
            yield
        finally:
            root.setLevel(level)
    return quiet()


def _static_int8(src, dst, calibration):
    import pathlib
    import tempfile

    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None or len(calibration) == 0:
        raise ValueError("quantize='int8' (static) needs calibration images (preprocessed float "
                         "(n, H, W, C)); pass calibration=... or use 'int8-dynamic'.")
    name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = pathlib.Path(tmp) / "prepared.onnx"
        try:  # shape inference + graph optimisation, as onnxruntime recommends before quantizing
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - an optional step; quantize the file as it is
            prepared = src
        quantize_static(str(prepared), str(dst), SampleReader(name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def quantize_file(src, dst, mode, calibration=None):
    """Write a compressed copy of the ONNX file ``src`` to ``dst``.

    ``"int8"``: ``onnxruntime.quantization.quantize_static`` in QDQ format — per-channel int8
    weights, int8 activations whose ranges (MinMax) come from ``calibration`` (preprocessed
    float32 images ``(n, H, W, C)``). ``"int8-dynamic"``: ``quantize_dynamic`` — per-channel int8
    weights, activations quantized at run time (no calibration). ``"fp16"``: weights and
    activations in float16 via ``onnxruntime.transformers.float16`` with float32 I/O kept.
    """
    check_mode(mode)
    if mode == "int8":
        with _quiet_root_logger():
            _static_int8(src, dst, calibration)
    elif mode == "int8-dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet_root_logger():
            quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
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


def quantize_onnx(src, dst, mode, *, samples=None, calibration=None):
    """Compress the kcnn ONNX file ``src`` into ``dst`` (``mode``: one of :data:`MODES`).

    The metadata is carried over with ``kcnn.quantization`` added, the graph is checked, and
    ``dst`` is written atomically (``src == dst`` replaces the file in place). ``calibration``
    (preprocessed float images) calibrates static ``"int8"``; with ``samples`` (preprocessed
    ``x`` or ``(x, y)``, best disjoint from the calibration images) the float and compressed
    graphs are compared (see :func:`accuracy_change`).

    Returns:
        dict with ``mode``, ``bytes`` (the written size), ``float_bytes``, ``calibration_n``
        and, given samples, the :func:`accuracy_change` figures.
    """
    import os
    import pathlib

    from kcnn.export.staging import staging_dir

    check_mode(mode)
    if mode is None:
        raise ValueError("mode must be 'int8', 'int8-dynamic' or 'fp16'; received None.")
    x, y = split_samples(samples)
    calibration, _ = split_samples(calibration)
    if mode in CALIBRATED and calibration is None:
        if x is None or len(x) < 2:
            raise ValueError(f"quantize={mode!r} (static) needs calibration images: pass "
                             "calibration=... or at least 2 samples (half calibrate, half "
                             "evaluate); 'int8-dynamic' needs none.")
        half = len(x) // 2  # disjoint halves: the accuracy figures are on unseen images
        calibration, x, y = x[:half], x[half:], (None if y is None else y[half:])
    dst = pathlib.Path(dst)
    with staging_dir(dst, "tmp") as tmp:
        staged = pathlib.Path(tmp) / "model.onnx"
        quantize_file(src, staged, mode, calibration=calibration)
        proto = onnx.load(str(staged))
        graph_ops.sort_nodes(proto)
        graph_ops.check_domains(proto)
        values = {key: value for key, value in meta.read_metadata(src).items() if key in meta.KEYS}
        graph_ops.finalize(proto, {**values, meta.QUANTIZATION: mode})
        onnx.save(proto, str(staged))
        report = {"mode": mode, "bytes": staged.stat().st_size,
                  "float_bytes": pathlib.Path(src).stat().st_size,
                  "calibration_n": 0 if calibration is None else int(len(calibration))}
        if x is not None:
            report.update(accuracy_change(src, staged, x, y))
        os.replace(staged, dst)
    return report
