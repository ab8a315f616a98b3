"""The figure behind each arrangement ``kcnn.layers.dispatch`` keeps, for ``kcnn-bench --section conv``.

Each kept arrangement must beat the simpler alternative by at least 10 % in time or peak memory on
the backend where it runs (:data:`CLAIMS`): the same model trained with ``CrossCorrelation2D(...,
algorithm=kept)`` against ``algorithm="reference"`` (the formula with autodiff); for ``xla``, the
band loop in a TensorFlow graph with ``dispatch.TF_GRAPH_XLA`` off (plain graph ops); for
``bands``, ``kernel_rows`` (the other large-layer form); for ``toeplitz``, ``im2col`` (the PyTorch
module on torch); for ``torch``, the same model with ``dispatch.TORCH_MODULE`` off (the keras.ops
arrangements on eager PyTorch: the band loop when training a VGG block). Models, at Keras's defaults (``compile`` without
``jit_compile``): ``lenet`` — d2l's LeNet, explicit conv and pooling, batch 256; ``large`` — one 3×3
64→64 layer on 56×56 inputs, batch 16; ``vgg_block`` — the same on 112×112, batch 32 (``tiny``:
smaller).

Time: one child per claim builds both variants with the same weights and times ``train_on_batch``
alternately, median of the repetitions. Peak memory: one fresh child per variant records
``ru_maxrss`` after three training steps. ``ratio`` is kept / reference; ``pays``: ratio ≤ 0.9.
At the tiny size the children run side by side; at full size one at a time.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

from kcnn.bench import common as bench

PAYS = 0.9
# (arrangement, backend, model, metric, kept variant, reference variant); a variant is
# "algorithm", "algorithm/no-xla" or "algorithm/no-torch-module" (see _settings).
CLAIMS = (
    ("im2col", "jax", "lenet", "time_ms", "im2col", "reference"),
    ("kernel_rows", "jax", "large", "time_ms", "kernel_rows", "reference"),
    ("torch", "torch", "vgg_block", "time_ms", "auto", "auto/no-torch-module"),
    ("toeplitz", "tensorflow", "lenet", "time_ms", "toeplitz", "im2col"),
    ("toeplitz", "jax", "lenet", "time_ms", "toeplitz", "im2col"),
    ("toeplitz", "torch", "lenet", "time_ms", "toeplitz", "im2col"),
    ("xla", "tensorflow", "vgg_block", "peak_rss_mib", "bands", "bands/no-xla"),
    ("bands", "tensorflow", "vgg_block", "peak_rss_mib", "bands", "kernel_rows"),
    ("bands", "jax", "vgg_block", "peak_rss_mib", "bands", "kernel_rows"),
)
SHAPES = {  # model -> size -> (batch, (H, W, C))
    "lenet": {"full": (256, (28, 28, 1)), "tiny": (16, (28, 28, 1))},
    "large": {"full": (16, (56, 56, 64)), "tiny": (4, (16, 16, 8))},
    "vgg_block": {"full": (32, (112, 112, 64)), "tiny": (4, (16, 16, 8))},
}


# ----------------------------------------------------------------------------------- children
def _model(model_name, variant, size):
    """(compiled model, x, y) with every CrossCorrelation2D running ``variant``'s algorithm."""
    import keras
    import numpy as np

    from kcnn import models
    from kcnn.layers import CrossCorrelation2D
    from kcnn.export.introspection import iter_layers

    keras.utils.set_random_seed(0)
    batch, shape = SHAPES[model_name][size]
    if model_name == "lenet":
        model = models.lenet(conv="explicit", input_shape=shape)
    else:
        model = keras.Sequential([keras.Input(shape), CrossCorrelation2D(shape[-1], 3, padding="same"),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    for layer in iter_layers(model):
        if isinstance(layer, CrossCorrelation2D):
            layer.algorithm = variant.split("/")[0]
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    return model, x, rng.integers(0, 10, batch).astype(np.int32)


@contextlib.contextmanager
def _settings(variant):
    """``variant``'s dispatch settings: ``/no-xla`` turns ``TF_GRAPH_XLA`` off (read while a TensorFlow
    graph is traced), ``/no-torch-module`` turns ``TORCH_MODULE`` off (read at every eager PyTorch call)."""
    from kcnn.layers import dispatch

    dispatch.TF_GRAPH_XLA = not variant.endswith("/no-xla")
    dispatch.TORCH_MODULE = not variant.endswith("/no-torch-module")
    try:
        yield
    finally:
        dispatch.TF_GRAPH_XLA = dispatch.TORCH_MODULE = True


def _step(model, x, y, variant):
    """One ``train_on_batch`` under ``variant``'s settings."""
    with _settings(variant):
        model.train_on_batch(x, y)


def child_time(spec):
    """Median ``train_on_batch`` time (ms) of the ``kept`` and ``reference`` variants of ``model``."""
    names = (spec["kept"], spec["reference"])
    variants = {name: _model(spec["model"], name, spec["size"]) for name in names}
    variants[names[0]][0].set_weights(variants[names[1]][0].get_weights())
    steps = {name: (lambda m=m, x=x, y=y, name=name: _step(m, x, y, name)) for name, (m, x, y) in variants.items()}
    for step in steps.values():  # tracing, compilation
        step()
        step()
    first = bench.time_calls(steps[names[1]], warmup=0, repeats=1)[0]
    number = max(1, min(20, int((0.05 if spec["size"] == "tiny" else 0.5) / max(first, 1e-6))))
    times = {name: [] for name in names}
    for _ in range(spec["repeats"]):
        for name, step in steps.items():
            times[name] += bench.time_calls(step, warmup=0, repeats=1, number=number)
    return {"kept": bench.median(times[names[0]]) * 1e3, "reference": bench.median(times[names[1]]) * 1e3}


def child_memory(spec):
    """Peak RSS (MiB) of this process after three training steps of one variant."""
    model, x, y = _model(spec["model"], spec["variant"], spec["size"])
    for _ in range(3):
        _step(model, x, y, spec["variant"])
    return {"peak_rss_mib": bench.peak_rss_mib()}


# ----------------------------------------------------------------------------------- section
def _row(claim, size, kept_value, reference_value):
    arrangement, backend, model_name, metric, kept, reference = claim
    ratio = kept_value / reference_value
    return {"arrangement": arrangement, "backend": backend, "model": model_name,
            "batch": SHAPES[model_name][size][0], "metric": metric, "kept_variant": kept,
            "reference_variant": reference, "kept": kept_value, "reference": reference_value,
            "ratio": ratio, "pays": ratio <= PAYS}


def rows(ctx):
    """(rows, errors): one row per claim whose backend is in ``ctx.backends``, in :data:`CLAIMS` order."""
    claims = [c for c in CLAIMS if c[1] in ctx.backends]
    # One job per timed claim, one per (backend, model, variant) whose peak memory is claimed.
    jobs = [("time", c) for c in claims if c[3] == "time_ms"]
    jobs += sorted({("memory", (c[1], c[2], v)) for c in claims if c[3] == "peak_rss_mib" for v in c[4:]})

    def measure(job):
        kind, what = job
        if kind == "time":
            _, backend, model_name, _, kept, reference = what
            spec = {"model": model_name, "kept": kept, "reference": reference, "size": ctx.size,
                    "repeats": ctx.repeats}
            return bench.run_child("arrangements:time", spec, backend=backend, timeout=ctx.timeout)
        backend, model_name, variant = what
        spec = {"model": model_name, "variant": variant, "size": ctx.size}
        return bench.run_child("arrangements:memory", spec, backend=backend, timeout=ctx.timeout)["peak_rss_mib"]

    ctx.say(f"[conv] arrangements: {len(jobs)} children")
    # Peak RSS is per process: at tiny size the children may run side by side; at full size one
    # at a time, so that they compete neither for memory nor for the cores.
    with ThreadPoolExecutor(max(1, len(jobs)) if ctx.tiny else 1) as pool:
        futures = {job: pool.submit(measure, job) for job in jobs}
    results, errors = {}, []
    for job, future in futures.items():
        try:
            results[job] = future.result()
        except bench.BenchError as e:
            errors.append(str(e))
    out = []
    for claim in claims:
        if claim[3] == "time_ms" and ("time", claim) in results:
            measured = results[("time", claim)]
            out.append(_row(claim, ctx.size, measured["kept"], measured["reference"]))
        elif claim[3] == "peak_rss_mib":
            kept, reference = (results.get(("memory", (claim[1], claim[2], v))) for v in claim[4:])
            if kept is not None and reference is not None:
                out.append(_row(claim, ctx.size, kept, reference))
    return out, errors


TABLE = {"rows": "arrangements",
         "title": "each kept arrangement / the simpler alternative (train_on_batch at Keras's defaults; "
                  "pays: ratio <= 0.9)",
         "columns": ["arrangement", "backend", "model", "batch", "metric", "kept_variant", "reference_variant",
                     "kept", "reference", "ratio", "pays"]}
