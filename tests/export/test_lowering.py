"""Explicit layers exported as ONNX Conv / MaxPool / AveragePool (kcnn.export.lowering, pad_folding).

The Keras model with kcnn's explicit layers is the reference: every file is compared with it in
onnxruntime, and its graph must hold the standard operators (not the spelled-out formula).
"""

import collections

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kcnn import layers as kl
from kcnn.export import export_onnx, read_metadata
from kcnn.export import metadata as meta
from kcnn.export.lowering import LoweringError, lower
from kcnn.export.pad_folding import fold_pads


def every_padding_model(data_format="channels_last"):
    """One small network with each padding form the explicit layers accept."""
    keras.utils.set_random_seed(4)
    shape = (15, 13, 3) if data_format == "channels_last" else (3, 15, 13)
    kw = {"data_format": data_format}
    inputs = keras.Input(shape)
    x = kl.CrossCorrelation2D(4, 3, padding=((1, 2), (0, 1)), activation="relu", **kw)(inputs)
    x = kl.CrossCorrelation2D(6, 3, strides=2, padding="same", groups=2, **kw)(x)
    x = kl.MaxPool2D(3, strides=2, padding=1, **kw)(x)
    x = kl.CrossCorrelation2D(6, (2, 3), dilation_rate=2, padding=(1, 2), **kw)(x)
    x = kl.AvgPool2D(3, strides=1, padding=1, **kw)(x)
    x = kl.AvgPool2D(3, strides=1, padding="same", **kw)(x)
    x = kl.MaxPool2D(2, strides=1, padding="same", **kw)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x), name=f"every_padding_{data_format}")


def ops_of(path):
    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": x})[0]


def reference(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_padding_form_exports_as_standard_operators(tmp_path, data_format):
    model = every_padding_model(data_format)
    result = export_onnx(model, tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((3, *model.input_shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(run(result.path, x), reference(model, x), atol=1e-5)
    ops = ops_of(result.path)
    grouped = 2 if keras.backend.backend() == "tensorflow" else 1  # one Conv per group on TF
    assert ops["Conv"] >= 2 + grouped
    assert ops["MaxPool"] == 2
    # The Dense layer's MatMul only; at most Flatten's shape Slice (tf2onnx), no window slices.
    assert ops["MatMul"] == 1 and ops["Slice"] <= 1 and ops["Einsum"] == 0
    assert result.metadata[meta.GRAPH] == "operators"
    assert read_metadata(result.path)[meta.GRAPH] == "operators"


def test_explicit_graph_keeps_the_formula(tmp_path):
    model = every_padding_model()
    result = export_onnx(model, tmp_path / "m.onnx", explicit_graph=True)
    x = np.random.default_rng(1).random((2, *model.input_shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(run(result.path, x), reference(model, x), atol=1e-5)
    ops = ops_of(result.path)
    assert ops["Conv"] == 0 and ops["MaxPool"] == 0
    assert read_metadata(result.path)[meta.GRAPH] == "explicit"
    with pytest.raises(TypeError, match="explicit_graph"):
        export_onnx(model, tmp_path / "n.onnx", explicit_graph="yes")


def test_lowered_model_shares_numbers_and_names():
    model = every_padding_model()
    lowered = lower(model)
    assert [layer.name for layer in lowered.layers[1:]] == [layer.name for layer in model.layers[1:]]
    assert not any(isinstance(layer, (kl.CrossCorrelation2D, kl.MaxPool2D, kl.AvgPool2D))
                   for layer in lowered.layers)
    x = np.random.default_rng(2).random((2, 15, 13, 3), dtype=np.float32)
    np.testing.assert_allclose(reference(lowered, x), reference(model, x), atol=1e-5)
    builtin = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    assert lower(builtin) is builtin  # nothing to lower


def test_subclassed_model_cannot_be_lowered():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = kl.CrossCorrelation2D(2, 3)

        def call(self, x):
            return self.conv(x)

    net = Net()
    net(np.zeros((1, 6, 6, 1), np.float32))
    with pytest.raises(LoweringError):
        lower(net)


def _pad_graph(target, pad_value, pads, perm=None, **attrs):
    """images (N,H,W,C or N,C,H,W) -> Pad -> [Transpose] -> target -> y, as a ModelProto."""
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["padded"], mode="constant")]
    source = "padded"
    if perm is not None:
        nodes.append(helper.make_node("Transpose", ["padded"], ["nchw"], perm=perm))
        source = "nchw"
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads"),
             numpy_helper.from_array(np.array(pad_value, np.float32), "value")]
    if target == "Conv":
        inits.append(numpy_helper.from_array(
            np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32), "w"))
        nodes.append(helper.make_node("Conv", [source, "w"], ["y"], kernel_shape=[3, 3], **attrs))
    else:
        nodes.append(helper.make_node(target, [source], ["y"], kernel_shape=[3, 3], **attrs))
    shape = [1, 7, 6, 3] if perm is not None else [1, 3, 7, 6]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list("nchw"))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


LOWEST = float(np.finfo(np.float32).min)


@pytest.mark.parametrize("target, value, pads, perm, folds", [
    ("Conv", 0.0, [0, 1, 2, 0, 0, 2, 1, 0], [0, 3, 1, 2], True),         # NHWC pad, transposed
    ("Conv", 0.0, [0, 0, 1, 2, 0, 0, 2, 1], None, True),                 # NCHW pad
    ("MaxPool", LOWEST, [0, 0, 1, 1, 0, 0, 1, 0], None, True),
    ("MaxPool", 0.0, [0, 0, 1, 1, 0, 0, 1, 0], None, False),             # zeros are not -inf
    ("AveragePool", 0.0, [0, 1, 1, 0, 0, 1, 1, 0], [0, 3, 1, 2], True),
    ("Conv", 1.0, [0, 0, 1, 1, 0, 0, 1, 1], None, False),                # ones are not zeros
    ("MaxPool", LOWEST, [0, 1, 1, 1, 0, 0, 1, 1], None, False),          # channel padding
])
def test_fold_pads_keeps_the_numbers(target, value, pads, perm, folds):
    proto = _pad_graph(target, value, pads, perm)
    x = np.random.default_rng(1).standard_normal(
        [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]).astype(np.float32)

    def outputs(p):
        session = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0]

    before = outputs(proto)
    assert fold_pads(proto) == int(folds)
    onnx.checker.check_model(proto, full_check=True)
    assert any(n.op_type == "Pad" for n in proto.graph.node) != folds
    np.testing.assert_allclose(outputs(proto), before, atol=1e-5)


