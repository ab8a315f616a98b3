"""Static INT8 (QDQ) quantization on real data: a LeNet trained on scikit-learn's digits, its
accuracy after quantization on images the calibration did not see, and kcnn-export's flags."""
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import onnx
import pytest

from kcnn.export import OnnxPredictor, export_onnx
from kcnn.export import quantize as quant
from kcnn.export.samples import load_samples

#: The largest accepted accuracy loss (fraction) of static int8 against float32 on held-back digits.
MAX_ACCURACY_LOSS = 0.02


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(float ONNX path, keras file, preprocessed digits x, labels y) of a LeNet fit on digits."""
    from kcnn import models

    tmp = tmp_path_factory.mktemp("int8")
    keras.utils.set_random_seed(0)
    model = models.lenet(input_shape=(16, 16, 1), modern=True)
    untrained = tmp / "untrained.onnx"
    export_onnx(model, untrained)
    images, y = load_samples("digits", limit=1797)
    x = OnnxPredictor(untrained, ["CPUExecutionProvider"]).preprocess(images)  # served pipeline
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    model.fit(x[:1200], y[:1200], epochs=12, batch_size=32, verbose=0)
    path = tmp / "float.onnx"
    export_onnx(model, path, model_name="lenet-digits")
    keras_file = tmp / "model.keras"
    model.save(keras_file)
    return path, keras_file, x, y


def _op_types(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_static_int8_keeps_accuracy_on_held_back_digits(trained, tmp_path):
    path, _, x, y = trained
    calibration, held_x, held_y = x[:200], x[1200:], y[1200:]  # disjoint from calibration
    report = quant.quantize_onnx(path, tmp_path / "int8.onnx", "int8", samples=(held_x, held_y),
                                 calibration=calibration)
    assert report["n"] == len(held_x) == 597 and report["calibration_n"] == 200
    assert report["float_accuracy"] > 0.8  # the model really learned digits
    assert report["accuracy_change"] >= -MAX_ACCURACY_LOSS, report
    assert report["bytes"] < 0.5 * report["float_bytes"]
    ops = _op_types(tmp_path / "int8.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "ConvInteger" not in ops
    predictor = OnnxPredictor(tmp_path / "int8.onnx", ["CPUExecutionProvider"])
    assert predictor.metadata["kcnn.quantization"] == "int8"
    got = predictor.run(held_x[:64]).argmax(-1)
    assert np.mean(got == held_y[:64]) > 0.8


@pytest.mark.parametrize("mode,op", [("int8-dynamic", "ConvInteger"), ("fp16", "Cast")])
def test_dynamic_int8_and_fp16_verified_the_same_way(trained, tmp_path, mode, op):
    path, _, x, y = trained
    report = quant.quantize_onnx(path, tmp_path / f"{mode}.onnx", mode, samples=(x[1200:], y[1200:]))
    assert report["n"] == 597 and report["accuracy_change"] >= -MAX_ACCURACY_LOSS, report
    assert op in _op_types(tmp_path / f"{mode}.onnx")


def test_static_int8_needs_calibration(trained, tmp_path):
    path, *_ = trained
    with pytest.raises(ValueError, match="needs calibration images"):
        quant.quantize_onnx(path, tmp_path / "q.onnx", "int8")


def _export(*args):
    script = pathlib.Path(sys.executable).parent / "kcnn-export"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kcnn.cli.export"]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_cli_static_int8_with_calibration_and_triton_repo(trained, tmp_path):
    _, keras_file, _, _ = trained
    out = tmp_path / "m.onnx"
    proc = _export(keras_file, out, "--quantize", "int8", "--calibrate-with", "digits",
                   "--verify-with", "digits", "--samples", "300", "--calibration-samples", "100",
                   "--name", "lenet-digits", "--triton-repo", tmp_path / "repo")
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("quantized to int8"))
    assert "static QDQ, 100 calibration images" in line and "on 300 samples" in line
    before, after = line.split("accuracy ")[1].split(" (")[0].split(" -> ")
    assert float(after) >= float(before) - MAX_ACCURACY_LOSS
    triton_file = tmp_path / "repo" / "lenet-digits" / "1" / "model.onnx"
    assert triton_file.read_bytes() == out.read_bytes() and "QuantizeLinear" in _op_types(out)


@pytest.mark.parametrize("args,needle", [
    (("--quantize", "int8"), "needs calibration images"),
    (("--quantize", "fp16", "--calibrate-with", "digits"), "only applies to --quantize int8"),
])
def test_cli_static_int8_usage_errors(trained, tmp_path, args, needle):
    _, keras_file, _, _ = trained
    proc = _export(keras_file, tmp_path / "m.onnx", *args)
    assert proc.returncode == 2 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
