"""kcnn.export.export_onnx: I/O contract, metadata, checker, parity, atomic writes, validation."""

import importlib.metadata
import json
import os

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from kcnn.export import ExportError, export_onnx, read_metadata
from kcnn.export import metadata as meta

LABELS = [f"class-{i}" for i in range(10)]


def small_cnn(conv="builtin", input_shape=(12, 12, 1), num_classes=10, softmax=False):
    """Conv/pool/dense classifier built from Keras or kcnn.layers (explicit) layers."""
    if conv == "explicit":
        from kcnn import layers as kl

        conv_cls, max_cls, avg_cls = kl.CrossCorrelation2D, kl.MaxPool2D, kl.AvgPool2D
    else:
        conv_cls, max_cls, avg_cls = (keras.layers.Conv2D, keras.layers.MaxPooling2D,
                                      keras.layers.AveragePooling2D)
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input(input_shape),
        conv_cls(4, 3, padding="same", activation="relu"),
        max_cls(2),
        conv_cls(6, 3, activation="relu"),
        avg_cls(2),
        keras.layers.Flatten(),
        keras.layers.Dense(num_classes, activation="softmax" if softmax else None),
    ], name=f"small_{conv}")


def digits_batch(n, size=12):
    """Real images: scikit-learn digits resized to size x size, float32 in [0, 1]."""
    from PIL import Image

    images = np.round(load_digits().images[:n] * (255 / 16)).astype(np.uint8)
    resized = [np.asarray(Image.fromarray(im, "L").resize((size, size), Image.BILINEAR))
               for im in images]
    return (np.stack(resized)[..., None] / 255.0).astype(np.float32)


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": x})[0]


@pytest.fixture(scope="module", params=["builtin", "explicit"])
def exported(request, tmp_path_factory):
    model = small_cnn(request.param)
    path = tmp_path_factory.mktemp("export") / "small.onnx"
    result = export_onnx(model, path, labels=LABELS, model_name="small")
    return model, result


def test_io_contract(exported):
    _, result = exported
    proto = onnx.load(str(result.path))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    in_dims = proto.graph.input[0].type.tensor_type.shape.dim
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "batch"
    assert [d.dim_value for d in in_dims[1:]] == [12, 12, 1]
    assert out_dims[0].dim_param == "batch" and out_dims[1].dim_value == 10
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.producer_name == "kcnn" and proto.producer_version == importlib.metadata.version("kcnn")
    onnx.checker.check_model(proto, full_check=True)
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert all(op.domain in ("", "ai.onnx") for op in proto.opset_import)
    assert result.opset == 17 and result.input_shape == (12, 12, 1) and result.num_classes == 10
    assert os.fspath(result) == str(result.path)


def test_metadata_round_trip(exported):
    model, result = exported
    values = read_metadata(result.path)
    assert values[meta.LABELS] == LABELS
    assert values[meta.PREPROCESSING] == meta.default_preprocessing(12, 12, 1)
    assert values[meta.PREPROCESSING]["scale"] == pytest.approx(1 / 255)
    assert values[meta.MODEL] == "small"
    assert values[meta.CONV] == model.name.split("_")[1]
    assert values[meta.BACKEND] == keras.backend.backend()
    assert values[meta.VERSION] == importlib.metadata.version("kcnn")
    assert values[meta.OUTPUT] == "logits"
    raw = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert json.loads(raw[meta.LABELS]) == LABELS  # plain JSON strings in the file


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("source", ["random", "digits"])
def test_parity_with_keras(exported, batch, source):
    model, result = exported
    if source == "random":
        x = np.random.default_rng(batch).random((batch, 12, 12, 1), dtype=np.float32)
    else:
        x = digits_batch(batch)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    got = ort_run(result.path, x)
    assert got.shape == (batch, 10)
    assert np.max(np.abs(got - expected)) <= 1e-5


