"""kcnn.layers.MaxPool2D / AvgPool2D: parity with Keras pooling, a NumPy reference of the padding
rules (Keras "same" and PyTorch explicit padding), torch.nn.functional, gradients, dtype policies,
serialization and argument validation."""
import itertools

import keras
import numpy as np
import pytest
from keras import ops

from kcnn.layers import AvgPool2D, MaxPool2D

BACKEND = keras.backend.backend()
KERAS_POOL = {MaxPool2D: keras.layers.MaxPooling2D, AvgPool2D: keras.layers.AveragePooling2D}


# ---------------------------------------------------------------- helpers

def to_numpy(x):
    return ops.convert_to_numpy(x)


def apply(layer, x):
    """layer(x); under JAX traced once with jax.jit, because eager JAX compiles every slice of
    every new shape separately (about 1 s per call), which would dominate the test time."""
    if BACKEND == "jax":
        import jax

        return jax.jit(layer)(x)
    return layer(x)


def grad_of(fn, x, cotangent):
    """Gradient of sum(fn(x) * cotangent) w.r.t. x, with the active backend's autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * cotangent)
        return tape.gradient(loss, x).numpy()
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(fn(v) * cotangent)))(x))
    if BACKEND == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        (fn(x) * torch.as_tensor(cotangent)).sum().backward()
        return x.grad.numpy()
    raise NotImplementedError(BACKEND)


def same_pads(n, k, s):
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def pool_reference(x, mode, pool, strides, padding):
    """NumPy loop over output pixels of an NHWC array.

    padding "valid", "same" (Keras: padded positions ignored by max and not counted by the average)
    or ((t, b), (l, r)) (PyTorch: max pads with -inf, the average counts padded zeros).
    """
    n, h, w, c = x.shape
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = (same_pads(h, pool[0], strides[0]), same_pads(w, pool[1], strides[1]))
    else:
        pads = padding
    widths = ((0, 0), pads[0], pads[1], (0, 0))
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x.astype("float64"), widths, constant_values=fill)
    real = np.pad(np.ones((h, w)), pads)
    out_h = (xp.shape[1] - pool[0]) // strides[0] + 1
    out_w = (xp.shape[2] - pool[1]) // strides[1] + 1
    y = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(i * strides[0], i * strides[0] + pool[0])
            cols = slice(j * strides[1], j * strides[1] + pool[1])
            window = xp[:, rows, cols, :]
            if mode == "max":
                y[:, i, j] = window.max(axis=(1, 2))
            else:
                count = real[rows, cols].sum() if padding == "same" else pool[0] * pool[1]
                y[:, i, j] = window.sum(axis=(1, 2)) / count
    return y


def nchw(x):
    return np.transpose(x, (0, 3, 1, 2))


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def run(layer, x_nhwc):
    """Applies a layer to an NHWC array in the layer's data_format; returns NHWC NumPy."""
    if layer.data_format == "channels_first":
        return nhwc(to_numpy(apply(layer, nchw(x_nhwc))))
    return to_numpy(apply(layer, x_nhwc))


def keras_same_avg_is_off(padding, shape, pool, strides):
    # Keras's torch backend (3.15) pads asymmetric "same" average pooling by replicating the edge
    # and then averages the replicated values; TensorFlow and JAX exclude the padding, as we do.
    if BACKEND != "torch" or padding != "same":
        return False
    return any(sum(same_pads(n, k, s)) % 2 for n, k, s in zip(shape, pool, strides))


# ---------------------------------------------------------------- parity with Keras pooling

