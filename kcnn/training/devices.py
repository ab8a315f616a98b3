"""Which device Keras trains on.

:func:`device_report` names the devices the active Keras backend actually uses
(``tf.config.list_logical_devices`` on TensorFlow, ``jax.devices()`` on JAX, ``torch.cuda`` on
PyTorch), e.g. ``{"backend": "torch", "device": "cuda:0", ...}``, and the dtype policy in force.
"""
from __future__ import annotations

import json
import os

def _backend():
    import keras

    return keras.backend.backend()


def configured_backend() -> str:
    """The Keras backend that will be used, read without importing Keras.

    ``KERAS_BACKEND`` wins, then ``keras.json`` in ``KERAS_HOME`` (default ``~/.keras``),
    then Keras's default, ``tensorflow``.
    """
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _tf_devices():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    chosen = gpus or tf.config.list_logical_devices("CPU")
    # "/device:GPU:0" -> "gpu:0"; CPUs are reported as plain "cpu" like d2l does.
    names = []
    for dev in chosen:
        kind, _, index = dev.name.rpartition("/device:")[2].partition(":")
        names.append(f"{kind.lower()}:{index}" if kind.upper() == "GPU" else "cpu")
    return names


def _jax_devices():
    import jax

    names = []
    for dev in jax.devices():
        names.append("cpu" if dev.platform == "cpu" else f"{dev.platform}:{dev.id}")
    return names


def _torch_devices():
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return ["mps"]
    return ["cpu"]


def device_report() -> dict:
    """The devices the active Keras backend computes on.

    Returns:
        ``{"backend", "device", "devices", "dtype_policy"}``: ``device`` is the first
        accelerator (``"gpu:0"``, ``"cuda:0"``) or ``"cpu"``; ``devices`` lists every device the
        backend sees of that kind (one ``"cpu"`` entry per logical CPU device on TensorFlow).
    """
    import keras

    backend = _backend()
    lister = {"tensorflow": _tf_devices, "jax": _jax_devices, "torch": _torch_devices}[backend]
    devices = lister() or ["cpu"]
    return {
        "backend": backend,
        "device": devices[0],
        "devices": devices,
        "dtype_policy": keras.config.dtype_policy().name,
    }
