"""``kcnn-bench --section train``: ``kcnn-train``'s default run, explicit vs built-in conv.

Runs the ``kcnn-train`` command as a user would (default: LeNet, modern recipe, bundled digits,
ONNX export and check included) once with ``--conv builtin`` and once with ``--conv explicit``
per backend, and reads each run's ``report.json``: test accuracy, training examples/second and
wall time (measured around the whole command, start-up included). ``tiny`` trains one epoch and
skips the export.

``jit`` rows: the figures behind ``--jit-compile auto`` (:data:`kcnn.training.trainer.JIT_AUTO`).
Each default run reports what ``auto`` chose (``jit_compiled``); the same job then runs again with
the other choice (``--jit-compile off`` or ``on``), and the row gives auto's steady examples/s over
the other's and the other's wall time over auto's (> 1: auto's is faster; compile time counts in
the wall, so a small job can be faster in wall with the slower steps). ``tiny`` checks the
built-in conv only.
"""
from __future__ import annotations

import os
import subprocess
import time

from kcnn.bench import common as bench
from kcnn.files import read_json

CONVS = ("builtin", "explicit")


def _train(ctx, backend, conv, jit="auto"):
    out = os.path.join(ctx.workdir, f"train-{backend}-{conv}-{jit}")
    args = ["--out", out, "--conv", conv, "--quiet", "--seed", "0", "--jit-compile", jit]
    if ctx.tiny:
        args += ["--epochs", "1", "--no-export"]
    command = bench.console_command("kcnn-train", "kcnn.cli.train:main") + args
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=ctx.timeout)
    except subprocess.TimeoutExpired:
        raise bench.BenchError(f"kcnn-train on {backend} ({conv}, jit {jit}): timed out") from None
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise bench.BenchError(f"kcnn-train on {backend} ({conv}, jit {jit}): {lines[-1]}")
    report = read_json(os.path.join(out, "report.json"))
    onnx = report.get("onnx") or {}
    return {
        "backend": backend, "conv": conv, "dataset": report.get("dataset"),
        "model": report.get("model"), "epochs": report.get("epochs"),
        "test_accuracy": report.get("test_accuracy"),
        "train_examples_per_second": report.get("train_examples_per_second"),
        "fit_seconds": report.get("fit_seconds"), "wall_seconds": wall,
        "jit_compiled": report.get("jit_compiled"),
        "onnx_top1_agreement": onnx.get("top1_agreement"),
    }


def run(ctx) -> dict:
    rows, jit_rows, errors = [], [], []
    for backend in ctx.backends:
        pair = {}
        for conv in CONVS:
            ctx.say(f"[train] kcnn-train --conv {conv} on {backend}")
            try:
                pair[conv] = _train(ctx, backend, conv)
            except bench.BenchError as e:
                errors.append(str(e))
        if "builtin" in pair and "explicit" in pair:
            b, e = pair["builtin"], pair["explicit"]
            e["wall_ratio"] = e["wall_seconds"] / b["wall_seconds"]
            e["throughput_ratio"] = (e["train_examples_per_second"]
                                     / b["train_examples_per_second"])
            e["accuracy_change"] = e["test_accuracy"] - b["test_accuracy"]
        rows += pair.values()
        for conv, auto in pair.items():
            if ctx.tiny and conv != "builtin":
                continue
            try:
                jit_rows.append(_jit_row(ctx, backend, conv, auto))
            except bench.BenchError as e:
                errors.append(str(e))
    return {
        "rows": rows,
        "jit": jit_rows,
        "errors": errors,
        "tables": [{"rows": "rows", "title": "kcnn-train default run (ratios: explicit / builtin)",
                    "columns": ["backend", "conv", "dataset", "epochs", "test_accuracy",
                                "accuracy_change", "train_examples_per_second",
                                "throughput_ratio", "wall_seconds", "wall_ratio"]},
                   {"rows": "jit", "title": "--jit-compile auto vs the other choice (ratio: examples/s "
                                            "auto / other; wall_ratio: wall other / auto; > 1: auto's faster)",
                    "columns": ["backend", "conv", "auto_jit", "auto_examples_per_second",
                                "other_examples_per_second", "ratio", "auto_wall_seconds",
                                "other_wall_seconds", "wall_ratio"]}],
    }


def _jit_row(ctx, backend, conv, auto):
    """The same job with the other ``--jit-compile`` choice than ``auto`` made."""
    ctx.say(f"[train] kcnn-train --conv {conv} on {backend}, jit the other way")
    other = _train(ctx, backend, conv, "off" if auto["jit_compiled"] else "on")
    return {"backend": backend, "conv": conv, "auto_jit": auto["jit_compiled"],
            "auto_examples_per_second": auto["train_examples_per_second"],
            "other_examples_per_second": other["train_examples_per_second"],
            "ratio": auto["train_examples_per_second"] / other["train_examples_per_second"],
            "auto_wall_seconds": auto["wall_seconds"], "other_wall_seconds": other["wall_seconds"],
            "wall_ratio": other["wall_seconds"] / auto["wall_seconds"]}