@pytest.mark.parametrize("explicit_graph", [False, True])
def test_strided_same_padding_explicit_export(tmp_path, explicit_graph):
    """Strided "same" padding depends on the input size: the export (a PyTorch trace sees sizes as
    int64 tensors) must still give one integer dtype and Keras's numbers, lowered or spelled out."""
    from kcnn import layers as kl

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((13, 13, 1)),
        kl.CrossCorrelation2D(4, 3, strides=2, padding="same"),
        kl.CrossCorrelation2D(3, (2, 4), strides=(3, 2), padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    result = export_onnx(model, tmp_path / "strided.onnx", labels=["a", "b", "c"],
                         explicit_graph=explicit_graph)
    x = np.random.default_rng(0).random((5, 13, 13, 1), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    assert np.max(np.abs(ort_run(result.path, x) - expected)) <= 1e-5


def test_softmax_model_is_marked_probabilities(tmp_path):
    model = small_cnn(softmax=True)
    result = export_onnx(model, tmp_path / "p.onnx")
    assert result.metadata[meta.OUTPUT] == "probabilities"
    assert read_metadata(result.path)[meta.LABELS] == [str(i) for i in range(10)]


def test_rgb_input_and_custom_preprocessing(tmp_path):
    model = small_cnn(input_shape=(10, 14, 3), num_classes=3)
    pre = {"mean": [0.5, 0.4, 0.3], "std": 0.25, "resize": "nearest"}
    result = export_onnx(model, tmp_path / "rgb.onnx", preprocessing=pre, labels=["a", "b", "c"])
    stored = read_metadata(result.path)[meta.PREPROCESSING]
    assert stored["input_size"] == [10, 14] and stored["channels"] == 3
    assert stored["color"] == "rgb" and stored["std"] == [0.25] * 3
    assert stored["mean"] == [0.5, 0.4, 0.3] and stored["resize"] == "nearest"
    x = np.random.default_rng(0).random((7, 10, 14, 3), dtype=np.float32)
    np.testing.assert_allclose(ort_run(result.path, x),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-5)


# --- builders from kcnn.models, both convolution implementations -------------------------

BUILDERS = [
    pytest.param("lenet", {"input_shape": (28, 28, 1)}, id="lenet"),
    pytest.param("lenet", {"input_shape": (28, 28, 1), "modern": True}, id="lenet-modern"),
    pytest.param("vgg", {"input_shape": (32, 32, 1), "width_ratio": 16, "hidden_units": 32},
                 id="vgg11-narrow", marks=pytest.mark.slow),
    pytest.param("alexnet", {"input_shape": (67, 67, 1), "num_classes": 10, "hidden_units": 64},
                 id="alexnet-small", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("conv", ["builtin", "explicit"])
@pytest.mark.parametrize("builder, kwargs", BUILDERS)
def test_builders_export_and_match(builder, kwargs, conv, tmp_path):
    models = pytest.importorskip("kcnn.models")
    model = getattr(models, builder)(conv=conv, **kwargs)
    result = export_onnx(model, tmp_path / f"{builder}.onnx")
    assert result.metadata[meta.CONV] == conv
    height, width, _ = result.input_shape
    for x in (np.random.default_rng(0).random((7, *result.input_shape), dtype=np.float32),
              digits_batch(1, size=height)):
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        assert np.max(np.abs(ort_run(result.path, x) - expected)) <= 1e-5


# --- quantization ------------------------------------------------------------------------

@pytest.mark.parametrize("mode, tolerance, n", [("int8", 0.1, 32), ("int8-dynamic", 0.1, 64),
                                               ("fp16", 1e-2, 64)])
def test_quantize_reports_accuracy_change(mode, tolerance, n, tmp_path):
    model = small_cnn()
    x = digits_batch(64)
    y = load_digits().target[:64]
    result = export_onnx(model, tmp_path / "q.onnx", quantize=mode, samples=(x, y))
    report = result.quantization
    # static int8 calibrates on the first half and is evaluated on the other
    assert report["mode"] == mode and report["n"] == n
    assert set(report) >= {"float_accuracy", "quantized_accuracy", "accuracy_change",
                           "top1_agreement", "max_abs_diff"}
    expected = keras.ops.convert_to_numpy(model(x))
    assert report["float_accuracy"] == pytest.approx(np.mean(expected[-n:].argmax(-1) == y[-n:]))
    assert report["accuracy_change"] == pytest.approx(
        report["quantized_accuracy"] - report["float_accuracy"])
    got = ort_run(result.path, x)
    assert 0 < report["max_abs_diff"] <= tolerance
    assert np.max(np.abs(got - expected)) <= tolerance
    assert read_metadata(result.path)[meta.QUANTIZATION] == mode
    onnx.checker.check_model(onnx.load(str(result.path)), full_check=True)


# --- atomic writes -----------------------------------------------------------------------

def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def broken_checker(*args, **kwargs):
        raise onnx.checker.ValidationError("forced failure")

    monkeypatch.setattr(onnx.checker, "check_model", broken_checker)
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError, match="forced failure"):
        export_onnx(small_cnn(), target)
    assert not target.exists()
    assert _leftovers(target.parent) == []


def test_failed_export_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(small_cnn(), target)
    assert target.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == []


# --- argument validation -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return small_cnn()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"path": "model.h5"}, ValueError, "must end in '.onnx'"),
    ({"path": 3}, TypeError, "path must be a str"),
    ({"opset": 7}, ValueError, r"opset must be an integer in \[13"),
    ({"opset": 99}, ValueError, "received 99"),
    ({"opset": "17"}, ValueError, "opset"),
    ({"labels": ["a", "b"]}, ValueError, "one name per output unit \\(10\\); received 2"),
    ({"labels": "abcdefghij"}, TypeError, "labels must be a sequence"),
    ({"labels": list(range(10))}, TypeError, "labels must all be strings"),
    ({"labels": ["a"] * 10}, ValueError, "unique"),
    ({"quantize": "int4"}, ValueError,
     "quantize must be None, 'int8' \\(static\\), 'int8-dynamic' or 'fp16'; received 'int4'"),
    ({"conv": "fast"}, ValueError, "conv must be one of"),
    ({"model_name": ""}, ValueError, "model_name"),
    ({"preprocessing": {"scale": -1}}, ValueError, "scale"),
    ({"preprocessing": {"mean": [0, 0]}}, ValueError, "must have 1 value \\(one per channel\\)"),
    ({"preprocessing": {"input_size": [28, 28]}}, ValueError, "input_size"),
    ({"preprocessing": {"colour": "rgb"}}, ValueError, "unknown field"),
    ({"preprocessing": "none"}, TypeError, "preprocessing must be a dict"),
    ({"samples": np.zeros((2, 12, 12, 1), np.float32)}, ValueError, "only used with quantize"),
    ({"samples": np.zeros((2, 8, 8, 1), np.float32), "quantize": "int8"}, ValueError,
     "samples must have shape"),
])
def test_invalid_arguments(model, tmp_path, kwargs, error, match):
    kwargs = dict(kwargs)
    path = kwargs.pop("path", tmp_path / "m.onnx")
    if isinstance(path, str):
        path = tmp_path / path
    with pytest.raises(error, match=match):
        export_onnx(model, path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_invalid_models(tmp_path):
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        export_onnx(object(), tmp_path / "m.onnx")
    two_inputs_a, two_inputs_b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    merged = keras.layers.Flatten()(keras.layers.Add()([two_inputs_a, two_inputs_b]))
    with pytest.raises(ValueError, match="exactly one input"):
        export_onnx(keras.Model([two_inputs_a, two_inputs_b], merged), tmp_path / "m.onnx")
    flat = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\)"):
        export_onnx(flat, tmp_path / "m.onnx")
    dense_map = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"one output of shape \(batch, classes\)"):
        export_onnx(dense_map, tmp_path / "m.onnx")
