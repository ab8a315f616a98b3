"""kcnn.training.devices / distribution: device report (mocked GPUs), mixed-precision policy, distribution choice.

No GPU exists here, so the accelerator branches run against monkeypatched device listings of
each library (TensorFlow, JAX, PyTorch) whatever the Keras backend under test.
"""
import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from kcnn.training import devices, distribution, precision


@pytest.fixture
def restore_policy():
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


def test_report_names_the_backend_and_a_device():
    r = devices.device_report()
    assert r["backend"] == keras.backend.backend()
    assert r["device"] == r["devices"][0] and r["device"] == "cpu"
    assert r["dtype_policy"] == "float32"


@pytest.mark.parametrize(
    "gpus, expected",
    [([], ["cpu"]), (["/device:GPU:0", "/device:GPU:1"], ["gpu:0", "gpu:1"])],
)
def test_tensorflow_listing(monkeypatch, gpus, expected):
    import tensorflow as tf

    fake = {"GPU": [SimpleNamespace(name=n) for n in gpus],
            "CPU": [SimpleNamespace(name="/device:CPU:0")]}
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: fake[kind])
    assert devices._tf_devices() == expected


@pytest.mark.parametrize(
    "platforms, expected",
    [(["cpu"], ["cpu"]), (["gpu", "gpu"], ["gpu:0", "gpu:1"]), (["tpu"], ["tpu:0"])],
)
def test_jax_listing(monkeypatch, platforms, expected):
    jax = pytest.importorskip("jax")
    fake = [SimpleNamespace(platform=p, id=i) for i, p in enumerate(platforms)]
    monkeypatch.setattr(jax, "devices", lambda: fake)
    assert devices._jax_devices() == expected


@pytest.mark.parametrize("count, expected", [(0, ["cpu"]), (2, ["cuda:0", "cuda:1"])])
def test_torch_listing(monkeypatch, count, expected):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices._torch_devices() == expected


def test_report_uses_the_backend_listing(monkeypatch):
    lister = {"tensorflow": "_tf_devices", "jax": "_jax_devices", "torch": "_torch_devices"}
    monkeypatch.setattr(devices, lister[keras.backend.backend()], lambda: ["gpu:0", "gpu:1"])
    r = devices.device_report()
    assert r["device"] == "gpu:0" and r["devices"] == ["gpu:0", "gpu:1"]


def test_mixed_precision_policy(restore_policy):
    assert precision.set_precision("fp16") == "mixed_float16"
    assert devices.device_report()["dtype_policy"] == "mixed_float16"
    assert precision.set_precision("bf16") == "mixed_bfloat16"
    assert precision.set_precision(True) == "mixed_float16"  # the old boolean flag
    assert precision.set_precision("none") == "float32"
    with pytest.raises(ValueError, match="mixed_precision must be one of none, fp16, bf16, auto"):
        precision.set_precision("yes")


@pytest.mark.parametrize("gpus, flags, policy", [
    ((), (), "float32"),
    ((), ("avx512_bf16",), "mixed_bfloat16"),
    ((), ("amx_bf16", "avx512_bf16"), "mixed_bfloat16"),
    (((9, 0),), (), "mixed_bfloat16"),      # H100/H200
    (((8, 0), (8, 6)), ("amx_bf16",), "mixed_bfloat16"),
    (((7, 5),), ("amx_bf16",), "mixed_float16"),  # T4: no native bfloat16, the GPU decides
    (((8, 0), (7, 0)), (), "mixed_float16"),
])
def test_auto_picks_bf16_where_the_hardware_has_it(gpus, flags, policy):
    assert precision.choose_policy("auto", gpus=gpus, cpu_flags=flags) == policy


def test_explicit_choices_ignore_the_hardware():
    assert precision.choose_policy("fp16", gpus=((9, 0),), cpu_flags=("amx_bf16",)) == "mixed_float16"
    assert precision.choose_policy("none", gpus=((9, 0),)) == "float32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision.cpu_bf16_flags(cpuinfo) == ("amx_bf16", "avx512_bf16")
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2\n")
    assert precision.cpu_bf16_flags(cpuinfo) == ()
    assert precision.cpu_bf16_flags(tmp_path / "missing") == ()


def test_this_machine_resolves_auto_consistently():
    expected = precision.choose_policy("auto", gpus=precision.gpu_capabilities(),
                                       cpu_flags=precision.cpu_bf16_flags())
    assert precision.resolve_policy("auto") == expected


@pytest.mark.parametrize("mode, dtype", [("fp16", "float16"), ("bf16", "bfloat16")])
def test_float32_output_keeps_logits_in_float32(restore_policy, mode, dtype):
    from kcnn import models

    precision.set_precision(mode)
    model = models.build("lenet-modern", input_shape=(16, 16, 1), num_classes=3)
    assert model.layers[1].compute_dtype == dtype
    precision.float32_output(model)
    assert model.layers[-1].compute_dtype == "float32"
    assert model.layers[-2].compute_dtype == dtype
    out = model(np.zeros((2, 16, 16, 1), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


def test_float32_output_leaves_float32_models_alone(restore_policy):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert precision.float32_output(model) is model
    assert model.layers[-1].dtype_policy.name == "float32"


@pytest.mark.parametrize("kind", ["mirrored", "multiworker"])
def test_torch_has_no_distribution(kind):
    with pytest.raises(distribution.DistributionError, match="not supported on the torch backend"):
        distribution.prepare_distribution(kind, backend="torch")


def test_jax_mirrored_forces_host_devices(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    distribution.prepare_distribution("mirrored", backend="jax", cpu_replicas=2)
    import os

    assert os.environ["XLA_FLAGS"] == (
        "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=2")
    with pytest.raises(distribution.DistributionError, match="needs the tensorflow backend"):
        distribution.prepare_distribution("multiworker", backend="jax")


@pytest.mark.parametrize(
    "tf_config, fragment",
    [(None, "needs TF_CONFIG"),
     ("not json", "not a valid cluster spec"),
     (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}),
      "not a valid cluster spec")],
)
def test_multiworker_needs_a_valid_tf_config(monkeypatch, tf_config, fragment):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(distribution.DistributionError, match=fragment):
        distribution.prepare_distribution("multiworker", backend="tensorflow")


def test_unknown_distribution():
    with pytest.raises(distribution.DistributionError, match="distribute must be one of none, mirrored"):
        distribution.prepare_distribution("ring", backend="tensorflow")
    with pytest.raises(distribution.DistributionError):
        distribution.make_distribution("ring")


def test_no_distribution_is_a_plain_scope():
    d = distribution.make_distribution("none")
    assert (d.kind, d.replicas, d.is_chief, d.strategy) == ("none", 1, True, None)
    with d.scope():
        keras.layers.Dense(1)


def test_configured_backend_reads_env_then_keras_json(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert devices.configured_backend() == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert devices.configured_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    assert devices.configured_backend() == "torch"
