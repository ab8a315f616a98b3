"""``kcnn-bench --section conv``: ``CrossCorrelation2D`` vs ``Conv2D``, time and peak memory.

Models:

* ``lenet`` — ``kcnn.models.lenet(conv="builtin" | "explicit")`` (d2l's LeNet: the explicit
  variant swaps the conv *and* pooling layers, as a user switching ``conv=`` gets), 28x28x1.
* ``vgg_block`` — one VGG convolution, 64→64 channels, 3x3, padding 1, ReLU, on 112x112 inputs,
  then global average pooling and a 10-way dense layer for the loss; only the conv differs.

Time: one child process per backend builds both variants with the same weights and times
``train_on_batch`` (one SGD step) and ``predict_on_batch`` (forward only) alternately, median of
the repetitions, ratio explicit / builtin. TensorFlow is timed with and without ``jit_compile``
in the same process, JAX with jit, torch eagerly.

Matmul floor (:mod:`kcnn.bench.conv_floor`): per backend, on the VGG block, the im2col matmuls
alone on pre-gathered patches (the least any slices-plus-matmul layer can cost there) vs the
convolution, and the explicit layer's training pass vs that floor (target
:data:`FLOOR_TARGET`); each forward plus both gradients.

Memory: one fresh child per (backend, jit, model, variant) records ``ru_maxrss`` after building
the model and its input (baseline), after forward passes and after training steps. The ratio is
taken on the peak RSS (what the design notes report) and on the growth above the baseline.

Arrangements (:mod:`kcnn.bench.arrangements`): each arrangement ``kcnn.layers.dispatch`` keeps
against the simpler alternative, on the backend where it runs: the figure that earns its place.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from kcnn.bench import arrangements
from kcnn.bench import common as bench

TIME_TARGET = {"tensorflow-jit": 1.10, "jax-jit": 1.10, "torch-eager": 1.5}
MEMORY_TARGET = 1.25
FLOOR_TARGET = 1.10  # the explicit layer's training pass ÷ its matmuls alone
MODELS = ("lenet", "vgg_block")
SHAPES = {  # model -> size -> (batch, (H, W, C))
    "lenet": {"full": (256, (28, 28, 1)), "tiny": (16, (28, 28, 1))},
    "vgg_block": {"full": (32, (112, 112, 64)), "tiny": (4, (16, 16, 8))},
}


def configs(backend, tiny=False):
    """(label, jit_compile) pairs measured for ``backend`` (tiny: the first only)."""
    if backend == "tensorflow":
        return [("tensorflow-jit", True)] + ([] if tiny else [("tensorflow-nojit", False)])
    if backend == "jax":
        return [("jax-jit", True)]
    return [("torch-eager", False)]


# ----------------------------------------------------------------------------------- children
def _build(model_name, variant, size):
    import keras

    from kcnn import layers, models

    batch, shape = SHAPES[model_name][size]
    if model_name == "lenet":
        model = models.lenet(conv=variant, input_shape=shape)
    else:
        conv = layers.CrossCorrelation2D if variant == "explicit" else keras.layers.Conv2D
        inputs = keras.Input(shape)
        x = conv(shape[-1], 3, padding="same", activation="relu", name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="vgg_block")
    return model, batch, shape


def _data(batch, shape, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    return x, y


def _compile(model, jit):
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit)
    return model


def _calls_per_group(fn, budget=0.4):
    """How many calls of ``fn`` fill about ``budget`` seconds (at least 1)."""
    t = bench.time_calls(fn, warmup=0, repeats=1)[0]
    return max(1, min(50, int(budget / max(t, 1e-6))))


def child_time(spec):
    """Step and forward times of both variants of each model, alternating, in this process."""
    import keras

    rows = []
    for label, jit in spec["configs"]:
        for model_name in spec["models"]:
            keras.utils.set_random_seed(0)
            builtin, batch, shape = _build(model_name, "builtin", spec["size"])
            explicit, _, _ = _build(model_name, "explicit", spec["size"])
            explicit.set_weights(builtin.get_weights())
            x, y = _data(batch, shape)
            variants = {"builtin": _compile(builtin, jit), "explicit": _compile(explicit, jit)}
            for mode in ("train", "forward"):
                fns = {
                    name: (lambda m=m: m.train_on_batch(x, y)) if mode == "train"
                    else (lambda m=m: m.predict_on_batch(x))
                    for name, m in variants.items()
                }
                for fn in fns.values():  # warm-up: tracing / XLA compilation
                    fn()
                    fn()
                number = _calls_per_group(fns["builtin"], 0.05 if spec["size"] == "tiny" else 0.4)
                times = {name: [] for name in fns}
                for _ in range(spec["repeats"]):
                    for name, fn in fns.items():
                        times[name] += bench.time_calls(fn, warmup=0, repeats=1, number=number)
                b, e = bench.median(times["builtin"]), bench.median(times["explicit"])
                rows.append({
                    "config": label, "model": model_name, "mode": mode, "batch": batch,
                    "input": "x".join(map(str, shape)), "builtin_ms": b * 1e3,
                    "explicit_ms": e * 1e3, "ratio": e / b, "calls_per_repeat": number,
                    "repeats": spec["repeats"],
                })
    return {"rows": rows}


def child_memory(spec):
    """Peak RSS (MiB) of one variant: after build, after forward passes, after train steps."""
    model, batch, shape = _build(spec["model"], spec["variant"], spec["size"])
    x, y = _data(batch, shape)
    _compile(model, spec["jit"])
    baseline = bench.peak_rss_mib()
    for _ in range(2):
        model.predict_on_batch(x)
    forward = bench.peak_rss_mib()
    for _ in range(3):
        model.train_on_batch(x, y)
    return {"baseline_mib": baseline, "forward_mib": forward, "train_mib": bench.peak_rss_mib()}


# ----------------------------------------------------------------------------------- section
def _memory_rows(ctx):
    jobs = []
    for backend in ctx.backends:
        for label, jit in configs(backend, ctx.tiny):
            for model_name in (("vgg_block",) if ctx.tiny else MODELS):
                for variant in ("builtin", "explicit"):
                    jobs.append((backend, label, jit, model_name, variant))

    def measure(job):
        backend, label, jit, model_name, variant = job
        spec = {"model": model_name, "variant": variant, "jit": jit, "size": ctx.size}
        return bench.run_child("conv:memory", spec, backend=backend, timeout=ctx.timeout)

    # Peak RSS is per process, so at tiny size two children may run side by side; at full size
    # they run one at a time so that they do not compete for memory with each other.
    with ThreadPoolExecutor(2 if ctx.tiny else 1) as pool:
        futures = [(job, pool.submit(measure, job)) for job in jobs]
        measured, errors = {}, []
        for job, future in futures:
            try:
                measured[job] = future.result()
            except bench.BenchError as e:
                errors.append(str(e))
    rows = []
    for job in jobs[::2]:
        backend, label, jit, model_name, _ = job
        b = measured.get((backend, label, jit, model_name, "builtin"))
        e = measured.get((backend, label, jit, model_name, "explicit"))
        if not (b and e):
            continue
        for mode, key in (("train", "train_mib"), ("forward", "forward_mib")):
            b_delta, e_delta = b[key] - b["baseline_mib"], e[key] - e["baseline_mib"]
            rows.append({
                "config": label, "model": model_name, "mode": mode,
                "builtin_peak_mib": b[key], "explicit_peak_mib": e[key],
                "ratio": e[key] / b[key],
                "builtin_growth_mib": b_delta, "explicit_growth_mib": e_delta,
                "growth_ratio": e_delta / b_delta if b_delta > 1 else None,
                "target": MEMORY_TARGET, "meets_target": e[key] / b[key] <= MEMORY_TARGET,
            })
    return rows, errors


def run(ctx) -> dict:
    """Time rows per backend (one child each) and memory rows (one child per variant)."""
    time_rows, errors = [], []
    for backend in ctx.backends:
        spec = {"configs": configs(backend, ctx.tiny), "models": list(MODELS), "size": ctx.size,
                "repeats": ctx.repeats}
        ctx.say(f"[conv] timing on {backend}")
        try:
            rows = bench.run_child("conv:time", spec, backend=backend, timeout=ctx.timeout)["rows"]
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        for row in rows:
            target = TIME_TARGET.get(row["config"]) if row["mode"] == "train" else None
            row["target"] = target
            row["meets_target"] = None if target is None else row["ratio"] <= target
        time_rows += rows
    floor_rows = []
    for backend in ctx.backends:
        label, jit = configs(backend, ctx.tiny)[0]
        ctx.say(f"[conv] matmul floor on {backend}")
        spec = {"jit": jit, "size": ctx.size, "repeats": ctx.repeats}
        try:
            row = bench.run_child("conv_floor:floor", spec, backend=backend, timeout=ctx.timeout)
        except bench.BenchError as e:
            errors.append(str(e))
            continue
        target = TIME_TARGET[label]
        floor_rows.append({"config": label, **row, "target": target, "floor_within_target": row["ratio"] <= target,
                           "floor_target": FLOOR_TARGET,
                           "explicit_meets_floor_target": row["explicit_vs_floor"] <= FLOOR_TARGET})
    ctx.say("[conv] peak memory, one process per variant")
    memory_rows, memory_errors = _memory_rows(ctx)
    arrangement_rows, arrangement_errors = arrangements.rows(ctx)
    return {
        "time": time_rows,
        "floor": floor_rows,
        "memory": memory_rows,
        "arrangements": arrangement_rows,
        "errors": errors + memory_errors + arrangement_errors,
        "tables": [
            {"rows": "time", "title": "time per call, explicit CrossCorrelation2D / Conv2D",
             "columns": ["config", "model", "mode", "batch", "builtin_ms", "explicit_ms",
                         "ratio", "target", "meets_target"]},
            {"rows": "floor", "title": "matmul floor (forward + both gradients): im2col matmuls alone on "
                                       "pre-gathered patches / the convolution; the explicit layer / the matmuls",
             "columns": ["config", "model", "batch", "conv_ms", "matmul_ms", "ratio", "target",
                         "floor_within_target", "explicit_ms", "explicit_vs_floor", "floor_target",
                         "explicit_meets_floor_target"]},
            {"rows": "memory", "title": "peak RSS (MiB), one fresh process per variant",
             "columns": ["config", "model", "mode", "builtin_peak_mib", "explicit_peak_mib",
                         "ratio", "builtin_growth_mib", "explicit_growth_mib", "growth_ratio",
                         "target", "meets_target"]},
            arrangements.TABLE,
        ],
    }
