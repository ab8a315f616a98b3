"""``kcnn-bench --section gpu``: ``model.fit`` and onnxruntime on the GPU, per backend.

For each backend, one child process asks the backend which GPUs it sees and plans the run with
:func:`plan` (a pure function of the GPUs' compute capabilities and onnxruntime's providers, so
the choice is testable without a GPU):

* ``model.fit`` of LeNet (28×28, batch 256) and VGG-11/4 (224×224, batch 64 at ``full``) with
  ``conv="builtin"`` and ``"explicit"``, in float32 and in the mixed policy ``kcnn-train
  --mixed-precision auto`` would pick (bf16 on compute capability ≥ 8.0, else fp16): examples/s
  of the median of ``--repeats`` timed epochs after a warm-up epoch, the device Keras reports,
  explicit ÷ built-in;
* ``OnnxPredictor`` on ``CUDAExecutionProvider`` (when onnxruntime offers it): the exported
  built-in and explicit files (float32), batch-64 images/s, explicit ÷ built-in.

Without a GPU the section reports why it skipped and measures nothing.
"""
from __future__ import annotations

from kcnn.bench import common as bench

CUDA = "CUDAExecutionProvider"
CONVS = ("builtin", "explicit")
MODELS = {  # name -> size -> (build kwargs, batch size, timed steps)
    "lenet": {"full": ({"input_shape": (28, 28, 1)}, 256, 40),
              "tiny": ({"input_shape": (28, 28, 1)}, 64, 4)},
    "vgg11": {"full": ({"input_shape": (224, 224, 1), "width_ratio": 4}, 64, 20),
              "tiny": ({"input_shape": (32, 32, 1), "width_ratio": 16, "hidden_units": 64}, 16,
                       2)},
}


def plan(backend, gpus, providers, size="full"):
    """What the section runs, from what the machine offers.

    Args:
        backend: the Keras backend name.
        gpus: CUDA compute capabilities ``(major, minor)`` the backend sees (``[]``: none).
        providers: ``onnxruntime.get_available_providers()``.
        size: ``"tiny"`` or ``"full"``.

    Returns:
        ``{"skipped": reason or None, "fits": [(model, conv, policy), ...],
        "onnx_provider": "CUDAExecutionProvider" or None, "onnx_skipped": reason or None}``.
    """
    from kcnn.training.precision import choose_policy

    if size not in MODELS["lenet"]:
        raise ValueError(f"size must be 'tiny' or 'full'; received size={size!r}")
    if not gpus:
        return {"skipped": f"no GPU visible to the {backend} backend", "fits": [],
                "onnx_provider": None, "onnx_skipped": "no GPU"}
    mixed = choose_policy("auto", gpus=gpus)
    fits = [(model, conv, policy) for model in MODELS for conv in CONVS
            for policy in ("float32", mixed)]
    cuda = CUDA in providers
    return {"skipped": None, "fits": fits, "onnx_provider": CUDA if cuda else None,
            "onnx_skipped": None if cuda else
            f"onnxruntime offers no {CUDA} (providers: {', '.join(providers)})"}


def _fit_row(name, conv, policy, size, repeats=1):
    """Examples/s of ``model.fit``: the median of ``repeats`` timed epochs after a warm-up epoch
    (compilation), on synthetic data."""
    import keras
    import numpy as np

    from kcnn import models
    from kcnn.training.devices import device_report
    from kcnn.training.precision import float32_output

    kwargs, batch, steps = MODELS[name][size]
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = float32_output(models.build(name, conv=conv, num_classes=10, **kwargs))
        model.compile(optimizer="adam", metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rng = np.random.default_rng(0)
        x = rng.random((batch * steps, *kwargs["input_shape"]), dtype=np.float32)
        y = rng.integers(0, 10, len(x))
        times = bench.time_calls(lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0),
                                 warmup=1, repeats=repeats)
    finally:
        keras.config.set_dtype_policy("float32")
    return {"model": name, "conv": conv, "policy": policy, "batch": batch,
            "device": device_report()["device"], "examples_per_s": len(x) / bench.median(times)}, model


