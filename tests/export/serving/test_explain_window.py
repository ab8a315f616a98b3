"""``POST /v1/explain/window`` over real HTTP: one output number of any conv/pool layer, taken apart.

One small exported model (a ``kcnn-serve`` subprocess on 127.0.0.1) has every geometry the view
must get right: strides, PyTorch-style explicit padding (asymmetric too), TensorFlow "same" on a
strided conv (asymmetric), a ``ZeroPadding2D`` in front of a conv, dilation, groups (explicit:
tf2onnx cannot convert TensorFlow's grouped Conv2D),
depthwise, a ``BatchNormalization`` between layers (a window source that is not a shown map),
channels_first layers, explicit and Keras pooling with both "same" and torch-style padding.
Every answer is recomputed with NumPy from the Keras model (``window_oracle``) and compared with
the ``/v1/explain`` feature at that position (within 1e-4).
"""
import base64
import json

import httpx
import keras
import numpy as np
import pytest

from kcnn import layers as kl
from kcnn.export import explain_path, export_onnx
from kcnn.export.explainer import Explainer
from kcnn.export.predictor import OnnxPredictor
from kcnn_serve_process import Server
from window_oracle import check_answer, expected_window

SHAPE = (13, 11, 3)


def zoo():
    keras.utils.set_random_seed(11)
    x = inputs = keras.Input(SHAPE, name="images")
    x = kl.CrossCorrelation2D(4, 3, strides=2, padding=((1, 0), (2, 1)), activation="relu",
                              name="torch_pad")(x)
    x = keras.layers.ZeroPadding2D(((1, 2), (0, 1)), name="grouped_pad")(x)
    x = kl.CrossCorrelation2D(6, 3, groups=2, activation="sigmoid", name="grouped")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same", activation="tanh",
                            name="dilated")(x)
    x = keras.layers.Conv2D(4, 2, strides=2, padding="same", name="same_strided")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(x)
    x = kl.MaxPool2D(3, strides=2, padding=1, name="max_torch")(x)
    y = keras.layers.Permute((3, 1, 2), name="to_nchw")(x)
    y = kl.CrossCorrelation2D(3, 2, padding=1, data_format="channels_first", name="nchw_conv")(y)
    y = kl.AvgPool2D(3, strides=1, padding=1, data_format="channels_first", name="avg_torch")(y)
    y = keras.layers.Permute((2, 3, 1), name="to_nhwc")(y)
    y = keras.layers.AveragePooling2D(2, padding="same", name="avg_same")(y)
    y = keras.layers.Flatten()(y)
    return keras.Model(inputs, keras.layers.Dense(5)(y), name="zoo")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    model = zoo()
    path = tmp_path_factory.mktemp("window") / "zoo.onnx"
    export_onnx(model, path, explain=True)
    image = np.random.default_rng(4).random(SHAPE, dtype=np.float32)
    with Server(path) as server:
        document = httpx.post(f"{server.url}/v1/explain", json={"instances": [image.tolist()]},
                              timeout=60).json()
        maps = {layer["name"]: np.frombuffer(base64.b64decode(layer["data"]), "<f4").reshape(
            layer["shape"][2], *layer["shape"][:2]) for layer in document["layers"]}
        yield model, server, image, maps, path


def window(server, image, **query):
    return httpx.post(f"{server.url}/v1/explain/window", params=query,
                      json={"instances": [image.tolist()]}, timeout=60)


