"""kcnn.export.write_triton_repo: repository layout and config.pbtxt content."""

import re

import keras
import pytest

from kcnn.export import export_onnx, write_triton_repo


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    model = keras.Sequential([keras.Input((6, 5, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    path = tmp_path_factory.mktemp("triton") / "net.onnx"
    export_onnx(model, path, labels=["cat", "dog", "fox", "owl"], model_name="animals")
    return path


def test_repository_layout_and_config(onnx_file, tmp_path):
    target = write_triton_repo(onnx_file, tmp_path / "repo", max_batch_size=32,
                               preferred_batch_sizes=[8, 16], max_queue_delay_microseconds=500)
    assert target == tmp_path / "repo" / "animals"
    assert (target / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert (target / "labels.txt").read_text().splitlines() == ["cat", "dog", "fox", "owl"]
    config = (target / "config.pbtxt").read_text()
    assert 'name: "animals"' in config
    assert 'platform: "onnxruntime_onnx"' in config and 'backend: "onnxruntime"' in config
    assert "max_batch_size: 32" in config
    inputs = re.search(r"input \[(.*?)\]\noutput", config, re.S).group(1)
    outputs = re.search(r"output \[(.*?)\]\ndynamic", config, re.S).group(1)
    assert 'name: "images"' in inputs and "TYPE_FP32" in inputs and "dims: [ 6, 5, 3 ]" in inputs
    assert 'name: "logits"' in outputs and "dims: [ 4 ]" in outputs
    assert 'label_filename: "labels.txt"' in outputs
    assert re.search(r"dynamic_batching \{\s*preferred_batch_size: \[ 8, 16 \]\s*"
                     r"max_queue_delay_microseconds: 500\s*\}", config)
    assert config.count("{") == config.count("}") and config.count("[") == config.count("]")
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["animals"]  # no temp folders left


def test_rewrite_keeps_other_versions(onnx_file, tmp_path):
    repo = tmp_path / "repo"
    write_triton_repo(onnx_file, repo, name="m", version=1)
    write_triton_repo(onnx_file, repo, name="m", version=2, max_batch_size=8)
    assert (repo / "m" / "1" / "model.onnx").exists() and (repo / "m" / "2" / "model.onnx").exists()
    assert "max_batch_size: 8" in (repo / "m" / "config.pbtxt").read_text()


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "bad/name"}, "name must contain only"),
    ({"max_batch_size": 0}, "max_batch_size must be a positive integer"),
    ({"version": -1}, "version must be a positive integer"),
    ({"max_queue_delay_microseconds": -5}, "max_queue_delay_microseconds"),
    ({"preferred_batch_sizes": [128]}, "must not exceed max_batch_size"),
])
def test_invalid_arguments(onnx_file, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_triton_repo(onnx_file, tmp_path / "repo", **kwargs)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