# pool_size × strides × padding, each on an odd and on an even spatial size in turn, plus
# 1×1 pools and strides larger than the pool.
GRID = [
    (*case, [(7, 5), (8, 6)][i % 2])
    for i, case in enumerate(
        itertools.product([(2, 2), (3, 3), (2, 3)], [None, 1, (2, 1)], ["valid", "same"])
    )
] + [
    ((1, 1), 3, "valid", (7, 5)),
    ((1, 1), None, "same", (8, 6)),
    ((2, 2), 3, "same", (7, 5)),
    ((3, 2), (3, 4), "valid", (8, 6)),
]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("layer_cls", [MaxPool2D, AvgPool2D])
def test_matches_keras_pooling(rng, layer_cls, data_format):
    checked = 0
    # channels_first only moves the sliced axes: half of the grid is enough there.
    grid = GRID if data_format == "channels_last" else GRID[1::2]
    for pool, strides, padding, size in grid:
        x = rng.normal(size=(2, *size, 3)).astype("float32")
        layer = layer_cls(pool, strides, padding, data_format=data_format)
        ours = run(layer, x)
        ref_layer = KERAS_POOL[layer_cls](pool, strides, padding, data_format="channels_last")
        case = (pool, strides, padding, size)
        expected_shape = ref_layer.compute_output_shape(x.shape)
        assert ours.shape == expected_shape, case
        s = layer.strides
        if layer_cls is AvgPool2D and keras_same_avg_is_off(padding, size, layer.pool_size, s):
            reference = pool_reference(x, "avg", layer.pool_size, s, "same")
        else:
            reference = to_numpy(apply(ref_layer, x))
            checked += 1
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6, err_msg=str(case))
    assert checked > len(grid) // 2


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "pool, strides, size",
    [((3, 3), (2, 2), (7, 6)), ((2, 3), (1, 1), (5, 8)), ((3, 2), (3, 2), (4, 5)),
     ((4, 4), (1, 3), (9, 7))],
)
def test_same_padding_matches_numpy_reference(rng, mode, pool, strides, size):
    x = rng.normal(size=(1, *size, 2)).astype("float32")
    layer = (MaxPool2D if mode == "max" else AvgPool2D)(pool, strides, "SAME")
    assert layer.padding == "same"
    np.testing.assert_allclose(to_numpy(apply(layer, x)),
                               pool_reference(x, mode, pool, strides, "same"),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- explicit (PyTorch) padding

EXPLICIT = [
    # (pool_size, strides, padding as given, ((top, bottom), (left, right)))
    ((3, 3), None, 1, ((1, 1), (1, 1))),
    ((2, 2), (2, 2), 1, ((1, 1), (1, 1))),
    ((3, 2), (1, 2), (1, 0), ((1, 1), (0, 0))),
    ((3, 3), (2, 1), (0, 1), ((0, 0), (1, 1))),
    ((5, 4), (2, 3), (2, 2), ((2, 2), (2, 2))),
    ((3, 4), (1, 1), ((0, 1), (2, 1)), ((0, 1), (2, 1))),
    ((2, 2), (1, 1), [[1, 0], [0, 1]], ((1, 0), (0, 1))),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "pool, strides, padding, pads, data_format",
    [(*case, ["channels_last", "channels_first"][i % 2]) for i, case in enumerate(EXPLICIT)],
)
def test_explicit_padding_matches_numpy_reference(rng, mode, pool, strides, padding, pads,
                                                  data_format):
    # Negative inputs: zero padding would win a max, -inf padding must not.
    x = (-np.abs(rng.normal(size=(2, 7, 6, 3))) - 0.1).astype("float32")
    layer = (MaxPool2D if mode == "max" else AvgPool2D)(pool, strides, padding,
                                                        data_format=data_format)
    assert layer.padding == pads
    ours = run(layer, x)
    reference = pool_reference(x, mode, pool, layer.strides, pads)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert (ours < 0).all() if mode == "max" else True


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    "pool, strides, padding, pads", [c for c in EXPLICIT if all(t == b for t, b in c[3])]
)
def test_explicit_padding_matches_torch(rng, mode, pool, strides, padding, pads):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = rng.normal(size=(2, 3, 7, 6)).astype("float32")  # NCHW, the torch layout
    layer = (MaxPool2D if mode == "max" else AvgPool2D)(pool, strides, padding,
                                                        data_format="channels_first")
    tx = torch.tensor(x, requires_grad=True)
    if mode == "max":
        ty = functional.max_pool2d(tx, pool, layer.strides, padding=(pads[0][0], pads[1][0]))
    else:
        ty = functional.avg_pool2d(tx, pool, layer.strides, padding=(pads[0][0], pads[1][0]),
                                   count_include_pad=True)
    cotangent = rng.normal(size=tuple(ty.shape)).astype("float32")
    (ty * torch.tensor(cotangent)).sum().backward()
    np.testing.assert_allclose(to_numpy(apply(layer, x)), ty.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(grad_of(layer, x, cotangent), tx.grad.numpy(), rtol=1e-5,
                               atol=1e-6)


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("layer_cls", [MaxPool2D, AvgPool2D])
@pytest.mark.parametrize(
    "pool, strides, padding, size",
    [((2, 2), None, "valid", (6, 6)), ((3, 3), (2, 2), "valid", (7, 7)),
     ((3, 3), (1, 1), "same", (5, 6)), ((2, 3), (2, 1), "same", (6, 5)),
     ((3, 3), (2, 2), "same", (7, 7))],
)
def test_gradients_match_keras_pooling(rng, layer_cls, pool, strides, padding, size):
    x = rng.normal(size=(2, *size, 3)).astype("float32")
    ours = layer_cls(pool, strides, padding)
    ref = KERAS_POOL[layer_cls](pool, strides, padding)
    cotangent = rng.normal(size=ref.compute_output_shape(x.shape)).astype("float32")
    grad = grad_of(ours, x, cotangent)
    if layer_cls is AvgPool2D and keras_same_avg_is_off(padding, size, ours.pool_size,
                                                        ours.strides):
        pytest.skip("Keras's torch backend averages replicated edges for asymmetric 'same'")
    np.testing.assert_allclose(grad, grad_of(ref, x, cotangent), rtol=1e-5, atol=1e-6)


def test_avg_same_gradient_is_transposed_average(rng):
    # Backend-independent check of "same" average pooling: each output spreads its cotangent
    # evenly over the real inputs of its window (the padding is not counted).
    x = rng.normal(size=(1, 5, 4, 1)).astype("float32")
    pool, strides = (3, 2), (2, 1)
    cotangent = rng.normal(size=(1, 3, 4, 1)).astype("float32")
    expected = np.zeros_like(x)
    pads = (same_pads(5, 3, 2), same_pads(4, 2, 1))
    for i in range(3):
        for j in range(4):
            r0, c0 = i * 2 - pads[0][0], j - pads[1][0]
            rows = slice(max(r0, 0), min(r0 + 3, 5))
            cols = slice(max(c0, 0), min(c0 + 2, 4))
            count = (rows.stop - rows.start) * (cols.stop - cols.start)
            expected[0, rows, cols, 0] += cotangent[0, i, j, 0] / count
    grad = grad_of(AvgPool2D(pool, strides, "same"), x, cotangent)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_max_gradient_goes_to_one_element_per_window(data_format):
    # All values tie: each window's gradient goes to its first element (row-major), as in torch.
    x = np.ones((1, 4, 6, 1), "float32")
    layer = MaxPool2D((2, 3), data_format=data_format)
    x_in = nchw(x) if data_format == "channels_first" else x
    grad = grad_of(layer, x_in, np.ones(layer.compute_output_shape(x_in.shape), "float32"))
    grad = nhwc(grad) if data_format == "channels_first" else grad
    expected = np.zeros((4, 6))
    expected[::2, ::3] = 1
    np.testing.assert_array_equal(grad[0, :, :, 0], expected)


def test_max_gradient_with_explicit_padding_skips_padding(rng):
    x = (rng.normal(size=(1, 4, 4, 1)) - 5).astype("float32")
    layer = MaxPool2D(3, 1, padding=1)
    grad = grad_of(layer, x, np.ones((1, 4, 4, 1), "float32"))
    assert np.isfinite(grad).all()
    assert grad.sum() == pytest.approx(16.0)  # every output window routes 1 to a real element


# ---------------------------------------------------------------- models, shapes, dtypes

def test_dynamic_spatial_dimensions(rng):
    inputs = keras.Input((None, None, 2))
    outputs = [MaxPool2D(3, 2, "same")(inputs), AvgPool2D(3, 2, "same")(inputs),
               AvgPool2D(3, 2, 1)(inputs), MaxPool2D(2)(inputs)]
    model = keras.Model(inputs, outputs)
    assert [tuple(o.shape) for o in outputs] == [(None, None, None, 2)] * 4
    x = rng.normal(size=(3, 9, 6, 2)).astype("float32")
    results = model.predict(x, verbose=0)
    assert [r.shape for r in results] == [(3, 5, 3, 2), (3, 5, 3, 2), (3, 5, 3, 2), (3, 4, 3, 2)]
    np.testing.assert_allclose(results[1], pool_reference(x, "avg", (3, 3), (2, 2), "same"),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[2], pool_reference(x, "avg", (3, 3), (2, 2),
                                                          ((1, 1), (1, 1))), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="only TensorFlow graphs have run-time sizes")
@pytest.mark.parametrize("layer_cls", [MaxPool2D, AvgPool2D])
def test_unknown_spatial_size_in_graph(rng, layer_cls):
    import tensorflow as tf

    layer = layer_cls(3, 2, "same")
    graph_fn = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 2))])
    x = rng.normal(size=(2, 7, 6, 2)).astype("float32")
    mode = "max" if layer_cls is MaxPool2D else "avg"
    expected = pool_reference(x, mode, (3, 3), (2, 2), "same")
    np.testing.assert_allclose(graph_fn(x).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer, input_shape, expected",
    [
        (MaxPool2D(2), (None, 28, 28, 6), (None, 14, 14, 6)),
        (AvgPool2D(3, 2, padding=1), (4, 7, 6, 3), (4, 4, 3, 3)),
        (MaxPool2D(3, 2, "same", data_format="channels_first"), (1, 5, 9, 7), (1, 5, 5, 4)),
        (AvgPool2D((2, 3), (1, 2), ((1, 0), (0, 1))), (2, 4, 5, 1), (2, 4, 2, 1)),
        (MaxPool2D(2), (2, None, 8, 1), (2, None, 4, 1)),
    ],
)
def test_compute_output_shape(layer, input_shape, expected):
    assert layer.compute_output_shape(input_shape) == expected


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_low_precision_dtype_policies(rng, mode, dtype):
    x = rng.uniform(size=(2, 6, 7, 3)).astype("float32")
    layer = (MaxPool2D if mode == "max" else AvgPool2D)(3, 2, "same", dtype=dtype)
    y = apply(layer, x)
    assert keras.backend.standardize_dtype(y.dtype) == layer.compute_dtype
    assert layer.compute_dtype in ("float16", "bfloat16")
    expected = pool_reference(x, mode, (3, 3), (2, 2), "same")
    np.testing.assert_allclose(to_numpy(ops.cast(y, "float32")), expected, rtol=1e-2, atol=1e-2)


