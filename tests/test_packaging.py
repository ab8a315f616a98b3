"""Packaging: the wheel's layout and the single working onnxruntime."""

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_maps_layers_and_export_into_kcnn(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("kcnn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "kcnn/layers/__init__.py" in names
    assert "kcnn/layers/cross_correlation.py" in names
    assert "kcnn/export/__init__.py" in names
    assert "kcnn/cli/train.py" in names
    for package in ("bench", "data", "models", "models/families", "training", "export/serving"):
        assert f"kcnn/{package}/__init__.py" in names, package
    for asset in ("index.html", "page.css", "page.js"):  # kcnn-serve's page, served from the package
        assert f"kcnn/export/serving/static/{asset}" in names
    for stub in ("__init__.py", "grpc_predict_v2.proto", "grpc_predict_v2_pb2.py",
                 "grpc_predict_v2_pb2_grpc.py"):  # kcnn-serve --grpc-port: checked-in stubs
        assert f"kcnn/export/serving/grpc_v2/{stub}" in names, stub
    top_level = {name.split("/")[0] for name in names}
    assert not top_level & {"layers", "export", "tests"}, top_level


def _installed(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_exactly_one_onnxruntime_distribution_that_runs():
    installed = [name for name in ("onnxruntime", "onnxruntime-gpu") if _installed(name)]
    assert len(installed) == 1, f"both onnxruntime distributions are installed: {installed}"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.array([-1.0, 2.0], dtype=np.float32)})
    np.testing.assert_array_equal(y, [0.0, 2.0])
    assert onnx.__version__


# Each conflict `pip check` may report, with why it is harmless. jax2onnx names the CPU
# `onnxruntime` distribution; kcnn installs `onnxruntime-gpu`, which provides the same
# `onnxruntime` module (CPU provider included), and .ci/install keeps only that one.
KNOWN_PIP_CONFLICTS = {
    "jax2onnx": "requires onnxruntime, which is not installed.",
}


def test_pip_check_reports_only_documented_conflicts():
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    unexplained = [line for line in proc.stdout.splitlines() if line.strip() and not any(
        line.startswith(name + " ") and line.endswith(why) for name, why in KNOWN_PIP_CONFLICTS.items())]
    assert unexplained == [], proc.stdout
