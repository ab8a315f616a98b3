"""The mixed-precision policy: which one a request means on this machine, and setting it.

``--mixed-precision`` takes ``none``, ``fp16``, ``bf16`` or ``auto``:

* ``fp16`` → Keras's ``mixed_float16`` (float16 compute, float32 variables);
* ``bf16`` → ``mixed_bfloat16`` (bfloat16 compute: float32's range, so no loss scaling);
* ``auto`` → ``mixed_bfloat16`` on a GPU that computes in bfloat16 natively (NVIDIA compute
  capability 8.0 and newer) and on CPUs that report AMX-BF16 or AVX512-BF16 (oneDNN runs bfloat16
  matmuls and convolutions there); ``mixed_float16`` on other GPUs; ``float32`` otherwise.

The output layer stays float32 (:func:`float32_output`) and exports are traced in float32.
"""
from __future__ import annotations

PRECISIONS = ("none", "fp16", "bf16", "auto")
POLICIES = {"none": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def check_precision(value) -> str:
    """``value`` as one of :data:`PRECISIONS` (True means ``fp16``, False ``none``), else ValueError."""
    if value is True:
        return "fp16"
    if value is False or value is None:
        return "none"
    if value not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; "
                         f"received mixed_precision={value!r}")
    return value


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo") -> tuple:
    """The bfloat16 instruction-set flags this CPU reports (Linux ``/proc/cpuinfo``; () elsewhere)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in CPU_BF16_FLAGS if flag in flags)
    except OSError:
        pass
    return ()


def _tf_gpu_capabilities():
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


def _jax_gpu_capabilities():
    import jax

    return [tuple(int(v) for v in str(getattr(d, "compute_capability", "0.0")).split(".")[:2])
            for d in jax.devices() if d.platform == "gpu"]


def _torch_gpu_capabilities():
    import torch

    if not torch.cuda.is_available():
        return []
    return [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())]


def gpu_capabilities(backend=None) -> list:
    """CUDA compute capabilities ``(major, minor)`` of the GPUs the Keras backend sees ([] on CPU)."""
    if backend is None:
        import keras

        backend = keras.backend.backend()
    lister = {"tensorflow": _tf_gpu_capabilities, "jax": _jax_gpu_capabilities,
              "torch": _torch_gpu_capabilities}[backend]
    try:
        return lister()
    except (RuntimeError, ValueError, AttributeError):  # no usable CUDA runtime
        return []


def choose_policy(value, *, gpus=(), cpu_flags=()) -> str:
    """The Keras dtype policy for ``value`` given the GPUs' compute capabilities and the CPU flags.

    A pure function of its arguments (the selection logic, testable without the hardware).
    """
    value = check_precision(value)
    if value != "auto":
        return POLICIES[value]
    if gpus:
        return "mixed_bfloat16" if all(tuple(c) >= (8, 0) for c in gpus) else "mixed_float16"
    return "mixed_bfloat16" if cpu_flags else "float32"


def resolve_policy(value, backend=None) -> str:
    """:func:`choose_policy` for this machine and Keras backend."""
    value = check_precision(value)
    if value != "auto":
        return POLICIES[value]
    return choose_policy(value, gpus=gpu_capabilities(backend), cpu_flags=cpu_bf16_flags())


def set_precision(value) -> str:
    """Set Keras's global dtype policy for ``value`` (see the module doc); returns its name.

    Call it before building the model: layers take the policy at construction.
    """
    import keras

    policy = resolve_policy(value)
    keras.config.set_dtype_policy(policy)
    return keras.config.dtype_policy().name


def float32_output(model):
    """Make ``model``'s last layer compute in float32 (returns the model).

    Under a mixed policy every layer computes in float16 or bfloat16; the logits layer must not,
    or the softmax/cross-entropy would lose precision (float16 would overflow) and an export
    would emit half-precision logits. Variables are float32 under the mixed policies already, so
    switching the layer's policy after building is enough: Keras casts the layer's inputs to its
    compute dtype on every call.
    """
    last = model.layers[-1]
    if last.dtype_policy.compute_dtype != "float32":
        last.dtype_policy = "float32"
    return model
