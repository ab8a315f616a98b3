"""kcnn.export.OnnxPredictor: provider choice, preprocessing, batching, predictions, bad input."""

import json

import keras
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from kcnn.export import InvalidModelError, OnnxPredictor, export_onnx
from kcnn.export import predictor as predictor_module

LABELS = ["zero", "one", "two", "three", "four"]


def _model(input_shape):
    keras.utils.set_random_seed(2)
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(len(LABELS)),
    ])


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    """(keras model, exported path) for a 10x10 grayscale classifier."""
    model = _model((10, 10, 1))
    path = tmp_path_factory.mktemp("pred") / "gray.onnx"
    export_onnx(model, path, labels=LABELS)
    return model, path


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    model = _model((8, 6, 3))
    path = tmp_path_factory.mktemp("pred") / "rgb.onnx"
    export_onnx(model, path, labels=LABELS, preprocessing={"mean": [0.5, 0.5, 0.5], "std": 0.5})
    return model, path


def keras_probs(model, x):
    return keras.ops.convert_to_numpy(keras.ops.softmax(model(x)))


# --- provider selection ------------------------------------------------------------------

class FakeSession:
    def __init__(self, path, providers, active=None, fail=False):
        if fail:
            raise RuntimeError("CUDA failure")
        self.requested = providers
        self._active = active or providers

    def get_providers(self):
        return list(self._active)


