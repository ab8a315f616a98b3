"""The explain file and ``POST /v1/explain``: activations equal Keras's, over real HTTP.

``kcnn.export.export_onnx(..., explain=True)`` writes ``model.explain.onnx`` beside ``model.onnx``;
``kcnn-serve`` (a subprocess on 127.0.0.1) answers ``/v1/explain`` from it. Every conv/pool layer's
activations must equal the Keras model's own intermediate outputs (``keras.Model(inputs,
layer.output)``, independent of kcnn's layer selection) within 1e-4, and the prediction must be
``/v1/predict``'s, for LeNet and a small VGG, built-in and explicit convolutions, under whatever
``KERAS_BACKEND`` the run uses.
"""
import base64
import io
import json
import shutil

import httpx
import keras
import numpy as np
import onnx
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import kcnn.models
from kcnn.export import explain_path, export_explain, export_onnx
from kcnn.export.explainer import Unavailable, load_explainer
from kcnn.export.predictor import OnnxPredictor
from kcnn_serve_process import Server
from window_oracle import check_answer, expected_window

LABELS = [f"digit-{i}" for i in range(10)]
MAX_BODY = 200_000


def build(name, conv):
    keras.utils.set_random_seed(3)
    if name == "lenet":
        return kcnn.models.lenet(conv)
    return kcnn.models.vgg(conv, input_shape=(32, 32, 1), width_ratio=16, hidden_units=32)


def conv_pool_names(model):
    """Names of the conv/pool layers, from the layer classes (what the page must show)."""
    pool_names = ("MaxPooling2D", "AveragePooling2D", "MaxPool2D", "AvgPool2D")
    return [layer.name for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) or type(layer).__name__ in pool_names]


def digit(size):
    """A real digit (scikit-learn), uint8 size x size."""
    image = np.round(load_digits().images[7] * (255 / 16)).astype(np.uint8)
    return np.asarray(Image.fromarray(image, "L").resize((size, size), Image.BILINEAR))


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def decoded(item):
    """An encoded array of the API as float32 in its layout."""
    dtype = np.float32 if item["dtype"] == "float32" else np.uint8
    return np.frombuffer(base64.b64decode(item["data"]), dtype=dtype)


@pytest.fixture(scope="module", params=[("lenet", "builtin"), ("lenet", "explicit"),
                                        ("vgg", "builtin"), ("vgg", "explicit")],
                ids=lambda p: "-".join(p))
def served(request, tmp_path_factory):
    name, conv = request.param
    model = build(name, conv)
    path = tmp_path_factory.mktemp(f"explain-{name}-{conv}") / "model.onnx"
    result = export_onnx(model, path, labels=LABELS, explain=True)
    with Server(path, "--max-body-bytes", str(MAX_BODY)) as server:
        yield model, result, server


