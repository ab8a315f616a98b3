"""Run-directory files written atomically: ``report.json``, ``history.csv``, ``config.json``.

Every writer puts the content in a file in a hidden staging folder beside the target and
``os.replace``s it, so a reader (or a run killed mid-write) never sees half a file.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os

from kcnn.export.staging import staging_dir

__all__ = ["atomic_write_text", "write_json", "read_json", "write_history", "read_history",
           "HISTORY_FIELDS"]

# Leading columns of history.csv; any other metric follows in sorted order.
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "test_loss", "test_accuracy", "val_loss", "val_accuracy",
                  "lr", "seconds")


def atomic_write(path, write, *, binary=False) -> str:
    """Create ``path`` atomically: ``write(file)`` fills a file in a staging folder beside it,
    then ``os.replace`` puts it in place; on any error the staging folder is removed and ``path``
    untouched, and what a killed writer left is removed by the next write to the folder
    (:func:`kcnn.export.staging.staging_dir`). The file gets the usual permissions (0666 minus
    the umask)."""
    path = os.fspath(path)
    with staging_dir(os.path.abspath(path), "tmp") as folder:
        tmp = folder / os.path.basename(path)
        if binary:
            with open(tmp, "wb") as f:
                write(f)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write(f)
        os.replace(tmp, path)
    return path


def atomic_write_text(path, text: str) -> str:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / tensor scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def write_json(path, data: dict) -> str:
    """Write ``data`` as indented JSON (numpy scalars converted, NaN → null)."""
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")


def read_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _format(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_history(path, rows) -> str:
    """Write one CSV row per epoch; columns ``HISTORY_FIELDS`` first, then any others."""
    rows = list(rows)
    extra = sorted({k for r in rows for k in r} - set(HISTORY_FIELDS))
    fields = [f for f in HISTORY_FIELDS if any(f in r for r in rows)] + extra
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(_jsonable(row.get(k, ""))) for k in fields})
    return atomic_write_text(path, buf.getvalue())


def read_history(path) -> list:
    """Rows of ``history.csv`` as dicts of floats (``epoch`` as int)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                if v in ("", None):
                    continue
                row[k] = int(float(v)) if k == "epoch" else float(v)
            rows.append(row)
    return rows
