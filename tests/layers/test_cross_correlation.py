"""CrossCorrelation2D: parity with keras.layers.Conv2D, NumPy references, errors, saving, training."""

import itertools

import keras
import numpy as np
import onnxruntime as ort
import pytest
from keras import ops

from kcnn.layers import CrossCorrelation2D, corr2d, dispatch

BACKEND = keras.backend.backend()


def numpy_cross_correlation(x, kernel, bias, strides, dilation, pads, groups):
    """The formula as a plain loop: channels_last x (N, H, W, C), kernel (kh, kw, C/g, F)."""
    (top, bottom), (left, right) = pads
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, cg, filters = kernel.shape
    fg = filters // groups
    n, hp, wp, _ = x.shape
    ho = (hp - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, ho, wo, filters), dtype=np.float64)
    for i, j, f in itertools.product(range(ho), range(wo), range(filters)):
        g = f // fg
        for a, b in itertools.product(range(kh), range(kw)):
            pixel = x[:, i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1], g * cg : (g + 1) * cg]
            y[:, i, j, f] += pixel @ kernel[a, b, :, f]
    return y + (0 if bias is None else bias)


def paired_layers(input_shape, **kwargs):
    """A built Conv2D and a CrossCorrelation2D holding the same weights."""
    builtin = keras.layers.Conv2D(**kwargs)
    builtin.build(input_shape)
    explicit = CrossCorrelation2D(**kwargs)
    explicit.build(input_shape)
    explicit.set_weights(builtin.get_weights())
    return builtin, explicit


KERNEL_CONFIGS = [  # (kernel_size, strides, dilation_rate)
    (1, 1, 1), (3, 1, 1), ((2, 3), 1, 1), (3, 2, 1), (5, (2, 3), 1), (4, 3, 1), (3, 1, 2), ((3, 2), 1, (2, 3)),
]
LAYOUTS = [("channels_last", (9, 9)), ("channels_last", (10, 7)), ("channels_first", (10, 7))]
# Every kernel configuration meets every (padding, groups) pair; layouts and sizes rotate.
PARITY_GRID = [
    dict(kernel_size=k, strides=s, dilation_rate=d, padding=p, groups=g, data_format=LAYOUTS[(i + j) % 3][0],
         size=LAYOUTS[(i + j) % 3][1])
    for i, (k, s, d) in enumerate(KERNEL_CONFIGS)
    for j, (p, g) in enumerate([("valid", 1), ("same", 2), ("valid", 2), ("same", 1)])
]


def _id(case):
    return "-".join(f"{v}" for v in case.values()).replace(" ", "")


@pytest.mark.parametrize("case", PARITY_GRID, ids=_id)
def test_outputs_and_gradients_equal_conv2d(case, rng, gradients, call):
    case = dict(case)
    size, fmt = case.pop("size"), case["data_format"]
    channels, filters = 4, 6
    shape = (2, *size, channels) if fmt == "channels_last" else (2, channels, *size)
    builtin, explicit = paired_layers(shape, filters=filters, **case)
    x = rng.normal(size=shape).astype("float32")
    expected = call(builtin, x)
    assert explicit.compute_output_shape(shape) == builtin.compute_output_shape(shape) == expected.shape
    for training in (False, True):
        np.testing.assert_allclose(call(explicit, x, training=training), expected, atol=1e-5)

    upstream = rng.normal(size=expected.shape).astype("float32")
    want = gradients(lambda x: ops.sum(ops.multiply(builtin(x), upstream)), x, builtin)
    # training=True runs the hand-written backward pass (inference traces the plain formula).
    got = gradients(lambda x: ops.sum(ops.multiply(explicit(x, training=True), upstream)), x, explicit)
    for name, g, w in zip(["input", "kernel", "bias"], got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, err_msg=f"{name} gradient")


LARGE_LAYER_CASES = [  # (kernel_size, strides, dilation_rate, padding, groups)
    (3, 1, 1, "same", 1), (3, 1, 2, "valid", 2), (5, 2, 1, "same", 1), ((3, 2), (1, 2), 1, 1, 1),
    (1, 1, 1, "valid", 1),
]