def test_integer_input_is_cast_to_float():
    x = np.arange(16).reshape(1, 4, 4, 1)
    y = AvgPool2D(2)(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    np.testing.assert_allclose(to_numpy(y)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


def test_trains_inside_sequential_model(rng):
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = (x[:, :4, :4, 0].mean(axis=(1, 2)) > 0).astype("int64")
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Dense(4),  # per pixel, so the gradient flows back through both poolings
        MaxPool2D(2),
        AvgPool2D(2, padding=1),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ])
    model.compile(keras.optimizers.Adam(0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# ---------------------------------------------------------------- serialization

@pytest.mark.parametrize(
    "layer",
    [MaxPool2D(3, 2, "same", data_format="channels_first"), AvgPool2D((2, 3), None, (1, 1)),
     MaxPool2D(padding=((1, 0), (0, 1)), name="pool"), AvgPool2D(dtype="mixed_float16")],
)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert (clone.pool_size, clone.strides, clone.padding, clone.data_format) == (
        layer.pool_size, layer.strides, layer.padding, layer.data_format)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_keras_file_round_trip(rng, tmp_path):
    inputs = keras.Input((9, 8, 2))
    h = MaxPool2D(3, 1, padding=1)(inputs)
    h = AvgPool2D((2, 3), (2, 1), "same")(h)
    outputs = AvgPool2D(2, padding=((1, 0), (0, 1)), name="explicit_avg")(h)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "pool.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("explicit_avg"), AvgPool2D)
    assert loaded.get_layer("explicit_avg").padding == ((1, 0), (0, 1))
    x = rng.normal(size=(2, 9, 8, 2)).astype("float32")
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))