@pytest.mark.slow
def test_every_window_adds_up_to_the_feature(served):
    model, server, image, maps, _ = served
    assert list(maps) == ["torch_pad", "grouped", "dilated", "same_strided", "depthwise",
                          "max_torch", "nchw_conv", "avg_torch", "avg_same"]
    for name, feature in maps.items():
        channels, height, width = feature.shape
        for channel, row, col in {(0, 0, 0), (channels - 1, height - 1, width - 1),
                                  (channels // 2, height // 2, width - 1)}:
            answer = window(server, image, layer=name, channel=channel, row=row, col=col)
            assert answer.status_code == 200, answer.text
            got = answer.json()
            assert (got["layer"], got["channel"], got["row"], got["col"]) == (name, channel,
                                                                               row, col)
            want = expected_window(model, name, image, channel, row, col)
            check_answer(got, want, float(feature[channel, row, col]))


@pytest.mark.slow
def test_window_geometry_and_kinds(served):
    model, server, image, maps, _ = served
    got = window(server, image, layer="grouped", channel=5, row=0, col=0).json()
    assert got["kind"] == "conv" and got["in_channels"] == [2, 3]  # group 2 of 2, 4 inputs
    assert np.array(got["window"]).shape == (3, 3, 2) and got["activation"] == "sigmoid"
    assert got["pads"] == [1, 2, 0, 1] and got["outline"] == "torch_pad"  # ZeroPadding2D folded
    assert got["padding"][0] == [True, True, True]  # the top row is padding
    got = window(server, image, layer="dilated", channel=0, row=1, col=1).json()
    assert got["dilation"] == [2, 2] and got["outline"] == "grouped"  # BN output: not shown
    got = window(server, image, layer="depthwise", channel=3, row=0, col=0).json()
    assert got["in_channels"] == [1] and np.array(got["window"]).shape == (3, 3, 1)
    got = window(server, image, layer="max_torch", channel=2, row=0, col=0).json()
    assert (got["kind"], got["op"], got["kernel"], got["activation"]) == ("pool", "max", None,
                                                                         None)
    assert np.array(got["window"]).shape == (3, 3) and got["padding"][0][0] is True
    got = window(server, image, layer="avg_same", channel=0, row=0, col=0).json()
    assert got["op"] == "avg" and got["count"] == 4
    info = httpx.get(f"{server.url}/v1/explain/info").json()
    assert info["windows"] is True
    torch_pad = next(layer for layer in info["layers"] if layer["name"] == "torch_pad")
    assert torch_pad["window"]["pads"] == [1, 0, 2, 1] and torch_pad["window"]["strides"] == [2, 2]


@pytest.mark.slow
def test_window_client_errors_are_4xx_json(served):
    _, server, image, maps, _ = served
    good = {"layer": "grouped", "channel": 0, "row": 0, "col": 0}
    c, h, w = maps["grouped"].shape
    cases = [
        ({**good, "layer": "nope"}, 404, "no conv or pooling layer named 'nope'"),
        ({**good, "channel": c}, 400, f"channel must be in 0..{c - 1}"),
        ({**good, "row": -1}, 400, f"row must be in 0..{h - 1}"),
        ({**good, "col": w}, 400, f"col must be in 0..{w - 1}"),
        ({**good, "row": "1.5"}, 400, "row must be an integer"),
        ({**good, "col": "x"}, 400, "col must be an integer"),
        ({k: v for k, v in good.items() if k != "channel"}, 400, "channel is required"),
        ({k: v for k, v in good.items() if k != "layer"}, 400, "layer is required"),
    ]
    for query, status, words in cases:
        answer = window(server, image, **query)
        assert answer.status_code == status, (query, answer.text)
        assert words in answer.json()["error"], answer.json()
    two = httpx.post(f"{server.url}/v1/explain/window", params=good,
                     json={"instances": [image.tolist()] * 2})
    assert two.status_code == 400 and "one image" in two.json()["error"]
    assert httpx.get(f"{server.url}/v1/explain/window", params=good).status_code == 405


@pytest.mark.slow
def test_version_1_explain_file_serves_maps_without_windows(served, tmp_path):
    """A file from before the window view (version 1, no window data) still gives the maps."""
    import onnx

    _, _, image, maps, path = served
    proto = onnx.load(str(explain_path(path)))
    for prop in proto.metadata_props:
        if prop.key == "kcnn.explain":
            description = json.loads(prop.value)
            description["version"] = 1
            for entry in description["layers"]:
                entry.pop("window")
            prop.value = json.dumps(description)
    old = tmp_path / "old.explain.onnx"
    onnx.save(proto, str(old))
    explainer = Explainer(old, OnnxPredictor(path, ["CPUExecutionProvider"]))
    info = explainer.info()
    assert info["windows"] is False and all(layer["window"] is None for layer in info["layers"])
    activations = explainer.run(image[None])
    assert [entry["name"] for entry, _ in activations.layers] == list(maps)
    np.testing.assert_allclose(activations.layers[0][1], maps["torch_pad"], atol=1e-6)
    assert activations.inputs == {}