def _assert_equals_the_reference(algorithm, x, rng, gradients, call, **kwargs):
    """``CrossCorrelation2D(algorithm=…, **kwargs)`` against the oracle (``algorithm="reference"``) on ``x``:
    outputs (inference and training) and the input, kernel and bias gradients. Returns the output."""
    reference = CrossCorrelation2D(algorithm="reference", bias_initializer="random_normal", **kwargs)
    explicit = CrossCorrelation2D(algorithm=algorithm, bias_initializer="random_normal", **kwargs)
    reference.build(x.shape)
    explicit.build(x.shape)
    explicit.set_weights(reference.get_weights())
    expected = call(reference, x)
    for training in (False, True):
        np.testing.assert_allclose(call(explicit, x, training=training), expected, atol=1e-4)
    upstream = rng.normal(size=expected.shape).astype("float32")
    want = gradients(lambda v: ops.sum(ops.multiply(reference(v), upstream)), x, reference)
    got = gradients(lambda v: ops.sum(ops.multiply(explicit(v, training=True), upstream)), x, explicit)
    for name, g, w in zip(["input", "kernel", "bias"], got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, err_msg=f"{name} gradient")
    return expected


@pytest.mark.parametrize("algorithm", ["im2col", "kernel_rows", "bands", "toeplitz", "auto"])
@pytest.mark.parametrize("kernel_size,strides,dilation,padding,groups", LARGE_LAYER_CASES)
def test_every_arrangement_equals_the_reference(algorithm, kernel_size, strides, dilation, padding, groups, rng,
                                                gradients, call, monkeypatch):
    """Each fast arrangement against the oracle, outputs and gradients. A tiny patch budget makes
    "auto" pick its large-layer path and splits PyTorch's buffer into several example chunks."""
    from kcnn.layers import dispatch

    monkeypatch.setattr(dispatch, "MAX_PATCH_ELEMENTS", 600)
    x = rng.normal(size=(3, 12, 13, 4)).astype("float32")
    _assert_equals_the_reference(algorithm, x, rng, gradients, call, filters=6, kernel_size=kernel_size,
                                 strides=strides, dilation_rate=dilation, groups=groups, padding=padding)


@pytest.mark.parametrize("kernel_size,strides,dilation,width,blocks", [
    (5, 1, 1, 14, 2),  # LeNet-like, "same": 2 blocks of 7 output columns
    (5, 1, 1, 28, 4),
    ((3, 3), (1, 2), 1, 20, 2),  # strided columns: Wo = 10, blocks of 5
    ((3, 3), 1, (1, 2), 14, 2),  # dilated columns
    ((3, 3), 1, (2, 1), 14, 2),  # dilated rows
    (3, 1, 1, 13, 1),  # 13 columns: prime, one block
])
def test_toeplitz_column_blocks_equal_the_reference(kernel_size, strides, dilation, width, blocks, rng, gradients,
                                                    call):
    from kcnn.layers.correlation_toeplitz import column_blocks

    x = rng.normal(size=(2, 9, width, 2)).astype("float32")
    layer = CrossCorrelation2D(4, kernel_size, strides=strides, dilation_rate=dilation)
    y = _assert_equals_the_reference("toeplitz", x, rng, gradients, call, filters=4, kernel_size=kernel_size,
                                     strides=strides, dilation_rate=dilation, padding="same")
    assert column_blocks(y.shape[2], layer.kernel_size[1], layer.strides[1], layer.dilation_rate[1])[0] == blocks


@pytest.mark.parametrize("out_w,kernel_w,stride,dilation,expected", [
    (28, 5, 1, 1, (4, 7, 11)), (10, 5, 1, 1, (2, 5, 9)), (13, 3, 1, 1, (1, 13, 15)),
    (4, 5, 1, 1, (1, 4, 8)),  # narrower than the kernel: one block
    (10, 3, 2, 1, (2, 5, 11)), (9, 3, 1, 2, (3, 3, 7)),
])
def test_column_blocks_are_the_most_that_hold_a_kernel_width(out_w, kernel_w, stride, dilation, expected):
    from kcnn.layers.correlation_toeplitz import column_blocks

    assert column_blocks(out_w, kernel_w, stride, dilation) == expected


@pytest.mark.parametrize("kernel_size,strides,dilation,channels",
                         [((5, 5), (1, 1), (1, 1), 1), ((3, 3), (2, 2), (1, 1), 2), ((3, 2), (1, 2), (1, 1), 1),
                          ((3, 3), (1, 1), (2, 1), 3)])
