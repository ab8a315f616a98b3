"""CrossCorrelation2D keeps each Conv2D behaviour that Keras's own conv tests exercise
(``keras/src/layers/convolutional/conv_test.py`` and its ``run_layer_test``): LoRA (enable, the
``lora_rank`` argument, ``lora_alpha``, equality with Conv2D's LoRA, training, saving), constraints,
regularizer losses, dtype policies, symbolic calls and output specs, config round trips and
zero-size batches. Numerical parity and NumPy references live in test_cross_correlation.py."""

import json

import keras
import numpy as np
import pytest
from keras import ops

from kcnn.layers import CrossCorrelation2D

BACKEND = keras.backend.backend()
ALGORITHMS = ["auto", "reference", "im2col", "kernel_rows", "bands"]
# Most tests share one layer shape (4 filters, 3×3 kernel, 3 channels) and structure-only tests
# use zeros: eager JAX compiles each random initializer once per shape.
ZEROS = dict(kernel_initializer="zeros")


def _numpy(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


def _error_of(factory):
    with pytest.raises(Exception) as info:
        factory()
    return type(info.value), str(info.value)


def _twins(input_shape, rank=None, lora_alpha=None, seed=0, **kwargs):
    """A Conv2D and a CrossCorrelation2D with equal random weights (LoRA factors too when
    ``rank``: B non-zero, so the update counts)."""
    rng = np.random.default_rng(seed)
    pair = [keras.layers.Conv2D(**kwargs), CrossCorrelation2D(**kwargs)]
    for layer in pair:
        layer.build(input_shape)
    weights = [rng.normal(size=w.shape).astype("float32") for w in pair[0].get_weights()]
    lora = None
    if rank:
        for layer in pair:
            layer.set_weights(weights)
            layer.enable_lora(rank, lora_alpha=lora_alpha)
        lora = [rng.normal(size=v.shape).astype("float32") for v in (pair[0].lora_kernel_a, pair[0].lora_kernel_b)]
    for layer in pair:
        if lora is None:
            layer.set_weights(weights)
        else:
            layer.lora_kernel_a.assign(lora[0])
            layer.lora_kernel_b.assign(lora[1])
    return pair


def _lora_summary(layer):
    names = lambda ws: sorted(w.name for w in ws)  # noqa: E731
    summary = dict(trainable=names(layer.trainable_weights), frozen=names(layer.non_trainable_weights),
                   a=(tuple(layer.lora_kernel_a.shape), layer.lora_kernel_a.dtype),
                   b=(tuple(layer.lora_kernel_b.shape), layer.lora_kernel_b.dtype))
    if BACKEND == "torch":
        summary["torch_params"] = len(layer.torch_params)
    return summary


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_enable_lora_adds_float32_factors_like_conv2d(policy):
    builtin, explicit = (cls(4, 3, dtype=policy) for cls in (keras.layers.Conv2D, CrossCorrelation2D))
    for layer in (builtin, explicit):
        layer.build((None, 6, 6, 3))
        layer.enable_lora(2)
    assert _lora_summary(explicit) == _lora_summary(builtin)
    summary = _lora_summary(explicit)
    assert summary["trainable"] == ["bias", "lora_kernel_a", "lora_kernel_b"] and summary["frozen"] == ["kernel"]
    assert summary["a"] == ((3, 3, 3, 2), "float32") and summary["b"] == ((2, 4), "float32")
    assert summary.get("torch_params", 4) == 4


def test_lora_weight_paths_inside_a_model():
    model = keras.Sequential([keras.Input((6, 6, 3)), CrossCorrelation2D(4, 3, name="corr", **ZEROS)], name="net")
    model.layers[0].enable_lora(2)
    assert model.layers[0].lora_kernel_a.path == "net/corr/lora_kernel_a"


def test_enable_lora_errors_match_conv2d():
    def unbuilt(cls):
        return lambda: cls(4, 3, **ZEROS).enable_lora(2)

    def twice(cls):
        def run():
            layer = cls(4, 3, **ZEROS)
            layer.build((None, 6, 6, 3))
            layer.enable_lora(2)
            layer.enable_lora(2)
        return run

    def constrained(cls):
        def run():
            layer = cls(4, 3, kernel_constraint="non_neg", **ZEROS)
            layer.build((None, 6, 6, 3))
            layer.enable_lora(2)
        return run

    for case in (unbuilt, twice, constrained):
        expected = _error_of(case(keras.layers.Conv2D))
        assert expected[0] is ValueError
        assert _error_of(case(CrossCorrelation2D)) == expected


def test_lora_rank_argument_enables_lora_at_build(call):
    kwargs = dict(filters=4, kernel_size=3, activation="sigmoid", kernel_regularizer="l2", lora_rank=2)
    builtin, explicit = keras.layers.Conv2D(**kwargs), CrossCorrelation2D(**kwargs)
    x = np.random.default_rng(1).random((2, 6, 6, 3), dtype=np.float32)
    builtin.build(x.shape)
    assert call(explicit, x).shape == (2, 4, 4, 4) and explicit.lora_enabled
    assert len(explicit.trainable_weights) == 3 and len(explicit.non_trainable_weights) == 1
    assert len(explicit.losses) == len(builtin.losses) == 2  # l2 on each LoRA factor
    config = explicit.get_config()
    assert (config["lora_rank"], config["lora_alpha"]) == (2, 2)
    clone = CrossCorrelation2D.from_config(config)
    clone.build(x.shape)
    assert clone.lora_enabled and clone.lora_rank == 2


LORA_CASES = [  # (conv kwargs, input shape, rank, lora_alpha)
    (dict(filters=4, kernel_size=3), (2, 6, 6, 3), 2, None),
    (dict(filters=6, kernel_size=(3, 2), strides=2, padding="same", groups=2), (2, 7, 6, 4), 2, 3.0),
    (dict(filters=4, kernel_size=2, dilation_rate=2, data_format="channels_first"), (2, 3, 6, 5), 1, 4.0),
]


@pytest.mark.parametrize("kwargs,shape,rank,alpha", LORA_CASES, ids=["plain", "strided-groups-alpha", "cf-dilated"])
def test_lora_outputs_and_gradients_equal_conv2d_lora(kwargs, shape, rank, alpha, call, gradients):
    builtin, explicit = _twins(shape, rank=rank, lora_alpha=alpha, **kwargs)
    base = builtin.non_trainable_weights[0].numpy()
    a, b = builtin.lora_kernel_a.numpy(), builtin.lora_kernel_b.numpy()
    merged = base + (alpha or rank) / rank * (a.reshape(-1, rank) @ b).reshape(base.shape)
    np.testing.assert_allclose(_numpy(explicit.kernel), merged, rtol=1e-5, atol=1e-5)

    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    expected = call(builtin, x)
    for training in (False, True):
        np.testing.assert_allclose(call(explicit, x, training=training), expected, atol=1e-4)
    upstream = np.random.default_rng(3).normal(size=expected.shape).astype("float32")
    want = gradients(lambda v: ops.sum(ops.multiply(builtin(v), upstream)), x, builtin)
    got = gradients(lambda v: ops.sum(ops.multiply(explicit(v, training=True), upstream)), x, explicit)
    names = ["input"] + [w.name for w in explicit.trainable_weights]
    assert names[1:] == [w.name for w in builtin.trainable_weights]
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=f"{name} gradient")


