"""kcnn.export stands alone: exporting, predicting and building the server load no kcnn core."""
import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import keras, numpy as np
from kcnn.export import OnnxPredictor, export_onnx
from kcnn.export.serving import create_app

model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
result = export_onnx(model, sys.argv[1], labels=["a", "b", "c"])
predictor = OnnxPredictor(result.path, providers=["CPUExecutionProvider"])
label = predictor.predict(np.zeros((8, 8), np.uint8)).top1[0]
create_app(predictor)
core = sorted(name for name in sys.modules if name.startswith("kcnn.")
              and not name.startswith(("kcnn.export", "kcnn.layers")))
print(json.dumps({"label": label, "core": core, "version": result.metadata["kcnn.version"]}))
"""


def test_export_and_predict_load_no_kcnn_core_module(tmp_path):
    import importlib.metadata

    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["label"] in ("a", "b", "c")
    assert report["core"] == []  # no kcnn.models, kcnn.data, kcnn.training, kcnn.cli, ...
    assert report["version"] == importlib.metadata.version("kcnn")
