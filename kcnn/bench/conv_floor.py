"""The matmul floor of an explicit convolution, for ``kcnn-bench --section conv``.

Any cross-correlation built from slices and matmuls does at least the matmuls of im2col: the
forward ``patches · K`` and the kernel gradient ``patchesᵀ · dY``, here timed on patches that are
*already gathered* (no gather cost at all), against the backend's own convolution forward plus
kernel gradient on the same VGG-block shape. A floor ratio above a time target means no such
formulation can meet it with that backend's matmul on this machine.

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


def _conv_forward_and_kernel_gradient():
    """f(x, k, dy) → (conv(x, k), ∂⟨conv(x, k), dy⟩/∂k) with the backend's autodiff."""
    import keras
    from keras import ops

    backend = keras.backend.backend()

    def conv(x, k):
        return ops.conv(x, k, padding="same")

    if backend == "tensorflow":
        import tensorflow as tf

        def fn(x, k, dy):
            with tf.GradientTape() as tape:
                tape.watch(k)
                y = conv(x, k)
            return y, tape.gradient(y, k, output_gradients=dy)
    elif backend == "jax":
        import jax

        def fn(x, k, dy):
            y, vjp = jax.vjp(lambda kernel: conv(x, kernel), k)
            return y, vjp(dy)[0]
    else:
        import torch

        def fn(x, k, dy):
            k = k.detach().requires_grad_()
            y = conv(x, k)
            return y, torch.autograd.grad(y, k, dy)[0]
    return fn


def child_floor(spec):
    """Matmul floor vs convolution (forward + kernel gradient) for one configuration."""
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
    conv = _compiled(_conv_forward_and_kernel_gradient(), spec["jit"])
    matmuls = _compiled(lambda p, w_, d: (ops.matmul(p, w_), ops.matmul(ops.transpose(p), d)), spec["jit"])
    times = {"conv": [], "matmul": []}
    calls = {"conv": lambda: conv(x, k, dy), "matmul": lambda: matmuls(patches, weights, dy2d)}
    for fn in calls.values():
        fn()  # compile
    for _ in range(spec["repeats"]):
        for name, fn in calls.items():
            times[name] += bench.time_calls(fn, warmup=0, repeats=1)
    conv_ms, matmul_ms = bench.median(times["conv"]) * 1e3, bench.median(times["matmul"]) * 1e3
    return {"model": MODEL, "batch": batch, "input": f"{h}x{w}x{channels}", "conv_ms": conv_ms,
            "matmul_ms": matmul_ms, "ratio": matmul_ms / conv_ms}