def test_toeplitz_kernel_gradient_equals_the_formula_at_any_strides(kernel_size, strides, dilation, channels, rng):
    """dK from whole input rows against a NumPy loop of dK = Σ window · dY (the arrangement's forward
    and input gradient, stride 1 along rows, are checked against the reference above)."""
    from kcnn.layers.correlation import Job
    from kcnn.layers.correlation_toeplitz import kernel_gradient
    from kcnn.layers.dispatch import Plan

    xp = rng.normal(size=(2, 11, 12, channels)).astype("float32")
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    ho, wo = (11 - dh * (kh - 1) - 1) // sh + 1, (12 - dw * (kw - 1) - 1) // sw + 1
    dy = rng.normal(size=(2, ho, wo, 4)).astype("float32")
    want = np.zeros((kh, kw, channels, 4))
    for a, b in itertools.product(range(kh), range(kw)):
        window = xp[:, a * dh : a * dh + (ho - 1) * sh + 1 : sh, b * dw : b * dw + (wo - 1) * sw + 1 : sw]
        want[a, b] = np.einsum("nijc,nijf->cf", window, dy)
    job = Job(Plan("toeplitz"), strides, dilation, 1, (ho, wo), (11, 12))
    got = kernel_gradient(job, ops.convert_to_tensor(xp), ops.convert_to_tensor(dy), want.shape)
    np.testing.assert_allclose(ops.convert_to_numpy(got), want, atol=1e-4)


def test_reference_equals_numpy_loop(rng, call):
    layer = CrossCorrelation2D(4, (3, 2), strides=(2, 1), padding=((1, 0), (2, 1)), groups=2, algorithm="reference",
                               bias_initializer="random_normal")
    x = rng.normal(size=(2, 7, 6, 4)).astype("float32")
    y = call(layer, x)
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, numpy_cross_correlation(x, kernel, bias, (2, 1), (1, 1), ((1, 0), (2, 1)), 2),
                               atol=1e-5)


@pytest.mark.parametrize(
    "kernel_size,strides,dilation,padding,groups",
    [
        ((3, 3), (1, 1), (1, 1), 1, 1),
        ((5, 5), (1, 1), (1, 1), 2, 1),
        ((3, 2), (2, 1), (1, 1), (1, 0), 2),
        ((3, 3), (2, 3), (1, 1), ((0, 2), (1, 3)), 1),
        ((2, 2), (1, 1), (2, 1), ((3, 1), (0, 2)), 2),
        ((11, 11), (4, 4), (1, 1), 1, 1),
    ],
)
def test_explicit_padding_matches_numpy_loop_and_gradients(kernel_size, strides, dilation, padding, groups, rng, gradients, call):
    layer = CrossCorrelation2D(
        4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation, groups=groups,
        bias_initializer="random_normal",
    )
    size = 23 if kernel_size[0] == 11 else 8
    x = rng.normal(size=(2, size, size + 1, 2)).astype("float32")
    y = call(layer, x, training=True)
    kernel, bias = layer.get_weights()
    pads = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
    if isinstance(pads[0], int):
        pads = ((pads[0], pads[0]), (pads[1], pads[1]))
    expected = numpy_cross_correlation(x, kernel, bias, strides, dilation, pads, groups)
    assert y.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, atol=1e-4)

    # Gradients of the hand-written backward pass equal automatic differentiation of
    # ZeroPadding2D + Conv2D (the same function built from Keras's own layers).
    reference = keras.Sequential([keras.layers.ZeroPadding2D(pads), keras.layers.Conv2D(
        4, kernel_size, strides=strides, dilation_rate=dilation, groups=groups)])
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    upstream = rng.normal(size=y.shape).astype("float32")
    want = gradients(lambda x: ops.sum(ops.multiply(reference(x), upstream)), x, reference)
    got = gradients(lambda x: ops.sum(ops.multiply(layer(x, training=True), upstream)), x, layer)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4)


