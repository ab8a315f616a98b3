"""kcnn.files: atomic JSON/CSV writers for the run folder."""
import json
import math
import os

import numpy as np

from kcnn import files as report


def test_write_json_is_atomic_and_jsonable(tmp_path):
    path = tmp_path / "report.json"
    report.write_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "bad": math.nan,
                             "nested": {"v": (1, 2)}})
    assert json.loads(path.read_text()) == {"acc": 0.5, "bad": None, "n": 3, "nested": {"v": [1, 2]}}
    assert os.listdir(tmp_path) == ["report.json"]  # no temp file left behind


def test_history_round_trip_orders_columns(tmp_path):
    path = tmp_path / "history.csv"
    rows = [{"epoch": 1, "test_accuracy": 0.5, "loss": 2.0, "accuracy": 0.25, "extra": 1.0},
            {"epoch": 2, "test_accuracy": 0.75, "loss": 1.0, "accuracy": 0.5, "extra": 2.0}]
    report.write_history(path, rows)
    assert path.read_text().splitlines()[0] == "epoch,loss,accuracy,test_accuracy,extra"
    assert report.read_history(path) == rows


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    report.write_json(path, {"a": 1})
    try:
        report.write_json(path, {"a": object()})
    except TypeError:
        pass
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["report.json"]