@pytest.mark.parametrize("available, cuda_behaviour, expected, calls", [
    (["CPUExecutionProvider"], None, "CPUExecutionProvider", [["CPUExecutionProvider"]]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "loads", "CUDAExecutionProvider",
     [["CUDAExecutionProvider", "CPUExecutionProvider"]]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "falls back", "CPUExecutionProvider",
     [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "raises", "CPUExecutionProvider",
     [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]),
])
def test_provider_selection(monkeypatch, tmp_path, available, cuda_behaviour, expected, calls):
    seen = []

    def fake_session(path, providers):
        seen.append(list(providers))
        if "CUDAExecutionProvider" in providers:
            if cuda_behaviour == "raises":
                return FakeSession(path, providers, fail=True)
            if cuda_behaviour == "falls back":
                return FakeSession(path, providers, active=["CPUExecutionProvider"])
        return FakeSession(path, providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(predictor_module, "_make_session", fake_session)
    session = predictor_module._open_session(tmp_path / "m.onnx", None)
    assert session.get_providers()[0] == expected
    assert seen == calls


def test_real_provider_is_reported(gray):
    _, path = gray
    predictor = OnnxPredictor(path)
    assert predictor.provider in ort.get_available_providers()
    # Without a usable GPU (CI) CUDA cannot load, so the CPU must have been chosen.
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert predictor.provider == "CPUExecutionProvider"
    explicit = OnnxPredictor(path, providers=["CPUExecutionProvider"])
    assert explicit.provider == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="NopeExecutionProvider"):
        OnnxPredictor(path, providers=["NopeExecutionProvider"])


# --- description and predictions ---------------------------------------------------------

def test_session_config_reaches_onnxruntime(gray):
    model, path = gray
    entries = {"session.intra_op.allow_spinning": "0"}
    predictor = OnnxPredictor(path, ["CPUExecutionProvider"], session_config=entries)
    options = predictor._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = np.random.default_rng(0).random((3, 10, 10, 1), dtype=np.float32)
    np.testing.assert_allclose(predictor.run(x), OnnxPredictor(path).run(x), rtol=1e-6)
    for bad in ({"session.intra_op.allow_spinning": 0}, [("a", "b")]):
        with pytest.raises(TypeError, match="session_config"):
            OnnxPredictor(path, session_config=bad)


def test_reads_metadata(gray):
    _, path = gray
    predictor = OnnxPredictor(path)
    assert predictor.labels == LABELS and predictor.num_classes == 5
    assert predictor.input_shape == (10, 10, 1)
    assert predictor.input_name == "images" and predictor.output_name == "logits"
    assert predictor.preprocessing["scale"] == pytest.approx(1 / 255)
    assert predictor.metadata["kcnn.backend"] == keras.backend.backend()


def test_predict_preprocessed_floats(gray):
    model, path = gray
    x = np.random.default_rng(0).random((9, 10, 10, 1), dtype=np.float32)
    predictor = OnnxPredictor(path, batch_size=4)  # 9 images -> 3 onnxruntime calls
    result = predictor.predict(x, top_k=3)
    expected = keras_probs(model, x)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(result.probabilities.sum(-1), 1, rtol=1e-5)
    assert result.indices.shape == result.scores.shape == (9, 3)
    np.testing.assert_array_equal(result.indices[:, 0], expected.argmax(-1))
    assert np.all(np.diff(result.scores, axis=-1) <= 0)
    assert result.top1 == [LABELS[i] for i in expected.argmax(-1)]
    rows = result.to_list()
    assert len(rows) == len(result) == 9 and len(rows[0]) == 3
    assert rows[0][0] == {"label": result.labels[0][0], "index": int(result.indices[0, 0]),
                          "score": pytest.approx(float(result.scores[0, 0]))}
    json.dumps(rows)
    np.testing.assert_allclose(predictor.run(x), keras.ops.convert_to_numpy(model(x)), atol=1e-5)
    single = predictor.predict(x[0])  # (H, W, C) float -> batch of one
    assert single.probabilities.shape == (1, 5)


def test_uint8_images_are_scaled_and_resized(gray):
    model, path = gray
    predictor = OnnxPredictor(path)
    rng = np.random.default_rng(1)
    exact = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    expected = keras_probs(model, (exact / 255.0).astype(np.float32)[None, ..., None])
    for image in (exact, exact[..., None], Image.fromarray(exact)):
        np.testing.assert_allclose(predictor.predict(image).probabilities, expected, atol=1e-5)
    # A batch (N, H, W) and (N, H, W, 1) of uint8 images.
    batch = rng.integers(0, 256, (3, 10, 10), dtype=np.uint8)
    expected_batch = keras_probs(model, (batch / 255.0).astype(np.float32)[..., None])
    np.testing.assert_allclose(predictor.predict(batch).probabilities, expected_batch, atol=1e-5)
    np.testing.assert_allclose(predictor.predict(batch[..., None]).probabilities, expected_batch,
                               atol=1e-5)
    # Bigger RGB(A) images are converted to grayscale and resized with PIL.
    big = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    reference = np.asarray(Image.fromarray(big, "RGB").convert("L").resize(
        (10, 10), Image.BILINEAR), dtype=np.float32) / 255.0
    np.testing.assert_allclose(predictor.preprocess(big)[0, ..., 0], reference, atol=1e-6)
    rgba = np.concatenate([big, np.full((30, 20, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_allclose(predictor.preprocess(rgba), predictor.preprocess(big))
    mixed = predictor.preprocess([exact, big, Image.fromarray(big)])
    assert mixed.shape == (3, 10, 10, 1) and mixed.dtype == np.float32


def test_rgb_model_normalises_and_converts_gray(rgb):
    model, path = rgb
    predictor = OnnxPredictor(path)
    image = np.random.default_rng(3).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    x = ((image / 255.0 - 0.5) / 0.5).astype(np.float32)[None]
    np.testing.assert_allclose(predictor.preprocess(image), x, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(image).probabilities, keras_probs(model, x),
                               atol=1e-5)
    gray_image = image[..., 0]
    converted = predictor.preprocess(gray_image)
    assert converted.shape == (1, 8, 6, 3)
    np.testing.assert_allclose(converted[..., 0], converted[..., 2])


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("images, match", [
    (np.zeros((10, 10), np.float32), r"shape \(10, 10\).*expected float32 \(N, 10, 10, 1\)"),
    (np.zeros((2, 9, 10, 1), np.float32), r"shape \(2, 9, 10, 1\).*\(N, 10, 10, 1\)"),
    (np.zeros((2, 10, 10, 3), np.float32), r"\(N, 10, 10, 1\)"),
    (np.zeros((1, 1, 10, 10, 1), np.float32), "expected float32"),
    (np.zeros((0, 10, 10, 1), np.float32), "expected float32"),
    (np.zeros((10, 10), np.int64), "dtype int64"),
    (np.zeros((10, 10), bool), "dtype bool"),
    (np.zeros((1, 2, 10, 10, 1), np.uint8), r"shape \(1, 2, 10, 10, 1\) \(uint8\)"),
    (np.zeros((2, 10, 10, 2), np.uint8), r"uint8"),
    (np.zeros((0, 10, 10), np.uint8), "empty batch"),
    (np.zeros((0, 5), np.uint8), "image has shape"),
    (np.full((1, 10, 10, 1), np.nan, np.float32), "NaN"),
    ([], "empty list"),
])
def test_bad_images_raise_value_error(gray, images, match):
    predictor = OnnxPredictor(gray[1])
    with pytest.raises(ValueError, match=match):
        predictor.predict(images)


def test_bad_arguments(gray):
    predictor = OnnxPredictor(gray[1])
    x = np.zeros((1, 10, 10, 1), np.float32)
    for top_k in (0, 6, 1.5, True):
        with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 5\]"):
            predictor.predict(x, top_k=top_k)
    with pytest.raises(TypeError, match="numpy array"):
        predictor.predict("image.png")
    with pytest.raises(ValueError, match="run\\(\\) takes a preprocessed float32"):
        predictor.run(np.zeros((1, 10, 10, 1), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        OnnxPredictor(gray[1], batch_size=0)


def test_bad_files(gray, tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxPredictor(missing)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(gray[1].read_bytes()[:200])
    with pytest.raises(InvalidModelError, match="truncated.onnx"):
        OnnxPredictor(truncated)
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model")
    with pytest.raises(InvalidModelError, match="notes.onnx"):
        OnnxPredictor(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InvalidModelError, match="empty.onnx"):
        OnnxPredictor(empty)
    with pytest.raises(InvalidModelError, match="not a file"):
        OnnxPredictor(tmp_path)
    assert issubclass(InvalidModelError, ValueError)


def test_corrupt_metadata_is_reported(gray, tmp_path):
    import onnx

    proto = onnx.load(str(gray[1]))
    for prop in proto.metadata_props:
        if prop.key == "kcnn.labels":
            prop.value = "[not json"
    path = tmp_path / "meta.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(InvalidModelError, match=r"meta.onnx.*kcnn.labels.*not valid JSON"):
        OnnxPredictor(path)


# --- fitting other aspect ratios (preprocessing "fit", as kcnn-train's --resize) --------------

def test_fit_modes_match_the_training_pipeline():
    """crop/pad/stretch of a 2:1 image to 10x10 lay the pixels where kcnn.data.resize does."""
    import tensorflow as tf

    from kcnn.data.resize import resize_images
    from kcnn.export.predictor import fit_image

    image = np.random.default_rng(4).integers(1, 256, (10, 20), dtype=np.uint8)  # H=10, W=20
    pil = Image.fromarray(image, "L")
    crop = np.asarray(fit_image(pil, (10, 10), "crop", Image.BILINEAR))
    np.testing.assert_array_equal(crop, image[:, 5:15])  # the centred square, no resampling
    trained = resize_images(tf.constant(image[..., None], tf.float32), (10, 10), "crop")
    np.testing.assert_allclose(trained.numpy()[..., 0], image[:, 5:15], atol=1e-4)
    padded = np.asarray(fit_image(pil, (10, 10), "pad", Image.BILINEAR))
    trained = resize_images(tf.constant(image[..., None], tf.float32), (10, 10), "pad").numpy()
    np.testing.assert_array_equal(padded == 0, trained[..., 0] == 0)  # the same black bars
    assert (padded[:2] == 0).all() and (padded[2:7] > 0).all() and (padded[7:] == 0).all()
    assert np.asarray(fit_image(pil, (10, 10), "stretch", Image.BILINEAR)).shape == (10, 10)


def test_predictor_uses_the_fit_in_the_metadata(tmp_path):
    model = _model((10, 10, 1))
    path = tmp_path / "crop.onnx"
    export_onnx(model, path, labels=LABELS, preprocessing={"fit": "crop"})
    wide = np.random.default_rng(5).integers(0, 256, (10, 30), dtype=np.uint8)
    x = OnnxPredictor(path).preprocess(wide)
    np.testing.assert_allclose(x[0, ..., 0], wide[:, 10:20] / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"preprocessing\['fit'\] must be one of"):
        export_onnx(model, tmp_path / "bad.onnx", preprocessing={"fit": "squash"})