def test_output_size_formula():
    # floor((n + p_total - d(k-1) - 1)/s) + 1 for n=28, p=2+2, k=5: LeNet's first layer keeps 28.
    layer = CrossCorrelation2D(6, 5, padding=2)
    assert layer.compute_output_shape((None, 28, 28, 1)) == (None, 28, 28, 6)
    layer = CrossCorrelation2D(96, 11, strides=4, padding=1)
    assert layer.compute_output_shape((None, 224, 224, 1)) == (None, 54, 54, 96)
    assert CrossCorrelation2D(2, 3, padding=1).compute_output_shape((None, None, 7, 1)) == (None, None, 7, 2)


def test_explicit_padding_round_trips_through_config():
    layer = CrossCorrelation2D(3, 3, padding=((1, 2), (0, 3)))
    config = layer.get_config()
    assert config["padding"] == [[1, 2], [0, 3]]
    clone = CrossCorrelation2D.from_config(config)
    assert clone.padding == ((1, 2), (0, 3))
    assert CrossCorrelation2D(3, 3, padding=(1, 2)).padding == ((1, 1), (2, 2))
    assert CrossCorrelation2D(3, 3, padding="SAME").padding == "same"


INVALID = [
    dict(filters=0, kernel_size=3),
    dict(filters=-2, kernel_size=3),
    dict(filters=4, kernel_size=(0, 3)),
    dict(filters=4, kernel_size=3, strides=(1, 0)),
    dict(filters=4, kernel_size=3, strides=2, dilation_rate=2),
    dict(filters=4, kernel_size=3, groups=0),
    dict(filters=5, kernel_size=3, groups=2),
    dict(filters=4, kernel_size=(1, 2, 3)),
    dict(filters=4, kernel_size=3, padding="full"),
    dict(filters=4, kernel_size=3, data_format="channels_middle"),
]


def _error_of(factory):
    with pytest.raises(Exception) as info:
        factory()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("kwargs", INVALID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_invalid_arguments_raise_what_conv2d_raises(kwargs):
    expected = _error_of(lambda: keras.layers.Conv2D(**kwargs))
    assert _error_of(lambda: CrossCorrelation2D(**kwargs)) == expected
    assert expected[0] is ValueError


@pytest.mark.parametrize("padding", [-1, (1, -1), (1, 2, 3), ((1, 2), 3), 1.5, "2", True, None])
def test_invalid_explicit_padding_names_the_argument(padding):
    with pytest.raises(ValueError, match="padding"):
        CrossCorrelation2D(4, 3, padding=padding)


@pytest.mark.parametrize(
    "kwargs,input_shape",
    [
        (dict(filters=4, kernel_size=3, groups=2), (1, 8, 8, 3)),
        (dict(filters=4, kernel_size=5), (1, 4, 8, 2)),
        (dict(filters=4, kernel_size=3, dilation_rate=3), (1, 6, 6, 2)),
    ],
)
def test_build_errors_match_conv2d(kwargs, input_shape):
    expected = _error_of(lambda: keras.layers.Conv2D(**kwargs).build(input_shape))
    assert _error_of(lambda: CrossCorrelation2D(**kwargs).build(input_shape)) == expected


def test_input_too_small_with_explicit_padding():
    with pytest.raises(ValueError, match="zero or negative"):
        CrossCorrelation2D(2, 5, padding=(1, 0)).build((1, 2, 9, 1))


def test_learns_the_edge_detector_kernel(gradients):
    """The seeds' task: recover K = [[1, -1]] from X and Y = corr2d(X, K)."""
    x = np.ones((6, 8), dtype="float32")
    x[:, 2:6] = 0
    y = ops.convert_to_numpy(corr2d(x, np.array([[1.0, -1.0]], dtype="float32")))
    layer = CrossCorrelation2D(1, (1, 2), use_bias=False, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=1))
    x4, y4 = x.reshape(1, 6, 8, 1), y.reshape(1, 6, 7, 1)
    layer.build(x4.shape)
    for _ in range(20):
        (grad,) = gradients(lambda inputs: ops.sum(ops.square(ops.subtract(layer(inputs, training=True), y4))), x4, layer)[1:]
        layer.kernel.assign(layer.kernel - 0.03 * grad)
    np.testing.assert_allclose(ops.convert_to_numpy(layer.kernel).reshape(2), [1.0, -1.0], atol=0.02)