def test_lora_under_mixed_bfloat16_keeps_float32_gradients(gradients):
    """The LoRA factors' gradients are float32 and equal float32 Conv2D+LoRA's on the
    bf16-rounded input (the kernel gradient is accumulated in float32, then A·B's chain rule)."""
    shape = (2, 6, 6, 3)
    explicit = CrossCorrelation2D(4, 3, padding="same", dtype="mixed_bfloat16")
    reference = keras.layers.Conv2D(4, 3, padding="same")
    rng, values = np.random.default_rng(4), None
    for layer in (explicit, reference):
        layer.build(shape)
        layer.enable_lora(2)
        values = values or [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
        for weight, value in zip(layer.weights, values):  # kernel, bias, lora_kernel_a, lora_kernel_b
            weight.assign(value)
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    assert keras.backend.standardize_dtype(explicit(x).dtype) == "bfloat16"
    x_bf16 = _numpy(ops.cast(x, "bfloat16"))
    got = gradients(lambda v: ops.sum(ops.cast(explicit(v, training=True), "float32")), x, explicit)
    want = gradients(lambda v: ops.sum(reference(v)), x_bf16, reference)
    names = [w.name for w in explicit.trainable_weights]
    assert names == ["bias", "lora_kernel_a", "lora_kernel_b"]
    for name, g, w in zip(names[1:], got[2:], want[2:]):
        assert g.dtype == np.float32, name
        np.testing.assert_allclose(g, w, rtol=2e-3, atol=2e-3, err_msg=f"{name} gradient")


def test_lora_trains_with_fit_and_survives_saving(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.random((16, 6, 6, 3), dtype=np.float32), rng.random((16, 6, 6, 4), dtype=np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 3)), CrossCorrelation2D(4, 3, padding="same")])
    layer = model.layers[0]
    layer.enable_lora(2)
    before = [v.numpy().copy() for v in (layer.non_trainable_weights[0], layer.lora_kernel_a, layer.lora_kernel_b)]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    after = [v.numpy() for v in (layer.non_trainable_weights[0], layer.lora_kernel_a, layer.lora_kernel_b)]
    np.testing.assert_array_equal(after[0], before[0])  # the base kernel is frozen
    assert np.abs(after[1] - before[1]).max() > 0 and np.abs(after[2] - before[2]).max() > 0
    expected = model.predict(x, verbose=0)

    model.save(tmp_path / "lora.keras")
    loaded = keras.saving.load_model(tmp_path / "lora.keras")
    assert isinstance(loaded.layers[0], CrossCorrelation2D) and loaded.layers[0].lora_enabled
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)

    # Weights only: the merged kernel goes into a plain layer, and a plain file into a LoRA one.
    model.save_weights(tmp_path / "lora.weights.h5")
    plain = keras.Sequential([keras.Input((6, 6, 3)), CrossCorrelation2D(4, 3, padding="same")])
    plain.load_weights(tmp_path / "lora.weights.h5")
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-5)
    plain.save_weights(tmp_path / "plain.weights.h5")
    loaded.load_weights(tmp_path / "plain.weights.h5")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)


