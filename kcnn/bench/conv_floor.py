"""The matmul floor of an explicit convolution, for ``kcnn-bench --section conv``.

Any cross-correlation built from slices and matmuls does at least the matmuls of im2col: the
forward ``patches · K``, the kernel gradient ``patchesᵀ · dY`` and the patches' gradient
``dY · Kᵀ``, here timed on patches that are *already gathered* (no gather or scatter at all). On
the same VGG-block shape, and compiled the same way, the child also times the backend's own
convolution and the explicit layer (``kcnn.layers.correlation.correlate`` in its training
arrangement), each forward plus both gradients. ``ratio`` (matmuls ÷ convolution) above a time
target means no such formulation can meet it with that backend's matmul on this machine;
``explicit_vs_floor`` (explicit ÷ matmuls) is what the explicit layer pays for gathering the
windows and scattering their gradients.

Runs in a benchmark child (``conv:floor``): the backend is imported only inside ``child_floor``.
"""
from __future__ import annotations

from kcnn.bench import common as bench

MODEL = "vgg_block"
KERNEL = 3


def _compiled(fn, jit):
    """``fn`` compiled the way the measured configuration runs a training step."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=jit)
    if backend == "jax":
        import jax

        compiled = jax.jit(fn)
        return lambda *args: jax.block_until_ready(compiled(*args))
    return fn


def _forward_and_gradients(layer):
    """f(x, k, dy) → (layer(x, k), ∂⟨y, dy⟩/∂x, ∂⟨y, dy⟩/∂k) with the backend's autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def fn(x, k, dy):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = layer(x, k)
            return (y, *tape.gradient(y, [x, k], output_gradients=dy))
    elif backend == "jax":
        import jax

        def fn(x, k, dy):
            y, vjp = jax.vjp(layer, x, k)
            return (y, *vjp(dy))
    else:
        import torch

        def fn(x, k, dy):
            x, k = x.detach().requires_grad_(), k.detach().requires_grad_()
            y = layer(x, k)
            return (y, *torch.autograd.grad(y, (x, k), dy))
    return fn


def _conv(x, k):
    from keras import ops

    return ops.conv(x, k, padding="same")


def _explicit(x, k):
    """The explicit layer's training pass at padding "same" (what ``CrossCorrelation2D.call`` runs)."""
    from keras import ops

    from kcnn.layers import correlation

    pad = KERNEL // 2
    xp = ops.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return correlation.correlate(xp, k, (1, 1), (1, 1), training=True)


def child_floor(spec):
    """Matmuls alone vs the convolution vs the explicit layer (forward + both gradients)."""
    import numpy as np
    from keras import ops

    from kcnn.bench.conv import SHAPES

    batch, (h, w, channels) = SHAPES[MODEL][spec["size"]]
    filters, depth, rows = channels, KERNEL * KERNEL * channels, batch * h * w
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return ops.convert_to_tensor(rng.standard_normal(shape, dtype=np.float32))

    x, k, dy = tensor(batch, h, w, channels), tensor(KERNEL, KERNEL, channels, filters), tensor(batch, h, w, filters)
    patches, weights, dy2d = tensor(rows, depth), ops.reshape(k, (depth, filters)), ops.reshape(dy, (rows, filters))
    conv = _compiled(_forward_and_gradients(_conv), spec["jit"])
    explicit = _compiled(_forward_and_gradients(_explicit), spec["jit"])
    matmuls = _compiled(lambda p, w_, d: (ops.matmul(p, w_), ops.matmul(ops.transpose(p), d),
                                          ops.matmul(d, ops.transpose(w_))), spec["jit"])
    calls = {"conv": lambda: conv(x, k, dy), "explicit": lambda: explicit(x, k, dy),
             "matmul": lambda: matmuls(patches, weights, dy2d)}
    times = {name: [] for name in calls}
    for fn in calls.values():
        fn()  # compile
    for _ in range(spec["repeats"]):
        for name, fn in calls.items():
            times[name] += bench.time_calls(fn, warmup=0, repeats=1)
    ms = {name: bench.median(t) * 1e3 for name, t in times.items()}
    return {"model": MODEL, "batch": batch, "input": f"{h}x{w}x{channels}", "conv_ms": ms["conv"],
            "matmul_ms": ms["matmul"], "explicit_ms": ms["explicit"], "ratio": ms["matmul"] / ms["conv"],
            "explicit_vs_floor": ms["explicit"] / ms["matmul"]}