def test_one_by_one_equals_dense_per_pixel(rng):
    layer = CrossCorrelation2D(5, 1, bias_initializer="random_normal")
    x = rng.normal(size=(3, 4, 6, 7)).astype("float32")
    y = layer(x)
    dense = keras.layers.Dense(5)
    dense.build((None, 7))
    kernel, bias = layer.get_weights()
    dense.set_weights([kernel.reshape(7, 5), bias])
    np.testing.assert_allclose(ops.convert_to_numpy(y), ops.convert_to_numpy(dense(x)), atol=1e-5)


def _classifier(conv_layer_factory):
    inputs = keras.Input((12, 12, 2))
    h = conv_layer_factory()(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = CrossCorrelation2D(4, 3, padding=1, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3)

    def call(self, x, training=None):
        return self.head(self.pool(self.conv(x, training=training)))


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_trains_with_fit_in_every_model_kind(kind, rng):
    factory = lambda: CrossCorrelation2D(4, 3, padding=1, activation="relu")  # noqa: E731
    if kind == "sequential":
        model = keras.Sequential([keras.Input((12, 12, 2)), factory(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    elif kind == "functional":
        model = _classifier(factory)
    else:
        model = SubclassedNet()
    x = rng.normal(size=(32, 12, 12, 2)).astype("float32")
    y = (x[:, :6].mean(axis=(1, 2, 3)) > 0).astype("int64") + (x[:, :, :6].mean(axis=(1, 2, 3)) > 0)
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]


def test_keras_file_round_trip(tmp_path, rng):
    model = _classifier(lambda: CrossCorrelation2D(4, 3, padding=((1, 0), (2, 1)), strides=2, groups=2))
    x = rng.normal(size=(2, 12, 12, 2)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[1], CrossCorrelation2D)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), atol=1e-6)
    assert [w.name for w in loaded.layers[1].weights] == ["kernel", "bias"]


@pytest.mark.parametrize("policy", ["float16", "bfloat16", "mixed_float16", "mixed_bfloat16"])
def test_low_precision_policies(policy, rng, gradients):
    layer = CrossCorrelation2D(4, 3, padding="same", dtype=policy)
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == layer.compute_dtype
    reference = keras.layers.Conv2D(4, 3, padding="same")
    reference.build(x.shape)
    reference.set_weights([w.astype("float32") for w in layer.get_weights()])
    tolerance = 0.1 if "bfloat16" in policy else 0.02
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(y, "float32")), ops.convert_to_numpy(reference(x)), atol=tolerance
    )
    got = gradients(lambda inputs: ops.sum(ops.cast(layer(inputs, training=True), "float32")), x, layer)
    assert all(np.isfinite(g.astype("float32")).all() for g in got)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_toeplitz_bias_in_the_product_has_conv2d_gradients(policy, rng, gradients):
    """The Toeplitz arrangement adds the bias inside its product (own bias gradient): the weights' gradients
    stay in their float32 storage and equal Conv2D's."""
    layer = CrossCorrelation2D(5, 3, padding="same", algorithm="toeplitz", bias_initializer="random_normal",
                               dtype=policy)
    reference = keras.layers.Conv2D(5, 3, padding="same")
    x = rng.normal(size=(3, 7, 7, 2)).astype("float32")
    layer.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    with dispatch.recorded() as plans:
        got = gradients(lambda inputs: ops.sum(ops.cast(layer(inputs, training=True), "float32") ** 2), x, layer)
    assert {plan.path for plan in plans} == {"toeplitz"}
    want = gradients(lambda inputs: ops.sum(reference(inputs) ** 2), x, reference)
    tolerance = 0.05 if policy == "mixed_float16" else 1e-4
    for name, g, w in zip(["input", "kernel", "bias"], got, want):
        assert g.dtype == np.float32, name
        np.testing.assert_allclose(g, w, rtol=tolerance, atol=tolerance, err_msg=name)


def test_onnx_export_matches_onnxruntime(tmp_path, rng):
    model = _classifier(lambda: CrossCorrelation2D(4, 3, padding=1, strides=(1, 2), activation="relu"))
    x = rng.normal(size=(3, 12, 12, 2)).astype("float32")
    expected = ops.convert_to_numpy(model(x))
    path = tmp_path / "model.onnx"
    model.export(str(path), format="onnx", verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_out, expected, atol=1e-5)
