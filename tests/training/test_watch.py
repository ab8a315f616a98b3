"""kcnn.training.watch and html_report: curves after every epoch, live notebook curves, report.html."""
import base64
import os

import keras
import numpy as np
import pytest

from kcnn import data as kdata
from kcnn import models
from kcnn import training
from kcnn.models import summary


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (96, 12, 12, 1), dtype=np.uint8)
    y = np.arange(96) % 3
    return kdata.ImageData("tiny", x[:64], y[:64], x[64:], y[64:], ("a", "b", "c"))


class _SeesCurves(keras.callbacks.Callback):
    """Records, at each epoch end, how many epochs the curves file on disk already shows."""

    def __init__(self, path):
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(os.path.getmtime(self.path) if os.path.exists(self.path) else None)


def test_fit_rewrites_curves_and_history_after_every_epoch(tiny, tmp_path):
    recipe = training.get_recipe("modern", "lenet", epochs=3, batch_size=32, image_size=12)
    spy = _SeesCurves(tmp_path / "curves.png")
    model = models.build("lenet", input_shape=(12, 12, 1), num_classes=3)
    training.fit(model, tiny, recipe, out=tmp_path, verbose=0, callbacks=[spy])
    assert all(seen is not None for seen in spy.seen), spy.seen  # there from epoch 1 on
    assert len(set(spy.seen)) == 3  # rewritten each epoch
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 4


def test_live_curves_is_a_no_op_outside_a_notebook(tiny):
    live = training.LiveCurves()
    assert training.in_notebook() is False and live.enabled is False
    recipe = training.get_recipe("modern", "lenet", epochs=2, batch_size=32, image_size=12)
    model = models.build("lenet", input_shape=(12, 12, 1), num_classes=3)
    training.fit(model, tiny, recipe, verbose=0, callbacks=[live])
    assert [row["epoch"] for row in live.rows] == [1, 2]
    assert {"loss", "accuracy", "test_accuracy"} <= set(live.rows[-1])
    assert live.figure() is not None


NOTEBOOK_CELL = """
import numpy as np, keras
from kcnn import data as kdata, models, training
x = np.random.default_rng(0).integers(0, 255, (96, 12, 12, 1), dtype=np.uint8); y = np.arange(96) % 3
d = kdata.ImageData("tiny", x[:64], y[:64], x[64:], y[64:], ("a", "b", "c"))
live = training.LiveCurves()
print("enabled", live.enabled)
recipe = training.get_recipe("modern", "lenet", epochs=2, batch_size=32, image_size=12)
training.fit(models.build("lenet", input_shape=(12, 12, 1), num_classes=3), d, recipe, verbose=0,
             callbacks=[live])
"""


@pytest.mark.slow
def test_live_curves_draw_in_a_real_notebook_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_CELL)])
    env_kernel = {"KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    os.environ.update(env_kernel)  # the kernel inherits this process's environment
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "enabled True" in text
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 1  # one figure, updated in place each epoch
    assert base64.b64decode(images[0].data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_report_is_self_contained(tmp_path):
    from kcnn import plots

    model = models.build("lenet")
    plots.plot_curves([{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "test_accuracy": 0.4}],
                      tmp_path / "curves.png")
    plots.plot_kernels(model.get_layer("conv1"), tmp_path / "kernels.png")
    report = {"model": "lenet", "dataset": "digits", "test_accuracy": 0.975, "epochs": 1,
              "onnx": {"max_abs_diff": 1e-6, "top1_agreement": 1.0}}
    path = training.write_html_report(tmp_path, report, summary=summary(model))
    page = open(path, encoding="utf-8").read()
    assert page.startswith("<!doctype html>") and "lenet on digits" in page
    assert page.count("data:image/png;base64,") == 2  # no confusion.png here: left out
    assert "0.9750" in page and "61,706 parameters" in page and "conv1 (CrossCorrelation2D)" not in page
    assert "conv1 (Conv2D)" in page
    assert "http" not in page.replace("http-equiv", "")
