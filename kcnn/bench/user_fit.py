"""``kcnn-bench --section user``: the explicit layers in a user's own script, at Keras's defaults.

Exactly what a user of ``kcnn.layers`` writes: ``keras.Sequential`` with the layers,
``model.compile(optimizer, loss, metrics)`` leaving ``jit_compile`` at Keras's default, and
``model.fit`` on NumPy arrays. Each side runs at its own best setting — the defaults — so on
CPU-only TensorFlow the built-in side runs without XLA, as users get it.

* ``lenet`` (time): d2l's LeNet (sigmoid, average pooling), 28x28x1, batch 256, SGD. Four variants
  built side by side in one process and trained one epoch each in turn (order reversed every
  round): ``builtin`` (Conv2D + AveragePooling2D), ``explicit`` (CrossCorrelation2D + AvgPool2D),
  ``pool`` (only the pooling explicit), ``conv`` (only the conv explicit). The first epoch of each
  (tracing, compilation) is left out; the figures are median epochs, the ratios variant / builtin.
  ``train_s`` (the target's ratio) times the training itself, ``on_train_begin`` to ``on_train_end``;
  ``fit_s`` the whole ``fit`` call. On TensorFlow, ``fit`` on NumPy arrays now and then spends
  0.31–0.33 s after the last batch tearing down its ``tf.data`` iterator, on either side at random
  (builtin LeNet: 0.337 s or 0.655–0.659 s epochs in one process): half a LeNet epoch that no
  layer causes, which made the fit ratio swing between 0.86 and 1.83. The four run in
  ``processes`` fresh children; ``ratio`` is the median of their ratios (``ratios``): a process's
  memory layout is luck, and on eager PyTorch it moves memory-bound ops (copies, matmuls) by up to
  2.5× for the whole process (torch profiler, same model: ``copy_`` 47 or 117–122 ms an epoch).
* ``vgg_block`` (memory): one 64→64 3x3 "same" ReLU conv on 112x112x64, global average pooling,
  dense 10, batch 32, ``fit`` of 3 steps, in a fresh child process per variant (``ru_maxrss``).
* ``bf16`` (time): VGG-11 (width ratio 4) at 224x224x1, one training step (batch 16) under
  ``mixed_bfloat16`` vs ``float32``, builtin and explicit, models built side by side in one
  process, steps interleaved.
"""
from __future__ import annotations

from kcnn.bench import common as bench

TARGETS = {"tensorflow": 1.35, "jax": 1.0, "torch": 1.35}  # explicit / builtin, LeNet (issue #20)
POOL_TARGET = 1.15
MEMORY_TARGET = 1.25
BF16_TARGET = 0.5  # bf16 step / float32 step, VGG-11/4 at 224
LENET_VARIANTS = {"builtin": (False, False), "explicit": (True, True), "pool": (False, True),
                  "conv": (True, False)}
SIZES = {  # size -> LeNet examples per epoch and child processes, VGG-block input, VGG-11 input side, batch
    "full": {"examples": 256 * 24, "processes": 3, "block": (112, 112, 64), "vgg_side": 224, "vgg_batch": 16},
    "tiny": {"examples": 256, "processes": 1, "block": (16, 16, 8), "vgg_side": 32, "vgg_batch": 4},
}


def _compile_defaults(model, optimizer):
    import keras

    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _lenet(explicit_conv, explicit_pool):
    import keras

    from kcnn import layers

    conv = layers.CrossCorrelation2D if explicit_conv else keras.layers.Conv2D
    pool = layers.AvgPool2D if explicit_pool else keras.layers.AveragePooling2D
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        conv(6, 5, padding="same", activation="sigmoid"), pool(2, strides=2),
        conv(16, 5, activation="sigmoid"), pool(2, strides=2),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="sigmoid"), keras.layers.Dense(84, activation="sigmoid"),
        keras.layers.Dense(10),
    ])


def _interleaved(fits, rounds, inner=None):
    """Median seconds of each ``fits[name]()`` over ``rounds`` rounds after one warm-up round; with
    ``inner`` (a dict the calls fill with their own timing, name -> seconds), those medians too."""
    import time

    times = {name: [] for name in fits}
    inner_times = {name: [] for name in fits}
    for r in range(rounds + 1):
        for name in (list(fits) if r % 2 == 0 else list(fits)[::-1]):
            start = time.perf_counter()
            fits[name]()
            if r:
                times[name].append(time.perf_counter() - start)
                if inner is not None:
                    inner_times[name].append(inner[name])
    medians = {name: bench.median(t) for name, t in times.items()}
    if inner is None:
        return medians
    return medians, {name: bench.median(t) for name, t in inner_times.items()}


def _training_timer(seconds, name):
    """A callback that stores the seconds from ``on_train_begin`` to ``on_train_end`` in ``seconds[name]``."""
    import time

    import keras

    class TrainingTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_end(self, logs=None):
            seconds[name] = time.perf_counter() - self.started

    return TrainingTimer()