def test_registered_names():
    assert keras.saving.get_registered_name(MaxPool2D) == "kcnn>MaxPool2D"
    assert keras.saving.get_registered_name(AvgPool2D) == "kcnn>AvgPool2D"


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "jax", reason="Keras's JAX ONNX route takes about a minute here; "
                    "the same graph exports from TensorFlow and torch")
def test_onnx_export_matches(rng, tmp_path):
    # Guards the padding value of max pooling: tf2onnx lowers `where` to c·x + (1 − c)·y, so a
    # −inf padding would turn every padded window into NaN.
    ort = pytest.importorskip("onnxruntime")
    inputs = keras.Input((9, 8, 2))
    h = MaxPool2D(3, 1, padding=1)(inputs)
    h = MaxPool2D(3, 2, "same")(h)
    h = AvgPool2D(3, 2, "same")(h)
    model = keras.Model(inputs, AvgPool2D(2, padding=1)(h))
    x = rng.normal(size=(3, 9, 8, 2)).astype("float32")
    expected = to_numpy(model(x))
    path = str(tmp_path / "pool.onnx")
    model.export(path, format="onnx", verbose=False)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- argument validation

@pytest.mark.parametrize("layer_cls", [MaxPool2D, AvgPool2D])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pool_size": 0}, r"`pool_size` argument must be a tuple of 2 integers.*pool_size=0"),
        ({"pool_size": (2, 2, 2)}, r"`pool_size` argument.*pool_size=\(2, 2, 2\)"),
        ({"pool_size": "2"}, r"`pool_size` argument must be a tuple of 2 integers"),
        ({"pool_size": (2, -1)}, r"pool_size=\(2, -1\).*value > 0"),
        ({"strides": 0}, r"`strides` argument must be a tuple of 2 integers.*strides=0"),
        ({"strides": (1, 2, 3)}, r"`strides` argument.*strides=\(1, 2, 3\)"),
        ({"padding": "full"}, r"`padding` argument must be.*Received: full"),
        ({"padding": -1}, r"`padding` argument must be.*padding=-1.*negative"),
        ({"padding": True}, r"`padding` argument must be.*padding=True"),
        ({"padding": 1.5}, r"`padding` argument must be.*padding=1.5"),
        ({"padding": (1, 1, 1)}, r"`padding` argument must be.*padding=\(1, 1, 1\)"),
        ({"padding": ((1,), (1, 1))}, r"`padding` argument must be.*\(\(top, bottom\)"),
        ({"padding": ((1, 0), (0, "a"))}, r"`padding` argument must be"),
        ({"pool_size": 3, "padding": 2}, r"at most half of `pool_size`.*padding=2.*\(3, 3\)"),
        ({"pool_size": (2, 4), "padding": ((0, 0), (3, 0))}, r"at most half of `pool_size`"),
        ({"data_format": "NHWC"}, r"`data_format` argument must be one of.*nhwc"),
    ],
)
def test_bad_arguments_raise(layer_cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        layer_cls(**kwargs)


@pytest.mark.parametrize(
    "layer, shape",
    [(MaxPool2D(3), (1, 2, 5, 1)), (AvgPool2D((2, 6)), (1, 4, 5, 1)),
     (MaxPool2D(5, padding=1), (1, 2, 9, 1)),
     (AvgPool2D(4, data_format="channels_first"), (1, 8, 3, 3))],
)
def test_pool_larger_than_padded_input_raises(layer, shape):
    with pytest.raises(ValueError, match=r"`pool_size`=.*larger than the padded input"):
        layer(np.zeros(shape, "float32"))


def test_wrong_rank_input_raises():
    with pytest.raises(ValueError, match="expected ndim=4"):
        MaxPool2D()(np.zeros((4, 4, 1), "float32"))


# ---------------------------------------------------------------- arrangements and docs

@pytest.mark.parametrize("layer_cls", [MaxPool2D, AvgPool2D])
@pytest.mark.parametrize("padding", ["valid", "same", 1])
def test_tiled_windows_equal_strided_slices_with_ties(rng, layer_cls, padding, monkeypatch):
    """stride == pool runs through reshapes and unstacks (odd sizes crop or pad): the slice loop's
    outputs and gradients, max pooling's to each window's first maximum (row-major) when values tie.
    The windows are taken channels_last whatever the layer's data_format."""
    x = rng.integers(0, 3, size=(2, 7, 6, 3)).astype("float32")  # many ties
    tiled, sliced = layer_cls(2, padding=padding), layer_cls(2, padding=padding)
    assert tiled._tiled_windows(ops.convert_to_tensor(x), ops.add) is not None
    assert layer_cls(3, 2)._tiled_windows(ops.convert_to_tensor(x), ops.add) is None  # overlapping: slices
    monkeypatch.setattr(sliced, "_tiled_windows", lambda padded, combine: None)
    np.testing.assert_allclose(to_numpy(tiled(x)), to_numpy(sliced(x)), rtol=1e-6)
    cotangent = rng.normal(size=tiled.compute_output_shape(x.shape)).astype("float32")
    np.testing.assert_allclose(grad_of(tiled, x, cotangent), grad_of(sliced, x, cotangent), rtol=1e-6)


@pytest.mark.parametrize("layer_cls", [MaxPool2D, AvgPool2D])
def test_layers_have_docstrings_with_arguments(layer_cls):
    assert "pool_size:" in layer_cls.__doc__ and "Y[n, i, j, c]" in layer_cls.__doc__
