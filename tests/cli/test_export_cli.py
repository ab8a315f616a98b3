"""kcnn-export and kcnn-predict, run as subprocesses like a user would."""

import json
import os
import pathlib
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from kcnn.export import OnnxPredictor, read_metadata

LABELS = [f"digit{i}" for i in range(10)]


def run_cli(name, *args, timeout=300):
    script = pathlib.Path(sys.executable).parent / name
    module = {"kcnn-export": "kcnn.cli.export", "kcnn-predict": "kcnn.cli.predict"}[name]
    command = [str(script)] if script.exists() else [sys.executable, "-m", module]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_one_line_error(proc, prog, match):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{prog}: error: ") and match in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ], name="digits_net")
    path = tmp_path_factory.mktemp("cli") / "model.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def exported(keras_file, tmp_path_factory):
    """One kcnn-export run with verification, labels and a Triton repository."""
    folder = tmp_path_factory.mktemp("cli_out")
    labels = folder / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    out = folder / "model.onnx"
    proc = run_cli("kcnn-export", keras_file, out, "--verify-with", "digits", "--samples", 40,
                   "--labels", f"@{labels}", "--triton-repo", folder / "triton")
    return proc, out, folder


def test_export_verifies_and_writes_triton_repo(exported):
    proc, out, folder = exported
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert f"wrote {out} (opset 17, input images [batch, 12, 12, 1], 10 classes" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.startswith("verified on digits"))
    assert "(n=40)" in line and "top1_agreement=1.0000" in line
    assert float(line.split("max_abs_diff=")[1].split()[0]) <= 1e-5
    meta = read_metadata(out)
    assert meta["kcnn.labels"] == LABELS and meta["kcnn.model"] == "digits_net"
    triton = folder / "triton" / "digits_net"
    assert (triton / "1" / "model.onnx").read_bytes() == out.read_bytes()
    config = (triton / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "dims: [ 12, 12, 1 ]" in config
    assert "dynamic_batching" in config


def test_export_quantized_with_npz_samples(keras_file, tmp_path):
    rng = np.random.default_rng(0)
    samples = tmp_path / "samples.npz"
    np.savez(samples, x_test=rng.integers(0, 256, (30, 12, 12), dtype=np.uint8),
             y_test=rng.integers(0, 10, 30))
    out = tmp_path / "q.onnx"
    proc = run_cli("kcnn-export", keras_file, out, "--verify-with", samples, "--quantize", "int8")
    assert proc.returncode == 0, proc.stderr
    assert "verified on" in proc.stdout and "(n=30)" in proc.stdout
    quant = next(l for l in proc.stdout.splitlines() if l.startswith("quantized to int8"))
    assert "top1_agreement=" in quant and "accuracy " in quant and "->" in quant
    assert read_metadata(out)["kcnn.quantization"] == "int8"
    assert OnnxPredictor(out).predict(np.zeros((12, 12), np.uint8)).probabilities.shape == (1, 10)


def test_export_errors(keras_file, tmp_path):
    bad_keras = tmp_path / "broken.keras"
    bad_keras.write_bytes(b"not a zip file")
    foreign_zip = tmp_path / "foreign.keras"
    with zipfile.ZipFile(foreign_zip, "w") as archive:
        archive.writestr("readme.txt", "a zip, but no Keras model")
    no_x = tmp_path / "no_x.npz"
    np.savez(no_x, images=np.zeros((2, 3, 3), np.uint8))
    cases = [
        ((tmp_path / "missing.keras", tmp_path / "o.onnx"), "model file not found"),
        ((tmp_path / "model.h5", tmp_path / "o.onnx"), "MODEL must be a .keras file"),
        ((keras_file, tmp_path / "o.txt"), "OUT must end in '.onnx'"),
        ((keras_file, tmp_path / "o.onnx", "--quantize", "int4"), "argument --quantize"),
        ((keras_file, tmp_path / "o.onnx", "--verify-with", "cifar.csv"), "'digits' or a path"),
        ((keras_file, tmp_path / "o.onnx", "--verify-with", no_x), "no 'x_test'"),
        ((keras_file,), "the following arguments are required"),
        ((bad_keras, tmp_path / "o.onnx"), "is not a Keras model file: a .keras file is a zip"),
        ((foreign_zip, tmp_path / "o.onnx"), "cannot load"),
        ((keras_file, tmp_path / "o.onnx", "--opset", "5"), "opset must be an integer in [13,"),
    ]
    for args, match in cases:
        assert_one_line_error(run_cli("kcnn-export", *args), "kcnn-export", match)
    assert not (tmp_path / "o.onnx").exists()


# --- kcnn-predict -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(5)
    files = [folder / "gray.png", folder / "colour.png", folder / "photo.jpg"]
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), "L").save(files[0])
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB").save(files[1])
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(files[2])
    return files