def _onnx_rows(trained, size, workdir, provider):
    """Batch-64 images/s of each float32 model's ONNX file in onnxruntime on ``provider``."""
    import os

    import keras
    import numpy as np

    from kcnn import export

    rows = []
    for (name, conv), model in trained.items():
        path = os.path.join(workdir, f"gpu-{keras.backend.backend()}-{name}-{conv}.onnx")
        export.export_onnx(model, path)
        predictor = export.OnnxPredictor(path, providers=[provider], batch_size=64)
        x = np.random.default_rng(0).random((64, *MODELS[name][size][0]["input_shape"]),
                                            dtype=np.float32)
        times = bench.time_calls(lambda: predictor.run(x), warmup=2, repeats=5)
        rows.append({"model": name, "conv": conv, "provider": predictor.provider,
                     "images_per_s": len(x) / bench.median(times)})
    return rows


def child_measure(spec):
    """Plan from this machine, then run the fits and the onnxruntime rows."""
    import keras
    import onnxruntime as ort

    from kcnn.training.precision import gpu_capabilities

    chosen = plan(keras.backend.backend(), gpu_capabilities(), ort.get_available_providers(),
                  spec["size"])
    fits, trained = [], {}
    for name, conv, policy in chosen["fits"]:
        row, model = _fit_row(name, conv, policy, spec["size"], spec["repeats"])
        fits.append(row)
        if policy == "float32":
            trained[(name, conv)] = model
    onnx_rows = []
    if chosen["onnx_provider"]:
        onnx_rows = _onnx_rows(trained, spec["size"], spec["workdir"], chosen["onnx_provider"])
    return {"plan": {k: v for k, v in chosen.items() if k != "fits"}, "fits": fits,
            "onnx": onnx_rows}


def _ratios(rows, key, group):
    """Add ``explicit_vs_builtin`` (throughput ratio) to each explicit row of ``rows``."""
    base = {tuple(r[k] for k in group): r[key] for r in rows if r["conv"] == "builtin"}
    for row in rows:
        ref = base.get(tuple(row[k] for k in group))
        row["explicit_vs_builtin"] = row[key] / ref if ref else None


def run(ctx) -> dict:
    """One child per backend; nothing is measured on a backend that sees no GPU."""
    fits, onnx_rows, skipped, errors = [], [], [], []
    for backend in ctx.backends:
        ctx.say(f"[gpu] model.fit and onnxruntime on {backend}'s GPU")
        spec = {"size": ctx.size, "workdir": ctx.workdir, "repeats": ctx.repeats}
        try:
            got = bench.run_child("gpu:measure", spec, backend=backend, timeout=ctx.timeout)
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        for reason in (got["plan"]["skipped"], got["plan"]["onnx_skipped"]):
            if reason:
                skipped.append({"backend": backend, "reason": reason})
        _ratios(got["fits"], "examples_per_s", ("model", "policy"))
        _ratios(got["onnx"], "images_per_s", ("model",))
        fits += [{"backend": backend, **row} for row in got["fits"]]
        onnx_rows += [{"backend": backend, **row} for row in got["onnx"]]
    return {
        "fits": fits, "onnx": onnx_rows, "skipped": skipped, "errors": errors,
        "tables": [
            {"rows": "fits", "title": "model.fit on the GPU (explicit ÷ built-in throughput)",
             "columns": ["backend", "device", "model", "conv", "policy", "batch",
                         "examples_per_s", "explicit_vs_builtin"]},
            {"rows": "onnx", "title": "onnxruntime on the GPU, batch 64",
             "columns": ["backend", "model", "conv", "provider", "images_per_s",
                         "explicit_vs_builtin"]},
            {"rows": "skipped", "title": "skipped", "columns": ["backend", "reason"]},
        ],
    }
