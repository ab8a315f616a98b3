"""``verify``: does the ONNX file compute what the Keras model computes?"""

from __future__ import annotations

import numpy as np


class VerificationError(ValueError):
    """The ONNX file's outputs differ from the Keras model's by more than the tolerance.

    ``report`` holds the figures (same keys as :func:`verify`'s return value).
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def verify(model, path, samples, *, atol=1e-4, batch_size=64):
    """Run ``model`` (Keras) and the ONNX file ``path`` on the same samples and compare.

    Args:
        model: the Keras model that was exported.
        path: its ``.onnx`` file.
        samples: images as :meth:`kcnn.export.OnnxPredictor.preprocess` accepts them
            (float32 ``(N, H, W, C)`` already preprocessed, or uint8 images that are
            preprocessed with the file's own metadata), or a pair ``(x, y)`` whose ``y`` is
            ignored. Both models receive the identical float32 batch.
        atol: largest acceptable absolute difference between the two outputs.
        batch_size: batch size for both runtimes.

    Returns:
        ``dict(max_abs_diff, mean_abs_diff, top1_agreement, n)``.

    Raises:
        VerificationError (a ``ValueError``): ``max_abs_diff > atol`` or non-finite outputs.
    """
    import keras

    from kcnn.export.predictor import OnnxPredictor

    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol must be a non-negative number; received {atol!r}.")
    if isinstance(samples, tuple) and len(samples) == 2:
        samples = samples[0]
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model; received {type(model).__name__}.")
    predictor = OnnxPredictor(path, providers=["CPUExecutionProvider"], batch_size=batch_size)
    x = predictor.preprocess(samples)
    onnx_out = predictor.run(x)
    keras_out = np.concatenate([
        keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]).astype(np.float32)
    if keras_out.shape != onnx_out.shape:
        raise VerificationError(
            f"Keras output shape {keras_out.shape} != ONNX output shape {onnx_out.shape} "
            f"for {str(path)!r}.", {"n": int(len(x))})
    diff = np.abs(keras_out - onnx_out)
    report = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float(np.mean(keras_out.argmax(-1) == onnx_out.argmax(-1))),
        "n": int(len(x)),
    }
    if not np.all(np.isfinite(diff)) or not report["max_abs_diff"] <= atol:
        raise VerificationError(
            f"ONNX file {str(path)!r} disagrees with the Keras model: max_abs_diff="
            f"{report['max_abs_diff']:.3g} > atol={atol:g} (mean {report['mean_abs_diff']:.3g}, "
            f"top-1 agreement {report['top1_agreement']:.3f} on {report['n']} samples).", report)
    return report
