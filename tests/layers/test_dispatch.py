"""kcnn.layers.dispatch: which arrangement runs for which shapes and backends, and that it really ran."""

import json

import keras
import numpy as np
import pytest

from kcnn.layers import CrossCorrelation2D, dispatch

BACKEND = keras.backend.backend()
LENET_C1 = dict(out_hw=(28, 28), kernel_shape=(5, 5, 1, 6), groups=1)
VGG_BLOCK = dict(out_hw=(112, 112), kernel_shape=(3, 3, 64, 64), groups=1)


@pytest.mark.parametrize(
    "backend,training,batch,layer,autograd_off,path,rows",
    [
        ("tensorflow", True, 256, LENET_C1, False, "toeplitz", None),
        ("jax", False, None, LENET_C1, False, "toeplitz", None),
        ("torch", True, 256, LENET_C1, True, "toeplitz", None),
        ("torch", False, 32, dict(LENET_C1, out_hw=(40, 40)), False, "im2col", None),  # wide: no toeplitz
        ("torch", True, 32, dict(LENET_C1, out_hw=(40, 40)), True, "torch", None),
        ("tensorflow", True, None, VGG_BLOCK, False, "bands", 4),  # eager loop; dynamic batch planned as 32
        ("jax", True, 32, VGG_BLOCK, False, "bands", 1),
        ("jax", False, 32, VGG_BLOCK, False, "bands", 1),
        ("tensorflow", False, None, VGG_BLOCK, False, "kernel_rows", None),  # export: symbolic batch
        ("torch", True, 32, VGG_BLOCK, True, "torch", None),
        ("torch", False, 32, VGG_BLOCK, False, "kernel_rows", None),
        ("torch", True, 32, dict(VGG_BLOCK, kernel_shape=(3, 3, 32, 64), groups=2), True, "kernel_rows", None),
    ],
)
def test_auto_plans(backend, training, batch, layer, autograd_off, path, rows):
    plan = dispatch.choose(backend=backend, training=training, algorithm="auto", batch=batch,
                           torch_autograd_off=autograd_off, **layer)
    assert (plan.path, plan.band_rows, plan.hand_written_backward) == (path, rows, training)


@pytest.mark.parametrize("algorithm", ["reference", "im2col", "kernel_rows", "bands", "toeplitz"])
def test_forced_algorithm_is_obeyed(algorithm):
    plan = dispatch.choose(backend="jax", training=True, algorithm=algorithm, batch=2, **LENET_C1)
    assert plan.path == algorithm
    assert plan.hand_written_backward == (algorithm != "reference")


def test_im2col_runs_as_the_torch_module_where_it_applies():
    plan = dispatch.choose(backend="torch", training=True, algorithm="im2col", batch=2, torch_autograd_off=True,
                           **LENET_C1)
    assert plan.path == "torch"


