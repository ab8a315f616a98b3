"""Which device Keras trains on, mixed precision, and multi-device distribution.

* :func:`device_report` names the devices the active Keras backend actually uses
  (``tf.config.list_logical_devices`` on TensorFlow, ``jax.devices()`` on JAX,
  ``torch.cuda`` on PyTorch), e.g. ``{"backend": "torch", "device": "cuda:0", ...}``.
* :func:`set_mixed_precision` switches the global dtype policy to ``mixed_float16``;
  :func:`float32_output` keeps a model's output layer in float32 so logits and loss stay
  numerically safe.
* :func:`prepare_distribution` must run *before* the backend initialises its devices (it sets
  ``XLA_FLAGS`` for JAX and the logical CPU devices for TensorFlow); :func:`make_distribution`
  then returns the strategy: ``tf.distribute.MirroredStrategy`` /
  ``MultiWorkerMirroredStrategy`` on TensorFlow, ``keras.distribution.DataParallel`` on JAX.
"""
from __future__ import annotations

import contextlib
import json
import os

__all__ = [
    "DISTRIBUTIONS", "DistributionError", "Distribution", "device_report", "set_mixed_precision",
    "float32_output", "prepare_distribution", "make_distribution",
]

DISTRIBUTIONS = ("none", "mirrored", "multiworker")
MIXED_POLICY = "mixed_float16"


class DistributionError(ValueError):
    """The requested distribution is not possible with this backend or environment."""


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


# --------------------------------------------------------------------------------- devices
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


# --------------------------------------------------------------------------------- precision
def set_mixed_precision(enabled: bool) -> str:
    """Set Keras's global dtype policy: ``mixed_float16`` if ``enabled`` else ``float32``.

    Call it before building the model (layers take the policy at construction). Returns the
    policy name now in force.
    """
    import keras

    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool; received {type(enabled).__name__} {enabled!r}")
    keras.config.set_dtype_policy(MIXED_POLICY if enabled else "float32")
    return keras.config.dtype_policy().name


def float32_output(model):
    """Make ``model``'s last layer compute in float32 (returns the model).

    Under ``mixed_float16`` every layer computes in float16; the logits layer must not, or the
    softmax/cross-entropy would overflow and the exported model would emit float16. Variables are
    float32 under the mixed policy already, so switching the layer's policy after building is
    enough: Keras casts the layer's inputs to its compute dtype on every call.
    """
    last = model.layers[-1]
    if last.dtype_policy.compute_dtype != "float32":
        last.dtype_policy = "float32"
    return model


# --------------------------------------------------------------------------------- distribution
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
    (kcnn's subclass in :mod:`kcnn.distribute_compat`, which lets Keras 3's ``model.fit`` reduce
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
    from kcnn.distribute_compat import MultiWorkerMirroredStrategy  # Keras 3 fix, see there

    config = _tf_config()
    strategy = MultiWorkerMirroredStrategy()
    return Distribution(kind, strategy.num_replicas_in_sync, int(config["task"]["index"]) == 0,
                        strategy, [f"worker:{i}" for i in range(len(config["cluster"]["worker"]))])