def child_lenet(spec):
    """Median epoch seconds of the four LeNet variants, trained side by side: ``{"fit": …, "train": …}``
    (the whole ``fit`` call; the training inside it)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((spec["examples"], 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, spec["examples"]).astype("int32")
    fits, trained = {}, {}
    for name, kinds in LENET_VARIANTS.items():
        keras.utils.set_random_seed(0)
        model = _compile_defaults(_lenet(*kinds), keras.optimizers.SGD(0.9))
        timer = _training_timer(trained, name)
        fits[name] = (lambda m, t: lambda: m.fit(x, y, batch_size=256, epochs=1, verbose=0, callbacks=[t]))(
            model, timer)
    fit, train = _interleaved(fits, spec["repeats"], inner=trained)
    return {"fit": fit, "train": train}


def child_block_memory(spec):
    """Peak RSS (MiB) of ``fit`` on the VGG block with the built-in or the explicit conv."""
    import keras
    import numpy as np

    from kcnn import layers

    conv = layers.CrossCorrelation2D if spec["explicit"] else keras.layers.Conv2D
    shape = tuple(spec["shape"])
    model = _compile_defaults(keras.Sequential([
        keras.Input(shape), conv(shape[-1], 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]), "sgd")
    rng = np.random.default_rng(0)
    x = rng.random((96,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, 96).astype("int32")
    baseline = bench.peak_rss_mib()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return {"baseline_mib": baseline, "peak_mib": bench.peak_rss_mib()}


def child_bf16(spec):
    """Median training-step seconds of VGG-11/4, float32 vs mixed_bfloat16, builtin and explicit."""
    import keras
    import numpy as np

    from kcnn import models

    side, batch = spec["vgg_side"], spec["vgg_batch"]
    rng = np.random.default_rng(0)
    x = rng.random((batch, side, side, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype("int32")
    steps = {}
    for conv in ("builtin", "explicit"):
        for policy in ("float32", "mixed_bfloat16"):
            keras.config.set_dtype_policy(policy)
            model = models.vgg(conv=conv, input_shape=(side, side, 1), width_ratio=4)
            model.layers[-1].dtype_policy = "float32"  # logits in float32, as kcnn-train does
            _compile_defaults(model, keras.optimizers.SGD(0.05))
            steps[f"{conv}-{policy}"] = (lambda m: lambda: m.train_on_batch(x, y))(model)
    keras.config.set_dtype_policy("float32")
    return _interleaved(steps, spec["repeats"])


def _lenet_rows(ctx, backend, size):
    runs = [bench.run_child("user_fit:lenet", {"examples": size["examples"], "repeats": ctx.repeats},
                            backend=backend, timeout=ctx.timeout) for _ in range(size["processes"])]
    rows = []
    for name in LENET_VARIANTS:
        target = TARGETS[backend] if name == "explicit" else POOL_TARGET if name == "pool" else None
        ratios = [run["train"][name] / run["train"]["builtin"] for run in runs]
        ratio = bench.median(ratios)
        rows.append({"backend": backend, "variant": name, "ratio": ratio, "ratios": ratios,
                     "train_s": bench.median([run["train"][name] for run in runs]),
                     "fit_s": bench.median([run["fit"][name] for run in runs]),
                     "fit_ratio": bench.median([run["fit"][name] / run["fit"]["builtin"] for run in runs]),
                     "target": target, "met": None if target is None else ratio <= target})
    return rows


def _memory_row(ctx, backend, size):
    peaks = {kind: bench.run_child("user_fit:block_memory",
                                   {"explicit": kind == "explicit", "shape": size["block"]},
                                   backend=backend, timeout=ctx.timeout)
             for kind in ("builtin", "explicit")}
    ratio = peaks["explicit"]["peak_mib"] / peaks["builtin"]["peak_mib"]
    return {"backend": backend, "builtin_mib": peaks["builtin"]["peak_mib"],
            "explicit_mib": peaks["explicit"]["peak_mib"], "ratio": ratio,
            "target": MEMORY_TARGET, "met": ratio <= MEMORY_TARGET}


def _bf16_rows(ctx, backend, size):
    steps = bench.run_child("user_fit:bf16", {**size, "repeats": ctx.repeats}, backend=backend,
                            timeout=ctx.timeout)
    rows = []
    for conv in ("builtin", "explicit"):
        f32, bf16 = steps[f"{conv}-float32"], steps[f"{conv}-mixed_bfloat16"]
        rows.append({"backend": backend, "conv": conv, "float32_s": f32, "bf16_s": bf16,
                     "ratio": bf16 / f32, "target": BF16_TARGET, "met": bf16 / f32 <= BF16_TARGET})
    return rows


def run(ctx) -> dict:
    """Measure the three parts per backend; a failing part is reported, the others still run."""
    size = SIZES[ctx.size]
    out = {"lenet": [], "memory": [], "bf16": [], "errors": []}
    for backend in ctx.backends:
        for key, part in (("lenet", _lenet_rows), ("memory", _memory_row), ("bf16", _bf16_rows)):
            ctx.say(f"[user] {key} on {backend}")
            try:
                got = part(ctx, backend, size)
            except bench.BenchError as e:
                out["errors"].append(str(e))
                continue
            out[key] += got if isinstance(got, list) else [got]
    out["tables"] = [
        {"rows": "lenet", "title": "user script at Keras defaults, LeNet b256 epoch (ratio: / builtin)",
         "columns": ["backend", "variant", "train_s", "ratio", "ratios", "fit_s", "fit_ratio", "target", "met"]},
        {"rows": "memory", "title": "peak RSS, VGG block fit at defaults (ratio: explicit / builtin)",
         "columns": ["backend", "builtin_mib", "explicit_mib", "ratio", "target", "met"]},
        {"rows": "bf16", "title": "VGG-11/4 train step, mixed_bfloat16 / float32",
         "columns": ["backend", "conv", "float32_s", "bf16_s", "ratio", "target", "met"]},
    ]
    return out
