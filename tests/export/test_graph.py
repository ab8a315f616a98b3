"""kcnn.export.graph: I/O renaming and the high-rank pooling rewrite, on hand-built graphs."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kcnn.export import graph


def _pool_graph(op, kernel, strides, pads=None):
    """x (N, H, W, C) -> Unsqueeze(0) -> Unsqueeze(1) -> Pool over 4 axes -> Squeeze, as
    jax2onnx writes ``lax.reduce_window_*`` on NHWC tensors."""
    attrs = {"kernel_shape": kernel, "strides": strides}
    if pads:
        attrs["pads"] = pads
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax0"], ["u0"]),
        helper.make_node("Unsqueeze", ["u0", "ax1"], ["u1"]),
        helper.make_node(op, ["u1"], ["p"], name="pool", **attrs),
        helper.make_node("Squeeze", ["p", "ax01"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.int64), name)
             for name, v in (("ax0", [0]), ("ax1", [1]), ("ax01", [0, 1]))]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6, 6, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)], inits)
    return _make_model(g)


def _make_model(g, extra_opsets=()):
    return helper.make_model(g, ir_version=8,
                             opset_imports=[helper.make_opsetid("", 17), *extra_opsets])


def _numpy_max_pool(x, k, s):
    n, h, w, c = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, ho, wo, c), x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = x[:, i * s:i * s + k, j * s:j * s + k].max(axis=(1, 2))
    return out


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("k, s", [(2, 2), (3, 1), (3, 2)])
def test_high_rank_max_pool_is_rewritten(k, s):
    model = _pool_graph("MaxPool", [1, k, k, 1], [1, s, s, 1])
    x = np.random.default_rng(0).random((2, 6, 6, 3), dtype=np.float32)
    with pytest.raises(Exception, match="Unsupported pooling size"):
        _run(model, x)  # what onnxruntime says about the jax2onnx form
    assert graph.fix_high_rank_pooling(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Transpose", "MaxPool", "Transpose"]
    np.testing.assert_array_equal(_run(model, x), _numpy_max_pool(x, k, s))
    assert not model.graph.initializer  # the Unsqueeze/Squeeze axes were dropped


def test_padded_average_pool_is_rewritten():
    model = _pool_graph("AveragePool", [1, 2, 2, 1], [1, 2, 2, 1], pads=[0, 1, 0, 0, 0, 1, 0, 0])
    x = np.random.default_rng(1).random((1, 6, 6, 3), dtype=np.float32)
    assert graph.fix_high_rank_pooling(model) == 1
    out = _run(model, x)
    assert out.shape == (1, 4, 3, 3)  # H padded 1+1: (6 + 2 - 2) // 2 + 1
    np.testing.assert_allclose(out[0, 1, 0, 0], x[0, 1:3, 0:2, 0].mean(), rtol=1e-6)


def test_ordinary_pooling_is_left_alone():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])
    model = _make_model(helper.make_graph([node], "g", [x], [y]))
    before = model.SerializeToString()
    assert graph.fix_high_rank_pooling(model) == 0
    assert model.SerializeToString() == before


def test_standardize_io_renames_and_frees_names():
    nodes = [helper.make_node("Relu", ["input:0"], ["images"]),  # an inner tensor named images
             helper.make_node("Flatten", ["images"], ["Identity:0"], axis=1)]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["N", 2, 2, 1])],
        [helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, ["unk__1", 4])])
    model = _make_model(g)
    graph.standardize_io(model, (2, 2, 1), 4)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].name == "images" and model.graph.output[0].name == "logits"
    dims = model.graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 4
    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float32).reshape(1, 2, 2, 1)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(["logits"], {"images": x})[0],
                                  np.maximum(x, 0).reshape(1, 4))


def test_two_outputs_and_custom_domains_are_rejected():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 1])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 2, 1]) for n in ("a", "b")]
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"])]
    model = _make_model(helper.make_graph(nodes, "g", [x], outs))
    with pytest.raises(graph.GraphError, match="one input and one output"):
        graph.standardize_io(model, (2, 2, 1), 4)
    custom = helper.make_node("FusedThing", ["x"], ["a"], domain="com.example")
    model = _make_model(helper.make_graph([custom], "g", [x], outs[:1]),
                        [helper.make_opsetid("com.example", 1)])
    with pytest.raises(graph.GraphError, match="com.example"):
        graph.check_domains(model)