def test_band_rows_divides_the_output_and_respects_the_budget(monkeypatch):
    assert dispatch.band_rows(32, (112, 112), (3, 3), 64) == 4  # 2.06M per row; 8.4M budget
    assert dispatch.band_rows(None, (112, 112), (3, 3), 64) == 4  # dynamic batch planned as 32
    assert dispatch.band_rows(32, (112, 112), (3, 3), 64, dispatch.MAX_PATCH_ELEMENTS // 4) == 1  # compiled loops: 2.1M
    monkeypatch.setattr(dispatch, "MAX_PATCH_ELEMENTS", 10)
    assert dispatch.band_rows(1, (7, 7), (3, 3), 8) == 1  # one row is over budget: 1


VGG11_4_CONV2 = dict(out_hw=(112, 112), kernel_shape=(3, 3, 16, 32), groups=1)  # VGG-11/4 at 224², second conv


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_on_a_gpu_larger_layers_run_in_one_patch_matrix(backend):
    """A GPU holds tens of GiB: a layer of VGG-11/4 at 224², batch 64, runs as one im2col matmul there
    (faster on an H100 than bands, README), in bands on the CPU; what exceeds the GPU budget runs in bands of it."""
    plan = dict(backend=backend, training=True, algorithm="auto", batch=64, tf_graph=True)
    assert dispatch.choose(**plan, **VGG11_4_CONV2).path == "bands"
    assert dispatch.choose(**plan, accelerator=True, **VGG11_4_CONV2).path == "im2col"
    full_vgg = dict(out_hw=(224, 224), kernel_shape=(3, 3, 64, 64), groups=1)  # 1.85G patch elements at b64
    gpu_bands, cpu_bands = (dispatch.choose(**plan, accelerator=a, **full_vgg) for a in (True, False))
    assert gpu_bands.path == cpu_bands.path == "bands" and gpu_bands.band_rows > cpu_bands.band_rows == 1
    assert gpu_bands.band_rows * 64 * 224 * 9 * 64 * 4 <= dispatch.GPU_PATCH_ELEMENTS  # within 1/4 of it (loop)


def test_the_gpu_budget_follows_where_the_backend_computes():
    """TensorFlow and JAX: the backend's default devices, against kcnn's device report (CI: no GPU, False).
    PyTorch: the input tensor's own device (``KERAS_TORCH_DEVICE`` or ``keras.device`` may keep a CUDA machine's
    tensors on the CPU); a stand-in for a CUDA tensor, as this machine has none."""
    from types import SimpleNamespace

    from kcnn.layers import correlation
    from kcnn.training.devices import device_report

    x = keras.ops.zeros((1, 4, 4, 1))
    assert correlation._context(False, x)["accelerator"] == (device_report()["device"] != "cpu")
    if BACKEND == "torch":
        assert correlation._context(False, SimpleNamespace(device=SimpleNamespace(type="cuda")))["accelerator"]


def _fit_paths(layer, x):
    """The paths the layer's calls planned while a model holding it trains and predicts."""
    model = keras.Sequential([keras.Input(x.shape[1:]), layer, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with dispatch.recorded() as fit_plans:
        model.fit(x, np.zeros(len(x), "int32"), batch_size=len(x), epochs=1, verbose=0)
    with dispatch.recorded() as predict_plans:
        model.predict(x, batch_size=len(x), verbose=0)
    return {p.path for p in fit_plans}, {p.path for p in predict_plans}


def test_the_planned_path_runs_in_fit_and_predict(rng):
    """On the backend under test, a small narrow layer trains on its fast path (Toeplitz matmuls), and
    a wider one on the PyTorch module on torch, one im2col matmul elsewhere: a predicate that silently
    disabled either would fail here."""
    fit, predict = _fit_paths(CrossCorrelation2D(3, 3, padding="same"), rng.random((4, 8, 8, 2), "float32"))
    fast = "toeplitz"
    assert fit == {fast}
    assert predict == {fast}
    fit, predict = _fit_paths(CrossCorrelation2D(3, 3, padding="same"), rng.random((2, 8, 40, 2), "float32"))
    assert fit == {"torch" if BACKEND == "torch" else "im2col"}


def test_large_layer_runs_its_large_path_in_fit(rng, monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_PATCH_ELEMENTS", 500)
    fit, _ = _fit_paths(CrossCorrelation2D(3, 3, padding="same"), rng.random((4, 8, 8, 2), "float32"))
    assert fit == {"torch" if BACKEND == "torch" else "bands"}


def test_a_model_on_a_gpu_plans_with_the_gpu_budget(rng, monkeypatch):
    """The layer plans with the GPU budget once the backend reports a GPU (simulated: this machine has none).
    PyTorch's fit runs its torch module on either budget."""
    from kcnn.layers import correlation

    monkeypatch.setattr(dispatch, "MAX_PATCH_ELEMENTS", 500)
    monkeypatch.setattr(dispatch, "GPU_PATCH_ELEMENTS", 20_000)
    x = rng.random((2, 8, 40, 2), "float32")  # 11,520 patch elements; too wide for Toeplitz matmuls
    assert _fit_paths(CrossCorrelation2D(3, 3, padding="same"), x)[0] == {"torch" if BACKEND == "torch" else "bands"}
    monkeypatch.setattr(correlation, "on_accelerator", lambda name: True)
    assert _fit_paths(CrossCorrelation2D(3, 3, padding="same"), x)[0] == {"torch" if BACKEND == "torch" else "im2col"}


def test_reference_algorithm_runs_the_reference(rng):
    fit, predict = _fit_paths(CrossCorrelation2D(3, 3, algorithm="reference"), rng.random((2, 6, 6, 1), "float32"))
    assert fit == predict == {"reference"}


@pytest.mark.parametrize("bad", ["fast", "winograd!", None, 3, "AUTO"])
def test_bad_algorithm_names_the_argument_and_choices(bad):
    with pytest.raises(ValueError, match=r"`algorithm`.*'auto', 'reference', 'im2col', 'kernel_rows', 'bands', 'toeplitz'"):
        CrossCorrelation2D(2, 3, algorithm=bad)


def test_algorithm_round_trips_and_old_configs_load(tmp_path):
    layer = CrossCorrelation2D(2, 3, algorithm="kernel_rows")
    config = layer.get_config()
    assert config["algorithm"] == "kernel_rows"
    assert CrossCorrelation2D.from_config(json.loads(json.dumps(config))).algorithm == "kernel_rows"
    del config["algorithm"]  # a model saved before the argument existed
    assert CrossCorrelation2D.from_config(config).algorithm == "auto"


def test_tensorflow_graphs_compile_the_band_loop_with_xla(monkeypatch):
    bands = dispatch.choose(backend="tensorflow", training=True, algorithm="auto", batch=32, tf_graph=True,
                            **VGG_BLOCK)
    assert bands.xla and bands.path == "bands"  # one compiled loop reuses one band's buffers
    assert bands.band_rows == 1  # compiled: cache-sized bands (a plain loop: 4 rows, see test_auto_plans)
    monkeypatch.setattr(dispatch, "TF_GRAPH_XLA", False)  # kcnn-bench's comparison: plain graph ops
    assert not dispatch.choose(backend="tensorflow", training=True, algorithm="auto", batch=8, tf_graph=True,
                               **VGG_BLOCK).xla
    monkeypatch.undo()
    assert not dispatch.choose(backend="tensorflow", training=True, algorithm="auto", batch=8, **VGG_BLOCK).xla
    assert not dispatch.choose(backend="jax", training=True, algorithm="auto", batch=8, tf_graph=True, **VGG_BLOCK).xla
    for algorithm in ("toeplitz", "im2col", "kernel_rows"):  # measured: plain graph ops are as fast
        assert not dispatch.choose(backend="tensorflow", training=True, algorithm=algorithm, batch=256, tf_graph=True,
                                   **LENET_C1).xla


def test_without_the_torch_module_eager_pytorch_runs_the_keras_ops_arrangements(monkeypatch):
    """kcnn-bench's comparison for the torch module: the plans eager TensorFlow gets (a loop that is
    not compiled, so bands of the full patch budget)."""
    torch = dict(backend="torch", training=True, algorithm="auto", batch=32, torch_autograd_off=True)
    assert dispatch.choose(**torch, **VGG_BLOCK).path == "torch"
    monkeypatch.setattr(dispatch, "TORCH_MODULE", False)
    eager_tf = dispatch.choose(**dict(torch, backend="tensorflow"), **VGG_BLOCK)
    assert dispatch.choose(**torch, **VGG_BLOCK) == eager_tf and eager_tf.path == "bands"
    assert dispatch.choose(**dict(torch, algorithm="im2col"), **VGG_BLOCK).path == "im2col"


def test_narrow_layers_with_few_channels_plan_toeplitz():
    """LeNet's layers run as Toeplitz matmuls on every backend, in graphs and eagerly; wide inputs,
    many channels, groups and row strides keep their paths."""
    for backend, tf_graph in (("tensorflow", True), ("tensorflow", False), ("jax", False)):
        plan = dispatch.choose(backend=backend, training=True, algorithm="auto", batch=256, tf_graph=tf_graph,
                               **LENET_C1)
        assert plan.path == "toeplitz"
    second = dict(out_hw=(10, 10), kernel_shape=(5, 5, 6, 16), groups=1)
    assert dispatch.choose(backend="torch", training=True, algorithm="auto", batch=256, torch_autograd_off=True,
                           **second).path == "toeplitz"
    for other in (dict(out_hw=(200, 200), kernel_shape=(3, 3, 1, 4), groups=1),
                  dict(out_hw=(10, 10), kernel_shape=(3, 3, 16, 16), groups=1),
                  dict(out_hw=(10, 10), kernel_shape=(3, 3, 2, 16), groups=2),
                  dict(out_hw=(10, 10), kernel_shape=(3, 3, 2, 16), groups=1, strides=(2, 1))):
        assert dispatch.choose(backend="jax", training=True, algorithm="auto", batch=8, **other).path == "im2col"


@pytest.mark.parametrize("padding,strides,channels,algorithm,groups", [
    ("same", 1, 2, "auto", 1), (1, 2, 2, "auto", 1), ("same", 1, 1, "auto", 1), (2, 2, 1, "auto", 1),
    ("same", 1, 2, "bands", 1), (1, (2, 1), 4, "bands", 2)])
def test_one_fit_step_equals_the_reference(rng, padding, strides, channels, algorithm, groups):
    """The path ``fit`` really runs (Toeplitz matmuls at stride 1, im2col or the torch module at stride 2; the band
    loop XLA-compiled on TensorFlow, its kernel gradient from dYᵀ) against the reference: weights after one SGD step."""
    x = rng.random((4, 9, 9, channels), "float32")
    y = rng.integers(0, 2, 4).astype("int32")
    weights = {}
    for name in ("reference", algorithm):
        keras.utils.set_random_seed(0)
        layer = CrossCorrelation2D(6, 3, strides=strides, padding=padding, groups=groups, algorithm=name)
        model = keras.Sequential([keras.Input(x.shape[1:]), layer, keras.layers.Flatten(),  # dY varies by position
                                  keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(1.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        with dispatch.recorded() as plans:
            model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        weights[name] = model.get_weights()
    if algorithm == "bands" and BACKEND == "tensorflow":
        assert {(p.path, p.xla) for p in plans} == {("bands", True)}
    for got, want in zip(weights[algorithm], weights["reference"]):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_mixed_bfloat16_outputs_and_float32_kernel_gradient(rng, gradients):
    """Under mixed_bfloat16 the output is close to float32 Conv2D and the kernel gradient is the
    float32-accumulated sum (bf16 accumulation over 2·16·16 positions would be off by ~1e-2)."""
    x = rng.normal(size=(2, 16, 16, 8)).astype("float32")
    layer = CrossCorrelation2D(4, 3, padding="same", dtype="mixed_bfloat16")
    layer.build(x.shape)
    reference = keras.layers.Conv2D(4, 3, padding="same")
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    y = keras.ops.convert_to_numpy(keras.ops.cast(layer(x), "float32"))
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(reference(x)), atol=0.1, rtol=0.02)
    # Float32 oracle on the bf16-rounded input (what the layer computes with).
    x_bf16 = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(x, "bfloat16"), "float32"))
    got = gradients(lambda v: keras.ops.sum(keras.ops.cast(layer(v, training=True), "float32")), x, layer)[1]
    want = gradients(lambda v: keras.ops.sum(reference(v)), x_bf16, reference)[1]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