@pytest.mark.slow
def test_explain_activations_equal_keras_intermediate_outputs(served):
    model, result, server = served
    size = result.input_shape[0]
    x = (digit(size) / 255.0).astype(np.float32)[..., None]
    body = {"instances": [x.tolist()], "top_k": 3}
    answer = httpx.post(f"{server.url}/v1/explain", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert [layer["name"] for layer in document["layers"]] == conv_pool_names(model)
    predicted = httpx.post(f"{server.url}/v1/predict", json=body, timeout=60).json()
    assert document["prediction"] == predicted["predictions"][0]

    np.testing.assert_array_equal(
        decoded(document["input"]).reshape(1, size, size), np.moveaxis(x, -1, 0))
    for layer in document["layers"]:
        keras_layer = model.get_layer(layer["name"])
        probe = keras.Model(model.inputs, keras_layer.output)
        want = keras.ops.convert_to_numpy(probe(x[None], training=False))[0]
        assert layer["shape"] == list(want.shape)
        assert layer["kind"] == ("conv" if isinstance(keras_layer, keras.layers.Conv2D) else "pool")
        got = decoded(layer).reshape(want.shape[-1], *want.shape[:2])
        np.testing.assert_allclose(got, np.moveaxis(want, -1, 0), atol=1e-4, rtol=0,
                                   err_msg=layer["name"])
        assert layer["min"] == pytest.approx(float(want.min()), abs=1e-4)
        assert layer["max"] == pytest.approx(float(want.max()), abs=1e-4)

    first = model.get_layer(conv_pool_names(model)[0])
    kernel = keras.ops.convert_to_numpy(first.kernel)
    assert document["kernel"]["layer"] == first.name
    assert document["kernel"]["shape"] == list(kernel.shape)
    np.testing.assert_array_equal(decoded(document["kernel"]).reshape(
        kernel.shape[3], kernel.shape[2], *kernel.shape[:2]), np.transpose(kernel, (3, 2, 0, 1)))


@pytest.mark.slow
def test_explain_takes_every_predict_body_and_answers_uint8_tiles(served):
    model, result, server = served
    image = png(digit(40))  # resized by the server, as for /v1/predict
    predicted = httpx.post(f"{server.url}/v1/predict?top_k=2", content=image,
                           headers={"content-type": "image/png"}).json()["predictions"][0]
    raw = httpx.post(f"{server.url}/v1/explain?top_k=2", content=image,
                     headers={"content-type": "image/png"}).json()
    form = httpx.post(f"{server.url}/v1/explain?format=uint8",
                      files={"file": ("d.png", image, "image/png")}, data={"top_k": "2"}).json()
    assert raw["prediction"] == predicted == form["prediction"]
    for exact, tiles in zip(raw["layers"], form["layers"]):
        assert tiles["dtype"] == "uint8" and (tiles["min"], tiles["max"]) == pytest.approx(
            (exact["min"], exact["max"]))
        span = (exact["max"] - exact["min"]) or 1.0
        levels = (decoded(exact) - exact["min"]) / span * 255
        assert np.abs(decoded(tiles).astype(np.float32) - levels).max() <= 0.5 + 1e-3


@pytest.mark.slow
def test_explain_client_errors_are_4xx_json(served):
    _, result, server = served
    size = result.input_shape[0]
    one = np.zeros((size, size), np.uint8).tolist()
    cases = [
        (dict(content=b"\x89PNG but not really", headers={"content-type": "image/png"}), 400,
         "readable image"),
        (dict(json={"instances": [one, one]}), 400, "one image"),
        (dict(json={"instances": []}), 400, "instances"),
        (dict(json={"instances": [one], "top_k": 99}), 400, "top_k"),
        (dict(content=b"x" * (MAX_BODY + 1), headers={"content-type": "image/png"}), 413,
         "exceeds"),
    ]
    for kwargs, status, words in cases:
        answer = httpx.post(f"{server.url}/v1/explain", timeout=30, **kwargs)
        assert answer.status_code == status, (kwargs.get("json"), answer.text)
        assert words in answer.json()["error"]
    answer = httpx.post(f"{server.url}/v1/explain?format=png", json={"instances": [one]})
    assert answer.status_code == 400 and "format" in answer.json()["error"]
    assert httpx.get(f"{server.url}/v1/explain").status_code == 405


@pytest.mark.slow
def test_page_and_info_are_served_from_the_package(served):
    model, result, server = served
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for needle in ('id="draw"', 'id="file"', 'id="predict"', 'id="predictions"',
                   'id="feature-maps"', 'id="kernels"', "/static/page.js", "/static/page.css"):
        assert needle in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    for asset in ("dom.js", "page.js", "window-view.js", "page.css"):
        assert httpx.get(f"{server.url}/static/{asset}").status_code == 200
    assert httpx.get(f"{server.url}/static/../explain.py").status_code == 404
    info = httpx.get(f"{server.url}/v1/explain/info").json()
    assert info["available"] is True and info["file"] == "model.explain.onnx"
    assert [layer["name"] for layer in info["layers"]] == conv_pool_names(model)


@pytest.mark.slow
def test_explain_file_beside_an_unchanged_model_file(served):
    _, result, _ = served
    assert result.explain == explain_path(result.path) and result.explain.is_file()
    served_file = onnx.load(str(result.path))
    assert [i.name for i in served_file.graph.input] == ["images"]
    assert [o.name for o in served_file.graph.output] == ["logits"]
    assert "kcnn.explain" not in {p.key for p in served_file.metadata_props}
    explain_file = onnx.load(str(result.explain))
    description = json.loads({p.key: p.value for p in explain_file.metadata_props}["kcnn.explain"])
    outputs = [o.name for o in explain_file.graph.output]
    layers = description["layers"]
    weights = [w[k] for w in (e["window"] for e in layers if e["kind"] == "conv")
               for k in ("kernel", "bias")]
    assert outputs == [e["output"] for e in layers] + ["logits"] + weights + ["kernel"]
    assert description["version"] == 2 and all(e["window"] for e in layers)


@pytest.mark.slow
def test_window_of_every_layer_adds_up(served):
    """``POST /v1/explain/window`` at a corner and the middle of each layer's first and last
    channel: window, kernel, sums and value recomputed from the Keras model (``window_oracle``)."""
    model, result, server = served
    size = result.input_shape[0]
    x = (digit(size) / 255.0).astype(np.float32)[..., None]
    body = {"instances": [x.tolist()]}
    document = httpx.post(f"{server.url}/v1/explain", json=body, timeout=60).json()
    for layer in document["layers"]:
        height, width, channels = layer["shape"]
        maps = decoded(layer).reshape(channels, height, width)
        positions = [(0, 0, 0)]  # a corner (padding) always; the middle too on small models
        positions += [(channels - 1, height // 2, width // 2)] if len(document["layers"]) <= 4 else []
        for channel, row, col in positions:
            query = {"layer": layer["name"], "channel": channel, "row": row, "col": col}
            answer = httpx.post(f"{server.url}/v1/explain/window", params=query, json=body,
                                timeout=60)
            assert answer.status_code == 200, answer.text
            check_answer(answer.json(), expected_window(model, layer["name"], x, channel, row,
                                                        col), float(maps[channel, row, col]))


# --------------------------------------------------------------------------------------------------
# Without (usable) explain data, and argument checks
# --------------------------------------------------------------------------------------------------
def tiny(seed=0, pool=True):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((12, 12, 1), name="images"), keras.layers.Conv2D(3, 3)]
    layers += [keras.layers.MaxPooling2D(2)] if pool else []
    return keras.Sequential(layers + [keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    export_onnx(tiny(), path, labels=LABELS)
    return path


@pytest.mark.slow
def test_model_without_explain_data_serves_predictions_and_says_so(plain):
    with Server(plain) as server:
        info = httpx.get(f"{server.url}/v1/explain/info").json()
        assert info["available"] is False and "kcnn-export --explain" in info["reason"]
        answer = httpx.post(f"{server.url}/v1/explain", content=png(digit(12)),
                            headers={"content-type": "image/png"})
        assert answer.status_code == 404 and "no explain data" in answer.json()["error"]
        assert httpx.get(f"{server.url}/").status_code == 200
        assert httpx.post(f"{server.url}/v1/predict", content=png(digit(12)),
                          headers={"content-type": "image/png"}).status_code == 200


def test_explain_file_of_another_model_is_not_used(plain, tmp_path):
    path = tmp_path / "plain.onnx"
    shutil.copy(plain, path)
    export_explain(tiny(seed=1), onnx_path=path, labels=LABELS)  # other weights
    explainer = load_explainer(path, OnnxPredictor(path, ["CPUExecutionProvider"]))
    assert isinstance(explainer, Unavailable) and "other logits" in explainer.reason
    export_explain(tiny(seed=1), onnx_path=path)  # other labels
    explainer = load_explainer(path, OnnxPredictor(path, ["CPUExecutionProvider"]))
    assert isinstance(explainer, Unavailable) and "kcnn.labels" in explainer.reason


def test_explain_arguments_are_checked(tmp_path):
    dense = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no top-level 2-D convolution or pooling"):
        export_onnx(dense, tmp_path / "dense.onnx", explain=True)
    assert not (tmp_path / "dense.onnx").exists()
    with pytest.raises(TypeError, match="explain must be True or False"):
        export_onnx(tiny(), tmp_path / "m.onnx", explain="yes")
    with pytest.raises(ValueError, match="path or onnx_path"):
        export_explain(tiny())
    with pytest.raises(ValueError, match="must end in '.onnx'"):
        export_explain(tiny(), tmp_path / "m.explain")
    assert explain_path("runs/a/model.onnx").as_posix() == "runs/a/model.explain.onnx"


@pytest.mark.slow
def test_kcnn_export_explain_flag_writes_both_files(tmp_path):
    import os
    import subprocess
    import sys

    model_path, model = tmp_path / "tiny.keras", tiny()
    model.save(model_path)
    script = os.path.join(os.path.dirname(sys.executable), "kcnn-export")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "kcnn.cli.export"]
    out = tmp_path / "tiny.onnx"
    proc = subprocess.run([*command, str(model_path), str(out), "--explain"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {explain_path(out)}" in proc.stdout
    explainer = load_explainer(out, OnnxPredictor(out, ["CPUExecutionProvider"]))
    assert [layer["name"] for layer in explainer.info()["layers"]] == conv_pool_names(model)
