"""The explicit rows of ``kcnn-bench --section inference``: explicit ÷ built-in ONNX files.

One child per backend builds each model with ``conv="builtin"``, converts it with
``kcnn.models.convert`` to the explicit layers (same weights), and exports both with
``kcnn.export.export_onnx`` at its defaults (explicit layers written as ONNX ``Conv`` /
``MaxPool`` / ``AveragePool``) and, for reference, with ``explicit_graph=True`` (the formula
spelled out). The files run in onnxruntime's CPU provider through ``OnnxPredictor.run``, the
path ``kcnn-predict`` and ``kcnn-serve`` use; repetitions are interleaved, in an order that flips
every round, so machine noise hits every file alike. Figures: batch-1 p50 and batch-64 time, each as explicit ÷ built-in.
"""
from __future__ import annotations

import os

from kcnn.bench import common as bench

TARGET = 1.05        # explicit ÷ built-in, every figure (1.10 for any single one on a noisy machine)
FORMS = ("builtin", "explicit", "explicit-graph")
MODELS = {  # name -> size -> (build kwargs, batch-1 calls per round, batch, rounds)
    "lenet": {"full": ({"input_shape": (28, 28, 1)}, 300, 64, 7),
              "tiny": ({"input_shape": (28, 28, 1)}, 20, 64, 2)},
    "vgg11": {"full": ({"input_shape": (64, 64, 1), "width_ratio": 4}, 40, 64, 5)},
}


def _files(name, kwargs, workdir):
    """Export the three forms of one model -> {form: path}."""
    import keras

    from kcnn import export, models

    keras.utils.set_random_seed(0)
    builtin = models.build(name, conv="builtin", **kwargs)
    explicit = models.convert(builtin, conv="explicit")
    backend = keras.backend.backend()
    paths = {form: os.path.join(workdir, f"{name}-{backend}-{form}.onnx") for form in FORMS}
    export.export_onnx(builtin, paths["builtin"])
    export.export_onnx(explicit, paths["explicit"])
    export.export_onnx(explicit, paths["explicit-graph"], explicit_graph=True)
    return paths


def _op_counts(path):
    import onnx

    nodes = onnx.load(path).graph.node
    return {op: sum(n.op_type == op for n in nodes) for op in ("Conv", "MaxPool", "AveragePool",
                                                                 "Slice", "MatMul")}


def child_measure(spec):
    """Batch-1 p50 and batch-N time of each form in onnxruntime, rounds interleaved."""
    import numpy as np

    from kcnn import export
    from kcnn.bench.inference import _latencies

    rows = []
    for name in spec["models"]:
        kwargs, calls, big, rounds = MODELS[name][spec["size"]]
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        paths = _files(name, kwargs, spec["workdir"])
        runs = {f: export.OnnxPredictor(p, ["CPUExecutionProvider"], batch_size=big).run
                for f, p in paths.items()}
        x = np.random.default_rng(0).random((big, *kwargs["input_shape"]), dtype=np.float32)
        lat = {f: [] for f in FORMS}
        batch = {f: [] for f in FORMS}
        for f in FORMS:
            runs[f](x)
        for r in range(rounds):  # the order flips every round: no form always runs first
            for f in (FORMS if r % 2 == 0 else FORMS[::-1]):
                lat[f] += _latencies(runs[f], x[:1], calls, warmup=1)
                batch[f] += bench.time_calls(lambda: runs[f](x), warmup=0, repeats=3)
        for f in FORMS:
            rows.append({"model": name, "form": f, "input": "x".join(map(str, kwargs["input_shape"])),
                         "p50_ms": bench.percentile(lat[f], 50) * 1e3,
                         "batch": big, "batch_ms": bench.median(batch[f]) * 1e3,
                         **{f"n_{op.lower()}": n for op, n in _op_counts(paths[f]).items()}})
    return {"rows": rows}


def run(ctx):
    """``(rows, targets, errors)`` over ``ctx.backends``; ratios against the built-in file."""
    rows, targets, errors = [], [], []
    for backend in ctx.backends:
        ctx.say(f"[inference] explicit vs built-in ONNX files on {backend}")
        # tiny: LeNet only (three exports per model; jax2onnx takes ~10 s for each).
        names = ["lenet"] if ctx.tiny else list(MODELS)
        spec = {"models": names, "size": ctx.size, "workdir": ctx.workdir}
        try:
            got = bench.run_child("explicit_onnx:measure", spec, backend=backend,
                                  timeout=ctx.timeout)["rows"]
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        ref = {r["model"]: r for r in got if r["form"] == "builtin"}
        for row in got:
            base = ref[row["model"]]
            row["backend"] = backend
            row["p50_vs_builtin"] = row["p50_ms"] / base["p50_ms"]
            row["batch_vs_builtin"] = row["batch_ms"] / base["batch_ms"]
            rows.append(row)
            if row["form"] != "explicit":
                continue
            for figure, value in (("batch-1 p50", row["p50_vs_builtin"]),
                                  (f"batch-{row['batch']}", row["batch_vs_builtin"])):
                targets.append({"backend": backend,
                                "figure": f"explicit / built-in ONNX {row['model']} {figure}",
                                "value": value, "target": f"<= {TARGET}",
                                "meets_target": value <= TARGET})
    return rows, targets, errors


TABLE = {"rows": "explicit", "title": "explicit ÷ built-in ONNX files in onnxruntime (same "
                                      "weights; explicit-graph = export_onnx(explicit_graph=True))",
         "columns": ["backend", "model", "form", "input", "n_conv", "n_maxpool", "n_slice",
                     "p50_ms", "p50_vs_builtin", "batch", "batch_ms", "batch_vs_builtin"]}
