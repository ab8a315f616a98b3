"""Training on several devices or machines.

:func:`prepare_distribution` must run *before* the backend initialises its devices (it sets
``XLA_FLAGS`` for JAX and the logical CPU devices for TensorFlow); :func:`make_distribution` then
returns the strategy: ``tf.distribute.MirroredStrategy`` / ``MultiWorkerMirroredStrategy`` on
TensorFlow, ``keras.distribution.DataParallel`` on JAX.
"""
from __future__ import annotations

import contextlib
import json
import os

from kcnn.training.devices import _backend, configured_backend

DISTRIBUTIONS = ("none", "mirrored", "multiworker")


class DistributionError(ValueError):
    """The requested distribution is not possible with this backend or environment."""


def _check_kind(kind):
    if kind not in DISTRIBUTIONS:
        raise DistributionError(
            f"distribute must be one of {', '.join(DISTRIBUTIONS)}; received {kind!r}")


def prepare_distribution(kind: str, *, backend: str | None = None, cpu_replicas: int = 2) -> None:
    """Environment set-up that must happen before the backend initialises its devices.

    * ``mirrored`` on JAX: ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` so a CPU-only
      host exposes ``cpu_replicas`` devices (call before ``import jax``; a GPU host ignores it).
    * ``mirrored`` on TensorFlow without GPUs: split the CPU into ``cpu_replicas`` logical
      devices (``tf.config.set_logical_device_configuration``; before the first TF op).
    * on PyTorch any distribution other than ``none`` raises :class:`DistributionError`.
    """
    _check_kind(kind)
    backend = backend or configured_backend()
    if kind == "none":
        return
    if backend == "torch":
        raise DistributionError(
            f"--distribute {kind} is not supported on the torch backend; use "
            "KERAS_BACKEND=tensorflow (mirrored, multiworker) or jax (mirrored)")
    if backend == "jax":
        if kind != "mirrored":
            raise DistributionError(
                f"--distribute {kind} needs the tensorflow backend (TF_CONFIG workers); "
                "on jax use --distribute mirrored")
        flag = f"--xla_force_host_platform_device_count={int(cpu_replicas)}"
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()
        return
    if kind == "multiworker":
        _tf_config()  # fail early on a missing or malformed TF_CONFIG
        return
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    if not tf.config.list_physical_devices("GPU") and cpus:
        with contextlib.suppress(RuntimeError):  # already initialised: keep what exists
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(cpu_replicas))


def _tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise DistributionError(
            "--distribute multiworker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        index = int(config["task"]["index"])
        assert isinstance(workers, list) and 0 <= index < len(workers)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise DistributionError(
            f"TF_CONFIG is not a valid cluster spec with cluster.worker and task.index: {raw!r}"
        ) from None
    return config


class Distribution:
    """The chosen distribution: ``scope()`` to build/compile the model in, plus facts.

    Attributes:
        kind: ``"none"``, ``"mirrored"`` or ``"multiworker"``.
        replicas: number of replicas a global batch is split over.
        is_chief: whether this process writes the run's outputs (worker 0).
        strategy: the ``tf.distribute.Strategy`` (TensorFlow) or ``None``.
        devices: device names the replicas run on.
    """

    def __init__(self, kind, replicas=1, is_chief=True, strategy=None, devices=()):
        self.kind, self.replicas, self.is_chief = kind, replicas, is_chief
        self.strategy, self.devices = strategy, list(devices)

    def scope(self):
        """Context manager to create and compile the model in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def __repr__(self):
        return f"Distribution({self.kind!r}, replicas={self.replicas}, devices={self.devices})"


def make_distribution(kind: str) -> Distribution:
    """Create the distribution for ``kind`` on the active backend (after ``prepare_distribution``).

    ``mirrored`` uses every GPU, or every logical CPU device when there is no GPU; on JAX it
    sets ``keras.distribution.DataParallel`` over ``jax.devices()`` as the global distribution.
    ``multiworker`` builds ``tf.distribute.MultiWorkerMirroredStrategy`` from ``TF_CONFIG``
    (kcnn's subclass in :mod:`kcnn.training.multiworker`, which lets Keras 3's ``model.fit`` reduce
    its values across workers).
    """
    _check_kind(kind)
    backend = _backend()
    if kind == "none":
        return Distribution("none")
    prepare_distribution(kind, backend=backend)  # raises for unsupported combinations
    if backend == "jax":
        import jax
        import keras

        devices = jax.devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return Distribution(kind, len(devices), True, None, [str(d) for d in devices])
    import tensorflow as tf

    if kind == "mirrored":
        devices = [d.name for d in (tf.config.list_logical_devices("GPU")
                                    or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Distribution(kind, strategy.num_replicas_in_sync, True, strategy, devices)
    from kcnn.training.multiworker import MultiWorkerMirroredStrategy  # Keras 3 fix, see there

    config = _tf_config()
    strategy = MultiWorkerMirroredStrategy()
    return Distribution(kind, strategy.num_replicas_in_sync, int(config["task"]["index"]) == 0,
                        strategy, [f"worker:{i}" for i in range(len(config["cluster"]["worker"]))])
