"""kcnn.summary and the kcnn-summary console script."""
import json
import os
import shutil
import subprocess
import sys

import keras
import pytest

from kcnn import models
from kcnn.cli import summary as cli
from kcnn.models.summary import layer_macs, summary

# LeNet on 28x28x1, MACs = c_out * c_in * k_h * k_w * h_out * w_out for a conv, in * out for dense:
LENET_MACS = (
    6 * 1 * 5 * 5 * 28 * 28      # conv1: 117,600
    + 16 * 6 * 5 * 5 * 10 * 10   # conv2: 240,000
    + 400 * 120                  # fc1:    48,000
    + 120 * 84                   # fc2:    10,080
    + 84 * 10                    # logits:    840
)
# Outputs per example: 28*28*6 + 14*14*6 + 10*10*16 + 5*5*16 + 400 + 120 + 84 + 10 values.
LENET_ACTIVATIONS = 4704 + 1176 + 1600 + 400 + 400 + 120 + 84 + 10


@pytest.mark.parametrize("conv", ["builtin", "explicit"])
def test_lenet_totals(conv):
    table = summary(models.lenet(conv=conv))
    assert LENET_MACS == 416_520
    assert table.total_macs == LENET_MACS
    assert table.total_params == table.trainable_params == 61_706
    assert table.non_trainable_params == 0
    assert table.activation_bytes == 4 * LENET_ACTIVATIONS
    by_name = {row.name: row for row in table.rows}
    assert by_name["conv1"].macs == 117_600 and by_name["conv1"].params == 156
    assert by_name["conv2"].output_shape == (10, 10, 16)
    assert by_name["pool1"].macs == 0 and by_name["flatten"].output_shape == (400,)
    assert [row.name for row in table.rows] == [
        "conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "logits"]


def test_text_and_dict():
    table = summary(models.lenet())
    text = str(table)
    assert 'Model: "lenet"' in text
    for needle in ("conv1 (Conv2D)", "(28, 28, 6)", "117,600", "Total params: 61,706",
                   "Total MACs: 416,520", "Activation memory"):
        assert needle in text
    assert repr(table) == text
    data = json.loads(json.dumps(table.to_dict()))
    assert data["total_macs"] == 416_520 and data["total_params"] == 61_706
    assert data["layers"][0] == {"name": "conv1", "type": "Conv2D", "output_shape": [28, 28, 6],
                                 "params": 156, "macs": 117_600, "activation_bytes": 4704 * 4}


@pytest.mark.parametrize("groups, strides", [(1, 1), (2, 1), (4, 2)])
def test_conv_macs_formula(groups, strides):
    inputs = keras.Input((9, 9, 8))
    layer = keras.layers.Conv2D(12, (3, 2), strides=strides, groups=groups)
    out = layer(inputs)
    h, w = out.shape[1:3]
    assert layer_macs(layer, tuple(out.shape[1:])) == 12 * (8 // groups) * 3 * 2 * h * w


def test_dense_on_sequence_and_other_layers():
    inputs = keras.Input((5, 7))
    dense = keras.layers.Dense(3)
    pool = keras.layers.GlobalAveragePooling1D()
    x = dense(inputs)
    pool(x)
    assert layer_macs(dense, (5, 3)) == 5 * 7 * 3
    assert layer_macs(pool, (3,)) == 0


def test_vgg_macs_scale_with_input():
    small = summary(models.vgg(input_shape=(32, 32, 1), width_ratio=16, hidden_units=8))
    large = summary(models.vgg(input_shape=(64, 64, 1), width_ratio=16, hidden_units=8))
    conv_small = sum(r.macs for r in small.rows if "conv" in r.name)
    conv_large = sum(r.macs for r in large.rows if "conv" in r.name)
    assert conv_large == 4 * conv_small


def test_nested_model_counts():
    inner = models.lenet()
    inputs = keras.Input((28, 28, 1))
    outer = keras.Model(inputs, inner(inputs), name="outer")
    table = summary(outer)
    assert table.total_params == 61_706 and table.total_macs == LENET_MACS


def test_bad_arguments():
    with pytest.raises(TypeError, match="keras.Model"):
        summary("lenet")
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="not built"):
        summary(unbuilt)


# ----------------------------------------------------------------------------------------- CLI
def test_cli_in_process(capsys):
    assert cli.main(["vgg11", "--input-shape", "32,32,3", "--width-ratio", "16",
                     "--num-classes", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "vgg11" and data["input_shape"] == [32, 32, 3]
    assert data["layers"][0]["output_shape"] == [32, 32, 4]
    assert data["layers"][-1]["output_shape"] == [5]
    assert cli.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == models.available()


@pytest.mark.parametrize("argv, needle", [
    (["lenet", "--width-ratio", "4"], "--width-ratio applies to VGG models only"),
    (["alexnet", "--input-shape", "28,28,1"], "at least 65x65"),
    (["lenet", "--input-shape", "28,28"], "H,W,C"),
    (["lenet", "--conv", "fast"], "invalid choice"),
    (["lenet", "--num-classes", "1"], "num_classes must be an integer >= 2"),
    (["lenet", "--num-classes", "x"], "positive integer"),
    ([], "a model name is required"),
    (["resnet"], "Unknown model name 'resnet'; available models: alexnet, alexnet-imagenet, lenet"),
])
def test_cli_usage_errors(capsys, argv, needle):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kcnn-summary: error:") and needle in err


def _command():
    exe = shutil.which("kcnn-summary")
    return [exe] if exe else [sys.executable, "-m", "kcnn.cli.summary"]


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(_command() + list(args), capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_subprocess_table():
    result = _run("lenet", "--conv", "explicit")
    assert result.returncode == 0, result.stderr
    assert "Total params: 61,706" in result.stdout
    assert "Total MACs: 416,520" in result.stdout
    assert "CrossCorrelation2D" in result.stdout
    assert "cuda" not in result.stderr.lower()  # backend start-up banners are hidden


def test_cli_subprocess_usage_error():
    result = _run("lenet", "--input-shape", "28x28")
    assert result.returncode == 2
    assert result.stderr == (
        "kcnn-summary: error: argument --input-shape: expected three positive integers H,W,C "
        "(e.g. 28,28,1); received '28x28'\n")
    assert result.stdout == ""
