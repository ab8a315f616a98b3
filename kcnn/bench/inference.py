"""``kcnn-bench --section inference``: onnxruntime vs ``model.predict`` vs ``model(x)``.

For LeNet (28x28), AlexNet (224x224) and VGG-11 at width ratio 4 (224x224), one process per
backend builds the model (built-in conv, untrained weights: speed does not depend on them),
exports it with ``kcnn.export.export_onnx`` and measures in the same process:

* batch-1 latency, p50 and p99 over many single-image calls;
* batch-256 throughput in images/second (median of the repetitions);

for ``OnnxPredictor.run`` (onnxruntime, CPU provider here), ``model.predict(x, verbose=0)``
and the direct call ``model(x, training=False)`` (converted to NumPy so the time includes the
result). Ratios are relative to onnxruntime.

A second table compares the ONNX variants a user can export (``kcnn-export --quantize``) in
onnxruntime on the CPU, for LeNet and VGG-11/4 (224x224x1): float32, static int8 (QDQ,
calibrated on digits images), dynamic int8 and fp16 — batch-1 p50/p99, batch-256 throughput,
file size, and top-1 agreement with float32 on digits images disjoint from the calibration
ones; the variants' repeats are interleaved so machine noise hits each alike.

A third table (:mod:`kcnn.bench.explicit_onnx`) compares, per backend's exporter, the ONNX file of
an explicit model with the built-in one of the same weights (LeNet, VGG-11/4).
"""
from __future__ import annotations

import os
import time

from kcnn.bench import common as bench
from kcnn.bench import explicit_onnx

METHODS = ("onnxruntime", "predict", "call")
LATENCY_TARGET_MS = 0.1       # ORT LeNet batch-1 p50
SPEEDUP_TARGET = 100.0        # ORT LeNet batch-1 vs model.predict
MODELS = {  # name -> size -> (build kwargs, batch-1 calls, big-batch size, big-batch repeats)
    "lenet": {
        "full": ({"input_shape": (28, 28, 1)}, 300, 256, 7),
        "tiny": ({"input_shape": (28, 28, 1)}, 10, 64, 2),
    },
    "alexnet": {
        "full": ({"input_shape": (224, 224, 1)}, 40, 256, 3),
        "tiny": ({"input_shape": (67, 67, 1), "hidden_units": 64}, 5, 16, 2),
    },
    "vgg11": {
        "full": ({"input_shape": (224, 224, 1), "width_ratio": 4}, 40, 256, 3),
        "tiny": ({"input_shape": (32, 32, 1), "width_ratio": 16, "hidden_units": 64}, 5, 16, 2),
    },
}


def _latencies(fn, x, calls, warmup=2):
    for _ in range(warmup):
        fn(x)
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - start)
    return out