def test_predict_prints_label_and_score_per_file(exported, image_files):
    _, model, _ = exported
    proc = run_cli("kcnn-predict", model, *image_files, "--top-k", 2)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    predictor = OnnxPredictor(model)
    for path, line in zip(image_files, lines):
        with Image.open(path) as image:
            expected = predictor.predict(image, top_k=2).to_list()[0]
        label_a, score_a, label_b, score_b = line.split(": ", 1)[1].replace(",", "").split()
        assert line.startswith(f"{path}: ")
        assert [label_a, label_b] == [e["label"] for e in expected]
        assert float(score_a) == pytest.approx(expected[0]["score"], abs=1e-4)
        assert float(score_a) >= float(score_b)


def test_predict_json(exported, image_files):
    _, model, _ = exported
    proc = run_cli("kcnn-predict", model, image_files[0], image_files[2], "--json", "--top-k", 3)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert [p["file"] for p in document["predictions"]] == [str(image_files[0]),
                                                             str(image_files[2])]
    first = document["predictions"][0]["top_k"]
    assert len(first) == 3 and all(item["label"] in LABELS for item in first)
    assert first[0]["score"] >= first[1]["score"] >= first[2]["score"]
    assert document["provider"] == OnnxPredictor(model).provider


def test_predict_errors(exported, image_files, tmp_path):
    _, model, _ = exported
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(model.read_bytes()[:100])
    bomb = tmp_path / "bomb.gif"  # 400 Mpx of one colour: a few kilobytes on disk
    Image.new("L", (20000, 20000)).save(bomb)
    cases = [
        ((model, tmp_path / "missing.png"), "image file not found"),
        ((model, not_image), "cannot read"),
        ((model, bomb), "bomb.gif"),
        ((tmp_path / "none.onnx", image_files[0]), "none.onnx"),
        ((truncated, image_files[0]), "cut.onnx"),
        ((model, image_files[0], "--top-k", "11"), "--top-k must be at most 10"),
        ((model, image_files[0], "--top-k", "zero"), "argument --top-k"),
        ((model,), "the following arguments are required"),
    ]
    for args, match in cases:
        assert_one_line_error(run_cli("kcnn-predict", *args), "kcnn-predict", match)


def test_failed_verification_leaves_the_previous_file_untouched(exported, keras_file, tmp_path):
    _, good, _ = exported
    out = tmp_path / "model.onnx"
    out.write_bytes(good.read_bytes())
    before = out.read_bytes()
    proc = run_cli("kcnn-export", keras_file, out, "--verify-with", "digits", "--samples", 20,
                   "--atol", "1e-30")
    if proc.returncode == 0:  # Keras and onnxruntime agreed bit for bit: nothing to test here
        pytest.skip("no difference at all between Keras and onnxruntime on these samples")
    assert_one_line_error(proc, "kcnn-export", "Nothing was replaced")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no staging litter


def test_explicit_model_exports_as_operators_or_as_the_formula(tmp_path):
    """A saved explicit model: kcnn-export writes Conv/MaxPool (verified against the explicit Keras
    model); --explicit-graph writes the spelled-out formula; kcnn-predict runs both alike."""
    import onnx

    from kcnn import layers as kl

    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        kl.CrossCorrelation2D(4, 3, padding=1, activation="relu"),
        kl.MaxPool2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ], name="explicit_net")
    keras_path = tmp_path / "explicit.keras"
    model.save(keras_path)
    image = tmp_path / "digit.png"
    Image.fromarray((np.arange(144).reshape(12, 12) % 255).astype(np.uint8), "L").save(image)
    outputs = {}
    for form, flags in (("operators", ()), ("explicit", ("--explicit-graph",))):
        out = tmp_path / f"{form}.onnx"
        proc = run_cli("kcnn-export", keras_path, out, "--verify-with", "digits", "--samples", 20,
                       *flags)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout.split("max_abs_diff=")[1].split()[0]) <= 1e-5
        assert read_metadata(out)["kcnn.graph"] == form
        ops = {node.op_type for node in onnx.load(str(out)).graph.node}
        assert ("Conv" in ops and "MaxPool" in ops) == (form == "operators")
        predicted = run_cli("kcnn-predict", out, image, "--json")
        assert predicted.returncode == 0, predicted.stderr
        outputs[form] = json.loads(predicted.stdout)["predictions"][0]["top_k"]
    assert [p["label"] for p in outputs["operators"]] == [p["label"] for p in outputs["explicit"]]
    np.testing.assert_allclose([p["score"] for p in outputs["operators"]],
                               [p["score"] for p in outputs["explicit"]], atol=1e-5)