def test_static_int8_of_a_lowered_explicit_model(tmp_path):
    model = every_padding_model()
    x = np.random.default_rng(3).random((16, 15, 13, 3), dtype=np.float32)
    result = export_onnx(model, tmp_path / "q.onnx", quantize="int8", samples=x)
    assert result.quantization["mode"] == "int8"
    assert {"top1_agreement", "max_abs_diff"} <= set(result.quantization)
    assert ops_of(result.path)["QuantizeLinear"] > 0
    assert read_metadata(result.path)[meta.GRAPH] == "operators"


def test_lora_layer_exports_its_merged_kernel(tmp_path):
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((9, 9, 2)), kl.CrossCorrelation2D(3, 3, padding=1),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    conv = model.layers[0]
    conv.enable_lora(2)
    conv.lora_kernel_b.assign(np.random.default_rng(0).standard_normal(
        conv.lora_kernel_b.shape).astype(np.float32))  # B starts at zero: make the update count
    result = export_onnx(model, tmp_path / "lora.onnx")
    x = np.random.default_rng(1).random((2, 9, 9, 2), dtype=np.float32)
    np.testing.assert_allclose(run(result.path, x), reference(model, x), atol=1e-5)
    assert ops_of(result.path)["Conv"] == 1


def test_builtin_grouped_conv_exports_on_every_backend(tmp_path):
    """Keras compiles grouped Conv2D with XLA on TensorFlow, which tf2onnx cannot convert: the
    export writes one Conv per group there instead."""
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((8, 8, 4)),
                              keras.layers.Conv2D(6, 3, padding="same", groups=2,
                                                  activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    result = export_onnx(model, tmp_path / "grouped.onnx")
    x = np.random.default_rng(8).random((2, 8, 8, 4), dtype=np.float32)
    np.testing.assert_allclose(run(result.path, x), reference(model, x), atol=1e-5)