def test_constraints_are_set_and_applied_like_conv2d():
    kwargs = dict(filters=4, kernel_size=3, kernel_constraint="non_neg", bias_constraint="non_neg")
    x = np.random.default_rng(6).random((4, 6, 6, 3), dtype=np.float32)
    y = np.full((4, 4, 4, 4), -5.0, dtype="float32")  # pulls every weight below zero
    trained = []
    for cls in (keras.layers.Conv2D, CrossCorrelation2D):
        layer = cls(**kwargs, kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0, seed=7),
                    bias_initializer="ones")
        model = keras.Sequential([keras.Input(x.shape[1:]), layer])
        assert isinstance(layer.kernel.constraint, keras.constraints.NonNeg)
        assert isinstance(layer.bias.constraint, keras.constraints.NonNeg)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        trained.append(layer.get_weights())
    for got, want in zip(trained[1], trained[0]):
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert got.min() >= 0.0
    assert (trained[1][1] == 0).all()  # the bias was clipped, not just left alone


def test_regularizer_losses_equal_conv2d():
    kwargs = dict(filters=4, kernel_size=3, kernel_regularizer=keras.regularizers.L2(0.1),
                  bias_regularizer=keras.regularizers.L1(0.2), activity_regularizer=keras.regularizers.L2(0.01))
    builtin, explicit = _twins((2, 6, 6, 3), **kwargs)
    x = np.random.default_rng(8).normal(size=(2, 6, 6, 3)).astype("float32")
    builtin(x)
    y = explicit(x)
    got, want = sorted(float(_numpy(v)) for v in explicit.losses), sorted(float(_numpy(v)) for v in builtin.losses)
    assert len(got) == 3
    np.testing.assert_allclose(got, want, rtol=1e-5)
    kernel, bias = explicit.get_weights()
    independent = [0.1 * np.sum(kernel**2), 0.2 * np.sum(np.abs(bias)), 0.01 * np.sum(_numpy(y) ** 2) / 2]
    np.testing.assert_allclose(got, sorted(independent), rtol=1e-4)


POLICIES = ["float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"]


@pytest.mark.parametrize("policy", POLICIES + ["policy-object"])
def test_dtype_policy_output_spec_weights_and_config(policy, call):
    dtype = keras.DTypePolicy("mixed_bfloat16") if policy == "policy-object" else policy
    layer = CrossCorrelation2D(4, 3, strides=2, padding=1, dtype=dtype)
    x = np.random.default_rng(9).normal(size=(2, 7, 7, 3)).astype("float32")
    y = call(layer, x)
    spec = layer.compute_output_spec(keras.KerasTensor(x.shape, dtype=layer.compute_dtype))
    assert keras.backend.standardize_dtype(y.dtype) == spec.dtype == layer.compute_dtype
    assert tuple(y.shape) == tuple(spec.shape) == (2, 4, 4, 4)
    assert {w.dtype for w in layer.weights} == {layer.dtype_policy.variable_dtype}
    clone = CrossCorrelation2D.from_config(layer.get_config())
    assert clone.dtype_policy.name == layer.dtype_policy.name


