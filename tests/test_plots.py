"""kcnn.plots: real PNG files, non-blank, written atomically; bad arguments rejected."""
import os

import numpy as np
import pytest
from PIL import Image

from kcnn import models, plots


def check_png(path, min_side=100):
    assert os.path.isfile(path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 5  # not blank: real content on a white background
    # Atomic write: no temporary file left next to it.
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")] == []
    return pixels


@pytest.fixture(scope="module")
def lenet():
    return models.lenet()


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_plot_kernels_from_layer(tmp_path, lenet, layer):
    path = plots.plot_kernels(lenet.get_layer(layer), tmp_path / f"{layer}.png")
    assert os.fspath(path) == os.fspath(tmp_path / f"{layer}.png")
    check_png(path)


def test_plot_kernels_rgb_array_and_many_filters(tmp_path):
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 100)).astype("float32")
    check_png(plots.plot_kernels(kernel, tmp_path / "rgb.png", max_filters=20))


def test_plot_kernels_rejects_non_kernel(tmp_path):
    with pytest.raises(ValueError, match=r"\(kernel_h, kernel_w, in_channels, filters\)"):
        plots.plot_kernels(np.zeros((3, 3)), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("layer", ["conv1", "pool2"])
def test_plot_feature_maps(tmp_path, lenet, layer):
    yy, xx = np.mgrid[:28, :28]
    image = ((xx + yy) % 7 < 3).astype(np.uint8)[:, :, None] * 255  # uint8 stripes
    path = tmp_path / "maps" / f"{layer}.png"  # folder created on demand
    check_png(plots.plot_feature_maps(lenet, layer, image, path))


def test_plot_feature_maps_errors(tmp_path, lenet):
    image = np.zeros((28, 28, 1), "float32")
    with pytest.raises(ValueError, match=r"layer_name='nope'.*conv1"):
        plots.plot_feature_maps(lenet, "nope", image, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"'fc1'.*4-D"):
        plots.plot_feature_maps(lenet, "fc1", image, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"image must be one image of shape \(28, 28, 1\)"):
        plots.plot_feature_maps(lenet, "conv1", np.zeros((32, 32, 1)), tmp_path / "a.png")


def test_plot_curves(tmp_path):
    rows = [
        {"epoch": 1, "loss": 2.3, "accuracy": 0.11, "test_accuracy": 0.10},
        {"epoch": 2, "loss": "1.2", "accuracy": "0.55", "test_accuracy": "0.50"},  # from CSV
        {"epoch": 3, "loss": 0.7, "accuracy": 0.80, "test_accuracy": None},
    ]
    check_png(plots.plot_curves(rows, tmp_path / "curves.png", title="lenet"))


def test_plot_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_curves([], tmp_path / "c.png")
    with pytest.raises(ValueError, match="none of the keys"):
        plots.plot_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "c.png")


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion(tmp_path, normalize):
    matrix = np.random.default_rng(1).integers(0, 40, size=(10, 10))
    names = [f"class {i}" for i in range(10)]
    check_png(plots.plot_confusion(matrix, names, tmp_path / "cm.png", normalize=normalize))


def test_plot_confusion_errors(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion(np.zeros((2, 3)), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="class_names must have 3 entries"):
        plots.plot_confusion(np.eye(3), ["a", "b"], tmp_path / "cm.png")


def test_overwrite_replaces_file(tmp_path, lenet):
    path = tmp_path / "k.png"
    path.write_bytes(b"old")
    plots.plot_kernels(lenet.get_layer("conv1"), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert oct(path.stat().st_mode & 0o600) == oct(0o600)


@pytest.mark.parametrize("filters", [6, 64])
def test_one_channel_kernels_fit_a_screen(tmp_path, filters):
    kernel = np.random.default_rng(0).normal(size=(5, 5, 1, filters)).astype("float32")
    path = plots.plot_kernels(kernel, tmp_path / "k.png")
    check_png(path)
    with Image.open(path) as image:
        width, height = image.size
    assert width >= height, (width, height)  # a grid, not one tall column of tiles


def test_grid_columns():
    assert [plots.grid_columns(n) for n in (1, 6, 16, 64)] == [1, 3, 5, 10]
