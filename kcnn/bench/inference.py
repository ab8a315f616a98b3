"""``kcnn-bench --section inference``: onnxruntime vs ``model.predict`` vs ``model(x)``.

For LeNet (28x28), AlexNet (224x224) and VGG-11 at width ratio 4 (224x224), one process per
backend builds the model (built-in conv, untrained weights: speed does not depend on them),
exports it with ``kcnn.export.export_onnx`` and measures in the same process:

* batch-1 latency, p50 and p99 over many single-image calls;
* batch-256 throughput in images/second (median of the repetitions);

for ``OnnxPredictor.run`` (onnxruntime, CPU provider here), ``model.predict(x, verbose=0)``
and the direct call ``model(x, training=False)`` (converted to NumPy so the time includes the
result). Ratios are relative to onnxruntime.
"""
from __future__ import annotations

import os
import time

from kcnn.bench import common as bench

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
    targets = []
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
        "targets": targets,
        "errors": errors,
        "tables": [
            {"rows": "rows", "title": "batch-1 latency and big-batch throughput "
                                      "(ratios against onnxruntime)",
             "columns": ["backend", "model", "method", "input", "p50_ms", "p99_ms",
                         "ort_latency_speedup", "batch", "images_per_s", "throughput_vs_ort"]},
            {"rows": "targets", "columns": ["backend", "figure", "value", "target",
                                            "meets_target"]},
        ],
    }
