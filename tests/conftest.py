"""Shared pytest setup: quiet TensorFlow, helpers in tests/support importable, the backend under test."""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Helpers shared by several test folders (odd image files, the kcnn-serve subprocess).
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _gradients(fn, x, layer):
    """[d fn / d x, d fn / d w for w in layer.trainable_weights] as NumPy arrays, per backend."""
    backend = keras.backend.backend()
    weights = layer.trainable_weights
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        grads = tape.gradient(value, [x] + [w.value for w in weights])
    elif backend == "jax":
        import jax

        def pure(x, values):
            for w, v in zip(weights, values):
                w._value = v  # keras's JAX Variable keeps its array in _value; restored below.
            return fn(x)

        originals = [w._value for w in weights]
        try:
            # jit: eager JAX compiles every op for every new shape, many times slower in tests.
            grads = jax.jit(jax.grad(pure, argnums=(0, 1)))(jax.numpy.asarray(x), originals)
        finally:
            for w, v in zip(weights, originals):
                w._value = v
        grads = [grads[0], *grads[1]]
    else:
        import torch

        x = torch.tensor(x, requires_grad=True)
        for w in weights:
            w.value.grad = None
        fn(x).backward()
        grads = [x.grad] + [w.value.grad for w in weights]
    return [keras.ops.convert_to_numpy(g) for g in grads]


@pytest.fixture
def gradients():
    """Backend-neutral gradient helper: ``gradients(fn, x, layer)``."""
    return _gradients


def _call(layer, x, **kwargs):
    """``layer(x, **kwargs)`` as NumPy; traced once under ``jax.jit`` on JAX (eager JAX is slow)."""
    if keras.backend.backend() == "jax":
        import jax

        if not layer.built:  # variables must exist before tracing
            layer.build(np.shape(x))
        return np.asarray(jax.jit(lambda inputs: layer(inputs, **kwargs))(x))
    return keras.ops.convert_to_numpy(layer(x, **kwargs))


@pytest.fixture
def call():
    """Backend-neutral forward helper: ``call(layer, x, **kwargs)`` → NumPy array."""
    return _call