def child_measure(spec):
    """Latency and throughput of the three inference paths for each model, one process."""
    import keras
    import numpy as np

    from kcnn import export, models

    rows = []
    for name in spec["models"]:
        kwargs, calls, big, repeats = MODELS[name][spec["size"]]
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        keras.utils.set_random_seed(0)
        model = models.build(name, conv="builtin", **kwargs)
        path = os.path.join(spec["workdir"], f"{name}-{keras.backend.backend()}.onnx")
        export.export_onnx(model, path)
        predictor = export.OnnxPredictor(path, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        x_big = rng.random((big, *kwargs["input_shape"]), dtype=np.float32)
        x_one = x_big[:1]
        fns = {
            "onnxruntime": predictor.run,
            "predict": lambda x: model.predict(x, batch_size=len(x), verbose=0),
            "call": lambda x: keras.ops.convert_to_numpy(model(x, training=False)),
        }
        for method in METHODS:
            fn = fns[method]
            lat = _latencies(fn, x_one, calls)
            per_batch = bench.time_calls(lambda: fn(x_big), warmup=1, repeats=repeats)
            rows.append({
                "model": name, "method": method,
                "input": "x".join(map(str, kwargs["input_shape"])),
                "p50_ms": bench.percentile(lat, 50) * 1e3,
                "p99_ms": bench.percentile(lat, 99) * 1e3,
                "batch1_calls": calls,
                "batch": big,
                "images_per_s": big / bench.median(per_batch),
            })
    return {"rows": rows, "provider": "CPUExecutionProvider"}


#: ONNX variants compared by :func:`child_quantized`, float32 first (the reference).
VARIANTS = ("fp32", "int8", "int8-dynamic", "fp16")
INT8_LATENCY_TARGET = 0.5     # static int8 VGG-11/4 batch-1 time / fp32
INT8_ACCURACY_TARGET = 0.005  # largest top-1 loss (fraction) on calibration-disjoint images
QUANT_MODELS = {  # name -> size -> (build kwargs, batch-1 calls per round, big batch, rounds)
    "lenet": {"full": ({"input_shape": (28, 28, 1)}, 200, 256, 5),
              "tiny": ({"input_shape": (28, 28, 1)}, 20, 64, 2)},
    "vgg11": {"full": ({"input_shape": (224, 224, 1), "width_ratio": 4}, 8, 256, 3),
              "tiny": ({"input_shape": (32, 32, 1), "width_ratio": 16, "hidden_units": 64},
                       5, 16, 2)},
}


def _variants(name, spec, kwargs):
    """Export ``name`` and write its compressed copies -> ({variant: path}, {variant: report})."""
    import keras

    from kcnn import export, models
    from kcnn.export import quantize as quant
    from kcnn.export.samples import load_samples

    keras.utils.set_random_seed(0)
    model = models.build(name, conv="builtin", **kwargs)
    paths = {"fp32": os.path.join(spec["workdir"], f"{name}-fp32.onnx")}
    export.export_onnx(model, paths["fp32"])
    images, _ = load_samples("digits", limit=spec["calibration"] + spec["evaluation"], seed=2)
    x = export.OnnxPredictor(paths["fp32"], ["CPUExecutionProvider"]).preprocess(images)
    calibration, held = x[:spec["calibration"]], x[spec["calibration"]:]  # disjoint
    reports = {}
    for variant in VARIANTS[1:]:
        paths[variant] = os.path.join(spec["workdir"], f"{name}-{variant}.onnx")
        reports[variant] = quant.quantize_onnx(paths["fp32"], paths[variant], variant,
                                               samples=held, calibration=calibration)
    return paths, reports


def child_quantized(spec):
    """fp32 vs static int8 vs dynamic int8 vs fp16 in onnxruntime (CPU), repeats interleaved."""
    import numpy as np

    from kcnn import export

    rows = []
    for name in spec["models"]:
        kwargs, calls, big, rounds = QUANT_MODELS[name][spec["size"]]
        paths, reports = _variants(name, spec, kwargs)
        predictors = {v: export.OnnxPredictor(p, ["CPUExecutionProvider"], batch_size=big)
                      for v, p in paths.items()}
        x_big = np.random.default_rng(0).random((big, *kwargs["input_shape"]), dtype=np.float32)
        lat = {v: [] for v in paths}
        per_batch = {v: [] for v in paths}
        for v in paths:  # warm up every session before any timing
            predictors[v].run(x_big[:1])
            predictors[v].run(x_big)
        for _ in range(rounds):  # interleaved: noise from other processes hits every variant
            for v in paths:
                lat[v] += _latencies(predictors[v].run, x_big[:1], calls, warmup=1)
                per_batch[v] += bench.time_calls(lambda: predictors[v].run(x_big), warmup=0,
                                                 repeats=1)
        for v in paths:
            report = reports.get(v, {})
            rows.append({
                "model": name, "variant": v, "input": "x".join(map(str, kwargs["input_shape"])),
                "bytes": os.path.getsize(paths[v]),
                "p50_ms": bench.percentile(lat[v], 50) * 1e3,
                "p99_ms": bench.percentile(lat[v], 99) * 1e3,
                "batch": big, "images_per_s": big / bench.median(per_batch[v]),
                "top1_agreement": report.get("top1_agreement", 1.0),
                "max_abs_diff": report.get("max_abs_diff", 0.0),
                "eval_n": report.get("n", 0),
            })
    return {"rows": rows}


def _quantized_section(ctx, backend):
    """Rows and targets of the fp32 / int8 / fp16 comparison (ONNX only: one backend suffices)."""
    spec = {"models": list(QUANT_MODELS), "size": ctx.size, "workdir": ctx.workdir,
            "calibration": 64 if ctx.size == "full" else 16,
            "evaluation": 256 if ctx.size == "full" else 32}
    ctx.say(f"[inference] fp32 / int8 / fp16 ONNX variants (exported on {backend})")
    rows = bench.run_child("inference:quantized", spec, backend=backend,
                           timeout=ctx.timeout)["rows"]
    ref = {r["model"]: r for r in rows if r["variant"] == "fp32"}
    targets = []
    for row in rows:
        row["latency_vs_fp32"] = row["p50_ms"] / ref[row["model"]]["p50_ms"]
        row["throughput_vs_fp32"] = row["images_per_s"] / ref[row["model"]]["images_per_s"]
        row["size_vs_fp32"] = row["bytes"] / ref[row["model"]]["bytes"]
        if row["model"] == "vgg11" and row["variant"] == "int8":
            targets.append({"backend": "onnxruntime CPU", "figure": "int8 / fp32 VGG-11/4 batch-1",
                            "value": row["latency_vs_fp32"], "target": f"<= {INT8_LATENCY_TARGET}",
                            "meets_target": row["latency_vs_fp32"] <= INT8_LATENCY_TARGET})
            loss = 1.0 - row["top1_agreement"]
            targets.append({"backend": "onnxruntime CPU",
                            "figure": "int8 VGG-11/4 top-1 disagreement with fp32 (untrained "
                                      "weights, calibration-disjoint digits)",
                            "value": loss, "target": f"<= {INT8_ACCURACY_TARGET}",
                            "meets_target": loss <= INT8_ACCURACY_TARGET})
    return rows, targets


def run(ctx) -> dict:
    """One child per backend; ratios against onnxruntime of the same child."""
    rows, errors = [], []
    for backend in ctx.backends:
        ctx.say(f"[inference] export + measure on {backend}")
        spec = {"models": list(MODELS), "size": ctx.size, "workdir": ctx.workdir}
        try:
            got = bench.run_child("inference:measure", spec, backend=backend, timeout=ctx.timeout)
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        ort = {r["model"]: r for r in got["rows"] if r["method"] == "onnxruntime"}
        for row in got["rows"]:
            ref = ort[row["model"]]
            row["backend"] = backend
            # > 1: onnxruntime is that many times faster (latency) / this path that much slower.
            row["ort_latency_speedup"] = row["p50_ms"] / ref["p50_ms"]
            row["throughput_vs_ort"] = row["images_per_s"] / ref["images_per_s"]
            rows.append(row)
    explicit_rows, targets, explicit_errors = explicit_onnx.run(ctx)
    errors += explicit_errors
    quant_rows = []
    try:
        quant_rows, quant_targets = _quantized_section(ctx, ctx.backends[0])
        targets += quant_targets
    except bench.BenchError as e:
        errors.append(str(e))
    for row in rows:
        if row["model"] == "lenet" and row["method"] == "onnxruntime":
            targets.append({"backend": row["backend"], "figure": "ORT LeNet batch-1 p50 (ms)",
                            "value": row["p50_ms"], "target": f"<= {LATENCY_TARGET_MS}",
                            "meets_target": row["p50_ms"] <= LATENCY_TARGET_MS})
        if row["model"] == "lenet" and row["method"] == "predict":
            targets.append({"backend": row["backend"],
                            "figure": "model.predict / ORT LeNet batch-1 p50",
                            "value": row["ort_latency_speedup"], "target": f">= {SPEEDUP_TARGET:g}",
                            "meets_target": row["ort_latency_speedup"] >= SPEEDUP_TARGET})
    return {
        "rows": rows,
        "quantized": quant_rows,
        "explicit": explicit_rows,
        "targets": targets,
        "errors": errors,
        "tables": [
            {"rows": "rows", "title": "batch-1 latency and big-batch throughput "
                                      "(ratios against onnxruntime)",
             "columns": ["backend", "model", "method", "input", "p50_ms", "p99_ms",
                         "ort_latency_speedup", "batch", "images_per_s", "throughput_vs_ort"]},
            {"rows": "quantized", "title": "onnxruntime CPU: fp32 vs static int8 (QDQ) vs "
                                           "dynamic int8 vs fp16 (ratios against fp32)",
             "columns": ["model", "variant", "input", "bytes", "size_vs_fp32", "p50_ms",
                         "p99_ms", "latency_vs_fp32", "batch", "images_per_s",
                         "throughput_vs_fp32", "top1_agreement", "max_abs_diff", "eval_n"]},
            explicit_onnx.TABLE,
            {"rows": "targets", "columns": ["backend", "figure", "value", "target",
                                            "meets_target"]},
        ],
    }