def test_config_and_serialization_round_trip():
    layer = CrossCorrelation2D(
        6, (3, 2), strides=(2, 1), padding=((1, 0), (2, 1)), groups=2, activation="relu", use_bias=False,
        kernel_regularizer="l2", activity_regularizer="l1", bias_constraint="non_neg", lora_rank=3, lora_alpha=6,
        algorithm="reference", dtype="mixed_float16", name="corr",
    )
    config = json.dumps(layer.get_config(), sort_keys=True)
    clone = CrossCorrelation2D.from_config(layer.get_config())
    assert json.dumps(clone.get_config(), sort_keys=True) == config
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))
    assert type(revived) is CrossCorrelation2D
    assert json.dumps(revived.get_config(), sort_keys=True) == config
    assert set(dir(revived)) == set(dir(layer))


SYMBOLIC_CASES = [  # (conv kwargs, input shape without batch)
    (dict(filters=5, kernel_size=2), (5, 5, 4)),
    (dict(filters=6, kernel_size=2, padding="same", dilation_rate=(2, 2), groups=2), (4, 4, 4)),
    (dict(filters=6, kernel_size=(2, 2), strides=(2, 1), groups=2), (5, 5, 4)),
    (dict(filters=4, kernel_size=3, strides=2, padding="same", data_format="channels_first"), (2, 9, 8)),
    (dict(filters=3, kernel_size=3), (None, None, 2)),
    (dict(filters=3, kernel_size=3, strides=2, padding="same"), (None, 7, 2)),
]


@pytest.mark.parametrize("kwargs,shape", SYMBOLIC_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_symbolic_call_matches_conv2d(kwargs, shape):
    inputs = keras.Input(shape, batch_size=None)
    builtin, explicit = keras.layers.Conv2D(**kwargs, **ZEROS), CrossCorrelation2D(**kwargs, **ZEROS)
    want = builtin(inputs)
    got = explicit(inputs)
    assert isinstance(got, keras.KerasTensor) and got.shape == want.shape and got.dtype == want.dtype
    assert explicit.built and len(explicit.trainable_weights) == 2 and not explicit.non_trainable_weights
    assert explicit.compute_output_spec(inputs).shape == want.shape
    assert explicit.supports_masking is builtin.supports_masking is False


@pytest.mark.parametrize("padding,expected", [(1, (None, 5, 4, 3)), (((0, 2), (1, 1)), (None, 5, 4, 3))])
def test_symbolic_call_with_explicit_padding(padding, expected):
    inputs = keras.Input((5, 4, 2))
    assert CrossCorrelation2D(3, 3, padding=padding, **ZEROS)(inputs).shape == expected
    layer = CrossCorrelation2D(3, 3, padding=padding, data_format="channels_first", **ZEROS)
    outputs = layer(keras.Input((2, 5, 4)))
    assert outputs.shape == (None, 3, 5, 4)


def test_symbolic_invalid_configuration_raises_like_conv2d():
    def case(cls):
        return lambda: cls(1, 2, dilation_rate=10, **ZEROS)(keras.Input((10, 10, 3)))

    expected = _error_of(case(keras.layers.Conv2D))
    assert expected[0] is ValueError
    assert _error_of(case(CrossCorrelation2D)) == expected


ZERO_CASES = [  # (conv kwargs, input shape with batch 0, Conv2D's output shape)
    (dict(filters=4, kernel_size=3, padding="same"), (0, 6, 6, 4), (0, 6, 6, 4)),
    (dict(filters=4, kernel_size=3, strides=2, padding=1, groups=2), (0, 6, 6, 4), (0, 3, 3, 4)),
    (dict(filters=4, kernel_size=2, data_format="channels_first"), (0, 4, 5, 6), (0, 4, 4, 5)),
]


@pytest.mark.parametrize("algorithm,case", [(a, 0) for a in ALGORITHMS] + [("auto", 1), ("auto", 2)])
def test_zero_size_batch(algorithm, case, call):
    """A batch of 0 examples gives 0 outputs of the right shape (Conv2D's), for inference and
    training, on every arrangement (PyTorch cannot infer a -1 axis next to a 0)."""
    kwargs, shape, expected = ZERO_CASES[case]
    layer = CrossCorrelation2D(algorithm=algorithm, **kwargs, **ZEROS)
    x = np.zeros(shape, dtype="float32")
    assert layer.compute_output_shape(shape) == expected
    for training in (False, True):
        assert call(layer, x, training=training).shape == expected


def test_zero_size_batch_gradients(gradients):
    layer = CrossCorrelation2D(4, 3, padding="same", **ZEROS)
    x = np.zeros((0, 6, 6, 3), dtype="float32")
    layer.build(x.shape)
    grad_x, grad_k, grad_b = gradients(lambda v: ops.sum(layer(v, training=True)), x, layer)
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_k, np.zeros(layer.kernel.shape, "float32"))
    np.testing.assert_array_equal(grad_b, np.zeros(4, "float32"))
