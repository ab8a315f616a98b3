"""kcnn.export.verify: Keras vs onnxruntime figures, and a clear error over tolerance."""

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from kcnn.export import VerificationError, export_onnx, verify


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    path = tmp_path_factory.mktemp("verify") / "m.onnx"
    export_onnx(model, path)
    return model, path


def test_verify_on_real_digits(exported):
    model, path = exported
    digits = load_digits()
    images = np.round(digits.images[:50] * (255 / 16)).astype(np.uint8)  # uint8, (n, 8, 8)
    report = verify(model, path, (images, digits.target[:50]), atol=1e-5)
    assert set(report) == {"max_abs_diff", "mean_abs_diff", "top1_agreement", "n"}
    assert report["n"] == 50
    assert 0 <= report["mean_abs_diff"] <= report["max_abs_diff"] <= 1e-5
    assert report["top1_agreement"] == 1.0


@pytest.mark.parametrize("batch", [1, 7])
def test_verify_on_random_floats(exported, batch):
    model, path = exported
    x = np.random.default_rng(batch).random((batch, 8, 8, 1), dtype=np.float32)
    report = verify(model, path, x, atol=1e-5, batch_size=3)
    assert report["n"] == batch and report["max_abs_diff"] <= 1e-5


def test_verify_raises_over_tolerance(exported):
    _, path = exported
    other = _model()
    other.set_weights([w + 0.05 for w in other.get_weights()])
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    with pytest.raises(VerificationError, match=r"max_abs_diff=.* > atol=0.0001") as info:
        verify(other, path, x)
    assert isinstance(info.value, ValueError)
    assert info.value.report["max_abs_diff"] > 1e-4 and info.value.report["n"] == 16
    # The same mismatch passes with a loose enough tolerance; the figures are returned.
    loose = verify(other, path, x, atol=1e3)
    assert loose["max_abs_diff"] == pytest.approx(info.value.report["max_abs_diff"])


def test_verify_bad_arguments(exported, tmp_path):
    model, path = exported
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="atol must be a non-negative number"):
        verify(model, path, x, atol=-1)
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        verify("model", path, x)
    with pytest.raises(ValueError, match=r"expected float32 \(N, 8, 8, 1\)"):
        verify(model, path, np.zeros((2, 9, 9, 1), np.float32))
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        verify(model, tmp_path / "nothing.onnx", x)
